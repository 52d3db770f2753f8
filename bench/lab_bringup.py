"""How long the lab takes to come up: each step of ``ClusterLab.up`` (the API
server, namespaces and links, FRR, the Kubernetes objects, the three
daemons, every BGP session established), then the demo's (the tenants'
CRs programmed on every node, a pod per tenant on every node, EVPN
convergence, the ping matrix).

    python -m bench lab_bringup [--runs N]      (needs a VRF: in the VM tier,
    python -m testbed.vm -- .venv/bin/python -m bench lab_bringup)

Prints a Markdown table (median of the runs per step) and writes
build/bench/lab_bringup.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from testbed.lab import DEFAULT_TOPOLOGY, ClusterLab, Progress
from testbed.labdemo import apply_demo, ping_matrix, start_pods, wait_converged
from testbed.topology import load

from .lab_common import kernel, table, write_report

STEPS = [
    ("api", "API server (emulation) ready"),
    ("wiring", "namespaces and links"),
    ("frr", "FRR: 2 route reflectors, 1 leaf"),
    ("objects", "Nodes, VRFNodeConfigs"),
    ("daemons", "3 cnid daemons ready (in parallel)"),
    ("bgp", "every BGP session established"),
    ("crs", "demo CRs programmed on every node"),
    ("pods", "12 pods (4 tenants x 3 nodes)"),
    ("converge", "EVPN convergence (every route programmed)"),
    ("matrix", "ping matrix (156 pings, 12 at once)"),
]


def one_run(name: str) -> dict[str, float]:
    progress = Progress(quiet=True)
    lab = ClusterLab(load(DEFAULT_TOPOLOGY), name=name, progress=progress)
    t0 = time.monotonic()
    try:
        lab.up()
        up = time.monotonic() - t0
        with progress.step("crs", "crs"):
            apply_demo(lab)
        with progress.step("pods", "pods"):
            pods = start_pods(lab)
        with progress.step("converge", "converge"):
            wait_converged(lab, pods)
        with progress.step("matrix", "matrix"):
            matrix = ping_matrix(lab, pods)
        if not matrix.ok:
            raise RuntimeError(f"the ping matrix is not as expected: {matrix.mismatches}")
        times = {k: progress.times.get(k, 0.0) for k, _ in STEPS}
        times["up"] = up
        times["total"] = time.monotonic() - t0
        return times
    finally:
        lab.down()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench lab_bringup", description=__doc__)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(sys.argv[1:])
    runs = []
    for i in range(args.runs):
        runs.append(one_run(f"benchup{i}"))
        print(
            f"run {i + 1}: up {runs[-1]['up']:.1f} s, total {runs[-1]['total']:.1f} s", flush=True
        )
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    rows = [[what, f"{med[key]:.1f}"] for key, what in STEPS]
    rows.append(
        [
            "**lab up** (`ClusterLab.up`: the steps above to the BGP sessions)",
            f"**{med['up']:.1f}**",
        ]
    )
    rows.append(
        [
            "**lab up, demo and matrix** (what `./just lab` does before the summary)",
            f"**{med['total']:.1f}**",
        ]
    )
    print(f"\nlab bring-up, kernel {kernel()}, median of {len(runs)} run(s):\n")
    print(table(["step", "seconds"], rows))
    path = write_report("lab_bringup", {"kernel": kernel(), "runs": runs, "median": med})
    print(f"\n(wrote {path})")
    return 0
