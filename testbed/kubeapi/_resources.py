"""The resource types the emulation serves: the built-in ones cnid touches
and every established CustomResourceDefinition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._errors import FieldError, invalid, required
from ._meta import dns_subdomain_problems
from ._schema import Node, SchemaError, compile_schema

CRD_GROUP = "apiextensions.k8s.io"
CRD_PLURAL = "customresourcedefinitions"


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _at(obj: dict[str, Any], *path: str) -> Any:
    current: Any = obj
    for key in path:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


FieldFn = Callable[[dict[str, Any]], str]


@dataclass
class Version:
    name: str
    served: bool = True
    storage: bool = True
    schema: Node | None = None
    status: bool = False
    selectable: dict[str, FieldFn] = field(default_factory=dict)


@dataclass
class ResourceType:
    group: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    versions: dict[str, Version]
    builtin: bool = False
    # field selector labels beyond metadata.name/namespace, and how to read them
    fields: dict[str, FieldFn] = field(default_factory=dict)
    short_names: list[str] = field(default_factory=list)
    has_generation: bool = False
    name_is_label: bool = False
    # DELETE answers the deleted object (pods, namespaces) instead of a Status
    return_deleted: bool = False
    unconditional_update: bool = True
    crd: dict[str, Any] | None = None

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def storage_version(self) -> str:
        for version in self.versions.values():
            if version.storage:
                return version.name
        return next(iter(self.versions))

    def api_version(self, version: str | None = None) -> str:
        version = version or self.storage_version
        return f"{self.group}/{version}" if self.group else version

    def has_status(self, version: str | None = None) -> bool:
        return self.versions[version or self.storage_version].status

    def field_fns(self, version: str) -> dict[str, FieldFn]:
        fns: dict[str, FieldFn] = {
            "metadata.name": lambda o: _str(_at(o, "metadata", "name")),
            "metadata.namespace": lambda o: _str(_at(o, "metadata", "namespace")),
        }
        fns.update(self.fields)
        if version in self.versions:
            fns.update(self.versions[version].selectable)
        return fns


def _field(*path: str) -> FieldFn:
    return lambda obj: _str(_at(obj, *path))


def builtin_types() -> list[ResourceType]:
    v1 = {"v1": Version("v1", status=True)}
    v1_plain = {"v1": Version("v1")}
    return [
        ResourceType(
            "",
            "namespaces",
            "namespace",
            "Namespace",
            False,
            v1,
            builtin=True,
            fields={"status.phase": _field("status", "phase")},
            short_names=["ns"],
            name_is_label=True,
            return_deleted=True,
        ),
        ResourceType(
            "",
            "nodes",
            "node",
            "Node",
            False,
            dict(v1),
            builtin=True,
            fields={"spec.unschedulable": _field("spec", "unschedulable")},
            short_names=["no"],
        ),
        ResourceType(
            "",
            "pods",
            "pod",
            "Pod",
            True,
            dict(v1),
            builtin=True,
            fields={
                "spec.nodeName": _field("spec", "nodeName"),
                "spec.restartPolicy": _field("spec", "restartPolicy"),
                "spec.schedulerName": _field("spec", "schedulerName"),
                "spec.serviceAccountName": _field("spec", "serviceAccountName"),
                "spec.hostNetwork": lambda o: _str(bool(_at(o, "spec", "hostNetwork"))),
                "status.phase": _field("status", "phase"),
                "status.podIP": _field("status", "podIP"),
                "status.nominatedNodeName": _field("status", "nominatedNodeName"),
            },
            short_names=["po"],
            return_deleted=True,
        ),
        ResourceType(
            "",
            "secrets",
            "secret",
            "Secret",
            True,
            v1_plain,
            builtin=True,
            fields={"type": _field("type")},
        ),
        ResourceType(
            "",
            "configmaps",
            "configmap",
            "ConfigMap",
            True,
            dict(v1_plain),
            builtin=True,
            short_names=["cm"],
        ),
        ResourceType(
            CRD_GROUP,
            CRD_PLURAL,
            "customresourcedefinition",
            "CustomResourceDefinition",
            False,
            dict(v1),
            builtin=True,
            short_names=["crd", "crds"],
            has_generation=True,
        ),
    ]


def _selectable(raw: Any, path: str, errors: list[FieldError]) -> dict[str, FieldFn]:
    out: dict[str, FieldFn] = {}
    for index, item in enumerate(raw or []):
        json_path = item.get("jsonPath", "") if isinstance(item, dict) else ""
        if not isinstance(json_path, str) or not json_path.startswith("."):
            errors.append(invalid(f"{path}[{index}].jsonPath", json_path, "must be a simple path"))
            continue
        parts = json_path[1:].split(".")
        out[".".join(parts)] = _field(*parts)
    return out


def crd_to_type(crd: dict[str, Any]) -> ResourceType:
    """The served type of a CRD; raises SchemaError listing every problem."""
    errors: list[FieldError] = []
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        raise SchemaError([required("spec")])
    group = spec.get("group")
    names = spec.get("names") or {}
    plural = names.get("plural")
    kind = names.get("kind")
    if not isinstance(group, str) or not group:
        errors.append(required("spec.group"))
    elif "." not in group:
        errors.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    else:
        errors += [invalid("spec.group", group, p) for p in dns_subdomain_problems(group)]
    if not isinstance(plural, str) or not plural:
        errors.append(required("spec.names.plural"))
    if not isinstance(kind, str) or not kind:
        errors.append(required("spec.names.kind"))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        errors.append(invalid("spec.scope", scope, 'must be "Namespaced" or "Cluster"'))
    name = (crd.get("metadata") or {}).get("name")
    if plural and group and name != f"{plural}.{group}":
        errors.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    versions: dict[str, Version] = {}
    raw_versions = spec.get("versions") or []
    if not raw_versions:
        errors.append(
            required("spec.versions", "must have exactly one version marked as storage version")
        )
    for index, raw in enumerate(raw_versions):
        path = f"spec.versions[{index}]"
        if not isinstance(raw, dict) or not raw.get("name"):
            errors.append(required(f"{path}.name"))
            continue
        schema = None
        raw_schema = (raw.get("schema") or {}).get("openAPIV3Schema")
        if raw_schema is None:
            errors.append(required(f"{path}.schema.openAPIV3Schema", "schemas are required"))
        else:
            try:
                schema = compile_schema(raw_schema, f"{path}.schema.openAPIV3Schema")
            except SchemaError as error:
                errors += error.errors
        versions[raw["name"]] = Version(
            raw["name"],
            served=bool(raw.get("served", False)),
            storage=bool(raw.get("storage", False)),
            schema=schema,
            status="status" in (raw.get("subresources") or {}),
            selectable=_selectable(raw.get("selectableFields"), f"{path}.selectableFields", errors),
        )
    if raw_versions and sum(1 for v in versions.values() if v.storage) != 1:
        errors.append(
            invalid(
                "spec.versions",
                raw_versions,
                "must have exactly one version marked as storage version",
            )
        )
    if errors:
        raise SchemaError(errors)
    assert isinstance(group, str) and isinstance(plural, str) and isinstance(kind, str)
    return ResourceType(
        group=group,
        plural=plural,
        singular=names.get("singular") or kind.lower(),
        kind=kind,
        namespaced=scope == "Namespaced",
        versions=versions,
        short_names=list(names.get("shortNames") or []),
        has_generation=True,
        unconditional_update=False,
        crd=crd,
    )


class Registry:
    """(group, plural) -> type, and the URL lookups by version."""

    def __init__(self) -> None:
        self._types: dict[tuple[str, str], ResourceType] = {}
        for rtype in builtin_types():
            self.add(rtype)

    def add(self, rtype: ResourceType) -> None:
        self._types[(rtype.group, rtype.plural)] = rtype

    def remove(self, group: str, plural: str) -> None:
        self._types.pop((group, plural), None)

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def get(self, group: str, plural: str) -> ResourceType | None:
        return self._types.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        rtype = self._types.get((group, plural))
        if rtype is None or version not in rtype.versions or not rtype.versions[version].served:
            return None
        return rtype

    def served(self, group: str, version: str) -> list[ResourceType]:
        return [
            t
            for t in self._types.values()
            if t.group == group and version in t.versions and t.versions[version].served
        ]

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for rtype in self._types.values():
            for version in rtype.versions.values():
                if version.served and version.name not in out.setdefault(rtype.group, []):
                    out[rtype.group].append(version.name)
        return out
