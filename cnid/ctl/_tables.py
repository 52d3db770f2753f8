"""Plain-text tables for cnictl, in the layout operators know from kubectl."""

from __future__ import annotations

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
    if command == "status":
        lines = [
            f"node:    {data['node']}",
            f"version: {data['version']}",
            f"ready:   {'yes' if data['ready'] else 'no'}",
            f"uptime:  {data['uptime_seconds']}s",
            f"pods:    {data['pods']}",
            "components:",
            *(f"  {c:<12} {state}" for c, state in data["components"].items()),
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
        lines.append(
            table(["DOMAIN", "VRF", "TABLE", "PREFIX", "ATTACHMENTS", "DEVICE", "PODS"], rows)
        )
        return "\n".join(lines)
    if command == "pods":
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
    if command == "ipam":
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
    if command == "ipam-allocations":
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
    return str(data)
