"""ExaBGP's API output, decoded: session changes, updates and End-of-RIB.

ExaBGP writes one JSON object per line. What cnid reads of it:

* ``"type": "state"``: a session went ``connected``, ``up`` or ``down``;
* ``"type": "update"``: EVPN routes announced (grouped by next-hop) or
  withdrawn, or an End-of-RIB marker;
* ``"type": "notification"``: a NOTIFICATION sent or received;
* ``{"cnid-raw": ...}``: an EVPN UPDATE as its bytes, which the extension
  hands over instead of ExaBGP's JSON (decoded by ``_decode`` into the same
  UpdateEvent).

Everything is decoded defensively: a route that cannot be used (an unknown
route type, an unparsed NLRI, a missing label, a malformed attribute) is
returned in ``skipped`` with the reason, never raised, so one odd route from a
peer never costs the others. Facts about ExaBGP 5.0.15's JSON (from real
captures): the VNI is the second number of each ``label`` pair (the raw
3-octet field); the Router's MAC community is the last six octets of its
``value``; a type-2 route with two labels shows only the first in ``label``
(the second is read from ``raw``); the MAC Mobility community of a type-2
route is its ``value`` (flags and sequence), its ``string`` is
``mac-mobility:SEQ`` (``:sticky`` appended).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterator
from typing import Any, NamedTuple

import msgspec

from ..core._route_targets import route_targets_in
from ._aspath import as_path_numbers
from ._routes import (
    ESI_ZERO,
    EvpnPath,
    EvpnRoute,
    ImetRoute,
    MacIpRoute,
    PrefixRoute,
    ReceivedPath,
)
from ._unicast import UNICAST, UnicastUpdate, decode_unicast, is_unicast_eor
from ._wire import SpeakerState

FAMILY = "l2vpn evpn"
_ROUTER_MAC_TYPE = 0x0603
_ENCAP_TYPE = 0x030C
_MAC_MOBILITY_TYPE = 0x0600
_VXLAN = 8


class StateEvent(msgspec.Struct, frozen=True):
    peer: str
    state: str  # connected | up | down
    reason: str = ""


class NotificationEvent(msgspec.Struct, frozen=True):
    peer: str
    direction: str
    code: int
    subcode: int
    data: str = ""


class UpdateEvent(msgspec.Struct, frozen=True):
    peer: str
    announced: tuple[ReceivedPath, ...] = ()
    withdrawn: tuple[EvpnRoute, ...] = ()
    #: (reason, a short description of the route) per route not used.
    skipped: tuple[tuple[str, str], ...] = ()
    eor: bool = False
    #: The update's ipv4 unicast part (the routed underlay), if any.
    unicast: UnicastUpdate | None = None


class AckEvent(msgspec.Struct, frozen=True):
    id: int
    ok: bool
    done: int
    errors: tuple[str, ...]
    state: SpeakerState | None = None


BgpEvent = StateEvent | NotificationEvent | UpdateEvent | AckEvent


class Undecodable(ValueError):
    """A line that is not one of ExaBGP's JSON messages."""


def decode_line(line: bytes | str) -> BgpEvent | None:
    """One line of ExaBGP's output; None for messages cnid does not use.
    Undecodable for a line that is not JSON at all."""
    if _is_raw(line):
        # an EVPN UPDATE as its bytes (cnid.bgp._decode): most lines of a big table
        from ._decode import decode_raw_line  # _decode builds on this module

        try:
            return decode_raw_line(line)
        except msgspec.DecodeError as exc:
            raise Undecodable(f"raw update: {exc}") from None
    try:
        data = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise Undecodable(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Undecodable("not a JSON object")
    if "cnid-ack" in data:
        ack = data["cnid-ack"]
        try:
            state = msgspec.convert(ack.get("state"), SpeakerState | None)
        except msgspec.ValidationError as exc:
            raise Undecodable(f"speaker state: {exc}") from None
        return AckEvent(
            id=int(ack.get("id", -1)),
            ok=bool(ack.get("ok")),
            done=int(ack.get("done", 0)),
            errors=tuple(str(e) for e in ack.get("errors", ())),
            state=state,
        )
    kind = data.get("type")
    neighbor = data.get("neighbor") or {}
    peer = str((neighbor.get("address") or {}).get("peer", ""))
    if kind == "state":
        return StateEvent(peer, str(neighbor.get("state", "")), str(neighbor.get("reason", "")))
    if kind == "notification":
        note = (neighbor.get("message") or {}).get("notification") or {}
        return NotificationEvent(
            peer,
            str(neighbor.get("direction", "")),
            int(note.get("code", 0)),
            int(note.get("subcode", 0)),
            str(note.get("data", "")),
        )
    if kind == "update":
        return decode_update(peer, neighbor.get("message") or {})
    return None


def _is_raw(line: bytes | str) -> bool:
    if isinstance(line, str):
        return line.startswith('{"cnid-raw":')
    return line.startswith(b'{"cnid-raw":')


def decode_update(peer: str, message: dict[str, Any]) -> UpdateEvent:
    if "eor" in message:
        eor = message["eor"] or {}
        is_evpn = eor.get("afi") == "l2vpn" and eor.get("safi") == "evpn"
        unicast_eor = UnicastUpdate(eor=True) if is_unicast_eor(eor) else None
        return UpdateEvent(peer, eor=is_evpn, unicast=unicast_eor)
    update = message.get("update") or {}
    attrs = update.get("attribute") or {}
    announced: list[ReceivedPath] = []
    withdrawn: list[EvpnRoute] = []
    skipped: list[tuple[str, str]] = []
    shared: _Shared | None = None
    for family, by_nexthop in (update.get("announce") or {}).items():
        if family == UNICAST:
            continue  # decode_unicast
        if family != FAMILY:
            skipped.append(("unsupported address family", family))
            continue
        if shared is None:
            # an UPDATE's attributes are the same for all its NLRIs (often
            # hundreds): decoded once
            shared = _shared(attrs)
        for nexthop, nlris in (by_nexthop or {}).items():
            for nlri in nlris or ():
                try:
                    announced.append(_received(peer, str(nexthop), nlri, attrs, shared))
                except ValueError as exc:
                    skipped.append((str(exc), _describe(nlri)))
    for family, nlris in (update.get("withdraw") or {}).items():
        if family == UNICAST:
            continue
        if family != FAMILY:
            skipped.append(("unsupported address family", family))
            continue
        for nlri in nlris or ():
            try:
                withdrawn.append(_route(nlri, None, withdrawal=True))
            except ValueError as exc:
                skipped.append((str(exc), _describe(nlri)))
    unicast = decode_unicast(update)
    return UpdateEvent(peer, tuple(announced), tuple(withdrawn), tuple(skipped), unicast=unicast)


# ------------------------------------------------------------------ helpers


def _describe(nlri: Any) -> str:
    if not isinstance(nlri, dict):
        return repr(nlri)[:120]
    bits = [f"type {nlri.get('code', '?')}"]
    for key in ("rd", "mac", "ip", "iplen"):
        if key in nlri:
            bits.append(f"{key} {nlri[key]}")
    return " ".join(bits)


def _communities(attrs: dict[str, Any]) -> Iterator[tuple[int, str]]:
    for community in attrs.get("extended-community") or ():
        if isinstance(community, dict) and isinstance(community.get("value"), int):
            yield int(community["value"]), str(community.get("string", ""))


def _route_targets(attrs: dict[str, Any]) -> tuple[str, ...]:
    """The route targets as ``core.RouteTarget`` prints them (from the
    value: ExaBGP's text drops the 4-octet mark of ``65000L:42``)."""
    return _targets_of(tuple(v for v, _ in _communities(attrs)))


@functools.lru_cache(maxsize=4096)
def _targets_of(values: tuple[int, ...]) -> tuple[str, ...]:
    """Cached: a fabric's UPDATEs carry few distinct sets of communities
    (a peer streaming one route per UPDATE made this 9% of the node's time)."""
    return tuple(str(rt) for rt in route_targets_in(values))


def _router_mac(attrs: dict[str, Any]) -> str:
    for value, _text in _communities(attrs):
        if value >> 48 == _ROUTER_MAC_TYPE:
            raw = (value & 0xFFFFFFFFFFFF).to_bytes(6, "big")
            return ":".join(f"{b:02x}" for b in raw)
    return ""


def _mac_mobility(attrs: dict[str, Any]) -> tuple[int | None, bool]:
    """The MAC Mobility community's (sequence, sticky): (None, False)
    without one. ExaBGP 5.0.15 renders it ``{"value": N, "string":
    "mac-mobility:SEQ[:sticky]"}``; the number is read (type 0x06, sub-type
    0x00, flags, reserved, 4-octet sequence), the text only when the number
    is missing."""
    for community in attrs.get("extended-community") or ():
        if not isinstance(community, dict):
            continue
        value = community.get("value")
        if isinstance(value, int):
            if value >> 48 == _MAC_MOBILITY_TYPE:
                return value & 0xFFFFFFFF, bool((value >> 40) & 0x01)
            continue
        text = str(community.get("string", ""))
        if text.startswith("mac-mobility:"):
            parts = text.split(":")
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1]), parts[-1] == "sticky"
    return None, False


def _encap_vxlan(attrs: dict[str, Any]) -> bool:
    return any(
        value >> 48 == _ENCAP_TYPE and value & 0xFFFF == _VXLAN for value, _ in _communities(attrs)
    )


def _pmsi_vni(attrs: dict[str, Any]) -> int:
    """``pmsi:ingressreplication:0:6(100):10.99.0.3``: the raw label (100)."""
    text = attrs.get("pmsi")
    if not isinstance(text, str):
        raise ValueError("IMET route without a PMSI tunnel attribute")
    parts = text.split(":")
    if len(parts) < 4 or parts[1] != "ingressreplication":
        raise ValueError(f"PMSI tunnel {text!r} is not ingress replication")
    label = parts[3]
    if "(" in label:
        label = label.split("(", 1)[1].rstrip(")")
    if not label.isdigit() or int(label) == 0:
        raise ValueError(f"PMSI tunnel {text!r} has no VNI")
    return int(label)


def _first_vni(nlri: dict[str, Any], withdrawal: bool) -> int:
    labels = nlri.get("label")
    if not labels or not isinstance(labels, list) or not isinstance(labels[0], list):
        if withdrawal:
            return 0
        raise ValueError("route without a label (VNI)")
    pair = labels[0]
    vni = int(pair[-1]) if pair else 0
    if vni == 0 and not withdrawal:
        raise ValueError("route with VNI 0")
    return vni


def _second_label(raw: str, ip: str) -> int:
    """A type-2 route's second label, from the NLRI's raw hex: type, length,
    RD 8, ESI 10, Ethernet tag 4, MAC length 1, MAC 6, IP length 1, IP, label 3, label 3."""
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        return 0
    offset = 2 + 8 + 10 + 4 + 1 + 6 + 1 + (0 if not ip else (4 if ":" not in ip else 16)) + 3
    if len(data) < offset + 3:
        return 0
    return int.from_bytes(data[offset : offset + 3], "big")


@functools.lru_cache(maxsize=4096)
def _check_address(text: str) -> None:
    """ValueError unless ``text`` is an IP address. Next hops and IMET
    originators are few distinct strings, each seen with thousands of
    routes: checked once each (``ipaddress`` parses in Python, about 5 us)."""
    ipaddress.ip_address(text)


def _check_host(text: str) -> None:
    """ValueError unless ``text`` is an IP address (one per route: the C
    parser for the canonical IPv4 form, ``ipaddress`` for anything else)."""
    try:
        if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, text)) == text:
            return
    except (OSError, ValueError, TypeError):
        pass
    ipaddress.ip_address(text)


def _prefix(ip: str, iplen: int) -> str:
    """``str(ip_network(f"{ip}/{iplen}", strict=False))``, with a fast path
    for the canonical IPv4 form (no ``ipaddress`` objects: about 8 us saved
    per type-5 route)."""
    if 0 <= iplen <= 32 and type(iplen) is int:
        try:
            raw = socket.inet_pton(socket.AF_INET, ip)
        except (OSError, ValueError, TypeError):
            raw = b""
        if raw and socket.inet_ntop(socket.AF_INET, raw) == ip:
            mask = (0xFFFFFFFF << (32 - iplen)) & 0xFFFFFFFF
            net = (int.from_bytes(raw, "big") & mask).to_bytes(4, "big")
            return f"{socket.inet_ntop(socket.AF_INET, net)}/{iplen}"
    return str(ipaddress.ip_network(f"{ip}/{iplen}", strict=False))


class _Shared(NamedTuple):
    """What the paths of one UPDATE take from its attributes."""

    route_targets: tuple[str, ...]
    router_mac: str
    encap_vxlan: bool
    originator: str
    local_pref: int
    mac_mobility: tuple[int | None, bool] = (None, False)
    as_path: tuple[int, ...] = ()


def _shared(attrs: dict[str, Any]) -> _Shared:
    return _Shared(
        route_targets=_route_targets(attrs),
        router_mac=_router_mac(attrs),
        encap_vxlan=_encap_vxlan(attrs),
        originator=str(attrs.get("originator-id", "") or ""),
        local_pref=int(attrs.get("local-preference", 100) or 100),
        mac_mobility=_mac_mobility(attrs),
        as_path=as_path_numbers(attrs.get("as-path")),
    )


def _esi(nlri: dict[str, Any]) -> str:
    esi = nlri.get("esi", "-")
    return ESI_ZERO if esi in ("-", "", None) else str(esi)


def _route(nlri: Any, attrs: dict[str, Any] | None, withdrawal: bool = False) -> EvpnRoute:
    if not isinstance(nlri, dict):
        raise ValueError("malformed NLRI")
    if not nlri.get("parsed", False):
        raise ValueError("NLRI not parsed by ExaBGP")
    code = nlri.get("code")
    rd = str(nlri.get("rd") or "")
    etag = int(nlri.get("ethernet-tag", 0) or 0)
    if not rd:
        raise ValueError("route without a route distinguisher")
    if code == 2:
        mac = str(nlri.get("mac", "")).lower()
        ip = str(nlri.get("ip", "") or "")
        if ip:
            _check_host(ip)
        vni = _first_vni(nlri, withdrawal)
        return MacIpRoute(
            rd=rd,
            mac=mac,
            vni=vni,
            ip=ip,
            l3vni=0 if withdrawal else _second_label(str(nlri.get("raw", "")), ip),
            esi=_esi(nlri),
            etag=etag,
        )
    if code == 3:
        ip = str(nlri.get("ip", ""))
        _check_address(ip)
        vni = 0 if attrs is None else _pmsi_vni(attrs)
        return ImetRoute(rd=rd, ip=ip, vni=vni, etag=etag)
    if code == 5:
        ip, iplen = str(nlri.get("ip", "")), nlri.get("iplen")
        if not isinstance(iplen, int):
            raise ValueError("prefix route without a prefix length")
        prefix = _prefix(ip, iplen)
        gateway = str(nlri.get("gateway", "") or "")
        if gateway in ("0.0.0.0", "::"):
            gateway = ""
        return PrefixRoute(
            rd=rd,
            prefix=prefix,
            vni=_first_vni(nlri, withdrawal),
            gateway=gateway,
            esi=_esi(nlri),
            etag=etag,
        )
    raise ValueError(f"unsupported EVPN route type {code}")


def _received(
    peer: str, nexthop: str, nlri: Any, attrs: dict[str, Any], shared: _Shared | None = None
) -> ReceivedPath:
    try:
        route = _route(nlri, attrs)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"malformed route: {exc}") from None
    return _received_path(peer, route, nexthop, shared if shared is not None else _shared(attrs))


def _received_path(peer: str, route: EvpnRoute, nexthop: str, shared: _Shared) -> ReceivedPath:
    """A received route with the attributes its UPDATE shares (both decoders:
    ExaBGP's JSON and the raw UPDATE's bytes)."""
    try:
        _check_address(nexthop)
    except ValueError:
        raise ValueError(f"bad next-hop {nexthop!r}") from None
    seq, sticky = shared.mac_mobility if isinstance(route, MacIpRoute) else (None, False)
    path = EvpnPath(
        route=route,
        nexthop=nexthop,
        route_targets=shared.route_targets,
        router_mac=shared.router_mac,
        encap_vxlan=shared.encap_vxlan,
        mac_mobility_seq=seq,
        sticky=sticky,
    )
    return ReceivedPath(
        peer=peer,
        path=path,
        originator=shared.originator,
        local_pref=shared.local_pref,
        as_path=shared.as_path,
    )
