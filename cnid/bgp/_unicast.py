"""IPv4 unicast updates (the routed underlay, RFC 7938), decoded from
ExaBGP's JSON.

What ExaBGP 5.0.15 writes for the family (FRR 8.4 leaves, captured in
tests/host/test_underlay_frr.py)::

    "update": {"attribute": {"origin": "igp", "as-path": [65101, 65199], ...},
               "announce": {"ipv4 unicast": {"10.1.1.0": [{"nlri": "10.255.0.99/32"}]}},
               "withdraw": {"ipv4 unicast": [{"nlri": "10.255.0.99/32"}]}}
    "eor": {"afi": "ipv4", "safi": "unicast"}

Decoded defensively like the EVPN routes (``_events``): what cannot be used
is returned in ``skipped`` with a reason, never raised. Whether a route may
be installed (own VTEP, pod CIDRs, default route...) is not decided here but
by the underlay RIB (cnid.evpn._underlay): this module only parses.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec

from ._aspath import as_path_numbers

UNICAST = "ipv4 unicast"


class UnicastPath(msgspec.Struct, frozen=True, order=True):
    prefix: str
    nexthop: str
    as_path: tuple[int, ...] = ()


class UnicastUpdate(msgspec.Struct, frozen=True):
    announced: tuple[UnicastPath, ...] = ()
    withdrawn: tuple[str, ...] = ()
    #: (reason, what) per route not usable.
    skipped: tuple[tuple[str, str], ...] = ()
    eor: bool = False


def _prefix(nlri: Any) -> str:
    text = nlri.get("nlri") if isinstance(nlri, dict) else nlri
    if not isinstance(text, str):
        raise ValueError("malformed NLRI")
    net = ipaddress.ip_network(text, strict=False)
    if net.version != 4:
        raise ValueError("not an IPv4 prefix")
    return str(net)


def decode_unicast(update: dict[str, Any]) -> UnicastUpdate | None:
    """The ipv4 unicast part of one ``update`` object; None if it has none."""
    announce = (update.get("announce") or {}).get(UNICAST)
    withdraw = (update.get("withdraw") or {}).get(UNICAST)
    if announce is None and withdraw is None:
        return None
    attrs = update.get("attribute") or {}
    as_path = as_path_numbers(attrs.get("as-path")) if isinstance(attrs, dict) else ()
    announced: list[UnicastPath] = []
    withdrawn: list[str] = []
    skipped: list[tuple[str, str]] = []
    for nexthop, nlris in announce.items() if isinstance(announce, dict) else ():
        try:
            hop = ipaddress.ip_address(nexthop)
            if hop.version != 4:
                raise ValueError
        except ValueError:
            skipped += [("bad-nexthop", f"{n!r} via {nexthop!r}"[:120]) for n in nlris or ()]
            continue
        for nlri in nlris or ():
            try:
                announced.append(UnicastPath(_prefix(nlri), str(hop), as_path))
            except (ValueError, TypeError):
                skipped.append(("malformed", repr(nlri)[:120]))
    for nlri in withdraw if isinstance(withdraw, list) else ():
        try:
            withdrawn.append(_prefix(nlri))
        except (ValueError, TypeError):
            skipped.append(("malformed", repr(nlri)[:120]))
    return UnicastUpdate(tuple(announced), tuple(withdrawn), tuple(skipped))


def is_unicast_eor(eor: Any) -> bool:
    return isinstance(eor, dict) and eor.get("afi") == "ipv4" and eor.get("safi") == "unicast"
