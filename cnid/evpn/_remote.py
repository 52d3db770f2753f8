"""What a received route asks of the kernel (pure): zebra's job in FRR.

* type 5 (IP prefix, label = L3VNI, Router's MAC community): in the VRF of
  the domain whose l3vni is that VNI, a route ``<prefix> via <VTEP> dev
  br-<l3vni> onlink``, a neighbour entry VTEP -> router MAC on that bridge
  and an FDB entry router MAC -> VTEP on vx-<l3vni>;
* type 2 (MAC/IP, label = L2VNI): an FDB entry MAC -> VTEP on vx-<l2vni>
  and, when it carries an IP, a neighbour entry IP -> MAC on br-<l2vni>;
* type 3 (IMET, PMSI label = VNI): a flood entry 00:00:00:00:00:00 -> VTEP
  on vx-<vni>.

A route that cannot be programmed is skipped with a reason (counted by the
caller): a VNI no domain of this node has, a type-5 without a router MAC, a
next-hop of the other address family than the node's VXLAN devices, one of
the node's own routes. Routes are imported by VNI: the VNI is what names a
tenant's segment on a VXLAN fabric, and the route targets cnid announces are
derived from it.
"""

from __future__ import annotations

import functools
import ipaddress

import msgspec

from .._domains import VrfDomain
from ..bgp import ImetRoute, MacIpRoute, PrefixRoute, ReceivedPath
from ..dataplane import EvpnRoute as KernelRoute
from ..dataplane import FdbEntry, NeighEntry

ZERO_MAC = "00:00:00:00:00:00"

KernelEntry = FdbEntry | NeighEntry | KernelRoute


class VniTarget(msgspec.Struct, frozen=True):
    domain: str
    kind: str  # l2vni | l3vni
    table: int
    #: An l2vni domain's anycast gateway: a peer's route for it is ignored
    #: (every node holds that address itself).
    gateway: str = ""


class NodeView(msgspec.Struct, frozen=True):
    """What the translation needs to know of this node."""

    vtep: str
    router_id: str
    vnis: dict[int, VniTarget] = {}
    #: 4 or 6: the VTEP's (hence the VXLAN devices') address family.
    family: int = 4


def node_view(vtep: str, router_id: str, domains: list[VrfDomain]) -> NodeView:
    vnis: dict[int, VniTarget] = {}
    for d in domains:
        for att in d.attachments:
            gateway = str(d.anycast_gateway) if att.type == "l2vni" else ""
            vnis[att.vni] = VniTarget(d.name, att.type, d.table, gateway)
    family = ipaddress.ip_address(vtep).version
    return NodeView(vtep=vtep, router_id=router_id, vnis=vnis, family=family)


class Skip(ValueError):
    """A route this node does not program: ``kind`` is a short label (for a
    metric), the message says why."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind


def kernel_entries(rp: ReceivedPath, view: NodeView) -> tuple[KernelEntry, ...]:
    """The kernel entries a received path needs; Skip with the reason."""
    path = rp.path
    route = path.route
    vtep = path.nexthop
    if rp.originator and rp.originator == view.router_id:
        raise Skip("own-route", "our own route, reflected back")
    text, version, unusable = _nexthop(vtep)
    if not version:
        raise Skip("bad-next-hop", f"bad next-hop {vtep!r}")
    if text == view.vtep:
        raise Skip("own-route", "our own route (next-hop is our VTEP)")
    if version != view.family:
        raise Skip("next-hop-family", f"IPv{version} next-hop, our VTEP is IPv{view.family}")
    if unusable:
        raise Skip("bad-next-hop", f"unusable next-hop {vtep}")
    target = view.vnis.get(route.vni)
    if target is None:
        raise Skip("unknown-vni", f"VNI {route.vni} is not a VNI of this node")
    if isinstance(route, PrefixRoute):
        if target.kind != "l3vni":
            raise Skip("wrong-vni-kind", f"type-5 route with VNI {route.vni}, an l2vni")
        if not path.router_mac or path.router_mac == ZERO_MAC:
            raise Skip("no-router-mac", "type-5 route without a router MAC")
        if route.gateway:
            raise Skip(
                "unsupported", "type-5 route with a gateway IP (overlay index) is not supported"
            )
        entries: list[KernelEntry] = [
            KernelRoute(table=target.table, prefix=route.prefix, vtep=vtep, vni=route.vni),
            NeighEntry(vni=route.vni, ip=vtep, mac=path.router_mac),
            FdbEntry(vni=route.vni, mac=path.router_mac, vtep=vtep),
        ]
        if version == 4 and ":" in route.prefix:
            # an IPv6 prefix via an IPv4 VTEP is routed via ::ffff:<vtep>
            entries.append(NeighEntry(vni=route.vni, ip=f"::ffff:{vtep}", mac=path.router_mac))
        return tuple(entries)
    if target.kind != "l2vni":
        raise Skip(
            "wrong-vni-kind",
            f"type-{2 if isinstance(route, MacIpRoute) else 3} route with an l3vni",
        )
    if isinstance(route, ImetRoute):
        return (FdbEntry(vni=route.vni, mac=ZERO_MAC, vtep=vtep),)
    if route.mac == ZERO_MAC or int(route.mac.split(":")[0], 16) & 1:
        raise Skip("bad-mac", f"MAC {route.mac} is not a unicast MAC")
    bridged: list[KernelEntry] = [FdbEntry(vni=route.vni, mac=route.mac, vtep=vtep)]
    if route.ip:
        if route.ip == target.gateway:
            raise Skip("gateway", f"{route.ip} is the anycast gateway every node holds")
        bridged.append(NeighEntry(vni=route.vni, ip=route.ip, mac=route.mac))
    return tuple(bridged)


@functools.lru_cache(maxsize=8192)
def _nexthop(address: str) -> tuple[str, int, bool]:
    """A next-hop's canonical text, IP version (0: not an address) and
    whether it is unusable as a VTEP; cached: a fabric has few VTEPs and
    each sends many routes."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address, 0, True
    return str(ip), ip.version, ip.is_link_local or ip.is_unspecified or ip.is_multicast


def entry_key(entry: KernelEntry) -> tuple[object, ...]:
    """What the kernel holds one of: an FDB entry per (device, MAC), but a
    flood entry per (device, VTEP); a neighbour per (bridge, IP); a route per
    (table, prefix, next-hop) (several next-hops: one ECMP route)."""
    if isinstance(entry, FdbEntry):
        if entry.mac == ZERO_MAC:
            return ("flood", entry.vni, entry.vtep)
        return ("fdb", entry.vni, entry.mac)
    if isinstance(entry, NeighEntry):
        return ("neigh", entry.vni, entry.ip)
    return ("route", entry.table, entry.prefix, entry.vtep)
