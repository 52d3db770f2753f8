"""AS_PATH loop detection, which ExaBGP does not do (it hands every route
it receives to the API, its own AS in the path or not).

An eBGP route whose AS_PATH holds the node's own AS came back to it: in
FRR's words, an AS-path loop, not used unless the neighbour is configured
with ``allowas-in N`` (the own AS may appear up to N times). The design
that needs it is the rack in one AS: the nodes of a rack share an AS behind
the rack's leaves, so a route of one node reaches the other with that AS in
its path (FRR's leaves ``neighbor NODES allowas-in 1``, and the nodes
``allowAsIn: 1`` towards their leaves).

A looping path is not installed, and, as RFC 4271 treats such a route, it
replaces what the neighbour sent before for the same route: that is
withdrawn. It is reported in the update's ``skipped`` with the reason
``as-loop`` (``cnid_evpn_routes_skipped_total{reason="as-loop"}``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:  # _events imports this module for as_path_numbers
    from ._events import UpdateEvent

AS_LOOP = "as-loop"
#: The reasons of ``UpdateEvent.skipped`` that are names for a metric (the
#: others are messages about malformed routes).
SKIP_REASONS = frozenset({AS_LOOP})


def as_path_numbers(value: Any) -> tuple[int, ...]:
    """ExaBGP's JSON ``as-path`` (``{"0": {"element": "as-sequence",
    "value": [65101, 65001]}, ...}``, segments in order; also a plain list,
    nested lists for sets) as the AS numbers in order; () for anything else."""
    out: list[int] = []

    def add(items: Any) -> None:
        for item in items if isinstance(items, list) else ():
            if isinstance(item, int) and not isinstance(item, bool):
                out.append(item)
            elif isinstance(item, list):
                add(item)

    if isinstance(value, dict):
        for position in sorted(value, key=lambda k: int(k) if str(k).isdigit() else 0):
            segment = value[position]
            if isinstance(segment, dict):
                add(segment.get("value"))
    else:
        add(value)
    return tuple(out)


def loops(as_path: tuple[int, ...], asn: int, allow_as_in: int = 0) -> bool:
    """Whether a path with this AS_PATH loops for a node in ``asn`` that
    allows its AS ``allow_as_in`` times."""
    return as_path.count(asn) > allow_as_in


def drop_loops(event: UpdateEvent, asn: int, allow_as_in: int = 0) -> UpdateEvent:
    """The update without its looping paths: each withdrawn instead, and
    reported skipped (``as-loop``)."""
    if not any(loops(rp.as_path, asn, allow_as_in) for rp in event.announced):
        return event
    kept = []
    withdrawn = list(event.withdrawn)
    skipped = list(event.skipped)
    for rp in event.announced:
        if loops(rp.as_path, asn, allow_as_in):
            withdrawn.append(rp.path.route)
            path = " ".join(str(a) for a in rp.as_path)
            skipped.append((AS_LOOP, f"{rp.path.route} (AS_PATH {path}, own AS {asn})"))
        else:
            kept.append(rp)
    return msgspec.structs.replace(
        event, announced=tuple(kept), withdrawn=tuple(withdrawn), skipped=tuple(skipped)
    )
