"""Status conditions (metav1.Condition) and the per-node finalizer name."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

import msgspec

from ..kube import Condition

#: The name part of a qualified name (after the "/") holds at most 63 characters.
_NAME_MAX = 63


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_finalizer(node: str) -> str:
    """``cni.pyroute2.org/node.<node>``: one finalizer per node, so a domain
    goes only when every node that programmed it has cleaned up. A node
    name too long for a finalizer (node names may hold 253 characters) is
    replaced by a hash of it."""
    name = f"node.{node}"
    if len(name) > _NAME_MAX:
        name = "node-" + hashlib.sha256(node.encode()).hexdigest()[:40]
    return f"cni.pyroute2.org/{name}"


def finalizer_node(finalizer: str, nodes: list[str]) -> str | None:
    """Which of ``nodes`` a finalizer of ours belongs to (None: none of them
    or not ours)."""
    for node in nodes:
        if node_finalizer(node) == finalizer:
            return node
    return None


def is_node_finalizer(finalizer: str) -> bool:
    return finalizer.startswith("cni.pyroute2.org/node")


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str = "",
    generation: int = 0,
) -> list[Condition]:
    """The conditions with ``type_`` set; lastTransitionTime changes only
    when the status does (the metav1.Condition contract)."""
    value = "True" if status else "False"
    old = next((c for c in conditions if c.type == type_), None)
    since = old.last_transition_time if old is not None and old.status == value else now()
    new = Condition(
        type=type_,
        status=value,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type_] + [new]


def same_conditions(a: list[Condition], b: list[Condition]) -> bool:
    """Equal but for the transition times (no write needed)."""

    def key(cs: list[Condition]) -> list[tuple[str, str, str, str, int]]:
        return sorted((c.type, c.status, c.reason, c.message, c.observed_generation) for c in cs)

    return key(a) == key(b)


def status_body(
    conditions: list[Condition],
    old_conditions: list[Condition],
    old_node: object | None,
    node: str,
    mine: dict[str, Any],
) -> dict[str, Any]:
    """The status patch a node writes for a cluster-wide object: the
    conditions if they changed, and its own entry of ``status.nodes`` if
    that changed (empty: nothing to write). ``old_node`` is the entry as
    read; its empty fields are omitted there, so they are here too."""
    body: dict[str, Any] = {}
    if not same_conditions(conditions, old_conditions):
        body["conditions"] = msgspec.to_builtins(conditions)
    old_view = msgspec.to_builtins(old_node) if old_node is not None else None
    if old_view != {k: v for k, v in mine.items() if v not in ("", 0)}:
        body["nodes"] = {node: mine}
    return body
