"""The operator views behind ``cnictl bgp summary``, ``cnictl evpn routes``,
``cnictl evpn duplicates`` and ``cnictl vrf routes``: what ``vtysh`` showed for pyroute2-cni
(``show bgp l2vpn evpn summary``, ``show bgp l2vpn evpn route type N``,
``show ip route vrf NAME``), as JSON-ready dicts."""

from __future__ import annotations

import time
from typing import Any

import trio

from ..bgp import EvpnPath, ImetRoute, MacIpRoute, Neighbor, route_type
from ..core._domains import Domain
from ..dataplane import vrf_name
from ..dataplane._tables import table_routes
from ..evpn import importing_domains
from ..evpn._controller import EvpnController
from ..evpn._rib import MAX_PREFIX, STALE


def nlri_text(path: EvpnPath) -> str:
    """The route as FRR prints it: ``[2]:[0]:[48]:[mac]:[32]:[ip]``."""
    r = path.route
    if isinstance(r, MacIpRoute):
        text = f"[2]:[{r.etag}]:[48]:[{r.mac}]"
        if r.ip:
            text += f":[{32 if ':' not in r.ip else 128}]:[{r.ip}]"
        return text
    if isinstance(r, ImetRoute):
        return f"[3]:[{r.etag}]:[{32 if ':' not in r.ip else 128}]:[{r.ip}]"
    address, _, length = r.prefix.partition("/")
    return f"[5]:[{r.etag}]:[{length}]:[{address}]"


def _vnis(path: EvpnPath) -> str:
    r = path.route
    if isinstance(r, MacIpRoute) and r.l3vni:
        return f"{r.vni}/{r.l3vni}"
    return str(r.vni)


def _row(
    path: EvpnPath, source: str, state: str, originator: str = "", domains: tuple[str, ...] = ()
) -> dict[str, Any]:
    """``domains``: the node's domains a received route's targets import it
    into (none: ``no-route-target``)."""
    return {
        "type": route_type(path.route),
        "rd": path.route.rd,
        "route": nlri_text(path),
        "vni": _vnis(path),
        "nexthop": path.nexthop,
        "router_mac": path.router_mac,
        "route_targets": list(path.route_targets),
        "from": source,
        "originator": originator,
        "state": state,
        "domains": list(domains),
        "mac_mobility_seq": path.mac_mobility_seq,
        "sticky": path.sticky,
    }


def evpn_routes(
    evpn: EvpnController, *, rtype: int | None = None, vni: int | None = None
) -> list[dict[str, Any]]:
    rows = []
    for path in evpn.speaker.announced:
        rows.append(_row(path, "local", "announced"))
    skipped = evpn.table.skipped()
    for source, rp in evpn.table.paths():
        key = (source, rp.path.route.key)
        stale = source.startswith(STALE)
        why = skipped.get(key, "")
        refused = "" if why else evpn.refusal_of(evpn.table.entries(source, rp.path.route))
        if why:
            state = f"not programmed: {why}"
        elif refused:
            state = f"refused: {refused}"
        else:
            state = "stale" if stale else "programmed"
        domains = importing_domains(rp.path.route_targets, evpn.table.view)
        rows.append(_row(rp.path, source.removeprefix(STALE), state, rp.originator, domains))
    for source, rp in evpn.table.held():
        rows.append(_row(rp.path, source, f"not programmed: {MAX_PREFIX}", rp.originator))
    rows = [
        r
        for r in rows
        if (rtype is None or r["type"] == rtype)
        and (vni is None or str(vni) in r["vni"].split("/"))
    ]
    return sorted(rows, key=lambda r: (r["type"], r["rd"], r["route"], r["from"]))


def evpn_duplicates(evpn: EvpnController) -> dict[str, Any]:
    """The MACs flagged as duplicates (FRR's ``show evpn mac vni all
    duplicate``), and the detection's settings."""
    mobility = evpn.mobility
    now = trio.current_time()
    return {
        "max_moves": mobility.max_moves,
        "time": mobility.window,
        "moves_held": mobility.held,
        "duplicates": [
            {
                "vni": d.vni,
                "mac": d.mac,
                "moves": d.moves,
                "vteps": list(d.vteps),
                "local_seq": d.local_seq,
                "seq": d.seq,
                "detected_seconds_ago": round(now - d.detected, 1),
                "last_move_seconds_ago": round(now - d.last_move, 1),
            }
            for d in mobility.duplicates()
        ],
    }


def bgp_summary(evpn: EvpnController) -> dict[str, Any]:
    speaker = evpn.speaker
    config = speaker.config
    now = time.time()
    sent = len(speaker.announced)
    peers = []
    for address, peer in sorted(speaker.peers.items()):
        received = sum(evpn.table.counts(address).values())
        peers.append(
            {
                "address": address,
                "asn": peer.asn,
                "type": "ebgp" if peer.ebgp else "ibgp",
                "bfd": peer.bfd,
                "role": peer.role,
                "state": "established" if peer.state == "up" else peer.state,
                "uptime_seconds": round(now - peer.since, 1) if peer.since else 0.0,
                "received": received,
                "sent": sent if peer.state == "up" else 0,
                "updates": peer.updates,
                "flaps": peer.flaps,
                "last_error": peer.last_error,
                "held_back": evpn.table.held_count(address),
                "held_down": address in evpn.held_down,
            }
        )
    return {
        "router_id": evpn.identity.router_id,
        "asn": config.asn if config else evpn.identity.asn,
        "local_address": evpn.identity.vtep,
        "speaker": {
            "running": speaker.running,
            "pid": speaker.stats.pid if speaker.running else 0,
            "restarts": speaker.stats.restarts,
        },
        "announced": {str(k): v for k, v in speaker.announced_by_type().items()},
        "received": {str(k): v for k, v in evpn.table.counts().items()},
        "adopting": evpn.adopting,
        "problems": list(evpn.problems),
        "kernel_failures": [list(f) for f in evpn.kernel_failures],
        "mode": _mode(config.neighbors if config else ()),
        "peers": peers,
    }


def _mode(neighbors: tuple[Neighbor, ...]) -> str:
    """How the node peers: explicit neighbours and/or route reflectors, or
    the cluster's full mesh."""
    roles = {n.role for n in neighbors}
    parts = [
        name
        for role, name in (("neighbor", "neighbors"), ("route-reflector", "route-reflector"))
        if role in roles
    ]
    return " + ".join(parts) or "full-mesh"


async def vrf_routes(domain: Domain, evpn: EvpnController | None) -> dict[str, Any]:
    routes = await table_routes(domain.table)
    return {
        "domain": domain.name,
        "vrf": vrf_name(domain.vrf),
        "table": domain.table,
        "routes": [
            {
                "prefix": r.prefix,
                "type": r.type,
                "protocol": r.protocol,
                "nexthops": [{"via": n.via, "dev": n.dev, "onlink": n.onlink} for n in r.nexthops],
                "metric": r.metric,
            }
            for r in routes
        ],
    }


__all__ = ["bgp_summary", "evpn_duplicates", "evpn_routes", "nlri_text", "vrf_routes"]
