"""EVPN convergence on the lab: a pod ADDed on one node until a pod on
another node reaches it.

For each sample a pod is added on node A (the Pod object, its namespace,
the plugin's ADD, as kubelet does it) while a pod of the same tenant on node
B pings the new address every 20 ms (``ping -D``: each reply timestamped);
the figure is the time from the start of the ADD to the first reply. For
the l2vni tenant, B's kernel is watched too (``bridge monitor fdb`` in B's
namespace): the time until the new pod's MAC is programmed behind A's VTEP
there, which is the type-2 route's trip (A's ExaBGP, a route reflector,
B's ExaBGP, B's daemon, B's kernel). Samples rotate over the node pairs;
each pod is deleted again before the next sample.

* l3vni (vrf-42): the pod's block is announced already (type-5), so what is
  measured is the ADD and the local wiring;
* l2vni (vrf-300): a type-2 route per pod.

    python -m bench lab_convergence [--samples N]   (in the VM tier)

Prints a Markdown table, writes build/bench/lab_convergence.json.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from datetime import datetime

from testbed.lab import ClusterLab
from testbed.labdemo import pod_mac

from .lab_common import Pinger, kernel, lab_up, summary, table, write_report

PAIRS = [("k8s01", "k8s02"), ("k8s02", "k8s03"), ("k8s03", "k8s01")]


class FdbWatch:
    """``bridge -timestamp monitor fdb`` in a node's namespace."""

    def __init__(self, lab: ClusterLab, node: str) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.namespaces[node], "bridge", "-timestamp", "monitor", "fdb"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        return out

    @staticmethod
    def first(out: str, mac: str, dst: str) -> float | None:
        """When ``mac`` first showed up with ``dst`` (wall clock)."""
        stamp: float | None = None
        for line in out.splitlines():
            found = re.match(r"Timestamp: (.+?) (\d+) usec", line)
            if found:
                when = datetime.strptime(found.group(1), "%a %b %d %H:%M:%S %Y")
                stamp = when.timestamp() + int(found.group(2)) / 1e6
            elif line.startswith(mac) and f"dst {dst}" in line and not line.startswith("Deleted"):
                return stamp
        return None


def sample(lab: ClusterLab, namespace: str, a: str, b: str, n: int) -> dict[str, float]:
    observer = lab.pods[f"{namespace}/obs-{b}"]
    watch = FdbWatch(lab, b) if namespace == "l2" else None
    t0 = time.time()
    pod = lab.add_pod(a, namespace, f"conv-{n}")
    added = time.time()
    pinger = Pinger(observer.netns, pod.ip, 0.02, deadline=120)
    reply = pinger.first_reply(120)
    pinger.stop()
    out: dict[str, float] = {"add": added - t0}
    if reply is None:
        raise RuntimeError(f"{observer.key} never reached {pod.key} ({pod.ip})")
    out["reachable"] = reply - t0
    if watch is not None:
        time.sleep(1)
        text = watch.stop()
        mac = pod_mac(lab, pod)
        when = FdbWatch.first(text, mac, lab.topo.nodes[a].address)
        if when is not None:
            out["fdb"] = when - t0
    lab.delete_pod(pod)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench lab_convergence", description=__doc__)
    parser.add_argument("--samples", type=int, default=12, help="per tenant")
    args = parser.parse_args(sys.argv[1:])
    results: dict[str, dict[str, list[float]]] = {}
    with lab_up("benchconv") as lab:
        for namespace in ("default", "l2"):
            for node in lab.node_names():
                lab.add_pod(node, namespace, f"obs-{node}")
        for namespace in ("default", "l2"):
            got: dict[str, list[float]] = {"add": [], "reachable": [], "fdb": []}
            for n in range(args.samples):
                a, b = PAIRS[n % len(PAIRS)]
                for key, value in sample(lab, namespace, a, b, n).items():
                    got[key].append(value)
            results[namespace] = {k: v for k, v in got.items() if v}
            print(f"{namespace}: {summary(got['reachable'])}", flush=True)
    rows = []
    label = {"default": "l3vni (vrf-42, type-5 per block)", "l2": "l2vni (vrf-300, type-2 per pod)"}
    what = {
        "add": "the ADD itself",
        "reachable": "ADD start to the first reply from another node's pod",
        "fdb": "ADD start to the MAC in the other node's FDB (the type-2's trip)",
    }
    for namespace, got in results.items():
        for key, values in got.items():
            s = summary(values)
            rows.append(
                [
                    label[namespace],
                    what[key],
                    f"{s['p50'] * 1000:.0f}",
                    f"{s['p95'] * 1000:.0f}",
                    str(s["n"]),
                ]
            )
    print(f"\nEVPN convergence on the lab, kernel {kernel()}:\n")
    print(table(["tenant", "measured", "p50 ms", "p95 ms", "samples"], rows))
    path = write_report("lab_convergence", {"kernel": kernel(), "results": results})
    print(f"\n(wrote {path})")
    return 0
