"""The layer-2 half of EVPN state: FDB entries (MAC -> remote VTEP) on our
VXLAN devices and their bridges, neighbour entries (IP -> MAC) on our
bridges. What is ours, and how an update keeps others' entries alone, is in
``_evpn.py``'s docstring."""

from __future__ import annotations

import socket
from collections import Counter
from functools import cache

from . import _netlink as nl
from ._evpn_devices import _Devices
from ._evpn_plan import _NLA, _REPLACE, _attr, _Plan
from ._evpn_values import (
    _BAD,
    _ZERO,
    ZERO_MAC,
    FdbEntry,
    NeighEntry,
    _Entry,
    _Invalid,
    _mac,
    _parse_ip,
    _unicast_mac,
    _vtep,
    nda_protocol_supported,
)
from ._names import ROUTE_PROTO_EVPN

_LLADDR = _NLA.pack(10, nl.NDA_LLADDR)
#: Removals on one device (FDB) or bridge (neighbours) in one call from
#: which its table is dumped once rather than each entry looked up. A GET
#: costs about three dumped entries; a withdrawal's calls take a few
#: hundred to a few thousand entries of each device (they stay with GETs),
#: 10,000 MACs removed at once from one device are cheaper with the dump.
DUMP_AT = 4096
_PAD2 = b"\0\0"


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
    ports: dict[tuple[int, bool, int], nl.Link] = {}  # devs.vxlan's devices, asked once
    for e in add:
        try:
            mac = _mac(e.mac)
            vfam, dst = _vtep(e.vtep)
            flood = mac == _ZERO
            if not flood and mac[0] & 1:
                raise _Invalid(f"MAC {e.mac} is not a unicast address")
            vx = ports.get((e.vni, flood, vfam))
            if vx is None:
                vx = devs.vxlan(e.vni, as_port=not flood, vtep_family=vfam)
                ports[(e.vni, flood, vfam)] = vx
        except _BAD as exc:
            plan.fail("add", e, str(exc))
            continue
        h = heads.get(vx.index) or heads.setdefault(vx.index, _FdbHeads(vx))
        tail = _LLADDR + mac + _PAD2 + dst_attr(dst)
        if flood:
            req = Request(new, nl.NLM_F_CREATE | nl.NLM_F_APPEND, h.self_new + tail, "fdb")
            plan.add(req, e)
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
        plan.add(Request(new, _REPLACE, h.self_new + tail, "fdb"), names)
        master = h.master_new + tail[:12]
        plan.add(Request(new, _REPLACE, master, "fdb bridge entry"), names)
        replacing[key] = names

    # Removals are checked entry by entry (a GET of the driver's and the
    # bridge's entry of each MAC), not against a dump of the VNI's whole
    # table per call: withdrawing a large table took tens of calls, each
    # dumping every entry still left (half of the node's time). Many
    # removals on one device in one call read its dump instead (a GET costs
    # about three dumped entries: 10,000 MACs at once took 257 ms, not 146).
    unicast_removals: list[tuple[FdbEntry, nl.Link, bytes, bytes]] = []
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
        h = heads.get(vx.index) or heads.setdefault(vx.index, _FdbHeads(vx))
        lladdr = _LLADDR + mac + _PAD2
        if mac == _ZERO:
            # every flood remote is ours but the kernel's default one; one
            # that is not there (ENOENT) is gone already
            if e.vtep != devs.vxlan_group.get(e.vni):
                req = Request(delete, 0, h.self_del + lladdr + dst_attr(dst), "fdb")
                plan.remove(req, e, gone_ok=True)
            continue
        unicast_removals.append((e, vx, lladdr, dst_attr(dst)))
    if not unicast_removals:
        return
    per_device = Counter(vx.index for _e, vx, _lladdr, _dst in unicast_removals)
    dumped: dict[int, tuple[dict[str, set[str]], set[str]]] = {}
    gets: list[nl.Request] = []
    for e, vx, lladdr, _dst in unicast_removals:
        if per_device[vx.index] >= DUMP_AT:
            if vx.index not in dumped:
                dumped[vx.index] = _fdb_state(sock, vx, devs.vxlan_group.get(e.vni))
            continue
        gets.append(Request(nl.RTM_GETNEIGH, 0, _fdb_get(vx.index, nl.NTF_SELF) + lladdr, "fdb"))
        master = _fdb_get(vx.index, nl.NTF_MASTER) + lladdr
        gets.append(Request(nl.RTM_GETNEIGH, 0, master, "fdb bridge entry"))
    found = iter(sock.neighbours_get(gets) if gets else ())
    for e, vx, lladdr, dst_nla in unicast_removals:
        h = heads[vx.index]
        state = dumped.get(vx.index)
        if state is None:
            driver, bridge = next(found), next(found)
            # the driver's entry, if ours: its remote (one: ours are replaced, never appended)
            ours = _driver_remote(driver, vx)
            remove_self = ours == e.vtep
            remove_bridged = _bridged(bridge, vx) and ours in (None, e.vtep)
        else:
            remotes, bridged = state
            dsts = remotes.get(e.mac, set())
            remove_self = e.vtep in dsts
            remove_bridged = e.mac in bridged and dsts <= {e.vtep}
        if remove_self:
            req = Request(delete, 0, h.self_del + lladdr + dst_nla, "fdb")
            plan.remove(req, e)
        if remove_bridged:
            req = Request(delete, 0, h.master_del + lladdr, "fdb bridge entry")
            plan.remove(req, e)
        # neither: already gone (or no longer ours), nothing to do


def _fdb_get(port: int, flags: int) -> bytes:
    return nl.ndmsg(nl.AF_BRIDGE, port, 0, flags)


def _driver_remote(n: nl.Neigh | None, vx: nl.Link) -> str | None:
    """The remote of a MAC's VXLAN driver entry (a GET's answer) if the
    entry is ours (as ``_fdb_state`` reads a dump), else None."""
    if n is None or n.ifindex != vx.index or n.master is not None or n.dst is None:
        return None
    if not n.flags & nl.NTF_SELF or not n.flags & nl.NTF_EXT_LEARNED:
        return None
    return n.dst


def _bridged(n: nl.Neigh | None, vx: nl.Link) -> bool:
    """Whether a bridge's FDB entry (a GET's answer) is ours, on ``vx``."""
    if n is None or n.ifindex != vx.index or n.master is None:
        return False
    return bool(n.flags & nl.NTF_EXT_LEARNED)


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
        plan.add(nl.Request(nl.RTM_NEWNEIGH, _REPLACE, body, "neigh"), names)
        replacing[key] = names

    checks: list[tuple[NeighEntry, nl.Link, bytes]] = []  # entry, bridge, request body
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
        checks.append((e, br, nl.ndmsg(family, br.index) + _attr(nl.NDA_DST, raw)))
    if not checks:
        return
    # each entry checked with a GET (ours, this MAC), not a dump per bridge
    # and call; many on one bridge in one call read its dump instead
    per_bridge = Counter(br.index for _e, br, _body in checks)
    dumped: dict[int, set[tuple[str, str]]] = {}
    gets: list[nl.Request] = []
    for _e, br, body in checks:
        if per_bridge[br.index] >= DUMP_AT:
            if br.index not in dumped:
                dumped[br.index] = _neigh_state(sock, br)
        else:
            gets.append(nl.Request(nl.RTM_GETNEIGH, 0, body, "neigh"))
    found = iter(sock.neighbours_get(gets) if gets else ())
    for e, br, body in checks:
        state = dumped.get(br.index)
        if state is not None:
            ours = (e.ip, e.mac) in state
        else:
            n = next(found)
            ours = n is not None and n.ifindex == br.index and _neigh_ours(n) and n.lladdr == e.mac
        if not ours:
            continue  # gone, or no longer ours / another MAC: not touched
        plan.remove(nl.Request(nl.RTM_DELNEIGH, 0, body, "neigh"), e)
