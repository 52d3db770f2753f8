"""EVPN-learned state in the kernel, as FRR's zebra programs it: remote MACs
(FDB entries), remote IP -> MAC (neighbour entries) and type-5 prefixes
(routes in a VRF table).

The reconciler diffs what it wants against what ``dump_evpn`` finds, then
calls ``apply_evpn(add, remove)``. Both run in one worker thread each, on one
netlink socket in the node namespace, and send everything in as few
``send()`` calls as the socket buffers allow (``Netlink.batch_errors``: the
kernel only answers the requests it refuses). A refused entry is reported in
``ApplyResult.failed`` and never stops the others.

Ownership, so that a restart adopts exactly what a previous run left and
nothing else:

* devices: only our ``vx-<vni>`` / ``br-<vni>`` (alias ``cnid:vx:<vni>`` /
  ``cnid:br:<vni>``, as ``_domain.py`` creates them); an entry on a missing
  or foreign device is refused, the device is never touched;
* FDB, unicast MACs: the VXLAN driver's entry and the bridge's entry on the
  VXLAN port carry NTF_EXT_LEARNED (an operator's ``bridge fdb add`` does
  not). The driver keeps the flag of the entry's creator: an update with
  NTF_EXT_LEARNED leaves the flags of an entry made over netlink alone, an
  update without it clears it (measured on 6.18). So a MAC someone else
  programmed stays theirs even if we replace its VTEP, and one they
  overwrite becomes theirs;
* FDB, flood entries: the driver has ONE flags field for all the remotes of
  the all-zeros MAC, which the last update sets (any ``bridge fdb append``
  without the flag clears it for every remote). It cannot tell whose a
  remote is, so every flood remote on our ``vx-<vni>`` is ours (the flood
  list of an EVPN VXLAN device is the IMET routes'), except the kernel's own
  default remote of a device made with ``remote``/``group`` (ours never are);
* neighbours: NDA_PROTOCOL = ROUTE_PROTO_EVPN (kernel >= 5.2), else
  NTF_EXT_LEARNED;
* routes: rtm_protocol ROUTE_PROTO_EVPN; the kernel matches the protocol
  when it deletes, and an addition of a prefix we do not hold is CREATE|EXCL,
  so a route of another protocol on the same prefix is refused (EEXIST), not
  replaced.

Values are canonical (lower-case MACs, addresses as ``inet_ntop`` writes
them, prefixes without host bits) so that sets compare exactly with what the
kernel dumps; a non-canonical value is refused with the canonical form in
the error.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from functools import cache, lru_cache
from typing import NamedTuple

import msgspec

from . import _netlink as nl
from ._names import ROUTE_PROTO_EVPN, bridge_alias, bridge_name, vxlan_alias, vxlan_name
from ._netns import netlink_socket
from ._run import in_thread

ZERO_MAC = "00:00:00:00:00:00"
"""The MAC of flood (BUM) entries: one per remote VTEP of an IMET route."""

SOCKET_BUFFER = 8 << 20
"""SO_SNDBUFFORCE / SO_RCVBUFFORCE (the kernel doubles it): about 16 MiB of
requests per send() and room for the error ACKs of 13,000 refused requests
(docs/dataplane.md, "EVPN state", has the measurements)."""


class FdbEntry(msgspec.Struct, frozen=True):
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


class NeighEntry(msgspec.Struct, frozen=True):
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


class EvpnRoute(msgspec.Struct, frozen=True):
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


# ---------------------------------------------------------------- values


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
_HOST_MASKS = {(bits, n): (1 << (bits - n)) - 1 for bits in (32, 128) for n in range(bits + 1)}


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
        bits = 128
    else:
        try:
            raw = socket.inet_pton(socket.AF_INET, addr)
        except OSError:
            raise _Invalid(f"prefix {prefix!r}: {addr!r} is not an IP address") from None
        family, bits = socket.AF_INET, 32
    mask = _HOST_MASKS.get((bits, plen))
    if mask is None:
        raise _Invalid(f"prefix {prefix!r}: length over {bits}")
    if int.from_bytes(raw, "big") & mask:
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


# ---------------------------------------------------------------- devices


def _problem(link: nl.Link | None, name: str, alias: str, kind: str) -> str | None:
    if link is None:
        return f"{name} does not exist"
    if link.alias != alias:
        return f"{name} is not ours (alias {link.alias!r}, expected {alias!r})"
    if link.kind != kind:
        return f"{name} is a {link.kind}, expected a {kind}"
    return None


def _vxlan_info(vx: nl.Link) -> tuple[int | None, str | None]:
    """The family of a VXLAN device's local address, and its default remote
    (``remote``/``group``: the kernel's own all-zeros FDB entry)."""
    info = nl.parse_attrs(vx.attrs.get(nl.IFLA_LINKINFO, b""))
    data = nl.parse_attrs(info.get(nl.IFLA_INFO_DATA, b""))
    family = None
    if nl.IFLA_VXLAN_LOCAL in data:
        family = socket.AF_INET
    elif nl.IFLA_VXLAN_LOCAL6 in data:
        family = socket.AF_INET6
    group = None
    for kind, fam in (
        (nl.IFLA_VXLAN_GROUP, socket.AF_INET),
        (nl.IFLA_VXLAN_GROUP6, socket.AF_INET6),
    ):
        raw = data.get(kind)
        if raw and raw != b"\0" * len(raw):
            group = socket.inet_ntop(fam, raw)
    return family, group


def _bridge_vni(link: nl.Link) -> int | None:
    """The VNI of one of our bridges, from its name and alias."""
    tail = link.name.removeprefix("br-")
    if not tail.isdigit() or link.kind != "bridge":
        return None
    vni = int(tail)
    return vni if link.name == bridge_name(vni) and link.alias == bridge_alias(vni) else None


class _Devices:
    """Our bridges and VXLAN devices of some VNIs: two GETs per VNI, all in
    one send(), once per operation (never a lookup per entry)."""

    def __init__(self, sock: nl.Netlink, vnis: Iterable[int]) -> None:
        self._sock = sock
        self.vnis = sorted(set(vnis))
        reqs = []
        for vni in self.vnis:
            for name in (bridge_name(vni), vxlan_name(vni)):
                body = nl.ifinfo() + nl.nla_str(nl.IFLA_IFNAME, name)
                reqs.append(nl.Request(nl.RTM_GETLINK, 0, body, name))
        bodies = sock.get_many(reqs)
        self.bridges: dict[int, nl.Link] = {}
        self.vxlans: dict[int, nl.Link] = {}
        self.bridge_problem: dict[int, str] = {}
        self.vxlan_problem: dict[int, str] = {}
        for i, vni in enumerate(self.vnis):
            br_raw, vx_raw = bodies[2 * i], bodies[2 * i + 1]
            br = None if br_raw is None else nl.decode_link(br_raw)
            vx = None if vx_raw is None else nl.decode_link(vx_raw)
            bp = _problem(br, bridge_name(vni), bridge_alias(vni), "bridge")
            if bp is None and br is not None:
                self.bridges[vni] = br
            else:
                self.bridge_problem[vni] = bp or "?"
            xp = _problem(vx, vxlan_name(vni), vxlan_alias(vni), "vxlan")
            if xp is None and vx is not None:
                self.vxlans[vni] = vx
            else:
                self.vxlan_problem[vni] = xp or "?"
        self._vni_of_index = {br.index: vni for vni, br in self.bridges.items()}
        info = {vni: _vxlan_info(vx) for vni, vx in self.vxlans.items()}
        self.vxlan_family = {vni: family for vni, (family, _) in info.items()}
        self.vxlan_group = {vni: group for vni, (_, group) in info.items()}

    def bridge(self, vni: int) -> nl.Link:
        br = self.bridges.get(vni)
        if br is None:
            _vni(vni)
            raise _Invalid(self.bridge_problem.get(vni, f"{bridge_name(vni)} not looked up"))
        return br

    def vxlan(self, vni: int, as_port: bool, vtep_family: int | None = None) -> nl.Link:
        """``as_port``: it must also be a port of our br-<vni> (unicast MACs
        get the bridge's entry too). The VTEP must be of the family of the
        device's local address (the driver refuses the other with
        EAFNOSUPPORT, after the bridge's entry would have been made)."""
        vx = self.vxlans.get(vni)
        if vx is None:
            _vni(vni)
            raise _Invalid(self.vxlan_problem.get(vni, f"{vxlan_name(vni)} not looked up"))
        local = self.vxlan_family.get(vni)
        if vtep_family is not None and local is not None and local != vtep_family:
            want = "IPv4" if local == socket.AF_INET else "IPv6"
            raise _Invalid(
                f"{vxlan_name(vni)} has an {want} local address: the VTEP must be {want}"
            )
        if as_port:
            br = self.bridge(vni)
            if vx.master != br.index:
                raise _Invalid(f"{vxlan_name(vni)} is not a port of {bridge_name(vni)}")
        return vx

    def vnis_of_indexes(self, indexes: Iterable[int]) -> dict[int, int]:
        """ifindex -> VNI for the route devices among ``indexes`` that are
        our bridges (those of other VNIs looked up by index, in one send)."""
        unknown = sorted(set(indexes) - self._vni_of_index.keys())
        if unknown:
            reqs = [nl.Request(nl.RTM_GETLINK, 0, nl.ifinfo(i), f"index {i}") for i in unknown]
            for raw in self._sock.get_many(reqs):
                if raw is None:
                    continue
                link = nl.decode_link(raw)
                vni = _bridge_vni(link)
                if vni is not None:
                    self._vni_of_index[link.index] = vni
        return self._vni_of_index


# ---------------------------------------------------------------- encoding

_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_RTMSG_SIZE = 12
_REPLACE = nl.NLM_F_CREATE | nl.NLM_F_REPLACE
_LLADDR = _NLA.pack(10, nl.NDA_LLADDR)
_PAD2 = b"\0\0"


def _attr(kind: int, raw: bytes) -> bytes:
    size = 4 + len(raw)
    return _NLA.pack(size, kind) + raw + b"\0" * (-size & 3)


def _gateway_attr(route_family: int, vtep_family: int, raw: bytes) -> bytes:
    if vtep_family == route_family:
        return _attr(nl.RTA_GATEWAY, raw)
    if route_family == socket.AF_INET:
        return nl.nla_via(socket.AF_INET6, raw)
    return _attr(nl.RTA_GATEWAY, _MAPPED + raw)


def _route_vtep(route_family: int, gateway: str) -> str:
    """The VTEP of a dumped next hop (the IPv4-mapped form back to IPv4)."""
    if route_family == socket.AF_INET6 and gateway.startswith("::ffff:") and "." in gateway:
        return gateway[7:]
    return gateway


class _Op(NamedTuple):
    """One request and the entries (op, entry) whose outcome it is; their
    names are only made for the ones that fail."""

    request: nl.Request
    entries: list[tuple[str, _Entry]]


class _Plan:
    def __init__(self) -> None:
        self.removals: list[_Op] = []
        self.additions: list[_Op] = []
        self.failed: dict[str, str] = {}
        self.refused: dict[tuple[str, _Entry], str] = {}

    def fail(self, op: str, e: _Entry, error: str, reason: str = "invalid") -> None:
        self.failed.setdefault(_what(op, e), error)
        self.refused.setdefault((op, e), reason)


# ---------------------------------------------------------------- FDB


def _fdb_state(
    sock: nl.Netlink, vx: nl.Link, group: str | None
) -> tuple[dict[str, set[str]], set[str]]:
    """Ours on one VXLAN port (see the module's docstring): the driver's
    mac -> dsts, and the MACs of the bridge's entries."""
    remotes: dict[str, set[str]] = {}
    bridged: set[str] = set()
    for n in sock.fdb(vx.index):
        if n.ifindex != vx.index or n.lladdr is None:
            continue
        if n.master is not None:
            if n.flags & nl.NTF_EXT_LEARNED:
                bridged.add(n.lladdr)
        elif n.flags & nl.NTF_SELF and n.dst is not None:
            if n.lladdr == ZERO_MAC:
                if n.dst == group:
                    continue
            elif not n.flags & nl.NTF_EXT_LEARNED:
                continue
            remotes.setdefault(n.lladdr, set()).add(n.dst)
    return remotes, bridged


class _FdbHeads:
    """The ndmsg headers of one VXLAN device, made once per operation."""

    def __init__(self, vx: nl.Link) -> None:
        self.self_new = nl.ndmsg(
            nl.AF_BRIDGE,
            vx.index,
            nl.NUD_NOARP | nl.NUD_PERMANENT,
            nl.NTF_SELF | nl.NTF_EXT_LEARNED,
        )
        self.self_del = nl.ndmsg(nl.AF_BRIDGE, vx.index, 0, nl.NTF_SELF)
        self.master_new = nl.ndmsg(
            nl.AF_BRIDGE, vx.index, nl.NUD_NOARP, nl.NTF_MASTER | nl.NTF_EXT_LEARNED
        )
        self.master_del = nl.ndmsg(nl.AF_BRIDGE, vx.index, 0, nl.NTF_MASTER)


def _plan_fdb(
    sock: nl.Netlink,
    devs: _Devices,
    add: frozenset[FdbEntry],
    remove: frozenset[FdbEntry],
    plan: _Plan,
) -> None:
    heads: dict[int, _FdbHeads] = {}
    dst_attr = cache(lambda raw: _attr(nl.NDA_DST, raw))
    new, delete = nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH
    Request = nl.Request
    unicast: dict[tuple[int, str], list[FdbEntry]] = {}
    encoded: dict[FdbEntry, tuple[_FdbHeads, bytes]] = {}
    for e in add:
        try:
            mac = _mac(e.mac)
            vfam, dst = _vtep(e.vtep)
            flood = mac == _ZERO
            if not flood and mac[0] & 1:
                raise _Invalid(f"MAC {e.mac} is not a unicast address")
            vx = devs.vxlan(e.vni, as_port=not flood, vtep_family=vfam)
        except _BAD as exc:
            plan.fail("add", e, str(exc))
            continue
        h = heads.get(vx.index) or heads.setdefault(vx.index, _FdbHeads(vx))
        tail = _LLADDR + mac + _PAD2 + dst_attr(dst)
        if flood:
            req = Request(new, nl.NLM_F_CREATE | nl.NLM_F_APPEND, h.self_new + tail, "fdb")
            plan.additions.append(_Op(req, [("add", e)]))
        else:
            key = (e.vni, e.mac)
            if key in unicast:
                unicast[key].append(e)
            else:
                unicast[key] = [e]
            encoded[e] = (h, tail)
    replacing: dict[tuple[int, str], list[tuple[str, _Entry]]] = {}
    for key, entries in unicast.items():
        if len(entries) > 1:
            vteps = ", ".join(sorted(e.vtep for e in entries))
            for e in entries:
                plan.fail("add", e, f"several VTEPs for one unicast MAC: {vteps}")
            continue
        e = entries[0]
        h, tail = encoded[e]
        names: list[tuple[str, _Entry]] = [("add", e)]
        plan.additions.append(_Op(Request(new, _REPLACE, h.self_new + tail, "fdb"), names))
        master = h.master_new + tail[:12]
        plan.additions.append(_Op(Request(new, _REPLACE, master, "fdb bridge entry"), names))
        replacing[key] = names

    states: dict[int, tuple[dict[str, set[str]], set[str]]] = {}
    for e in remove:
        try:
            mac = _mac(e.mac)
            _family, dst = _vtep(e.vtep)
            vx = devs.vxlan(e.vni, as_port=False)  # another family: gone, as can be
        except _BAD as exc:
            plan.fail("remove", e, str(exc))
            continue
        if mac != _ZERO and (e.vni, e.mac) in replacing:
            # the MAC moves to another VTEP: the replace does it atomically
            replacing[(e.vni, e.mac)].append(("remove", e))
            continue
        if e.vni not in states:
            states[e.vni] = _fdb_state(sock, vx, devs.vxlan_group.get(e.vni))
        remotes, bridged = states[e.vni]
        h = heads.get(vx.index) or heads.setdefault(vx.index, _FdbHeads(vx))
        dsts = remotes.get(e.mac, set())
        lladdr = _LLADDR + mac + _PAD2
        if e.vtep in dsts:
            req = Request(delete, 0, h.self_del + lladdr + dst_attr(dst), "fdb")
            plan.removals.append(_Op(req, [("remove", e)]))
        if mac != _ZERO and e.mac in bridged and dsts <= {e.vtep}:
            req = Request(delete, 0, h.master_del + lladdr, "fdb bridge entry")
            plan.removals.append(_Op(req, [("remove", e)]))
        # neither: already gone, nothing to do


# ---------------------------------------------------------------- neighbours


def _neigh_ours(n: nl.Neigh) -> bool:
    if n.dst is None or n.lladdr is None:
        return False
    if nda_protocol_supported():
        return n.protocol == ROUTE_PROTO_EVPN
    return bool(n.flags & nl.NTF_EXT_LEARNED)


def _neigh_state(sock: nl.Netlink, br: nl.Link) -> set[tuple[str, str]]:
    return {
        (n.dst, n.lladdr)
        for family in (socket.AF_INET, socket.AF_INET6)
        for n in sock.neighbours(family, br.index)
        if n.ifindex == br.index and _neigh_ours(n) and n.dst is not None and n.lladdr is not None
    }


def _plan_neigh(
    sock: nl.Netlink,
    devs: _Devices,
    add: frozenset[NeighEntry],
    remove: frozenset[NeighEntry],
    plan: _Plan,
) -> None:
    proto = _attr(nl.NDA_PROTOCOL, bytes((ROUTE_PROTO_EVPN,))) if nda_protocol_supported() else b""
    by_ip: dict[tuple[int, str], list[tuple[NeighEntry, bytes]]] = {}
    for e in add:
        try:
            family, raw = _parse_ip(e.ip)
            mac = _unicast_mac(e.mac)
            br = devs.bridge(e.vni)
        except _BAD as exc:
            plan.fail("add", e, str(exc))
            continue
        head = nl.ndmsg(family, br.index, nl.NUD_NOARP, nl.NTF_EXT_LEARNED)
        body = head + _attr(nl.NDA_DST, raw) + _LLADDR + mac + _PAD2 + proto
        by_ip.setdefault((e.vni, e.ip), []).append((e, body))
    replacing: dict[tuple[int, str], list[tuple[str, _Entry]]] = {}
    for key, entries in by_ip.items():
        if len(entries) > 1:
            macs = ", ".join(sorted(e.mac for e, _ in entries))
            for e, _ in entries:
                plan.fail("add", e, f"several MACs for one IP: {macs}")
            continue
        ((e, body),) = entries
        names: list[tuple[str, _Entry]] = [("add", e)]
        plan.additions.append(_Op(nl.Request(nl.RTM_NEWNEIGH, _REPLACE, body, "neigh"), names))
        replacing[key] = names

    states: dict[int, set[tuple[str, str]]] = {}
    for e in remove:
        try:
            family, raw = _parse_ip(e.ip)
            _unicast_mac(e.mac)
            br = devs.bridge(e.vni)
        except _BAD as exc:
            plan.fail("remove", e, str(exc))
            continue
        if (e.vni, e.ip) in replacing:
            replacing[(e.vni, e.ip)].append(("remove", e))
            continue
        if e.vni not in states:
            states[e.vni] = _neigh_state(sock, br)
        if (e.ip, e.mac) not in states[e.vni]:
            continue  # gone, or no longer ours / another MAC: not touched
        body = nl.ndmsg(family, br.index) + _attr(nl.NDA_DST, raw)
        plan.removals.append(_Op(nl.Request(nl.RTM_DELNEIGH, 0, body, "neigh"), [("remove", e)]))


# ---------------------------------------------------------------- routes

_Path = tuple[str, int]  # (vtep, ifindex of the bridge)


def _route_state(sock: nl.Netlink, table: int, family: int) -> dict[str, set[_Path]]:
    """prefix -> paths of our routes in one table and family (the kernel
    filters the dump by table and protocol). Decoded here rather than by
    ``decode_route``: only what a path needs, and each VTEP's text made once,
    which halves the cost of a 10,000-route dump."""
    body = nl.rtmsg(family, table=0, proto=ROUTE_PROTO_EVPN, rtype=0)
    body += _attr(nl.RTA_TABLE, _U32.pack(table))
    raw = sock.dump(nl.Request(nl.RTM_GETROUTE, 0, body, f"dump table {table}"), missing_ok=True)
    any_addr = "::" if family == socket.AF_INET6 else "0.0.0.0"
    vteps: dict[bytes, str] = {}

    def vtep(gw: bytes) -> str:
        text = vteps.get(gw)
        if text is None:
            # RTA_GATEWAY: 4 or 16 bytes; RTA_VIA (struct rtvia): 2 + 4 or 2 + 16
            if len(gw) in (6, 18):
                text = socket.inet_ntop(socket.AF_INET if len(gw) == 6 else socket.AF_INET6, gw[2:])
            else:
                text = _route_vtep(family, socket.inet_ntop(family, gw))
            vteps[gw] = text
        return text

    out: dict[str, set[_Path]] = {}
    unpack = _NLA.unpack_from
    for msg in raw:
        if msg[7] != nl.RTN_UNICAST or msg[5] != ROUTE_PROTO_EVPN:
            continue
        dst = gw = oif = hops = None
        rtable = msg[4]
        offset, end = _RTMSG_SIZE, len(msg) - 4
        while offset <= end:
            size, kind = unpack(msg, offset)
            if size < 4:
                break
            kind &= 0x3FFF
            if kind == nl.RTA_DST:
                dst = msg[offset + 4 : offset + size]
            elif kind == nl.RTA_GATEWAY or kind == nl.RTA_VIA:
                gw = msg[offset + 4 : offset + size]
            elif kind == nl.RTA_OIF:
                oif = _U32.unpack_from(msg, offset + 4)[0]
            elif kind == nl.RTA_TABLE:
                rtable = _U32.unpack_from(msg, offset + 4)[0]
            elif kind == nl.RTA_MULTIPATH:
                hops = msg[offset + 4 : offset + size]
            offset += (size + 3) & ~3
        if rtable != table:
            continue
        prefix = f"{socket.inet_ntop(family, dst) if dst else any_addr}/{msg[1]}"
        paths = out.setdefault(prefix, set())
        if hops is not None:
            for nh in nl.decode_nexthops(family, hops):
                if nh.gateway is not None:
                    paths.add((_route_vtep(family, nh.gateway), nh.ifindex))
        elif gw is not None and oif is not None:
            paths.add((vtep(gw), oif))
    return out


class _RouteCodec:
    """Route messages from cached pieces: the header of each (family,
    length, single or multipath), the table attribute, and the gateway and
    device of each (family, path): per route only RTA_DST is new bytes."""

    def __init__(self) -> None:
        self._heads: dict[tuple[int, int, bool], bytes] = {}
        self._tables: dict[int, bytes] = {}
        self._paths: dict[tuple[int, _Path], bytes] = {}
        self._hops: dict[tuple[int, _Path], bytes] = {}

    def _head(self, family: int, plen: int, table: int, single: bool) -> bytes:
        key = (family, plen, single)
        head = self._heads.get(key)
        if head is None:
            flags = nl.RTNH_F_ONLINK if single else 0
            head = self._heads[key] = nl.rtmsg(
                family, plen, 0, ROUTE_PROTO_EVPN, nl.RT_SCOPE_UNIVERSE, nl.RTN_UNICAST, flags
            )
        table_attr = self._tables.get(table)
        if table_attr is None:
            table_attr = self._tables[table] = _attr(nl.RTA_TABLE, _U32.pack(table))
        return head + table_attr

    def _path(self, family: int, path: _Path) -> bytes:
        key = (family, path)
        out = self._paths.get(key)
        if out is None:
            vfam, raw = _vtep(path[0])
            out = _gateway_attr(family, vfam, raw) + _attr(nl.RTA_OIF, _U32.pack(path[1]))
            self._paths[key] = out
        return out

    def _hop(self, family: int, path: _Path) -> bytes:
        key = (family, path)
        out = self._hops.get(key)
        if out is None:
            vfam, raw = _vtep(path[0])
            out = nl.rtnexthop(path[1], nl.RTNH_F_ONLINK, _gateway_attr(family, vfam, raw))
            self._hops[key] = out
        return out

    def new(self, family: int, dst: bytes, plen: int, table: int, paths: list[_Path]) -> bytes:
        body = self._head(family, plen, table, len(paths) == 1) + _attr(nl.RTA_DST, dst)
        if len(paths) == 1:
            return body + self._path(family, paths[0])
        return body + _attr(nl.RTA_MULTIPATH, b"".join(self._hop(family, p) for p in paths))

    def delete(self, family: int, dst: bytes, plen: int, table: int) -> bytes:
        return self._head(family, plen, table, False) + _attr(nl.RTA_DST, dst)


def _known_state(
    known: Mapping[tuple[int, str], Iterable[EvpnRoute]], devs: _Devices
) -> dict[tuple[int, int], dict[str, set[_Path]]]:
    """The caller's record of our routes, in ``_route_state``'s shape."""
    out: dict[tuple[int, int], dict[str, set[_Path]]] = {}
    for (table, prefix), routes in known.items():
        family = socket.AF_INET6 if ":" in prefix else socket.AF_INET
        paths = out.setdefault((table, family), {}).setdefault(prefix, set())
        for r in routes:
            br = devs.bridges.get(r.vni)
            if br is not None:
                paths.add((r.vtep, br.index))
    return out


def _plan_routes(
    sock: nl.Netlink,
    devs: _Devices,
    add: frozenset[EvpnRoute],
    remove: frozenset[EvpnRoute],
    plan: _Plan,
    known: Mapping[tuple[int, str], Iterable[EvpnRoute]] | None = None,
) -> None:
    # Written for 10,000 routes a call: no object per route but the request.
    bridges = devs.bridges
    adds: dict[tuple[int, str], list[EvpnRoute]] = {}
    removes: dict[tuple[int, str], list[EvpnRoute]] = {}
    parsed: dict[tuple[int, str], tuple[int, bytes, int]] = {}
    for op, entries, keyed in (("remove", remove, removes), ("add", add, adds)):
        for e in entries:
            table = e.table
            try:
                br = bridges.get(e.vni)
                if br is None:
                    br = devs.bridge(e.vni)
                if type(table) is not int or not 0 < table < 1 << 32 or table == 255:
                    _table(table)
                _vtep(e.vtep)
                key = (table, e.prefix)
                if key not in parsed:
                    parsed[key] = _prefix(e.prefix)
            except _BAD as exc:
                plan.fail(op, e, str(exc))
                continue
            if key in keyed:
                keyed[key].append(e)
            else:
                keyed[key] = [e]
    if not parsed:
        return
    current: dict[tuple[int, int], dict[str, set[_Path]]] = (
        {} if known is None else _known_state(known, devs)
    )
    for (table, _), (family, _, _) in parsed.items():
        if (table, family) not in current:
            current[(table, family)] = (
                {} if known is not None else _route_state(sock, table, family)
            )
    codec = _RouteCodec()
    new_route = nl.RTM_NEWROUTE
    excl = nl.NLM_F_CREATE | nl.NLM_F_EXCL
    Request = nl.Request
    additions = plan.additions
    for key, (family, raw, plen) in parsed.items():
        table, prefix = key
        now = current[(table, family)].get(prefix)
        added = adds.get(key, ())
        removed = removes.get(key, ())
        if not now and not removed and len(added) == 1:
            # the common case: a new prefix with one VTEP
            e = added[0]
            body = codec.new(family, raw, plen, table, [(e.vtep, bridges[e.vni].index)])
            additions.append(_Op(Request(new_route, excl, body, "route"), [("add", e)]))
            continue
        names: list[tuple[str, _Entry]] = [("remove", e) for e in removed]
        if not added:
            if not now:
                continue  # removing what is gone
            if now <= {(e.vtep, bridges[e.vni].index) for e in removed}:
                # the other common case: a prefix withdrawn
                body = codec.delete(family, raw, plen, table)
                plan.removals.append(_Op(Request(nl.RTM_DELROUTE, 0, body, "route"), names))
                continue
        names += [("add", e) for e in added]
        paths = now or set()
        final = sorted(
            (paths - {(e.vtep, bridges[e.vni].index) for e in removed})
            | {(e.vtep, bridges[e.vni].index) for e in added}
        )
        if not final:
            if now:
                body = codec.delete(family, raw, plen, table)
                plan.removals.append(_Op(Request(nl.RTM_DELROUTE, 0, body, "route"), names))
            continue  # else: removing what is gone
        if not added and set(final) == paths:
            continue  # only removals of paths that are not there
        try:
            body = codec.new(family, raw, plen, table, final)
        except _BAD as exc:  # a path the kernel holds that we cannot write back
            for op, entry in names:
                plan.fail(op, entry, f"the route's paths {final}: {exc}")
            continue
        req = Request(new_route, _REPLACE if now else excl, body, "route")
        (additions if added else plan.removals).append(_Op(req, names))


# ---------------------------------------------------------------- operations


def _open() -> nl.Netlink:
    return nl.Netlink(netlink_socket(None), strict=True, bufsize=SOCKET_BUFFER)


def _apply(
    add: KernelEvpn,
    remove: KernelEvpn,
    routes_now: Mapping[tuple[int, str], Iterable[EvpnRoute]] | None = None,
) -> ApplyResult:
    plan = _Plan()
    sets = (add.fdb, add.neigh, add.routes, remove.fdb, remove.neigh, remove.routes)
    total = sum(len(s) for s in sets)
    if not total:
        return ApplyResult(applied=0, failed=())
    vnis = {e.vni for s in sets for e in s if type(e.vni) is int and 0 < e.vni < 1 << 24}
    with _open() as sock:
        devs = _Devices(sock, vnis)
        _plan_fdb(sock, devs, add.fdb, remove.fdb, plan)
        _plan_neigh(sock, devs, add.neigh, remove.neigh, plan)
        _plan_routes(sock, devs, add.routes, remove.routes, plan, routes_now)
        ops = plan.removals + plan.additions
        errors = sock.batch_errors([op.request for op in ops])
    for op, error in zip(ops, errors, strict=True):
        if error is not None:
            for name, e in op.entries:
                plan.fail(name, e, error.msg, _errno_name(error.errno))
    failed = tuple(sorted(plan.failed.items()))
    refused = tuple((op, e, why) for (op, e), why in plan.refused.items())
    return ApplyResult(applied=total - len(failed), failed=failed, refused=refused)


def _errno_name(number: int) -> str:
    return errno_mod.errorcode.get(number, f"errno {number}") if number else "refused"


async def apply_evpn(
    add: KernelEvpn,
    remove: KernelEvpn,
    routes_now: Mapping[tuple[int, str], Iterable[EvpnRoute]] | None = None,
) -> ApplyResult:
    """Remove, then add (one batch: the kernel handles it in that order).
    Idempotent: adding what exists replaces it, removing what is gone is
    done. An entry whose device is missing or not ours, whose value is
    invalid, or that the kernel refuses is in ``failed``; the others are
    applied. A removal and an addition of the same key (a MAC moving to
    another VTEP, an IP to another MAC) is one replace, without a gap.
    Raises KernelError only when the kernel cannot be asked at all.

    ECMP paths are merged with what the kernel holds when the call reads
    it: calls must not overlap on the same prefixes (the reconciler makes
    one at a time). ``routes_now``, when given, is the caller's record of
    our routes of every prefix the call touches, (table, prefix) -> routes:
    it is used instead of reading the tables (a dump of a 40,000-route
    table per call dominated a burst of updates). A prefix not in it is
    created exclusively, so a record that is wrong fails loudly (EEXIST)
    instead of overwriting what the kernel holds."""
    return await in_thread(lambda: _apply(add, remove, routes_now))


def _valid(check: Callable[[int], int], value: int) -> bool:
    try:
        check(value)
    except _Invalid:
        return False
    return True


def _dump(vnis: tuple[int, ...], tables: tuple[int, ...]) -> KernelEvpn:
    fdb: set[FdbEntry] = set()
    neigh: set[NeighEntry] = set()
    routes: set[EvpnRoute] = set()
    vnis = tuple(v for v in vnis if _valid(_vni, v))
    tables = tuple(t for t in tables if _valid(_table, t))
    with _open() as sock:
        devs = _Devices(sock, vnis)
        for vni, vx in devs.vxlans.items():
            remotes, _bridged = _fdb_state(sock, vx, devs.vxlan_group.get(vni))
            fdb.update(
                FdbEntry(vni=vni, mac=mac, vtep=dst)
                for mac, dsts in remotes.items()
                for dst in dsts
            )
        for vni, br in devs.bridges.items():
            neigh.update(NeighEntry(vni=vni, ip=ip, mac=mac) for ip, mac in _neigh_state(sock, br))
        for table in sorted(set(tables)):
            for family in (socket.AF_INET, socket.AF_INET6):
                state = _route_state(sock, table, family)
                index_vni = devs.vnis_of_indexes(i for paths in state.values() for _, i in paths)
                for prefix, paths in state.items():
                    routes.update(
                        EvpnRoute(table=table, prefix=prefix, vtep=vtep, vni=index_vni[index])
                        for vtep, index in paths
                        if index in index_vni
                    )
    return KernelEvpn(fdb=frozenset(fdb), neigh=frozenset(neigh), routes=frozenset(routes))


async def dump_evpn(vnis: Iterable[int], tables: Iterable[int]) -> KernelEvpn:
    """What the kernel holds of ours: FDB entries with a remote on our
    ``vx-<vni>`` devices (unicast MACs with NTF_EXT_LEARNED, every flood
    remote but the kernel's default one), neighbour entries on our ``br-<vni>``
    bridges with our tag, routes of protocol ROUTE_PROTO_EVPN in ``tables``
    whose paths go out of one of our bridges. Missing or foreign devices,
    and VNIs or tables that cannot exist, are skipped. ``dump_evpn`` after
    ``apply_evpn(X, KernelEvpn())`` returns X."""
    v = tuple(vnis)
    t = tuple(tables)
    return await in_thread(lambda: _dump(v, t))
