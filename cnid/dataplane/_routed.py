"""The routed underlay's kernel objects (RFC 7938: a node with one
point-to-point link to each leaf of its rack, no shared segment).

* ``cnid-vtep``: a dummy device tagged as cnid's (alias ``cnid:vtep``)
  holding the node's VTEP address as a /32: the VXLAN devices' local
  address and what BGP announces;
* the other nodes' VTEPs learned over BGP: routes of the main table with
  protocol ROUTE_PROTO_UNDERLAY, one per prefix, with one next hop per leaf
  that announced it (RTA_MULTIPATH: ECMP over the uplinks), written with our
  netlink encoder, dumped and adopted at restart, removed symmetrically.
  Routes of any other protocol are never touched.

The planning (``plan_routes``) is pure: kernel state and wanted state, both
``prefix -> next hops``, give the requests.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Mapping

import msgspec

from . import _netlink as nl
from ._domain import _ensure_link
from ._names import LINK_ALIAS_PREFIX, ROUTE_PROTO_UNDERLAY
from ._netns import netlink_socket
from ._run import in_thread

VTEP_DEVICE = "cnid-vtep"
VTEP_ALIAS = f"{LINK_ALIAS_PREFIX}vtep"

#: prefix -> its next hops (IPv4 gateways)
UnderlayRoutes = Mapping[str, frozenset[str]]


class RouteChange(msgspec.Struct, frozen=True):
    #: "add": a prefix we hold no route of, created with NLM_F_EXCL (a route
    #: of another owner with that key is refused, never replaced); "set":
    #: our route replaced whole; "delete".
    op: str
    prefix: str
    nexthops: tuple[str, ...] = ()


class RoutesApplied(msgspec.Struct, frozen=True):
    changes: tuple[RouteChange, ...] = ()
    #: prefix -> the kernel's refusal
    errors: tuple[tuple[str, str], ...] = ()


# ------------------------------------------------------------------ the device


def _ensure_vtep(address: str) -> int:
    ip = ipaddress.IPv4Address(address)
    with nl.Netlink(netlink_socket(None)) as sock:
        link = _ensure_link(sock, VTEP_DEVICE, VTEP_ALIAS, "dummy", b"")
        requests = []
        ip_present = False
        for a in sock.addrs(socket.AF_INET):
            if a.index != link.index:
                continue
            if a.local == str(ip) and a.prefixlen == 32:
                ip_present = True
            else:  # another address on our device: a previous VTEP
                raw = socket.inet_aton(a.local or a.address or "0.0.0.0")
                body = nl.ifaddr(socket.AF_INET, a.prefixlen, link.index)
                body += nl.nla(nl.IFA_LOCAL, raw) + nl.nla(nl.IFA_ADDRESS, raw)
                requests.append(nl.Request(nl.RTM_DELADDR, 0, body, f"old VTEP {a.local}"))
        if not ip_present:
            body = nl.ifaddr(socket.AF_INET, 32, link.index, nl.IFA_F_NODAD, nl.RT_SCOPE_UNIVERSE)
            body += nl.nla(nl.IFA_LOCAL, ip.packed) + nl.nla(nl.IFA_ADDRESS, ip.packed)
            flags = nl.NLM_F_CREATE | nl.NLM_F_REPLACE
            requests.append(nl.Request(nl.RTM_NEWADDR, flags, body, f"{ip}/32"))
        requests.append(nl.up_req(link.index, VTEP_DEVICE))
        sock.batch(requests, ignore=(errno.EADDRNOTAVAIL,))
        return link.index


async def ensure_vtep(address: str) -> int:
    """``cnid-vtep`` with ``address``/32 and up, created or adopted (our
    alias); another address on it (a previous VTEP) is removed. Its index.
    KernelError when a device of that name is not ours."""
    return await in_thread(lambda: _ensure_vtep(address))


def _remove_vtep() -> bool:
    with nl.Netlink(netlink_socket(None)) as sock:
        link = sock.link_by_name(VTEP_DEVICE)
        if link is None or link.alias != VTEP_ALIAS:
            return False
        sock.batch(
            [nl.Request(nl.RTM_DELLINK, 0, nl.ifinfo(link.index), VTEP_DEVICE)],
            ignore=(errno.ENODEV,),
        )
        return True


async def remove_vtep() -> bool:
    """Delete ``cnid-vtep`` if it is ours; False when there was none."""
    return await in_thread(_remove_vtep)


# ------------------------------------------------------------------ the routes


def _dump_routes() -> dict[str, frozenset[str]]:
    out: dict[str, frozenset[str]] = {}
    with nl.Netlink(netlink_socket(None), strict=True) as sock:
        for r in sock.routes(socket.AF_INET, nl.RT_TABLE_MAIN, ROUTE_PROTO_UNDERLAY):
            if r.type != nl.RTN_UNICAST:
                continue
            hops = {h.gateway for h in r.nexthops if h.gateway} or (
                {r.gateway} if r.gateway else set()
            )
            out[f"{r.dst or '0.0.0.0'}/{r.dst_len}"] = frozenset(hops)
    return out


async def dump_underlay_routes() -> dict[str, frozenset[str]]:
    """Our routes in the main table: prefix -> next hops."""
    return await in_thread(_dump_routes)


def plan_routes(current: UnderlayRoutes, wanted: UnderlayRoutes) -> list[RouteChange]:
    """What turns ``current`` into ``wanted``: a new prefix is added (never
    over a route of another owner), a route whose next hops change is
    replaced whole (one message: the kernel never holds the prefix without
    a route, so no flap), a prefix with no next hop left is deleted.
    Sorted, so the plan of a state is always the same."""
    out: list[RouteChange] = []
    for prefix in sorted(set(current) | set(wanted)):
        hops = wanted.get(prefix, frozenset())
        if hops:
            if prefix not in current:
                out.append(RouteChange("add", prefix, tuple(sorted(hops))))
            elif current[prefix] != hops:
                out.append(RouteChange("set", prefix, tuple(sorted(hops))))
        elif prefix in current:
            out.append(RouteChange("delete", prefix))
    return out


def _request(change: RouteChange) -> nl.Request:
    net = ipaddress.IPv4Network(change.prefix)
    head = nl.rtmsg(socket.AF_INET, net.prefixlen, nl.RT_TABLE_MAIN, ROUTE_PROTO_UNDERLAY) + nl.nla(
        nl.RTA_DST, net.network_address.packed
    )
    if change.op == "delete":
        return nl.Request(nl.RTM_DELROUTE, 0, head, f"underlay route {change.prefix}")
    gateways = [ipaddress.IPv4Address(h).packed for h in change.nexthops]
    if len(gateways) == 1:
        body = head + nl.nla(nl.RTA_GATEWAY, gateways[0])
    else:
        hops = b"".join(nl.rtnexthop(0, 0, nl.nla(nl.RTA_GATEWAY, g)) for g in gateways)
        body = head + nl.nla(nl.RTA_MULTIPATH, hops)
    flags = nl.NLM_F_CREATE | (nl.NLM_F_EXCL if change.op == "add" else nl.NLM_F_REPLACE)
    return nl.Request(nl.RTM_NEWROUTE, flags, body, f"underlay route {change.prefix}")


def _apply_routes(
    wanted: dict[str, frozenset[str]], current: dict[str, frozenset[str]] | None
) -> RoutesApplied:
    if current is None:
        current = _dump_routes()
    changes = plan_routes(current, wanted)
    if not changes:
        return RoutesApplied()
    errors: list[tuple[str, str]] = []
    with nl.Netlink(netlink_socket(None)) as sock:
        outcomes = sock.batch_errors([_request(c) for c in changes])
    for change, failure in zip(changes, outcomes, strict=True):
        if failure is None:
            continue
        if change.op == "delete" and failure.errno == errno.ESRCH:
            continue  # gone already
        errors.append((change.prefix, failure.msg))
    return RoutesApplied(tuple(changes), tuple(errors))


async def apply_underlay_routes(
    wanted: Mapping[str, frozenset[str]], current: Mapping[str, frozenset[str]] | None = None
) -> RoutesApplied:
    """Make our main-table routes ``wanted`` (prefix -> next hops; a prefix
    with none is removed): ``current`` is what the caller knows the kernel
    holds (None: dumped first). Routes of other protocols are never touched;
    a refused route is reported, never raised."""
    w = dict(wanted)
    c = None if current is None else dict(current)
    return await in_thread(lambda: _apply_routes(w, c))


async def connected_addresses() -> list[str]:
    """The node's IPv4 interface addresses (``a.b.c.d/len``): which of its
    addresses faces a given BGP neighbour."""

    def read() -> list[str]:
        with nl.Netlink(netlink_socket(None)) as sock:
            return [
                f"{a.local or a.address}/{a.prefixlen}"
                for a in sock.addrs(socket.AF_INET)
                if a.local or a.address
            ]

    return await in_thread(read)


def address_facing(peer: str, addresses: list[str]) -> str:
    """The address of ``addresses`` whose subnet holds ``peer`` (the
    narrowest); "" when none does."""
    ip = ipaddress.ip_address(peer)
    best: ipaddress.IPv4Interface | None = None
    for text in addresses:
        iface = ipaddress.IPv4Interface(text)
        if iface.network.prefixlen >= 32 or ip not in iface.network or ip == iface.ip:
            continue
        if best is None or iface.network.prefixlen > best.network.prefixlen:
            best = iface
    return "" if best is None else str(best.ip)
