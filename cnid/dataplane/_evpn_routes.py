"""The layer-3 half of EVPN state: type-5 prefixes as routes of protocol
ROUTE_PROTO_EVPN in a VRF table, one (multipath) route per prefix, onlink
via the remote VTEPs out of our bridges (see ``EvpnRoute``)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from . import _netlink as nl
from ._evpn_devices import _Devices
from ._evpn_plan import _NLA, _REPLACE, _U32, _attr, _Names, _Plan
from ._evpn_values import _BAD, _MAPPED, EvpnRoute, _prefix, _table, _vtep
from ._names import ROUTE_PROTO_EVPN

_RTMSG_SIZE = 12
#: What the kernel dumps of an IPv4 route of one path: RTA_TABLE, RTA_DST,
#: RTA_GATEWAY, RTA_OIF, each of 8 bytes (read with one unpack; any other
#: layout goes attribute by attribute).
_ONE_PATH4 = struct.Struct("=4sI4s4s4s4s4sI")
_ONE_PATH4_HEADS = (
    _NLA.pack(8, nl.RTA_TABLE),
    _NLA.pack(8, nl.RTA_DST),
    _NLA.pack(8, nl.RTA_GATEWAY),
    _NLA.pack(8, nl.RTA_OIF),
)
_ONE_PATH4_SIZE = _RTMSG_SIZE + _ONE_PATH4.size

_Path = tuple[str, int]  # (vtep, ifindex of the bridge)


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
    one_path = _ONE_PATH4.unpack_from
    one_path_size = _ONE_PATH4_SIZE if family == socket.AF_INET else -1
    for msg in raw:
        if msg[7] != nl.RTN_UNICAST or msg[5] != ROUTE_PROTO_EVPN:
            continue
        hops = None
        read = False
        if len(msg) == one_path_size:
            th, rtable, dh, dst, gh, gw, oh, oif = one_path(msg, _RTMSG_SIZE)
            read = (th, dh, gh, oh) == _ONE_PATH4_HEADS
        if not read:
            dst = gw = oif = None
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
    length, table, single or multipath) up to RTA_DST's, and the gateway and
    device of each (family, path): per route only the destination's bytes
    are new."""

    def __init__(self) -> None:
        self._heads: dict[tuple[int, int, int, bool], bytes] = {}
        self._paths: dict[tuple[int, str, int], bytes] = {}
        self._hops: dict[tuple[int, _Path], bytes] = {}

    def _head(self, family: int, plen: int, table: int, single: bool) -> bytes:
        """The rtmsg, RTA_TABLE and RTA_DST's header (the address is 4 or
        16 bytes: no padding)."""
        key = (family, plen, table, single)
        head = self._heads.get(key)
        if head is None:
            flags = nl.RTNH_F_ONLINK if single else 0
            rtm = nl.rtmsg(
                family, plen, 0, ROUTE_PROTO_EVPN, nl.RT_SCOPE_UNIVERSE, nl.RTN_UNICAST, flags
            )
            size = 4 if family == socket.AF_INET else 16
            head = rtm + _attr(nl.RTA_TABLE, _U32.pack(table)) + _NLA.pack(4 + size, nl.RTA_DST)
            self._heads[key] = head
        return head

    def _path(self, family: int, vtep: str, index: int) -> bytes:
        key = (family, vtep, index)
        out = self._paths.get(key)
        if out is None:
            vfam, raw = _vtep(vtep)
            out = _gateway_attr(family, vfam, raw) + _attr(nl.RTA_OIF, _U32.pack(index))
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

    def single(
        self, family: int, dst: bytes, plen: int, table: int, vtep: str, index: int
    ) -> bytes:
        """A route of one path (most are): ``new`` without a list."""
        return self._head(family, plen, table, True) + dst + self._path(family, vtep, index)

    def new(self, family: int, dst: bytes, plen: int, table: int, paths: list[_Path]) -> bytes:
        if len(paths) == 1:
            return self.single(family, dst, plen, table, *paths[0])
        hops = b"".join(self._hop(family, p) for p in paths)
        return self._head(family, plen, table, False) + dst + _attr(nl.RTA_MULTIPATH, hops)

    def delete(self, family: int, dst: bytes, plen: int, table: int) -> bytes:
        return self._head(family, plen, table, False) + dst


_Key = tuple[int, str]  # (table, prefix)
_Keyed = dict[_Key, list[EvpnRoute]]
_Parsed = dict[_Key, tuple[int, bytes, int]]


def _known_state(
    known: Mapping[_Key, Iterable[EvpnRoute]], devs: _Devices, keys: _Parsed
) -> dict[_Key, set[_Path]]:
    """The caller's record of our routes of ``keys``, those that have
    paths: walks the smaller of the two (the record of a burst of new
    prefixes holds few of them, or empty sets)."""
    bridges = devs.bridges
    out: dict[_Key, set[_Path]] = {}
    pairs: Iterable[tuple[_Key, Iterable[EvpnRoute] | None]]
    if len(known) < len(keys):
        pairs = ((key, routes) for key, routes in known.items() if key in keys)
    else:
        pairs = zip(keys, map(known.get, keys), strict=True)
    for key, routes in pairs:
        if not routes:
            continue
        paths: set[_Path] = set()
        for r in routes:
            br = bridges.get(r.vni)
            if br is not None:
                paths.add((r.vtep, br.index))
        if paths:
            out[key] = paths
    return out


def _current(
    sock: nl.Netlink,
    devs: _Devices,
    parsed: _Parsed,
    known: Mapping[_Key, Iterable[EvpnRoute]] | None,
) -> dict[_Key, set[_Path]]:
    """The paths of our routes of the prefixes planned, those that have
    some: from the caller's record, else from one dump per table and
    family."""
    if known is not None:
        return _known_state(known, devs, parsed)
    dumps: dict[tuple[int, int], dict[str, set[_Path]]] = {}
    out: dict[_Key, set[_Path]] = {}
    for key, (family, _, _) in parsed.items():
        table, prefix = key
        state = dumps.get((table, family))
        if state is None:
            state = dumps[(table, family)] = _route_state(sock, table, family)
        paths = state.get(prefix)
        if paths:
            out[key] = paths
    return out


def _by_prefix(
    devs: _Devices, add: frozenset[EvpnRoute], remove: frozenset[EvpnRoute], plan: _Plan
) -> tuple[_Keyed, _Keyed, _Parsed]:
    """The valid entries by (table, prefix), additions and removals, and each
    prefix parsed once; the invalid ones are failed in ``plan``."""
    bridges = devs.bridges
    adds: _Keyed = {}
    removes: _Keyed = {}
    parsed: _Parsed = {}
    vteps: set[str] = set()  # checked already
    for op, entries, keyed in (("remove", remove, removes), ("add", add, adds)):
        for e in entries:
            table = e.table
            try:
                if e.vni not in bridges:
                    devs.bridge(e.vni)
                if type(table) is not int or not 0 < table < 1 << 32 or table == 255:
                    _table(table)
                vtep = e.vtep
                if vtep not in vteps:
                    _vtep(vtep)
                    vteps.add(vtep)
                key = (table, e.prefix)
                if key not in parsed:
                    parsed[key] = _prefix(e.prefix)
            except _BAD as exc:
                plan.fail(op, e, str(exc))
                continue
            same = keyed.get(key)
            if same is None:
                keyed[key] = [e]
            else:
                same.append(e)
    return adds, removes, parsed


def _plan_routes(
    sock: nl.Netlink,
    devs: _Devices,
    add: frozenset[EvpnRoute],
    remove: frozenset[EvpnRoute],
    plan: _Plan,
    known: Mapping[_Key, Iterable[EvpnRoute]] | None = None,
) -> None:
    # Written for 10,000 routes a call: no object per route but the request.
    adds, removes, parsed = _by_prefix(devs, add, remove, plan)
    if not parsed:
        return
    current = _current(sock, devs, parsed, known)
    codec = _RouteCodec()
    bridges = devs.bridges
    Request = nl.Request
    new_route, del_route = nl.RTM_NEWROUTE, nl.RTM_DELROUTE
    excl = nl.NLM_F_CREATE | nl.NLM_F_EXCL
    add_request, add_outcome = plan.addition_requests.append, plan.addition_outcomes.append
    del_request, del_outcome = plan.removal_requests.append, plan.removal_outcomes.append
    for key, (family, raw, plen) in parsed.items():
        now = current.get(key)
        added = adds.get(key)
        removed = removes.get(key)
        if removed is None:
            if added is not None and now is None and len(added) == 1:
                # the common addition: a new prefix with one VTEP
                e = added[0]
                body = codec.single(family, raw, plen, key[0], e.vtep, bridges[e.vni].index)
                add_request(Request(new_route, excl, body, "route"))
                add_outcome(e)
                continue
        else:
            if added is None and len(removed) == 1:
                e = removed[0]
                if (now is None and known is not None) or (
                    now is not None and len(now) == 1 and (e.vtep, bridges[e.vni].index) in now
                ):
                    # the common withdrawal: the prefix's only path goes
                    body = codec.delete(family, raw, plen, key[0])
                    del_request(Request(del_route, 0, body, "route"))
                    del_outcome(e)
                    continue
            if known is not None:
                # the caller's removals are paths of its record: held now
                held = {(e.vtep, bridges[e.vni].index) for e in removed}
                now = held if now is None else now | held
        route = _Route(family, raw, plen, key[0])
        _plan_prefix(plan, codec, bridges, route, now, added or (), removed or ())


class _Route(NamedTuple):
    """One prefix of one table, parsed."""

    family: int
    raw: bytes
    plen: int
    table: int


def _plan_prefix(
    plan: _Plan,
    codec: _RouteCodec,
    bridges: Mapping[int, nl.Link],
    route: _Route,
    now: set[_Path] | None,
    added: Sequence[EvpnRoute],
    removed: Sequence[EvpnRoute],
) -> None:
    """The request for one prefix whose paths change: the route deleted
    when no path is left, else replaced whole (created when it was gone)."""
    family, raw, plen, table = route
    names: _Names = [("remove", e) for e in removed]
    if not added:
        if not now:
            return  # removing what is gone
        if now <= {(e.vtep, bridges[e.vni].index) for e in removed}:
            # a prefix withdrawn
            body = codec.delete(family, raw, plen, table)
            plan.remove(nl.Request(nl.RTM_DELROUTE, 0, body, "route"), names)
            return
    names += [("add", e) for e in added]
    paths = now or set()
    final = sorted(
        (paths - {(e.vtep, bridges[e.vni].index) for e in removed})
        | {(e.vtep, bridges[e.vni].index) for e in added}
    )
    if not final:
        if now:
            body = codec.delete(family, raw, plen, table)
            plan.remove(nl.Request(nl.RTM_DELROUTE, 0, body, "route"), names)
        return  # else: removing what is gone
    if not added and set(final) == paths:
        return  # only removals of paths that are not there
    try:
        body = codec.new(family, raw, plen, table, final)
    except _BAD as exc:  # a path the kernel holds that we cannot write back
        for op, entry in names:
            plan.fail(op, entry, f"the route's paths {final}: {exc}")
        return
    flags = _REPLACE if now else nl.NLM_F_CREATE | nl.NLM_F_EXCL
    req = nl.Request(nl.RTM_NEWROUTE, flags, body, "route")
    if added:
        plan.add(req, names)
    else:
        plan.remove(req, names)
