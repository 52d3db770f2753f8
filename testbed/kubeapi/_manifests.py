"""Validating a manifest against a CRD offline, with the server's own code."""

from __future__ import annotations

import copy
from typing import Any

from ._errors import StatusError
from ._objects import Objects
from ._resources import Registry, crd_to_type
from ._schema import SchemaError
from ._store import Store


def validate(crd: dict[str, Any], obj: dict[str, Any], *, strict: bool = False) -> list[str]:
    """What a create of ``obj`` would be refused for, [] if it would be
    accepted: metadata checks, defaulting, pruning, the storage version's
    schema and CEL rules. ``strict`` also reports fields the server would
    silently prune (a typo in a manifest, usually)."""
    try:
        rtype = crd_to_type(copy.deepcopy(crd))
    except SchemaError as error:
        return [f"the CRD is invalid: {e}" for e in error.errors]
    problems: list[str] = []
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    if group != rtype.group or version not in rtype.versions:
        problems.append(f"apiVersion {obj.get('apiVersion')!r} is not a version of {rtype.group}")
    if obj.get("kind") != rtype.kind:
        problems.append(f"kind {obj.get('kind')!r} is not {rtype.kind!r}")
    if problems:
        return problems
    registry = Registry()
    registry.add(rtype)
    store = Store()
    objects = Objects(registry, store)
    storage = rtype.storage_version
    namespace = ""
    if rtype.namespaced:
        namespace = str((obj.get("metadata") or {}).get("namespace") or "default")
        namespaces = registry.get("", "namespaces")
        assert namespaces is not None
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        objects.create(namespaces, "v1", "", body, dry_run=False)
    body = copy.deepcopy(obj)
    body["apiVersion"] = rtype.api_version(storage)
    try:
        written = objects.create(rtype, storage, namespace, body, dry_run=True)
    except StatusError as error:
        causes = (error.details or {}).get("causes") or []
        if causes:
            return [
                f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes
            ]
        return [error.message]
    if strict:
        return list(written.warnings)
    return []
