"""What this node announces: local state to EVPN paths (pure).

* per domain with an l3vni attachment: a type-5 route for each IPBlock this
  node holds in the domain's VRF (RD ``<router-id>:<vrf>``, route target
  ``<asn>:<vrf>``, the L3VNI as label, the router MAC of the domain's l3vni
  bridge, the VTEP as next-hop);
* per l2vni attachment: a type-3 (IMET) route (RD ``<router-id>:<vni>``,
  route target ``<asn>:<vni>``, ingress replication to the VTEP) and a
  type-2 route per pod MAC/IP on it; when the domain has an l3vni too, the
  type-2 route also carries the L3VNI label, the domain's route target and
  the router MAC (symmetric IRB), and the MAC Mobility community when the
  MAC moved here from another VTEP (its sequence from ``_mobility``).

Route targets are what FRR derives by itself for a VNI (its auto RT: the
AS's low 16 bits, then the VNI, for an l2vni and for the l3vni alike), so an
FRR leaf imports them unconfigured.
A route distinguisher of type 1 holds a 16-bit number: VRF and VNI numbers
above 65535 are folded (``n & 0xFFFF``) and a clash of two folded numbers on
one node is reported, not announced twice.
"""

from __future__ import annotations

import ipaddress
import logging

import msgspec

from ..bgp import EvpnPath, ImetRoute, MacIpRoute, PrefixRoute
from ..core._domains import Domain
from ..core._rt_policy import auto_route_target

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


class LocalState(msgspec.Struct, frozen=True):
    router_id: str
    asn: int
    vtep: str
    domains: tuple[LocalDomain, ...] = ()
    blocks: tuple[LocalBlock, ...] = ()
    pods: tuple[LocalPod, ...] = ()
    #: (L2VNI, MAC) -> MAC mobility sequence of the pods' MACs that moved
    #: here (``_mobility``); a MAC absent or 0 is announced without the
    #: community.
    mac_seqs: dict[tuple[int, str], int] = {}


def rd_number(n: int) -> int:
    return n & 0xFFFF


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
    used_rd: dict[int, str] = {}

    def rd_for(number: int, owner: str) -> str | None:
        folded = rd_number(number)
        holder = used_rd.setdefault(folded, owner)
        if holder != owner:
            problems.append(f"{owner}: route distinguisher {rid}:{folded} is {holder}'s already")
            return None
        return f"{rid}:{folded}"

    for ld in state.domains:
        d = ld.domain
        l3 = _l3vni(d)
        if l3:
            if not ld.router_mac:
                problems.append(f"domain {d.name}: no router MAC yet (l3vni bridge missing)")
                continue
            rd = rd_for(d.vrf, f"vrf {d.vrf}")
            if rd is None:
                continue
            for block in state.blocks:
                if block.vrf != d.vrf:
                    continue
                net = ipaddress.ip_network(block.cidr, strict=False)
                paths.add(
                    EvpnPath(
                        PrefixRoute(rd=rd, prefix=str(net), vni=l3),
                        nexthop=vtep,
                        route_targets=(str(auto_route_target(asn, l3)),),
                        router_mac=ld.router_mac,
                    )
                )
        for att in d.attachments:
            if att.type != "l2vni":
                continue
            rd = rd_for(att.vni, f"vni {att.vni}")
            if rd is None:
                continue
            paths.add(
                EvpnPath(
                    ImetRoute(rd=rd, ip=vtep, vni=att.vni),
                    nexthop=vtep,
                    route_targets=(str(auto_route_target(asn, att.vni)),),
                )
            )
    for pod in state.pods:
        owner = by_name.get(pod.domain)
        l2 = _pod_l2vni(owner)
        if owner is None or not l2:
            continue
        d = owner.domain
        l3 = _l3vni(d) if owner.router_mac else 0
        rd = f"{rid}:{rd_number(l2)}"
        rts = tuple(str(auto_route_target(asn, vni)) for vni in (l2, l3) if vni)
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
