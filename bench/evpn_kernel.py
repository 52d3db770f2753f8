"""EVPN kernel state in bulk: ``apply_evpn`` against iproute2's batch mode
(``ip -batch`` for routes, ``bridge -batch`` for FDB entries), the same
entries, in the same namespace, in the same run.

In a namespace of its own: a bridge ``br-<vni>`` and a VXLAN device
``vx-<vni>`` (our aliases), N type-5 routes (distinct /26 prefixes in one
table via a few VTEPs, ``dev br-<vni> onlink proto 150``) and N FDB entries
(distinct MACs -> a few VTEPs; each is the VXLAN driver's entry plus the
bridge's entry on the VXLAN port, so iproute2 gets two lines per MAC, as
``apply_evpn`` sends two messages). Before every run the devices are deleted
and made again, which flushes everything they hold. The runs alternate
(ours, iproute2, ours, ...). ``dump_evpn`` of everything is timed too. For ours the process's CPU
(user + system, the kernel's work in ``send()`` included) is measured as
well: it is steadier than the wall clock on a busy machine.

Needs no VRF: runs on the host (``.venv/bin/python -m bench.evpn_kernel``).
Prints a Markdown table and writes JSON.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from cnid import dataplane as dp
from testbed.netns import Netns

VNI = 500
TABLE = 100


def _devices(ns: Netns) -> None:
    for name in (f"br-{VNI}", f"vx-{VNI}"):
        ns.ip("link", "del", name, check=False)
    ns.ip("link", "add", f"br-{VNI}", "address", "02:cd:00:00:01:f4", "type", "bridge")
    ns.ip(
        "link", "add", f"vx-{VNI}", "type", "vxlan", "id", str(VNI),
        "local", "192.0.2.1", "dstport", "4789", "nolearning",
    )  # fmt: skip
    ns.ip("link", "set", f"br-{VNI}", "alias", f"cnid:br:{VNI}", "up")
    ns.ip("link", "set", f"vx-{VNI}", "alias", f"cnid:vx:{VNI}", "master", f"br-{VNI}", "up")


def _entries(n: int, vteps: int) -> tuple[dp.KernelEvpn, dp.KernelEvpn]:
    tunnel = [f"192.0.2.{10 + i}" for i in range(vteps)]
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    routes = frozenset(
        dp.EvpnRoute(TABLE, f"{ipaddress.IPv4Address(base + 64 * i)}/26", tunnel[i % vteps], VNI)
        for i in range(n)
    )
    fdb = frozenset(
        dp.FdbEntry(VNI, "02:aa:" + (i + 1).to_bytes(4, "big").hex(":"), tunnel[i % vteps])
        for i in range(n)
    )
    return dp.KernelEvpn(routes=routes), dp.KernelEvpn(fdb=fdb)


def _ip_lines(state: dp.KernelEvpn, add: bool) -> list[str]:
    if add:
        return [
            f"route add {r.prefix} via {r.vtep} dev br-{r.vni} onlink table {r.table} proto 150"
            for r in state.routes
        ]
    return [f"route del {r.prefix} table {r.table} proto 150" for r in state.routes]


def _bridge_lines(state: dp.KernelEvpn, add: bool) -> list[str]:
    lines = []
    for e in state.fdb:
        dev = f"vx-{e.vni}"
        if add:
            lines.append(f"fdb replace {e.mac} dev {dev} self dst {e.vtep} permanent extern_learn")
            lines.append(f"fdb replace {e.mac} dev {dev} master static extern_learn")
        else:
            lines.append(f"fdb del {e.mac} dev {dev} self dst {e.vtep}")
            lines.append(f"fdb del {e.mac} dev {dev} master")
    return lines


def _run_batch(tool: str, ns: Netns, lines: list[str]) -> float:
    with tempfile.NamedTemporaryFile("w", prefix="bench-evpn-", suffix=".batch") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        start = time.perf_counter()
        out = subprocess.run([tool, "-n", ns.name, "-batch", f.name], capture_output=True)
        took = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{tool} -batch failed: {out.stderr.decode()[:500]}")
    return took


def _count(ns: Netns) -> tuple[int, int]:
    routes = ns.ip("route", "show", "table", str(TABLE), "proto", "150").count("\n")
    fdb = ns.run("bridge", "fdb", "show", "dev", f"vx-{VNI}").stdout.count("extern_learn")
    return routes, fdb


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _ours(state: dp.KernelEvpn, add: bool) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one apply_evpn."""
    empty = dp.KernelEvpn()
    cpu, start = _cpu(), time.perf_counter()
    result = await (dp.apply_evpn(state, empty) if add else dp.apply_evpn(empty, state))
    took, cpu = time.perf_counter() - start, _cpu() - cpu
    if result.failed:
        raise RuntimeError(f"apply_evpn failed: {result.failed[:3]}")
    return took, cpu


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    ns = Netns("bevpn")
    dp.set_node_netns(ns.fd)
    try:
        routes, fdb = _entries(args.entries, args.vteps)
        kinds: list[tuple[str, dp.KernelEvpn, str, Callable[[dp.KernelEvpn, bool], list[str]]]]
        kinds = [("routes", routes, "ip", _ip_lines), ("fdb", fdb, "bridge", _bridge_lines)]
        samples: dict[str, list[float]] = {}
        for kind, state, tool, lines in kinds:
            expect = (args.entries, 0) if kind == "routes" else (0, 2 * args.entries)
            add_lines, del_lines = lines(state, True), lines(state, False)
            for rep in range(args.reps):
                for who in ("ours", tool) if rep % 2 == 0 else (tool, "ours"):
                    _devices(ns)
                    if who == "ours":
                        took, cpu = await _ours(state, True)
                        samples.setdefault(f"{kind} add ours cpu", []).append(cpu)
                    else:
                        took = _run_batch(tool, ns, add_lines)
                    if _count(ns) != expect:
                        raise RuntimeError(f"{who} {kind}: {_count(ns)} programmed, not {expect}")
                    samples.setdefault(f"{kind} add {who}", []).append(took)
                    if who == "ours":
                        took, cpu = await _ours(state, False)
                        samples.setdefault(f"{kind} remove ours cpu", []).append(cpu)
                    else:
                        took = _run_batch(tool, ns, del_lines)
                    if _count(ns) != (0, 0):
                        raise RuntimeError(f"{who} {kind}: {_count(ns)} left after removal")
                    samples.setdefault(f"{kind} remove {who}", []).append(took)
        _devices(ns)
        both = dp.KernelEvpn(fdb=fdb.fdb, routes=routes.routes)
        await _ours(both, True)
        for _ in range(args.reps):
            start = time.perf_counter()
            got = await dp.dump_evpn([VNI], [TABLE])
            samples.setdefault("dump ours", []).append(time.perf_counter() - start)
            if got != both:
                raise RuntimeError("dump_evpn did not return what was applied")
        for tool, cmd in (
            ("ip", ["ip", "-n", ns.name, "route", "show", "table", str(TABLE)]),
            ("bridge", ["bridge", "-n", ns.name, "fdb", "show", "dev", f"vx-{VNI}"]),
        ):
            for _ in range(args.reps):
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                samples.setdefault(f"dump {tool}", []).append(time.perf_counter() - start)
        return samples
    finally:
        dp.set_node_netns(None)
        ns.close()


def _row(
    label: str,
    n: int,
    ours: list[float],
    cpu: list[float] | None,
    ref: list[float] | None,
    ref_name: str,
) -> str:
    mine = statistics.median(ours)
    cpu_ms = "-" if cpu is None else f"{statistics.median(cpu) * 1e3:.1f}"
    if ref is None:
        return f"| {label} | {n} | {mine * 1e3:.1f} | {cpu_ms} | {n / mine:,.0f} | - | - | - |"
    theirs = statistics.median(ref)
    return (
        f"| {label} | {n} | {mine * 1e3:.1f} | {cpu_ms} | {n / mine:,.0f}"
        f" | {ref_name} {theirs * 1e3:.1f} | {n / theirs:,.0f} | **{theirs / mine:.2f}** |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.evpn_kernel")
    parser.add_argument("--entries", type=int, default=10_000, help="routes, and FDB MACs")
    parser.add_argument("--vteps", type=int, default=4)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default="bench/results/evpn_kernel.json")
    args = parser.parse_args(argv)
    samples = trio.run(_bench, args)
    n = args.entries
    kernel = os.uname().release
    print(f"{n} entries each, {args.vteps} VTEPs, median of {args.reps} runs, kernel {kernel}")
    print()
    print(
        "| what | entries | ours ms | ours CPU ms | ours /s | iproute2 ms | iproute2 /s"
        " | ours/iproute2 rate |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, tool in (("routes", "ip"), ("fdb", "bridge")):
        for op in ("add", "remove"):
            ours, ref = samples[f"{kind} {op} ours"], samples[f"{kind} {op} {tool}"]
            cpu = samples[f"{kind} {op} ours cpu"]
            print(_row(f"{kind} {op}", n, ours, cpu, ref, f"`{tool} -batch`"))
    print(_row("dump_evpn (routes + fdb)", 2 * n, samples["dump ours"], None, None, ""))
    for tool in ("ip", "bridge"):
        took = statistics.median(samples[f"dump {tool}"])
        print(
            f"| `{tool}` show (text, for scale) | {n} | - | - | - | {took * 1e3:.1f}"
            f" | {n / took:,.0f} | - |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"samples": samples, "kernel": os.uname().release}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
