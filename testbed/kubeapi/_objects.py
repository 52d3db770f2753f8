"""The write semantics of the registry stores: create, update, patch, delete
with preconditions, status subresources, generation, finalizers, and the
strategies of the few built-in kinds the emulation serves."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from . import _errors as E
from ._meta import now, prune_meta, validate_meta
from ._patch import PatchError, json_patch, merge_patch
from ._resources import CRD_GROUP, CRD_PLURAL, Registry, ResourceType, crd_to_type
from ._schema import SchemaError, apply_defaults, prune, root_self, validate_value
from ._store import Store

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
CR_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
BUILTIN_PATCH_TYPES = [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH]

_NAME_SUFFIX = "bcdfghjklmnpqrstvwxz2456789"


@dataclass
class Written:
    """What a write answers: the code, the body, the warnings."""

    code: int
    body: dict[str, Any]
    warnings: list[str]


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


def _without(obj: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in keys}


class Objects:
    def __init__(self, registry: Registry, store: Store) -> None:
        self.registry = registry
        self.store = store

    # -- views -----------------------------------------------------------------

    def served(self, rtype: ResourceType, version: str, obj: dict[str, Any]) -> dict[str, Any]:
        """An object as a client of ``version`` sees it (no conversion
        webhooks: versions differ only in apiVersion, strategy None)."""
        out = dict(obj)
        out["apiVersion"] = rtype.api_version(version)
        out["kind"] = rtype.kind
        return out

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict[str, Any]:
        obj = self.store.get(rtype.group, rtype.plural, namespace, name)
        if obj is None:
            raise E.not_found(rtype.group, rtype.plural, name)
        return obj

    # -- decoding --------------------------------------------------------------

    def _decode(self, rtype: ResourceType, version: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise E.bad_request("the body of the request must be a JSON object")
        expected = rtype.api_version(version)
        shown = json.dumps(body, separators=(",", ":"))[:200]
        api_version, kind = body.get("apiVersion"), body.get("kind")
        if not rtype.builtin:
            if not kind:
                raise E.bad_request(f"Object 'Kind' is missing in '{shown}'")
            if not api_version:
                raise E.bad_request(f"Object 'apiVersion' is missing in '{shown}'")
        if api_version and api_version != expected:
            raise E.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API"
                f" version ({expected})"
            )
        if kind and kind != rtype.kind:
            raise E.bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rtype.kind})"
            )
        obj = copy.deepcopy(body)
        obj["apiVersion"], obj["kind"] = rtype.api_version(), rtype.kind
        obj["metadata"] = prune_meta(obj.get("metadata"))
        return obj

    def _shape(
        self, rtype: ResourceType, version: str, obj: dict[str, Any], warnings: list[str]
    ) -> dict[str, Any]:
        """Defaulting and pruning (custom resources), built-in conversions."""
        schema = rtype.versions[version].schema
        if not rtype.builtin and schema is not None:
            unknown: list[str] = []
            obj = prune(schema, apply_defaults(schema, obj), "", unknown, root=True)
            warnings += [f'unknown field "{path}"' for path in unknown]
        if rtype.plural == "secrets":
            obj.setdefault("type", "Opaque")
            data = dict(obj.get("data") or {})
            for key, value in (obj.pop("stringData", None) or {}).items():
                data[key] = base64.b64encode(str(value).encode()).decode()
            for key, value in data.items():
                try:
                    base64.b64decode(str(value), validate=True)
                except binascii.Error as error:
                    raise E.bad_request(
                        f'Secret in version "v1" cannot be handled as a Secret: illegal base64'
                        f" data in data[{key}]: {error}"
                    ) from error
            if data:
                obj["data"] = data
        return obj

    # -- validation ------------------------------------------------------------

    def _validate(
        self,
        rtype: ResourceType,
        version: str,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
    ) -> None:
        meta = obj["metadata"]
        errors = validate_meta(
            meta,
            namespaced=rtype.namespaced,
            name_is_label=rtype.name_is_label,
            old=old["metadata"] if old else None,
        )
        schema = rtype.versions[version].schema
        if not rtype.builtin and schema is not None:
            errors += validate_value(
                schema, root_self(obj), root_self(old) if old else None, "", root=True
            )
        if rtype.plural == "pods":
            containers = (obj.get("spec") or {}).get("containers")
            if not isinstance(containers, list) or not containers:
                errors.append(E.required("spec.containers"))
        if (rtype.group, rtype.plural) == (CRD_GROUP, CRD_PLURAL):
            try:
                crd_to_type(obj)
            except SchemaError as error:
                errors += error.errors
        if errors:
            raise E.invalid_object(rtype.group, rtype.kind, str(meta.get("name", "")), errors)

    # -- create ----------------------------------------------------------------

    def create(
        self, rtype: ResourceType, version: str, namespace: str, body: Any, *, dry_run: bool
    ) -> Written:
        warnings: list[str] = []
        obj = self._decode(rtype, version, body)
        meta = obj["metadata"]
        if rtype.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise E.bad_request(
                    "the namespace of the provided object does not match the namespace sent on"
                    " the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(_NAME_SUFFIX, k=5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        obj = self._shape(rtype, version, obj, warnings)
        meta = obj["metadata"]
        if rtype.has_status(version) and rtype.plural not in ("nodes",):
            obj.pop("status", None)  # the status subresource owns it
        self._prepare_create(rtype, obj)
        if rtype.namespaced and self.store.get("", "namespaces", "", namespace) is None:
            raise E.not_found("", "namespaces", namespace)
        self._validate(rtype, version, obj, None)
        if meta.get("resourceVersion"):
            raise E.bad_request("resourceVersion should not be set on objects to be created")
        name = str(meta["name"])
        if self.store.get(rtype.group, rtype.plural, namespace, name) is not None:
            raise E.already_exists(rtype.group, rtype.plural, name)
        for key in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "resourceVersion",
        ):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rtype.has_generation:
            meta["generation"] = 1
        if (rtype.group, rtype.plural) == (CRD_GROUP, CRD_PLURAL):
            self._establish(obj)
        if dry_run:
            return Written(201, self.served(rtype, version, obj), warnings)
        stored = self.store.put(rtype.group, rtype.plural, obj)
        if (rtype.group, rtype.plural) == (CRD_GROUP, CRD_PLURAL):
            self.registry.add(crd_to_type(stored))
        return Written(201, self.served(rtype, version, stored), warnings)

    def _prepare_create(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        if rtype.builtin and rtype.group == "":
            if rtype.plural == "namespaces":
                spec = obj.setdefault("spec", {})
                spec.setdefault("finalizers", ["kubernetes"])
                obj["status"] = {"phase": "Active"}
                labels = obj["metadata"].setdefault("labels", {})
                labels["kubernetes.io/metadata.name"] = obj["metadata"].get("name", "")
            elif rtype.plural == "pods":
                spec = obj.setdefault("spec", {})
                spec.setdefault("restartPolicy", "Always")
                spec.setdefault("terminationGracePeriodSeconds", 30)
                spec.setdefault("dnsPolicy", "ClusterFirst")
                spec.setdefault("schedulerName", "default-scheduler")
                spec.setdefault("serviceAccountName", "default")
                spec.setdefault("enableServiceLinks", True)
                obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        if (rtype.group, rtype.plural) == (CRD_GROUP, CRD_PLURAL):
            spec = obj.get("spec")
            if isinstance(spec, dict):
                names = spec.get("names")
                if isinstance(names, dict) and isinstance(names.get("kind"), str):
                    names.setdefault("singular", names["kind"].lower())
                    names.setdefault("listKind", f"{names['kind']}List")
                spec.setdefault("conversion", {"strategy": "None"})

    def _establish(self, crd: dict[str, Any]) -> None:
        """What the CRD controllers write right after a create, done at once."""
        when = now()
        spec = crd.get("spec") or {}
        crd["status"] = {
            "acceptedNames": {k: v for k, v in (spec.get("names") or {}).items()},
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": when,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": when,
                },
            ],
            "storedVersions": [
                v["name"]
                for v in spec.get("versions") or []
                if isinstance(v, dict) and v.get("storage")
            ],
        }

    # -- update and patch --------------------------------------------------------

    def update(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str,
        dry_run: bool,
    ) -> Written:
        obj = self._decode(rtype, version, body)
        body_name = obj["metadata"].get("name")
        if body_name and body_name != name:
            raise E.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        if rtype.namespaced:
            body_ns = obj["metadata"].get("namespace")
            if body_ns and body_ns != namespace:
                raise E.bad_request(
                    "the namespace of the provided object does not match the namespace sent on"
                    " the request"
                )
        old = self.get(rtype, namespace, name)
        rv = str(obj["metadata"].get("resourceVersion") or "")
        if not rv and not rtype.unconditional_update:
            raise E.invalid_object(
                rtype.group,
                rtype.kind,
                name,
                [
                    E.invalid(
                        "metadata.resourceVersion",
                        E.GoLiteral("0x0"),
                        "must be specified for an update",
                    )
                ],
            )
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise E.conflict(rtype.group, rtype.plural, name, E.MODIFIED)
        return self._replace(rtype, version, old, obj, subresource=subresource, dry_run=dry_run)

    def patch(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        *,
        subresource: str,
        dry_run: bool,
    ) -> Written:
        old = self.get(rtype, namespace, name)
        current = self.served(rtype, version, old)
        try:
            if content_type == MERGE_PATCH:
                if not isinstance(body, dict):
                    raise E.bad_request("a merge patch must be a JSON object")
                patched = merge_patch(current, body)
            elif content_type == STRATEGIC_PATCH:
                # Maps merge as in a JSON merge patch; lists are replaced, not merged by key.
                patched = merge_patch(current, body)
            else:
                patched = json_patch(current, body)
        except PatchError as error:
            raise E.StatusError(
                422,
                "Invalid",
                f"the server rejected our request due to an error in our request: {error}",
                {
                    "causes": [
                        {"reason": "FieldValueInvalid", "message": str(error), "field": "patch"}
                    ]
                },
            ) from error
        if not isinstance(patched, dict):
            raise E.bad_request("the patched object is not a JSON object")
        raw_meta = patched.get("metadata")
        meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
        rv = str(meta.get("resourceVersion") or "")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise E.conflict(rtype.group, rtype.plural, name, E.MODIFIED)
        uid = meta.get("uid")
        if uid and uid != old["metadata"].get("uid"):
            raise E.conflict(
                rtype.group,
                rtype.plural,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                f"{old['metadata'].get('uid')}",
            )
        patched["metadata"] = {**meta, "name": name}
        if rtype.namespaced:
            patched["metadata"]["namespace"] = namespace
        obj = self._decode(rtype, version, patched)
        return self._replace(rtype, version, old, obj, subresource=subresource, dry_run=dry_run)

    def _replace(
        self,
        rtype: ResourceType,
        version: str,
        old: dict[str, Any],
        obj: dict[str, Any],
        *,
        subresource: str,
        dry_run: bool,
    ) -> Written:
        warnings: list[str] = []
        old_meta = old["metadata"]
        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            new = self._shape(rtype, version, new, warnings)
        else:
            new = self._shape(rtype, version, obj, warnings)
            if rtype.has_status(version):
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            meta = new["metadata"]
            for key in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "name",
                "namespace",
            ):
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            meta.pop("selfLink", None)
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        self._validate(rtype, version, new, old)
        if rtype.has_generation and subresource != "status":
            if _without(new, "metadata") != _without(old, "metadata"):
                new["metadata"]["generation"] = int(old_meta.get("generation") or 0) + 1
        if new == old:
            return Written(200, self.served(rtype, version, old), warnings)
        is_crd = (rtype.group, rtype.plural) == (CRD_GROUP, CRD_PLURAL)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            if dry_run:
                return Written(200, self.served(rtype, version, new), warnings)
            gone = self._remove(rtype, new)
            return Written(200, self.served(rtype, version, gone), warnings)
        if dry_run:
            return Written(200, self.served(rtype, version, new), warnings)
        stored = self.store.put(rtype.group, rtype.plural, new)
        if is_crd and not stored["metadata"].get("deletionTimestamp"):
            self.registry.add(crd_to_type(stored))
        return Written(200, self.served(rtype, version, stored), warnings)

    # -- delete ----------------------------------------------------------------

    def delete(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        name: str,
        options: dict[str, Any],
        *,
        dry_run: bool,
    ) -> Written:
        old = self.get(rtype, namespace, name)
        meta = old["metadata"]
        preconditions = options.get("preconditions") or {}
        uid = preconditions.get("uid")
        if uid and uid != meta.get("uid"):
            raise E.conflict(
                rtype.group,
                rtype.plural,
                name,
                f"Precondition failed: UID in precondition: {uid}, UID in object meta:"
                f" {meta.get('uid')}",
            )
        rv = preconditions.get("resourceVersion")
        if rv and rv != meta.get("resourceVersion"):
            raise E.conflict(
                rtype.group,
                rtype.plural,
                name,
                f"Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in"
                f" object meta: {meta.get('resourceVersion')}",
            )
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return Written(200, self.served(rtype, version, old), [])
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            if rtype.has_generation:
                new["metadata"]["generation"] = int(meta.get("generation") or 0) + 1
            if dry_run:
                return Written(200, self.served(rtype, version, new), [])
            stored = self.store.put(rtype.group, rtype.plural, new)
            return Written(200, self.served(rtype, version, stored), [])
        if dry_run:
            gone = old
        else:
            gone = self._remove(rtype, old)
        if rtype.return_deleted:
            return Written(200, self.served(rtype, version, gone), [])
        details: dict[str, Any] = {"name": name}
        if rtype.group:
            details["group"] = rtype.group
        details["kind"] = rtype.plural
        details["uid"] = meta.get("uid", "")
        return Written(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            },
            [],
        )

    def _remove(self, rtype: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Delete for good, with what goes with it (a namespace's objects, a CRD's resources)."""
        if rtype.plural == "namespaces" and rtype.group == "":
            name = obj["metadata"]["name"]
            for other in self.registry.all():
                if other.namespaced:
                    for item in self.store.list_objects(other.group, other.plural, name):
                        self.store.delete(other.group, other.plural, item)
        if (rtype.group, rtype.plural) == (CRD_GROUP, CRD_PLURAL):
            spec = obj.get("spec") or {}
            group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
            for item in self.store.list_objects(group, plural):
                self.store.delete(group, plural, item)
            self.store.drop_type(group, plural)
            self.registry.remove(group, plural)
        return self.store.delete(rtype.group, rtype.plural, obj)
