"""What this node announces: local state to EVPN paths (pure).

* per domain with an l3vni attachment: a type-5 route for each IPBlock this
  node holds in the domain's VRF (the VRF's RD, the domain's export route
  targets, the L3VNI as label, the router MAC of the domain's l3vni bridge,
  the VTEP as next-hop);
* per l2vni attachment: a type-3 (IMET) route (the VNI's RD, the domain's
  export route targets, ingress replication to the VTEP) and a type-2 route
  per pod MAC/IP on it; when the domain has an l3vni too, the type-2 route
  also carries the L3VNI label and the router MAC (symmetric IRB); and the
  MAC Mobility community when the MAC moved here from another VTEP (its
  sequence from ``_mobility``).

Export route targets: the domain's ``exportRouteTargets`` on every route of
the domain; without them, derived per route as FRR does by itself for a VNI
(its auto RT: the AS's low 16 bits, then the VNI, for an l2vni and for the
l3vni alike: ``AS:L3VNI`` on a type-5, ``AS:L2VNI`` on a type-3, both on an
IRB type-2), or by RFC 8365's rule (``routeTargetDerivation: rfc8365``), so
an FRR leaf imports them unconfigured.

Route distinguishers as FRR derives them: ``<router-id>:<index>``, one index
per VRF (type-5) and per L2VNI (type-2/3), unique on the node, the lowest
free one for a newcomer, kept while its VRF or VNI exists
(``rd_indexes``, ``_rt_policy.assign_rd_indexes``). The indexes live in
memory: a restarted daemon hands them out again in order (VRFs by number,
then VNIs), which gives the same RDs unless domains came and went while it
ran.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping

import msgspec

from ..bgp import EvpnPath, ImetRoute, MacIpRoute, PrefixRoute
from ..core._domains import Domain
from ..core._errors import ConfigError
from ..core._route_targets import RouteTarget, parse_route_target
from ..core._rt_policy import (
    assign_rd_indexes,
    auto_route_target,
    frr_rd,
    rfc8365_route_target,
)

log = logging.getLogger("cnid.evpn")


class LocalDomain(msgspec.Struct, frozen=True):
    domain: Domain
    #: The MAC of the domain's l3vni bridge ("" when it has no l3vni or the
    #: bridge does not exist yet).
    router_mac: str = ""


class LocalPod(msgspec.Struct, frozen=True):
    domain: str
    mac: str
    ip: str


class LocalBlock(msgspec.Struct, frozen=True):
    vrf: int
    cidr: str


#: What takes a route distinguisher: ("vrf", VRF number) or ("vni", L2VNI).
RdOwner = tuple[str, int]


class LocalState(msgspec.Struct, frozen=True):
    router_id: str
    asn: int
    vtep: str
    domains: tuple[LocalDomain, ...] = ()
    blocks: tuple[LocalBlock, ...] = ()
    pods: tuple[LocalPod, ...] = ()
    #: The RD indexes handed out so far (``rd_indexes``); an owner missing
    #: here takes the lowest free index.
    rd_indexes: dict[RdOwner, int] = {}
    #: (L2VNI, MAC) -> MAC mobility sequence of the pods' MACs that moved
    #: here (``_mobility``); a MAC absent or 0 is announced without the
    #: community.
    mac_seqs: dict[tuple[int, str], int] = {}


def rd_owners(domains: Iterable[Domain]) -> list[RdOwner]:
    """What takes an RD on the node, in the order new indexes are handed
    out: each VRF with an l3vni, then each l2vni, by number."""
    domains = list(domains)
    vrfs = sorted({d.vrf for d in domains if _l3vni(d)})
    vnis = sorted({a.vni for d in domains for a in d.attachments if a.type == "l2vni"})
    return [("vrf", v) for v in vrfs] + [("vni", v) for v in vnis]


def rd_indexes(domains: Iterable[Domain], previous: Mapping[RdOwner, int]) -> dict[RdOwner, int]:
    """An RD index per owner: the ones of ``previous`` kept, newcomers the
    lowest free (ConfigError when the 65535 indexes are used up)."""
    return assign_rd_indexes(previous, rd_owners(domains))


def export_targets(domain: Domain, asn: int, *vnis: int) -> tuple[str, ...]:
    """The route targets a route of ``domain`` naming ``vnis`` carries."""
    if domain.export_route_targets:
        found = [parse_route_target(t) for t in domain.export_route_targets]
    else:
        derive = (
            rfc8365_route_target
            if domain.route_target_derivation == "rfc8365"
            else auto_route_target
        )
        found = [derive(asn, vni) for vni in vnis if vni]
    return tuple(str(t) for t in _unique(found))


def _targets(domain: Domain, asn: int, problems: list[str], *vnis: int) -> tuple[str, ...]:
    """``export_targets``, or () with the problem noted (once per domain)."""
    try:
        return export_targets(domain, asn, *vnis)
    except ConfigError as exc:
        problem = f"domain {domain.name}: no route target to announce with: {exc.msg}"
        if problem not in problems:
            problems.append(problem)
        return ()


def _unique(targets: list[RouteTarget]) -> list[RouteTarget]:
    return list(dict.fromkeys(targets))


def _l3vni(domain: Domain) -> int:
    return next((a.vni for a in domain.attachments if a.type == "l3vni"), 0)


def _pod_l2vni(owner: LocalDomain | None) -> int:
    """The L2VNI a pod's MAC is announced in (0: none)."""
    if owner is None:
        return 0
    d = owner.domain
    l2 = next((a.vni for a in d.attachments if a.type == "l2vni"), 0)
    return l2 if l2 and d.pod_attachment.vni == l2 else 0


def local_macs(state: LocalState) -> dict[tuple[int, str], str]:
    """The (L2VNI, MAC) of the pods whose MACs this node announces, and
    each one's IP."""
    by_name = {d.domain.name: d for d in state.domains}
    out = {}
    for pod in state.pods:
        l2 = _pod_l2vni(by_name.get(pod.domain))
        if l2:
            out[(l2, pod.mac.lower())] = pod.ip
    return out


def local_paths(state: LocalState) -> tuple[frozenset[EvpnPath], list[str]]:
    """The paths to announce, and the problems found (one line each)."""
    paths: set[EvpnPath] = set()
    problems: list[str] = []
    rid, asn, vtep = state.router_id, state.asn, state.vtep
    by_name = {d.domain.name: d for d in state.domains}
    try:
        indexes = rd_indexes((ld.domain for ld in state.domains), state.rd_indexes)
    except ConfigError as exc:
        return frozenset(), [exc.msg]

    def rd_for(owner: RdOwner) -> str:
        return str(frr_rd(rid, indexes[owner]))

    for ld in state.domains:
        d = ld.domain
        l3 = _l3vni(d)
        if l3:
            if not ld.router_mac:
                problems.append(f"domain {d.name}: no router MAC yet (l3vni bridge missing)")
                continue
            rd = rd_for(("vrf", d.vrf))
            rts = _targets(d, asn, problems, l3)
            for block in state.blocks:
                if block.vrf != d.vrf or not rts:
                    continue
                net = ipaddress.ip_network(block.cidr, strict=False)
                paths.add(
                    EvpnPath(
                        PrefixRoute(rd=rd, prefix=str(net), vni=l3),
                        nexthop=vtep,
                        route_targets=rts,
                        router_mac=ld.router_mac,
                    )
                )
        for att in d.attachments:
            rts = _targets(d, asn, problems, att.vni) if att.type == "l2vni" else ()
            if not rts:
                continue
            paths.add(
                EvpnPath(
                    ImetRoute(rd=rd_for(("vni", att.vni)), ip=vtep, vni=att.vni),
                    nexthop=vtep,
                    route_targets=rts,
                )
            )
    for pod in state.pods:
        owner = by_name.get(pod.domain)
        l2 = _pod_l2vni(owner)
        if owner is None or not l2:
            continue
        d = owner.domain
        l3 = _l3vni(d) if owner.router_mac else 0
        rd = rd_for(("vni", l2))
        rts = _targets(d, asn, [], l2, l3)
        if not rts:
            continue
        paths.add(
            EvpnPath(
                MacIpRoute(rd=rd, mac=pod.mac, ip=pod.ip, vni=l2, l3vni=l3),
                nexthop=vtep,
                route_targets=rts,
                router_mac=owner.router_mac if l3 else "",
                mac_mobility_seq=state.mac_seqs.get((l2, pod.mac.lower())) or None,
            )
        )
    return frozenset(paths), problems
