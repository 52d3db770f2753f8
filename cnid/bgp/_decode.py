"""EVPN UPDATEs decoded from their bytes: the one decoder of what peers send.

cnid's extension inside ExaBGP (``_extension.raw_evpn_updates``) hands the
daemon an UPDATE that carries EVPN NLRIs as its bytes, base64 in a line of
its own, instead of ExaBGP's objects and then its JSON (which cost ExaBGP
about two thirds of its CPU, and the daemon decoded that JSON again)::

    {"cnid-raw": {"peer": "10.0.0.1", "asn4": true, "update": "<base64 of the UPDATE body>"}}

The body is the UPDATE's after the 19-octet header (RFC 4271 4.3):
withdrawn routes length, withdrawn routes, path attributes length, path
attributes; EVPN's NLRIs travel in MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760,
AFI 25, SAFI 70). ``asn4``: the session negotiated 4-octet AS numbers (RFC
6793: the AS_PATH's width). The extension sends only what it checked the
framing of (attribute and NLRI lengths: what RFC 7606 resets the session for
is left to ExaBGP), without ADD-PATH.

The result is the :class:`UpdateEvent` ExaBGP's JSON of the same UPDATE
decodes to (``_events.decode_update``), field for field and skip reason for
skip reason (tests/unit/test_bgp_decode.py checks both on the captures and
on generated UPDATEs). Malformed input never raises: a malformed attribute
(RFC 7606 ``treat-as-withdraw``) turns the UPDATE's announced routes into
withdrawals, reported in ``skipped`` (the controller logs and counts it as
``malformed``); an unknown route type is skipped with a reason; bytes whose
framing cannot be followed give no routes, only the reason.
"""

from __future__ import annotations

import binascii
import functools
import socket
from typing import NamedTuple

import msgspec

from ._events import (
    _ENCAP_TYPE,
    _MAC_MOBILITY_TYPE,
    _ROUTER_MAC_TYPE,
    _VXLAN,
    UpdateEvent,
    _check_host,
    _prefix,
    _received_path,
    _Shared,
    _targets_of,
)
from ._routes import ESI_ZERO, EvpnRoute, ImetRoute, MacIpRoute, PrefixRoute, ReceivedPath

#: The line's first octets (what ``decode_line`` tells it by).
RAW_PREFIX = '{"cnid-raw":'

AFI_L2VPN = 25
SAFI_EVPN = 70

# path attribute type codes (RFC 4271, 4456, 4760, 4360, 6514, 6793)
_ORIGIN = 1
_AS_PATH = 2
_MED = 4
_LOCAL_PREF = 5
_ORIGINATOR_ID = 9
_CLUSTER_LIST = 10
_MP_REACH = 14
_MP_UNREACH = 15
_EXT_COMMUNITIES = 16
_AS4_PATH = 17
_PMSI = 22
_EXTENDED_LENGTH = 0x10

#: Attributes whose malformation RFC 7606 answers with treat-as-withdraw
#: (section 7), with the lengths they may have (None: checked by their parser).
_OPTIONAL_TRANSITIVE = 0xC0
#: The Optional and Transitive bits of the attributes the decoder reads
#: (RFC 4271 5, RFC 4456, RFC 4360, RFC 6514): well-known ones are
#: transitive, optional ones what their RFC says.
_FLAGS = {
    _ORIGIN: 0x40,
    _AS_PATH: 0x40,
    _MED: 0x80,
    _LOCAL_PREF: 0x40,
    _ORIGINATOR_ID: 0x80,
    _CLUSTER_LIST: 0x80,
    _EXT_COMMUNITIES: 0xC0,
    _AS4_PATH: 0xC0,
    _PMSI: 0xC0,
}
_FIXED_LENGTH = {_ORIGIN: 1, _MED: 4, _LOCAL_PREF: 4, _ORIGINATOR_ID: 4}

_PMSI_NAMES = {
    0: "notunnel",
    1: "rsvp-tep2mplsp",
    2: "mldpp2mplsp",
    3: "pim-ssmtree",
    4: "pim-smtree",
    5: "bidir-pimtree",
    6: "ingressreplication",
    7: "mldpmp2mplsp",
}
#: Route types ExaBGP 5.0.15 parses but cnid does not use (its JSON says
#: ``parsed: true``): the skip reason names the type; any other unknown
#: type is one ExaBGP did not parse.
_PARSED_ELSEWHERE = frozenset({1, 4})


class RawUpdate(msgspec.Struct, frozen=True):
    peer: str
    update: str  # base64
    asn4: bool = True


class _RawLine(msgspec.Struct, frozen=True):
    raw: RawUpdate = msgspec.field(name="cnid-raw")


_line_decoder = msgspec.json.Decoder(_RawLine)


class Malformed(ValueError):
    """Bytes that do not follow the UPDATE's framing."""


def raw_line(peer: str, body: bytes, asn4: bool = True) -> str:
    """The line the extension writes for an UPDATE body (its inverse:
    :func:`decode_raw_line`)."""
    encoded = binascii.b2a_base64(body, newline=False).decode("ascii")
    flag = "true" if asn4 else "false"
    return f'{RAW_PREFIX}{{"peer":"{peer}","asn4":{flag},"update":"{encoded}"}}}}'


def decode_raw_line(line: bytes | str) -> UpdateEvent:
    """ValueError (msgspec's) for a line that is not a raw update line."""
    raw = _line_decoder.decode(line).raw
    try:
        body = binascii.a2b_base64(raw.update, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        return UpdateEvent(raw.peer, skipped=((f"malformed UPDATE: base64: {exc}", "update"),))
    return decode_update_bytes(raw.peer, body, raw.asn4)


# ------------------------------------------------------------------ framing


class _Parts(NamedTuple):
    """An UPDATE body cut into what the decoder reads."""

    #: The path attributes other than the MP ones, in order: (code, their
    #: Optional and Transitive flags, value).
    attributes: tuple[tuple[int, int, bytes], ...]
    #: MP_REACH_NLRI's value, MP_UNREACH_NLRI's value (None: absent).
    reach: bytes | None
    unreach: bytes | None


def _cut(body: bytes) -> _Parts:
    """Malformed when the NLRIs cannot be found (RFC 7606 section 4: such
    an UPDATE resets the session, which the extension leaves to ExaBGP)."""
    if len(body) < 4:
        raise Malformed("shorter than its two length fields")
    withdrawn = int.from_bytes(body[0:2], "big")
    if withdrawn:
        raise Malformed("IPv4 withdrawn routes in an EVPN UPDATE")
    total = int.from_bytes(body[2:4], "big")
    if 4 + total != len(body):
        raise Malformed(f"path attributes length {total} in a body of {len(body)}")
    attributes: list[tuple[int, int, bytes]] = []
    seen: set[int] = set()
    reach: bytes | None = None
    unreach: bytes | None = None
    i, end = 4, len(body)
    while i < end:
        if end - i < 3:
            raise Malformed("an attribute header cut short")
        flags, code = body[i], body[i + 1]
        if flags & _EXTENDED_LENGTH:
            if end - i < 4:
                raise Malformed("an attribute header cut short")
            length, start = int.from_bytes(body[i + 2 : i + 4], "big"), i + 4
        else:
            length, start = body[i + 2], i + 3
        if start + length > end:
            raise Malformed(f"attribute {code}: length {length} overruns the UPDATE")
        value = body[start : start + length]
        i = start + length
        if code in (_MP_REACH, _MP_UNREACH):
            if code in seen:  # RFC 7606 3 (g): session reset
                raise Malformed(f"attribute {code} twice")
            if code == _MP_REACH:
                reach = value
            else:
                unreach = value
        elif code in seen:
            continue  # RFC 7606 3 (g): all but the first discarded
        else:
            attributes.append((code, flags & _OPTIONAL_TRANSITIVE, value))
        seen.add(code)
    return _Parts(tuple(attributes), reach, unreach)


def _nlris(data: bytes) -> list[tuple[int, bytes]]:
    """(route type, value) of each EVPN NLRI (RFC 7432 7)."""
    out = []
    i, end = 0, len(data)
    while i < end:
        if end - i < 2:
            raise Malformed("an EVPN NLRI header cut short")
        code, length = data[i], data[i + 1]
        if i + 2 + length > end:
            raise Malformed(f"EVPN NLRI of type {code}: length {length} overruns")
        out.append((code, data[i + 2 : i + 2 + length]))
        i += 2 + length
    return out


def _family(value: bytes, what: str) -> None:
    if len(value) < 3:
        raise Malformed(f"{what} shorter than its AFI and SAFI")
    afi, safi = int.from_bytes(value[0:2], "big"), value[2]
    if (afi, safi) != (AFI_L2VPN, SAFI_EVPN):
        raise Malformed(f"{what} of AFI {afi} SAFI {safi}, not l2vpn evpn")


def _reach(value: bytes) -> tuple[str, list[tuple[int, bytes]]]:
    """MP_REACH_NLRI: (next hop, NLRIs)."""
    _family(value, "MP_REACH_NLRI")
    if len(value) < 5:
        raise Malformed("MP_REACH_NLRI cut short")
    size = value[3]
    if size not in (4, 16) or len(value) < 5 + size:
        raise Malformed(f"MP_REACH_NLRI: next hop of {size} octets")
    return _ip(value[4 : 4 + size]), _nlris(value[5 + size :])


# --------------------------------------------------------------- attributes


def _ip(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _as_path(value: bytes, asn4: bool) -> tuple[int, ...]:
    """The AS numbers of every segment, in order (what ``as_path_numbers``
    makes of ExaBGP's JSON)."""
    width = 4 if asn4 else 2
    out: list[int] = []
    i = 0
    while i < len(value):
        if len(value) - i < 2:
            raise ValueError("AS_PATH segment header cut short")
        kind, count = value[i], value[i + 1]
        if kind not in (1, 2, 3, 4):
            raise ValueError(f"AS_PATH segment type {kind}")
        end = i + 2 + count * width
        if end > len(value):
            raise ValueError("AS_PATH segment overruns the attribute")
        out += (int.from_bytes(value[j : j + width], "big") for j in range(i + 2, end, width))
        i = end
    return tuple(out)


def _pmsi_text(value: bytes) -> str:
    """ExaBGP's rendering of the PMSI tunnel attribute (``repr``), which the
    JSON path reads its VNI from and names in its skip reasons."""
    flags, kind = value[0], value[1]
    raw_label = int.from_bytes(value[2:5], "big")
    tunnel = value[5:]
    name = _PMSI_NAMES.get(kind, "unknown")
    if kind == 6 and len(tunnel) == 4:
        label = f"{raw_label >> 4}({raw_label})" if raw_label else "0"
        pretty = _ip(tunnel)
    else:  # ExaBGP's generic PMSI: the label shifted, the tunnel in hex
        label = str(raw_label >> 4)
        pretty = "0x" + tunnel.hex().upper() if tunnel else ""
    return f"pmsi:{name}:{flags}:{label}:{pretty}"


class _Attrs(NamedTuple):
    """What the routes of one UPDATE take from its attributes."""

    shared: _Shared
    #: The IMET routes' VNI (the PMSI tunnel's label), or why there is none.
    pmsi_vni: int
    pmsi_error: str


@functools.lru_cache(maxsize=1024)
def _attributes(attributes: tuple[tuple[int, int, bytes], ...], asn4: bool) -> _Attrs | str:
    """The attributes decoded, or why they are malformed (treat-as-withdraw).
    Cached: the routes of a fabric travel with few distinct sets of
    attributes, and a peer streaming one route per UPDATE repeats them."""
    values: tuple[int, ...] = ()
    originator, local_pref = "", 100
    as_path: tuple[int, ...] = ()
    pmsi: bytes | None = None
    for code, flags, value in attributes:
        want = _FLAGS.get(code)
        if want is not None and flags != want:
            # RFC 7606 3 (c): an Optional or Transitive bit in conflict
            return f"attribute {code} with flags {flags:#04x}, not {want:#04x}"
        size = _FIXED_LENGTH.get(code)
        if size is not None and len(value) != size:
            return f"attribute {code} of {len(value)} octets, not {size}"
        if code == _ORIGIN and value[0] > 2:
            return f"ORIGIN {value[0]}"
        if code == _LOCAL_PREF:
            local_pref = int.from_bytes(value, "big") or 100
        elif code == _ORIGINATOR_ID:
            originator = _ip(value)
        elif code == _AS_PATH:
            try:
                as_path = _as_path(value, asn4)
            except ValueError as exc:
                return str(exc)
        elif code == _CLUSTER_LIST and len(value) % 4:
            return f"CLUSTER_LIST of {len(value)} octets"
        elif code == _EXT_COMMUNITIES:
            if len(value) % 8:
                return f"extended communities of {len(value)} octets"
            # sorted, as ExaBGP keeps them (its JSON's order, which a path's
            # route targets compare by)
            values = tuple(
                sorted(int.from_bytes(value[i : i + 8], "big") for i in range(0, len(value), 8))
            )
        elif code == _PMSI:
            if len(value) < 5:
                return f"PMSI tunnel of {len(value)} octets"
            pmsi = value
    router_mac, encap = "", False
    mobility: tuple[int | None, bool] = (None, False)
    for v in values:
        kind = v >> 48
        if kind == _ROUTER_MAC_TYPE and not router_mac:
            router_mac = (v & 0xFFFFFFFFFFFF).to_bytes(6, "big").hex(":")
        elif kind == _MAC_MOBILITY_TYPE and mobility[0] is None:
            mobility = (v & 0xFFFFFFFF, bool((v >> 40) & 0x01))
        elif kind == _ENCAP_TYPE and v & 0xFFFF == _VXLAN:
            encap = True
    shared = _Shared(
        route_targets=_targets_of(values),
        router_mac=router_mac,
        encap_vxlan=encap,
        originator=originator,
        local_pref=local_pref,
        mac_mobility=mobility,
        as_path=as_path,
    )
    vni, error = 0, "IMET route without a PMSI tunnel attribute"
    if pmsi is not None:
        text = _pmsi_text(pmsi)
        raw_label = int.from_bytes(pmsi[2:5], "big")
        if pmsi[1] != 6:
            error = f"PMSI tunnel {text!r} is not ingress replication"
        elif raw_label == 0:
            error = f"PMSI tunnel {text!r} has no VNI"
        else:
            vni, error = raw_label, ""
    return _Attrs(shared, vni, error)


# ------------------------------------------------------------------- routes


@functools.lru_cache(maxsize=4096)
def _rd(raw: bytes) -> str:
    """ExaBGP's rendering of a route distinguisher (RFC 4364 4.2)."""
    kind = int.from_bytes(raw[0:2], "big")
    if kind == 0:
        return f"{int.from_bytes(raw[2:4], 'big')}:{int.from_bytes(raw[4:8], 'big')}"
    if kind == 1:
        return f"{socket.inet_ntop(socket.AF_INET, raw[2:6])}:{int.from_bytes(raw[6:8], 'big')}"
    if kind == 2:
        return f"{int.from_bytes(raw[2:6], 'big')}:{int.from_bytes(raw[6:8], 'big')}"
    return "0x" + raw.hex().upper()


_NO_ESI = bytes(10)


def _esi(raw: bytes) -> str:
    return ESI_ZERO if raw == _NO_ESI else raw.hex(":")


def _label(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _describe(code: int, value: bytes) -> str:
    """What ``_events._describe`` says of ExaBGP's JSON of the NLRI."""
    bits = [f"type {code}"]
    if code not in (1, 2, 3, 4, 5) or len(value) < 8:
        return bits[0]
    bits.append(f"rd {_rd(value[:8])}")
    if code == 2 and len(value) >= 30:
        bits.append(f"mac {value[23:29].hex(':').upper()}")
        size = value[29] // 8
        if size in (4, 16) and len(value) >= 30 + size:
            bits.append(f"ip {_ip(value[30 : 30 + size])}")
    elif code == 3 and len(value) in (17, 29):
        bits.append(f"ip {_ip(value[13:])}")
    elif code == 5 and len(value) in (34, 58):
        size = 4 if len(value) == 34 else 16
        bits.append(f"ip {_ip(value[23 : 23 + size])}")
        bits.append(f"iplen {value[22]}")
    return " ".join(bits)


def _route(code: int, value: bytes, attrs: _Attrs | None, withdrawal: bool) -> EvpnRoute:
    """ValueError for a route cnid cannot use (the JSON path's reasons)."""
    n = len(value)
    if code == 2:
        if n < 30 or value[22] != 48 or value[29] not in (0, 32, 128):
            raise ValueError("malformed route: MAC/IP route of bad lengths")
        size = value[29] // 8
        labels = n - 30 - size
        if labels not in (3, 6):
            raise ValueError("malformed route: MAC/IP route of bad lengths")
        ip = _ip(value[30 : 30 + size]) if size else ""
        if ip:
            _check_host(ip)
        vni = _label(value[30 + size : 33 + size])
        if vni == 0 and not withdrawal:
            raise ValueError("route with VNI 0")
        l3vni = 0 if withdrawal or labels == 3 else _label(value[33 + size : 36 + size])
        return MacIpRoute(
            rd=_rd(value[:8]),
            mac=value[23:29].hex(":"),
            vni=vni,
            ip=ip,
            l3vni=l3vni,
            esi=_esi(value[8:18]),
            etag=int.from_bytes(value[18:22], "big"),
        )
    if code == 3:
        if n not in (17, 29) or value[12] != (n - 13) * 8:
            raise ValueError("malformed route: IMET route of bad lengths")
        ip = _ip(value[13:])
        if attrs is None:
            vni = 0
        elif attrs.pmsi_error:
            raise ValueError(attrs.pmsi_error)
        else:
            vni = attrs.pmsi_vni
        return ImetRoute(rd=_rd(value[:8]), ip=ip, vni=vni, etag=int.from_bytes(value[8:12], "big"))
    if code == 5:
        if n not in (34, 58):
            raise ValueError("malformed route: IP prefix route of bad lengths")
        size = 4 if n == 34 else 16
        iplen = value[22]
        if size == 4 and iplen <= 32:  # _prefix's own fast path, from the bytes
            mask = (0xFFFFFFFF << (32 - iplen)) & 0xFFFFFFFF
            net = (int.from_bytes(value[23:27], "big") & mask).to_bytes(4, "big")
            prefix = f"{socket.inet_ntop(socket.AF_INET, net)}/{iplen}"
        else:
            prefix = _prefix(_ip(value[23 : 23 + size]), iplen)
        gw = value[23 + size : 23 + 2 * size]
        gateway = _ip(gw) if any(gw) else ""  # 0.0.0.0 or ::: none
        vni = int.from_bytes(value[23 + 2 * size : 26 + 2 * size], "big")
        if vni == 0 and not withdrawal:
            raise ValueError("route with VNI 0")
        return PrefixRoute(
            rd=_rd(value[:8]),
            prefix=prefix,
            vni=vni,
            gateway=gateway,
            esi=_esi(value[8:18]),
            etag=int.from_bytes(value[18:22], "big"),
        )
    if code in _PARSED_ELSEWHERE:
        raise ValueError(f"unsupported EVPN route type {code}")
    raise ValueError("NLRI not parsed by ExaBGP")


def _received(peer: str, nexthop: str, code: int, value: bytes, attrs: _Attrs) -> ReceivedPath:
    return _received_path(peer, _route(code, value, attrs, withdrawal=False), nexthop, attrs.shared)


def decode_update_bytes(peer: str, body: bytes, asn4: bool = True) -> UpdateEvent:
    """The UpdateEvent of one UPDATE body (after the BGP header); never raises."""
    try:
        return _decode(peer, body, asn4)
    except Malformed as exc:
        return UpdateEvent(peer, skipped=((f"malformed UPDATE: {exc}", "update"),))
    except Exception as exc:  # a bug here must cost one UPDATE, not the session
        return UpdateEvent(peer, skipped=((f"undecodable UPDATE: {exc!r}", "update"),))


def _decode(peer: str, body: bytes, asn4: bool) -> UpdateEvent:
    parts = _cut(body)
    withdrawn_nlris: list[tuple[int, bytes]] = []
    if parts.unreach is not None:
        _family(parts.unreach, "MP_UNREACH_NLRI")
        withdrawn_nlris = _nlris(parts.unreach[3:])
    nexthop, announced_nlris = "", list[tuple[int, bytes]]()
    if parts.reach is not None:
        nexthop, announced_nlris = _reach(parts.reach)
    attrs = _attributes(parts.attributes, asn4)
    announced: list[ReceivedPath] = []
    withdrawn: list[EvpnRoute] = []
    skipped: list[tuple[str, str]] = []
    if isinstance(attrs, str):
        # RFC 7606 2 (treat-as-withdraw): what it announces is withdrawn
        skipped.append((f"malformed attribute, routes withdrawn: {attrs}", "update"))
        withdrawn_nlris = announced_nlris + withdrawn_nlris
        announced_nlris = []
    else:
        for code, value in announced_nlris:
            try:
                announced.append(_received(peer, nexthop, code, value, attrs))
            except ValueError as exc:
                skipped.append((str(exc), _describe(code, value)))
    for code, value in withdrawn_nlris:
        try:
            withdrawn.append(_route(code, value, None, withdrawal=True))
        except ValueError as exc:
            skipped.append((str(exc), _describe(code, value)))
    return UpdateEvent(peer, tuple(announced), tuple(withdrawn), tuple(skipped))
