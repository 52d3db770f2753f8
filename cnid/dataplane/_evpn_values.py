"""EVPN-learned entries as values (``FdbEntry``, ``NeighEntry``,
``EvpnRoute``, ``KernelEvpn``, ``ApplyResult``) and the checks that keep
them canonical: lower-case MACs, addresses as ``inet_ntop`` writes them,
prefixes without host bits, so that sets compare exactly with what the
kernel dumps. A non-canonical value is refused with the canonical form in
the error. Pure, but for the kernel release ``nda_protocol_supported`` reads.
"""

from __future__ import annotations

import os
import socket
from functools import cache, lru_cache

import msgspec

ZERO_MAC = "00:00:00:00:00:00"
"""The MAC of flood (BUM) entries: one per remote VTEP of an IMET route."""


class FdbEntry(msgspec.Struct, frozen=True, gc=False, cache_hash=True):
    """MAC -> remote VTEP on the VXLAN device ``vx-<vni>``.

    ``mac`` ZERO_MAC is a flood (BUM) entry of an IMET route: several per
    device (one per remote VTEP), added with NLM_F_APPEND, removed one by
    one (the kernel keys them by dst). Any other (unicast) MAC gets the VXLAN
    driver's entry (NTF_SELF, NUD_NOARP|NUD_PERMANENT, NDA_DST) and the
    bridge's entry on the VXLAN port (NTF_MASTER|NTF_EXT_LEARNED: never aged,
    and when the MAC shows up on a local port the bridge moves it there as a
    learned entry, EVPN's MAC mobility; a static one would stay static there)
    so that the bridge does not flood unicast to the local ports. One VTEP per
    unicast MAC: two in one ``add`` are refused."""

    vni: int
    mac: str
    vtep: str


class NeighEntry(msgspec.Struct, frozen=True, gc=False, cache_hash=True):
    """IP -> MAC on the bridge ``br-<vni>``: a type-2 route's IP (the
    bridge answers ARP for it when the VXLAN port has neigh_suppress), or a
    type-5 next hop (the remote VTEP) -> its router MAC on the l3vni bridge.
    NUD_NOARP, NTF_EXT_LEARNED, NDA_PROTOCOL ROUTE_PROTO_EVPN.

    For an IPv6 route via an IPv4 VTEP the next hop is the IPv4-mapped
    address (see EvpnRoute): its entry is ``ip="::ffff:192.0.2.2"``. An
    entry the kernel learnt for the IP on our bridge (ARP, ND) is replaced:
    the EVPN route is the authority there, as for zebra."""

    vni: int
    ip: str
    mac: str


class EvpnRoute(msgspec.Struct, frozen=True, gc=False, cache_hash=True):
    """A type-5 prefix in a VRF table: ``<prefix> via <vtep> dev br-<vni>
    onlink table <table> proto ROUTE_PROTO_EVPN``.

    An IPv4 prefix via an IPv6 VTEP uses RTA_VIA; an IPv6 prefix via an IPv4
    VTEP goes via the IPv4-mapped ``::ffff:<vtep>`` (what zebra does: IPv6
    has no IPv4 gateways), which needs the NeighEntry of that address.

    Several VTEPs for one prefix (ECMP) are several values; they are
    programmed as ONE multipath route (RTA_MULTIPATH) per (table, prefix),
    replaced as a whole. That is the only form IPv4 has (separate routes of
    one prefix are not ECMP there), it is atomic (no moment with half the
    paths), and a change costs one message. So ``apply_evpn`` reads the
    current paths of the prefixes it changes (one route dump per table and
    family involved, filtered by the kernel) and writes the union minus the
    removals. Nexthop objects (RTM_NEWNEXTHOP) would make a VTEP change one
    message for all the prefixes sharing its group, but they need ids
    managed across restarts, and a VTEP change here is one batch anyway."""

    table: int
    prefix: str
    vtep: str
    vni: int


class KernelEvpn(msgspec.Struct, frozen=True):
    """A set of EVPN state; ``KernelEvpn()`` is the empty one."""

    fdb: frozenset[FdbEntry] = frozenset()
    neigh: frozenset[NeighEntry] = frozenset()
    routes: frozenset[EvpnRoute] = frozenset()


class ApplyResult(msgspec.Struct, frozen=True):
    """``applied``: entries (of add and remove) that are now as asked;
    ``failed``: (what, error) of each refused entry, sorted by what;
    ``refused``: (op, entry, reason) of the same entries, the reason an
    errno name (``EINVAL``) when the kernel refused, else ``invalid`` (a
    value or a device cnid does not send)."""

    applied: int
    failed: tuple[tuple[str, str], ...]
    refused: tuple[tuple[str, FdbEntry | NeighEntry | EvpnRoute, str], ...] = ()


class _Invalid(ValueError):
    pass


_BAD = (_Invalid, TypeError, AttributeError)
"""What a value that is not even of the right type raises while checked:
reported in ``failed`` like any invalid value, never raised."""


_ZERO = b"\0" * 6
_MAPPED = b"\0" * 10 + b"\xff\xff"


def _mac(mac: str) -> bytes:
    """The six bytes of a canonical MAC (lower case, colons)."""
    try:
        if len(mac) == 17 and mac[2::3] == ":::::" and mac == mac.lower():
            raw = bytes.fromhex(mac.replace(":", ""))
            if len(raw) == 6:
                return raw
    except (TypeError, ValueError):
        pass
    raise _Invalid(f"MAC {mac!r} is not of the form 02:aa:bb:cc:dd:ee (lower case)")


def _unicast_mac(mac: str) -> bytes:
    raw = _mac(mac)
    if raw[0] & 1 or raw == _ZERO:
        raise _Invalid(f"MAC {mac} is not a unicast address")
    return raw


def _parse_ip(ip: str) -> tuple[int, bytes]:
    if not isinstance(ip, str):
        raise _Invalid(f"address {ip!r} is not a string")
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    try:
        raw = socket.inet_pton(family, ip)
    except OSError:
        raise _Invalid(f"{ip!r} is not an IP address") from None
    canonical = socket.inet_ntop(family, raw)
    if canonical != ip:
        raise _Invalid(f"address {ip!r} is not canonical: write {canonical}")
    return family, raw


@lru_cache(maxsize=1024)
def _vtep(ip: str) -> tuple[int, bytes]:
    """A remote VTEP (few distinct values: cached)."""
    family, raw = _parse_ip(ip)
    if raw == b"\0" * len(raw):
        raise _Invalid(f"VTEP {ip} is the unspecified address")
    if family == socket.AF_INET6 and raw.startswith(_MAPPED):
        raise _Invalid(f"VTEP {ip} is IPv4-mapped: give the IPv4 address")
    if (family == socket.AF_INET and raw[0] >= 224) or (
        family == socket.AF_INET6 and raw[0] == 0xFF
    ):
        raise _Invalid(f"VTEP {ip} is not a unicast address")
    return family, raw


_LENGTHS = {str(n): n for n in range(129)}
_HOST_MASKS4 = [(1 << (32 - n)) - 1 for n in range(33)]
_HOST_MASKS6 = [(1 << (128 - n)) - 1 for n in range(129)]


def _prefix(prefix: str) -> tuple[int, bytes, int]:
    """(family, address bytes, length) of a canonical prefix. (Hot: one call
    per route of a batch. IPv4 needs no round trip through inet_ntop: glibc's
    inet_pton only takes the canonical dotted quad.)"""
    try:
        addr, _, length = prefix.partition("/")
        plen = _LENGTHS[length]
    except (AttributeError, KeyError):
        raise _Invalid(f"prefix {prefix!r} is not of the form 10.1.0.0/26") from None
    if ":" in addr:
        family, raw = _parse_ip(addr)
        masks = _HOST_MASKS6
    else:
        try:
            raw = socket.inet_pton(socket.AF_INET, addr)
        except OSError:
            raise _Invalid(f"prefix {prefix!r}: {addr!r} is not an IP address") from None
        family, masks = socket.AF_INET, _HOST_MASKS4
    if plen >= len(masks):
        raise _Invalid(f"prefix {prefix!r}: length over {len(masks) - 1}")
    if int.from_bytes(raw, "big") & masks[plen]:
        raise _Invalid(f"prefix {prefix!r} has host bits set")
    return family, raw, plen


def _vni(vni: int) -> int:
    if type(vni) is not int or not 0 < vni < 1 << 24:
        raise _Invalid(f"VNI {vni!r} is not in 1..16777215")
    return vni


def _table(table: int) -> int:
    if type(table) is not int or not 0 < table < 1 << 32 or table == 255:
        raise _Invalid(f"table {table!r} is not a routing table number (1..2^32-1, not local)")
    return table


@cache
def nda_protocol_supported() -> bool:
    """NDA_PROTOCOL on neighbour entries: Linux 5.2 and later. Older kernels
    ignore the attribute when adding and never dump it, so ownership falls
    back to NTF_EXT_LEARNED there."""
    release = os.uname().release.split("-", 1)[0].split(".")
    try:
        major, minor = int(release[0]), int(release[1])
    except (IndexError, ValueError):
        return True
    return (major, minor) >= (5, 2)


_Entry = FdbEntry | NeighEntry | EvpnRoute


def _what(op: str, e: _Entry) -> str:
    """How an entry is named in ApplyResult.failed."""
    if isinstance(e, FdbEntry):
        return f"{op} fdb vni {e.vni} {e.mac} dst {e.vtep}"
    if isinstance(e, NeighEntry):
        return f"{op} neigh vni {e.vni} {e.ip} lladdr {e.mac}"
    return f"{op} route table {e.table} {e.prefix} via {e.vtep} vni {e.vni}"
