"""Plain-text tables for cnictl, in the layout operators know from kubectl."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [headers, *rows]
    ]
    return "\n".join(lines)


def render(command: str, data: Any) -> str:
    """cnictl's text for ``command``'s answer ``data`` (the control
    server's JSON); an answer of no known command as Python prints it."""
    renderer = _RENDERERS.get(command)
    return renderer(data) if renderer is not None else str(data)


def _status(data: Any) -> str:
    lines = [
        f"node:    {data['node']}",
        f"version: {data['version']}",
        f"ready:   {'yes' if data['ready'] else 'no'}",
        f"uptime:  {data['uptime_seconds']}s",
        f"pods:    {data['pods']}",
        "components:",
        *(f"  {c:<12} {state}" for c, state in data["components"].items()),
        *_startup(data.get("startup") or {}),
        "",
    ]
    rows = []
    for d in data["domains"]:
        links = d["links"] or {}
        atts = ",".join(f"{a['type']}:{a['vni']}" for a in d["attachments"])
        rows.append(
            [
                d["name"],
                str(d["vrf"]),
                str(d["table"]),
                d["prefix"],
                atts,
                links.get("vrf") or "-",
                str(d["pods"]),
            ]
        )
    lines.append(table(["DOMAIN", "VRF", "TABLE", "PREFIX", "ATTACHMENTS", "DEVICE", "PODS"], rows))
    return "\n".join(lines)


def _pods(data: Any) -> str:
    rows = [
        [
            f"{p['namespace']}/{p['pod']}" if p["pod"] else "-",
            p["container_id"][:12],
            p["ifname"],
            p["domain"],
            p["address"],
            p["host_ifname"],
            p["state"],
        ]
        for p in data
    ]
    return table(["POD", "CONTAINER", "IF", "DOMAIN", "ADDRESS", "HOST-IF", "STATE"], rows)


def _ipam(data: Any) -> str:
    rows = [
        [
            b["name"],
            b["cidr"],
            b["node"],
            str(b["vrf"]),
            str(b["allocated"]),
            str(b["capacity"]),
        ]
        for b in data
    ]
    return table(["NAME", "CIDR", "NODE", "VRF", "ALLOCATED", "CAPACITY"], rows)


def _ipam_allocations(data: Any) -> str:
    rows = [
        [
            a["block"],
            a["address"],
            a["kind"],
            a.get("pod_namespace", ""),
            a.get("pod_name", ""),
            a.get("container_id", "")[:12],
            a.get("ifname", ""),
        ]
        for a in data
    ]
    return table(["BLOCK", "ADDRESS", "KIND", "NAMESPACE", "POD", "CONTAINER", "IFNAME"], rows)


def _evpn_routes(data: Any) -> str:
    rows = [
        [
            str(r["type"]),
            r["rd"],
            r["route"],
            r["vni"],
            r["nexthop"],
            r["router_mac"] or "-",
            ",".join(r["route_targets"]) or "-",
            ",".join(r.get("domains", ())) or "-",
            r["from"],
            r["state"],
        ]
        for r in data
    ]
    headers = ["TYPE", "RD", "ROUTE", "VNI", "NEXTHOP", "ROUTER-MAC", "RT", "DOMAINS", "FROM"]
    return table([*headers, "STATE"], rows)


def _evpn_duplicates(data: Any) -> str:
    head = (
        f"MACs flagged as duplicates ({data['max_moves']} moves in {data['time']:.0f}s; "
        f"0 moves: detection off)"
    )
    rows = [
        [
            str(d["vni"]),
            d["mac"],
            str(d["moves"]),
            " -> ".join(d["vteps"]),
            str(d["seq"]),
            f"{d['detected_seconds_ago']:.0f}s ago",
        ]
        for d in data["duplicates"]
    ]
    return head + "\n" + table(["VNI", "MAC", "MOVES", "VTEPS", "SEQ", "DETECTED"], rows)


def _vrf_routes(data: Any) -> str:
    rows = []
    for r in data["routes"]:
        hops = r["nexthops"] or [{"via": "", "dev": "", "onlink": False}]
        for i, hop in enumerate(hops):
            via = hop["via"] + (" onlink" if hop["onlink"] else "")
            rows.append(
                [
                    r["prefix"] if i == 0 else "",
                    r["type"] if i == 0 else "",
                    r["protocol"] if i == 0 else "",
                    via.strip() or "-",
                    hop["dev"] or "-",
                ]
            )
    head = f"VRF {data['vrf']} (domain {data['domain']}, table {data['table']})"
    return head + "\n" + table(["PREFIX", "TYPE", "PROTO", "VIA", "DEV"], rows)


def _underlay_routes(data: Any) -> str:
    """One line per next hop, like ``_vrf_routes``; the neighbours that
    sent the prefix and what the kernel holds (``-``: not installed)."""
    rows = []
    for r in data["entries"]:
        hops = r["nexthops"] or ["-"]
        state = "adopted" if r.get("adopted") else ("error" if r.get("error") else "")
        for i, hop in enumerate(hops):
            installed = "yes" if hop in r["installed"] else "no"
            rows.append(
                [
                    r["prefix"] if i == 0 else "",
                    hop,
                    ",".join(r["neighbors"]) or "-" if i == 0 else "",
                    installed,
                    state if i == 0 else "",
                ]
            )
    skipped = ", ".join(f"{k} {v}" for k, v in data["skipped"].items()) or "none"
    head = f"VTEP {data['vtep']}: {data['routes']} routes in the main table; skipped: {skipped}"
    return head + "\n" + table(["PREFIX", "NEXTHOP", "NEIGHBORS", "INSTALLED", "STATE"], rows)


def _startup(timeline: dict[str, float]) -> list[str]:
    """The start-up timeline: each milestone, its time since the process
    started and the phase that ended there (absent from older daemons)."""
    if not timeline:
        return []
    lines = ["startup (seconds since the process started, phase):"]
    previous = 0.0
    for name, at in timeline.items():
        lines.append(f"  {name:<19} {at:7.3f}  +{at - previous:.3f}")
        previous = at
    return lines


def _uptime(seconds: float) -> str:
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def _bgp_summary(data: Any) -> str:
    sp = data["speaker"]
    ann, rcv = data["announced"], data["received"]
    lines = [
        f"BGP router identifier {data['router_id']}, local AS number {data['asn']}, "
        f"local address {data['local_address']} ({data['mode']})",
        f"ExaBGP: {'running, pid ' + str(sp['pid']) if sp['running'] else 'not running'}, "
        f"restarts {sp['restarts']}",
        f"EVPN routes announced: type-2 {ann['2']}, type-3 {ann['3']}, type-5 {ann['5']}; "
        f"received: type-2 {rcv['2']}, type-3 {rcv['3']}, type-5 {rcv['5']}",
    ]
    if data["adopting"]:
        lines.append("kernel state of the previous run kept until the routes are re-learned")
    lines += [f"problem: {p}" for p in data["problems"]]
    lines.append("")
    rows = [
        [
            p["address"],
            str(p.get("asn", "")) or "-",
            p.get("type", "ibgp"),
            "yes" if p.get("bfd") else "no",
            p["role"],
            p["state"],
            _uptime(p["uptime_seconds"]) if p["uptime_seconds"] else "never",
            str(p["received"]),
            str(p["sent"]),
            str(p["flaps"]),
            p["last_error"] or "-",
        ]
        for p in data["peers"]
    ]
    lines.append(
        table(
            [
                "NEIGHBOR",
                "AS",
                "TYPE",
                "BFD",
                "ROLE",
                "STATE",
                "UP/DOWN",
                "PFXRCD",
                "PFXSNT",
                "FLAPS",
                "LAST-ERROR",
            ],
            rows,
        )
    )
    lines.append(f"\nTotal number of neighbors {len(rows)}")
    return "\n".join(lines)


#: cnictl's commands whose answer is shown as text, and how.
_RENDERERS: dict[str, Callable[[Any], str]] = {
    "status": _status,
    "pods": _pods,
    "ipam": _ipam,
    "ipam-allocations": _ipam_allocations,
    "bgp-summary": _bgp_summary,
    "evpn-routes": _evpn_routes,
    "evpn-duplicates": _evpn_duplicates,
    "vrf-routes": _vrf_routes,
    "underlay-routes": _underlay_routes,
}
