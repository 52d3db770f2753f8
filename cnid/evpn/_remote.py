"""What a received route asks of the kernel (pure): zebra's job in FRR.

Routes are imported by route target (issue 14): a received route goes to
every domain of this node one of whose import targets it carries (the
domain's ``importRouteTargets``, else the targets derived from its VNIs:
``Domain.targets``), whatever VNI it names; a route that matches no domain is
skipped (``no-route-target``). In each such domain:

* type 5 (IP prefix, Router's MAC community), in a domain with an l3vni: in
  the domain's table, a route ``<prefix> via <VTEP> dev br-<l3vni>
  onlink``, a neighbour entry VTEP -> router MAC on that bridge and an FDB
  entry router MAC -> VTEP on vx-<l3vni>;
* type 2 (MAC/IP), in a domain with an l2vni: an FDB entry MAC -> VTEP on
  vx-<l2vni> and, when it carries an IP, a neighbour entry IP -> MAC on
  br-<l2vni>;
* type 3 (IMET): a flood entry 00:00:00:00:00:00 -> VTEP on vx-<l2vni>.

``<l3vni>`` and ``<l2vni>`` are the importing domain's own VNIs: a route
naming another VNI is installed on the domain's own devices (the route's
l2vni when it is one of the domain's, else the domain's pod attachment), so
traffic to it is encapsulated with the domain's VNI (as FRR's zebra does:
VXLAN VNIs are global in the fabric). A domain of the wrong kind for the
route type (a type-5 for an l2vni-only domain) does not take it; none left:
``wrong-vni-kind``.

Other routes that cannot be programmed are skipped with a reason (counted
by the caller): a type-5 without a router MAC, a next-hop of the other
address family than the node's VXLAN devices, one of the node's own routes.

The input policy: a received route never overrides what this node owns, and
never points the kernel at an address or MAC that cannot be a VTEP:

* a type-2 for a MAC or an IP of one of the node's own pods (``local-mac``,
  ``local-ip``): the pod's own FDB and neighbour entries stay;
* a type-5 inside one of the node's own blocks (``own-block``) or the
  Service CIDRs (``service-cidr``); a covering prefix (an aggregate, the
  fabric's default route) is fine: the more specific local routes win;
* a next-hop that is loopback, multicast, broadcast, unspecified, reserved
  or link-local (``bad-next-hop``); a router MAC that is zero, multicast or
  broadcast (``bad-router-mac``).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable

import msgspec

from ..bgp import ImetRoute, MacIpRoute, PrefixRoute, ReceivedPath
from ..core._domains import Domain
from ..core._errors import ConfigError
from ..core._route_targets import RouteTarget, parse_route_target
from ..core._rt_policy import SKIP_NO_ROUTE_TARGET, DomainTargets, import_domains
from ..dataplane import EvpnRoute as KernelRoute
from ..dataplane import FdbEntry, NeighEntry

ZERO_MAC = "00:00:00:00:00:00"

KernelEntry = FdbEntry | NeighEntry | KernelRoute


class DomainTarget(msgspec.Struct, frozen=True):
    """A domain of this node, as received routes see it."""

    name: str
    table: int
    #: Its l2vni attachments, the one pods are wired to first.
    l2vnis: tuple[int, ...] = ()
    #: Its l3vni (0: none).
    l3vni: int = 0
    #: An l2vni domain's anycast gateway: a peer's route for it is ignored
    #: (every node holds that address itself).
    gateway: str = ""


class NodeView(msgspec.Struct, frozen=True):
    """What the translation needs to know of this node."""

    vtep: str
    router_id: str
    domains: dict[str, DomainTarget] = {}
    #: The route targets each domain imports (and exports).
    targets: tuple[DomainTargets, ...] = ()
    #: 4 or 6: the VTEP's (hence the VXLAN devices') address family.
    family: int = 4
    #: The node's own pods: (domain, IP) and (domain, MAC). A received
    #: route never replaces their entries.
    local_ips: frozenset[tuple[str, str]] = frozenset()
    local_macs: frozenset[tuple[str, str]] = frozenset()
    #: The node's own blocks, (domain, CIDR): no received route inside them.
    own_blocks: frozenset[tuple[str, str]] = frozenset()
    #: The cluster's Service CIDRs: no received route inside them.
    service_cidrs: tuple[str, ...] = ()

    def local_only(self, other: NodeView) -> bool:
        """Whether the two views differ only in what the node owns (its
        pods and blocks), not in its domains or addresses."""
        mine = (self.vtep, self.router_id, self.domains, self.targets, self.family)
        theirs = (other.vtep, other.router_id, other.domains, other.targets, other.family)
        return mine == theirs and self.service_cidrs == other.service_cidrs


def node_view(
    vtep: str,
    router_id: str,
    domains: list[Domain],
    *,
    asn: int,
    pods: Iterable[tuple[str, str, str]] = (),
    blocks: Iterable[tuple[int, str]] = (),
    service_cidrs: Iterable[str] = (),
) -> NodeView:
    """``asn``: the node's AS (derived route targets); ``pods``: (domain,
    MAC, IP) of the node's pods; ``blocks``: (VRF, CIDR) of its address
    blocks."""
    targets: dict[str, DomainTarget] = {}
    imports: list[DomainTargets] = []
    by_vrf: dict[int, str] = {}
    for d in domains:
        by_vrf[d.vrf] = d.name
        l2 = [a.vni for a in d.attachments if a.type == "l2vni"]
        if l2:
            first = d.pod_attachment.vni
            l2 = [first, *(v for v in l2 if v != first)]
        l3 = next((a.vni for a in d.attachments if a.type == "l3vni"), 0)
        gateway = str(d.anycast_gateway) if l2 else ""
        targets[d.name] = DomainTarget(d.name, d.table, tuple(l2), l3, gateway)
        try:
            imports.append(d.targets(asn))
        except ConfigError:
            pass  # a domain whose targets cannot be derived imports nothing
    family = ipaddress.ip_address(vtep).version
    pods = tuple(pods)
    return NodeView(
        vtep=vtep,
        router_id=router_id,
        domains=targets,
        targets=tuple(imports),
        family=family,
        local_ips=frozenset((d, _canonical_ip(ip)) for d, _, ip in pods if ip),
        local_macs=frozenset((d, mac.lower()) for d, mac, _ in pods if mac),
        own_blocks=frozenset((by_vrf[v], cidr) for v, cidr in blocks if v in by_vrf),
        service_cidrs=tuple(service_cidrs),
    )


def importing_domains(route_targets: tuple[str, ...], view: NodeView) -> tuple[str, ...]:
    """The domains of this node a route with these targets is imported
    into (by route target alone; sorted). Memoised per view: a fabric's
    routes carry few distinct sets of targets."""
    memo = _MEMO.get(id(view.targets))
    if memo is None or memo[0] is not view.targets:
        _MEMO.clear()  # one view at a time (a new view replaces the old)
        memo = _MEMO[id(view.targets)] = (view.targets, {})
    found = memo[1].get(route_targets)
    if found is None:
        if len(memo[1]) >= _MEMO_MAX:
            memo[1].clear()
        found = import_domains(_parsed(route_targets), view.targets).domains
        memo[1][route_targets] = found
    return found


_MEMO: dict[int, tuple[tuple[DomainTargets, ...], dict[tuple[str, ...], tuple[str, ...]]]] = {}
_MEMO_MAX = 4096


def _parsed(texts: tuple[str, ...]) -> list[RouteTarget]:
    out = []
    for text in texts:
        try:
            out.append(parse_route_target(text))
        except ConfigError:
            continue  # not a target we could match (a malformed one)
    return out


def _canonical_ip(ip: str) -> str:
    """An IP's canonical text (as ``ipaddress`` writes it); an IPv4 address
    through ``inet_pton`` in C (which takes exactly the dotted quads
    ``ipaddress`` takes), asked for each type-2 route with an IP."""
    address = ip.partition("/")[0]
    if ":" not in address:
        try:
            return socket.inet_ntoa(socket.inet_pton(socket.AF_INET, address))
        except (OSError, ValueError):
            pass
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return ip


def _local_ip_domains(view: NodeView) -> frozenset[str]:
    """The domains with pod IPs of this node's (memoised per view): a
    type-2 route's IP is made canonical only when its domain has some."""
    memo = _memo(view)
    found = memo.get(_LOCAL_IP_DOMAINS)
    if found is None:
        found = memo[_LOCAL_IP_DOMAINS] = frozenset(d for d, _ in view.local_ips)
    return found  # type: ignore[return-value]


_LOCAL_IP_DOMAINS = ("local-ip-domains",)


class Skip(ValueError):
    """A route this node does not program: ``kind`` is a short label (for a
    metric), the message says why."""

    def __init__(self, kind: str, why: str) -> None:
        super().__init__(why)
        self.kind = kind


def kernel_entries(rp: ReceivedPath, view: NodeView) -> tuple[KernelEntry, ...]:
    """The kernel entries a received path needs; Skip with the reason."""
    return keyed_entries(rp, view)[0]


Key = tuple[object, ...]
#: A path's kernel entries and the ``entry_key`` of each, in the same order.
Keyed = tuple[tuple[KernelEntry, ...], tuple[Key, ...]]


def keyed_entries(rp: ReceivedPath, view: NodeView) -> Keyed:
    """``kernel_entries`` with their keys: the route table needs both for
    every path, and the keys of the entries a VTEP's type-5 paths share are
    made once per VTEP (``_routed``), not once per prefix."""
    path = rp.path
    route = path.route
    vtep = path.nexthop
    if isinstance(route, PrefixRoute):
        return _prefix_entries(rp, route, view)
    found = _context(rp.originator, vtep, path.route_targets, view)
    if isinstance(found, Skip):
        raise Skip(found.kind, str(found))
    names, domains, _version = found
    bridging = [d for d in domains if d.l2vnis]
    if not bridging:
        rtype = 2 if isinstance(route, MacIpRoute) else 3
        raise Skip("wrong-vni-kind", f"type-{rtype} route for {', '.join(names)}: no l2vni")
    if isinstance(route, ImetRoute):
        floods = tuple(
            FdbEntry(vni=_l2vni(d, route.vni), mac=ZERO_MAC, vtep=vtep) for d in bridging
        )
        return floods, tuple(("flood", e.vni, vtep) for e in floods)
    if not _unicast(route.mac):
        raise Skip("bad-mac", f"MAC {route.mac} is not a unicast MAC")
    if path.router_mac not in ("", ZERO_MAC) and not _unicast(path.router_mac):
        raise Skip("bad-router-mac", f"router MAC {path.router_mac} is not a unicast MAC")
    bridged: list[KernelEntry] = []
    # entry_key's, made here: the MAC is unicast (an "fdb" key, not "flood")
    keys: list[Key] = []
    mac = route.mac
    ip = route.ip
    local_ips = _local_ip_domains(view)
    for d in bridging:
        vni = _l2vni(d, route.vni)
        if (d.name, mac.lower()) in view.local_macs:
            raise Skip("local-mac", f"MAC {mac} is a pod of this node's")
        bridged.append(FdbEntry(vni=vni, mac=mac, vtep=vtep))
        keys.append(("fdb", vni, mac))
        if ip:
            if ip == d.gateway:
                raise Skip("gateway", f"{ip} is the anycast gateway every node holds")
            # only a domain with pods of this node's can hold the IP
            if d.name in local_ips and (d.name, _canonical_ip(ip)) in view.local_ips:
                raise Skip("local-ip", f"{ip} is a pod of this node's")
            bridged.append(NeighEntry(vni=vni, ip=ip, mac=mac))
            keys.append(("neigh", vni, ip))
    return tuple(bridged), tuple(keys)


def _prefix_entries(rp: ReceivedPath, route: PrefixRoute, view: NodeView) -> Keyed:
    """A type-5 path's entries: its route in each routed domain, with the
    entries its VTEP shares with its other prefixes."""
    path = rp.path
    vtep = path.nexthop
    found = _routed(rp.originator, vtep, path.route_targets, path.router_mac, view)
    if isinstance(found, Skip):
        raise Skip(found.kind, str(found))
    routed, owned = found
    prefix = route.prefix
    if owned:
        reserved = _reserved(prefix, owned)
        if reserved:
            raise Skip(*reserved)
    if route.gateway:
        raise Skip("unsupported", "type-5 route with a gateway IP (overlay index) is not supported")
    if len(routed) == 1 and ":" not in prefix:
        # the common case (one l3vni, an IPv4 prefix): no lists
        d, shared, shared_keys, _mapped = routed[0]
        entry = KernelRoute(table=d.table, prefix=prefix, vtep=vtep, vni=d.l3vni)
        key = ("route", d.table, prefix, vtep)
        return (entry, *shared), (key, *shared_keys)
    entries: list[KernelEntry] = []
    keys: list[Key] = []
    v6_via_v4 = ":" in prefix
    for d, shared, shared_keys, mapped in routed:
        entries.append(KernelRoute(table=d.table, prefix=prefix, vtep=vtep, vni=d.l3vni))
        keys.append(("route", d.table, prefix, vtep))
        entries += shared
        keys += shared_keys
        if v6_via_v4 and mapped is not None:
            # an IPv6 prefix via an IPv4 VTEP is routed via ::ffff:<vtep>
            entries.append(mapped[0])
            keys.append(mapped[1])
    return tuple(entries), tuple(keys)


_Context = tuple[tuple[str, ...], list[DomainTarget], int]
#: Per routed domain: the domain, its shared entries and their keys, the
#: IPv4-mapped next hop's neighbour and its key.
_Domains = list[
    tuple[DomainTarget, tuple[KernelEntry, ...], tuple[Key, ...], tuple[NeighEntry, Key] | None]
]
#: A Service CIDR or own block: (version, network, length, netmask, the
#: Skip's kind, how its reason names it).
_Owned = tuple[int, int, int, int, str, str]
#: The routed domains, and what their prefixes must not fall inside.
_Routed = tuple[_Domains, tuple[_Owned, ...]]


def _memo(view: NodeView) -> dict[tuple[object, ...], object]:
    """What the routes of one VTEP (next hop, originator, route targets,
    router MAC) share, computed once per view: a fabric's 50,000 routes come
    from a few hundred VTEPs, each checked and matched to the node's
    domains once, not once per route (bulk planning, per VTEP)."""
    memo = _CONTEXTS.get(id(view))
    if memo is None or memo[0] is not view:
        _CONTEXTS.clear()  # one view at a time (a new view replaces the old)
        memo = _CONTEXTS[id(view)] = (view, {})
    if len(memo[1]) >= _CONTEXTS_MAX:
        memo[1].clear()
    return memo[1]


_CONTEXTS: dict[int, tuple[NodeView, dict[tuple[object, ...], object]]] = {}
#: A VTEP has an entry per set of route targets it sends (an l2vni's, the
#: l3vni's) and per router MAC: 2,000 VTEPs of 4 l2vnis are 12,000 entries
#: (at 4,096 the memo was cleared over and over by a 200,000-route table).
#: Bounded all the same: a hostile peer's many VTEPs cost a recomputation,
#: not memory.
_CONTEXTS_MAX = 1 << 15


def _context(
    originator: str, vtep: str, route_targets: tuple[str, ...], view: NodeView
) -> _Context | Skip:
    """The checks of a path that do not depend on its route: the next hop,
    the originator, the importing domains (or the Skip)."""
    memo = _memo(view)
    key = ("ctx", originator, vtep, route_targets)
    found = memo.get(key)
    if found is None:
        try:
            found = _check_context(originator, vtep, route_targets, view)
        except Skip as exc:
            found = exc
        memo[key] = found
    return found  # type: ignore[return-value]


def _check_context(
    originator: str, vtep: str, route_targets: tuple[str, ...], view: NodeView
) -> _Context:
    if originator and originator == view.router_id:
        raise Skip("own-route", "our own route, reflected back")
    text, version, unusable = _nexthop(vtep)
    if not version:
        raise Skip("bad-next-hop", f"bad next-hop {vtep!r}")
    if text == view.vtep:
        raise Skip("own-route", "our own route (next-hop is our VTEP)")
    if version != view.family:
        raise Skip("next-hop-family", f"IPv{version} next-hop, our VTEP is IPv{view.family}")
    if unusable:
        raise Skip("bad-next-hop", f"{unusable} next-hop {vtep}")
    names = importing_domains(route_targets, view)
    if not names:
        rts = " ".join(route_targets) or "none"
        why = f"{SKIP_NO_ROUTE_TARGET}: route targets {rts} imported by no domain of this node"
        raise Skip(SKIP_NO_ROUTE_TARGET, why)
    return names, [view.domains[n] for n in names if n in view.domains], version


def _routed(
    originator: str, vtep: str, route_targets: tuple[str, ...], router_mac: str, view: NodeView
) -> _Routed | Skip:
    """A type-5 path's checks that do not depend on its prefix, and the
    entries its VTEP needs in each routed domain (neighbour and FDB entry of
    the router MAC): shared by all the prefixes of the VTEP."""
    memo = _memo(view)
    key = ("routed", originator, vtep, route_targets, router_mac)
    found = memo.get(key)
    if found is None:
        try:
            found = _check_routed(originator, vtep, route_targets, router_mac, view)
        except Skip as exc:
            found = exc
        memo[key] = found
    return found  # type: ignore[return-value]


def _check_routed(
    originator: str, vtep: str, route_targets: tuple[str, ...], router_mac: str, view: NodeView
) -> _Routed:
    context = _context(originator, vtep, route_targets, view)
    if isinstance(context, Skip):
        raise Skip(context.kind, str(context))
    names, domains, version = context
    routed = [d for d in domains if d.l3vni]
    if not routed:
        raise Skip("wrong-vni-kind", f"type-5 route for {', '.join(names)}: no l3vni")
    if not router_mac or router_mac == ZERO_MAC:
        # GoBGP sends a zero router MAC for "none"
        raise Skip("no-router-mac", "type-5 route without a router MAC")
    if not _unicast(router_mac):
        raise Skip("bad-router-mac", f"router MAC {router_mac} is not a unicast MAC")
    out: _Domains = []
    for d in routed:
        vni = d.l3vni
        shared = (
            NeighEntry(vni=vni, ip=vtep, mac=router_mac),
            FdbEntry(vni=vni, mac=router_mac, vtep=vtep),
        )
        keys = tuple(entry_key(e) for e in shared)
        mapped = None
        if version == 4:
            neigh = NeighEntry(vni=vni, ip=f"::ffff:{vtep}", mac=router_mac)
            mapped = (neigh, entry_key(neigh))
        out.append((d, shared, keys, mapped))
    return out, _owned(view, [d.name for d in routed])


def _l2vni(domain: DomainTarget, vni: int) -> int:
    """The device a type-2/3 goes on in ``domain``: the route's VNI when it
    is one of the domain's, else the domain's pod attachment."""
    return vni if vni in domain.l2vnis else domain.l2vnis[0]


@functools.lru_cache(maxsize=8192)
def _nexthop(address: str) -> tuple[str, int, str]:
    """A next-hop's canonical text, IP version (0: not an address) and why
    it is unusable as a VTEP ("": usable); cached: a fabric has few VTEPs
    and each sends many routes."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address, 0, "bad"
    if ip.is_unspecified:
        why = "unspecified"
    elif ip.is_loopback:
        why = "loopback"
    elif ip.is_multicast:
        why = "multicast"
    elif ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255"):
        why = "broadcast"
    elif ip.is_link_local:
        why = "link-local"
    elif ip.version == 4 and ip.is_reserved:
        why = "reserved"
    else:
        why = ""
    return str(ip), ip.version, why


@functools.lru_cache(maxsize=8192)
def _unicast(mac: str) -> bool:
    """A MAC that can be a host's: not zero, not multicast (broadcast is)."""
    try:
        first = int(mac.split(":")[0], 16)
    except ValueError:
        return False
    return mac != ZERO_MAC and not first & 1


_Net = tuple[int, int, int]  # (IP version, network as an integer, prefix length)

#: The netmask of each prefix length, per IP version.
_MASKS = {
    bits: [((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1) for plen in range(bits + 1)]
    for bits in (32, 128)
}


def _net(prefix: str) -> _Net | None:
    """A prefix as (version, network, length), host bits cleared; None if it
    is not one. ``inet_pton`` in C: a type-5 route's prefix is checked
    against the node's blocks and Service CIDRs, 40,000 distinct ones in a
    large fabric (``ipaddress`` objects cost about 10 us each)."""
    address, _, length = prefix.partition("/")
    family, version, bits = (socket.AF_INET6, 6, 128) if ":" in address else (socket.AF_INET, 4, 32)
    try:
        raw = socket.inet_pton(family, address)
        plen = int(length) if length else bits
    except (OSError, ValueError):
        return None
    if not 0 <= plen <= bits:
        return None
    return version, int.from_bytes(raw, "big") & _MASKS[bits][plen], plen


def _owned(view: NodeView, domains: list[str]) -> tuple[_Owned, ...]:
    """What the prefixes routed into ``domains`` must not fall inside, in
    the order they are checked: the Service CIDRs, then each domain's own
    blocks (parsed once per VTEP, not per prefix; a CIDR that does not
    parse holds nothing)."""
    named = [("service-cidr", cidr, f"the Service CIDR {cidr}") for cidr in view.service_cidrs]
    for domain in domains:
        named += [
            ("own-block", cidr, f"this node's block {cidr}")
            for dom, cidr in view.own_blocks
            if dom == domain
        ]
    out: list[_Owned] = []
    for kind, cidr, label in named:
        net = _net(cidr)
        if net is not None:
            version, network, plen = net
            mask = _MASKS[32 if version == 4 else 128][plen]
            out.append((version, network, plen, mask, kind, label))
    return tuple(out)


def _reserved(prefix: str, owned: tuple[_Owned, ...]) -> tuple[str, str] | None:
    """(kind, why) when a received prefix falls inside what the node owns."""
    net = _net(prefix)
    if net is None:
        return None
    version, network, plen = net
    for o_version, o_network, o_plen, mask, kind, label in owned:
        if version == o_version and plen >= o_plen and network & mask == o_network:
            return kind, f"{prefix} is inside {label}"
    return None


def entry_key(entry: KernelEntry) -> tuple[object, ...]:
    """What the kernel holds one of: an FDB entry per (device, MAC), but a
    flood entry per (device, VTEP); a neighbour per (bridge, IP); a route per
    (table, prefix, next-hop) (several next-hops: one ECMP route)."""
    # type() first (exact classes): called several times per route
    if type(entry) is KernelRoute:
        return ("route", entry.table, entry.prefix, entry.vtep)
    if type(entry) is NeighEntry:
        return ("neigh", entry.vni, entry.ip)
    if isinstance(entry, FdbEntry):
        if entry.mac == ZERO_MAC:
            return ("flood", entry.vni, entry.vtep)
        return ("fdb", entry.vni, entry.mac)
    if isinstance(entry, NeighEntry):
        return ("neigh", entry.vni, entry.ip)
    return ("route", entry.table, entry.prefix, entry.vtep)
