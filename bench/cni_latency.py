"""CNI ADD/DEL latency and throughput: cnid against Debian's reference
``bridge`` + ``host-local`` plugins, measured in the same run on the same
machine. Both are executed the way a runtime does it: a process per call,
configuration on stdin, the CNI environment.

Run it where the kernel has a VRF device (``./just bench`` runs it in the VM
tier). Prints a Markdown table and writes JSON next to it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from testbed.node import CnidNode, conflist_conf, netns_add, netns_del

REF_DIR = Path("/usr/lib/cni")
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _enter_netns(path: str) -> Callable[[], None]:
    """A preexec_fn that moves the child into a network namespace with one
    setns(2): what a runtime's own process costs, without `ip netns exec`'s
    mount namespace and /sys remount."""

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)

    return enter


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


class Reference:
    """bridge + host-local in a node namespace of its own."""

    def __init__(self, tag: str) -> None:
        self.ns = f"bref-{tag}"
        self.data = Path(tempfile.mkdtemp(prefix="bench-hostlocal-"))
        self.conf = json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "benchref",
                "type": "bridge",
                "bridge": "cni-ref0",
                "isGateway": True,
                "ipMasq": False,
                "ipam": {
                    "type": "host-local",
                    "subnet": "10.99.0.0/16",
                    "dataDir": str(self.data),
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ).encode()

    def setup(self) -> None:
        netns_add(self.ns)

    def teardown(self) -> None:
        netns_del(self.ns)
        subprocess.run(["rm", "-rf", str(self.data)], check=False)

    def call(self, command: str, cid: str, netns: str) -> float:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": cid,
            "CNI_NETNS": netns,
            "CNI_IFNAME": "eth0",
            "CNI_PATH": str(REF_DIR),
        }
        start = time.perf_counter()
        out = subprocess.run(
            ["ip", "netns", "exec", self.ns, str(REF_DIR / "bridge")],
            input=self.conf,
            env=env,
            capture_output=True,
        )
        took = time.perf_counter() - start
        if out.returncode != 0:
            raise RuntimeError(f"reference {command} failed: {out.stdout!r} {out.stderr!r}")
        return took


class Ours:
    def __init__(self, tag: str) -> None:
        self.node = CnidNode(name=f"bcnid-{tag}")

    def setup(self) -> None:
        self.node.create().start()

    def teardown(self) -> None:
        self.node.stop()

    def call(self, command: str, cid: str, netns: str) -> float:
        run = self.node.plugin(command, container_id=cid, netns=netns, conf=conflist_conf())
        if run.rc != 0:
            raise RuntimeError(f"cnid {command} failed: {run.stdout} {run.stderr}")
        return run.seconds


def measure(impl: Any, pods: int, concurrency: int, tag: str) -> dict[str, Any]:
    names = [f"bp-{tag}-{i}" for i in range(pods)]
    for n in names:
        netns_add(n)
    try:

        def add(i: int) -> float:
            return float(impl.call("ADD", f"bench-{tag}-{i}", f"/run/netns/{names[i]}"))

        def delete(i: int) -> float:
            return float(impl.call("DEL", f"bench-{tag}-{i}", f"/run/netns/{names[i]}"))

        def run(fn: Callable[[int], float]) -> tuple[list[float], float]:
            start = time.perf_counter()
            if concurrency == 1:
                lat = [fn(i) for i in range(pods)]
            else:
                with ThreadPoolExecutor(concurrency) as pool:
                    lat = list(pool.map(fn, range(pods)))
            return lat, time.perf_counter() - start

        add_lat, add_wall = run(add)
        del_lat, del_wall = run(delete)
    finally:
        for n in names:
            netns_del(n)
    return {
        "add_p50_ms": pct(add_lat, 50) * 1e3,
        "add_p95_ms": pct(add_lat, 95) * 1e3,
        "del_p50_ms": pct(del_lat, 50) * 1e3,
        "del_p95_ms": pct(del_lat, 95) * 1e3,
        "add_ops_s": pods / add_wall,
        "del_ops_s": pods / del_wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=60)
    parser.add_argument("--out", default="bench/results/cni_latency.json")
    args = parser.parse_args()
    tag = str(os.getpid())
    results: dict[str, dict[str, Any]] = {}
    for label, impl in (("reference bridge+host-local", Reference(tag)), ("cnid", Ours(tag))):
        impl.setup()
        try:
            results[f"{label}, sequential"] = measure(impl, args.pods, 1, f"{tag}s")
            results[f"{label}, 10 concurrent"] = measure(impl, args.pods, 10, f"{tag}c")
        finally:
            impl.teardown()
    ref = results["reference bridge+host-local, sequential"]["add_p50_ms"]
    ours = results["cnid, sequential"]["add_p50_ms"]
    print("| run | ADD p50 ms | ADD p95 ms | DEL p50 ms | DEL p95 ms | ADD ops/s | DEL ops/s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, r in results.items():
        print(
            f"| {label} | {r['add_p50_ms']:.1f} | {r['add_p95_ms']:.1f} | {r['del_p50_ms']:.1f}"
            f" | {r['del_p95_ms']:.1f} | {r['add_ops_s']:.0f} | {r['del_ops_s']:.0f} |"
        )
    print(f"\ncnid ADD p50 / reference ADD p50 = {ours / ref:.2f} (target: <= 1.00)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {"results": results, "ratio_add_p50": ours / ref, "kernel": os.uname().release},
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
