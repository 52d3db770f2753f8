"""The single-node demo: a node, two pods through the real plugin, pings.

Run inside the VM tier when the kernel has no VRF device (``./just lab``
does that): ``python -m testbed.demo``. Exits non-zero if any step fails.
"""

from __future__ import annotations

import json
import os
import sys
import time

from .node import CnidNode, conflist_conf, sh


def step(msg: str) -> None:
    print(f"\n==> {msg}", flush=True)


def check(ok: bool, what: str) -> bool:
    print(f"    [{'ok' if ok else 'FAIL'}] {what}", flush=True)
    return ok


def main() -> int:
    suffix = str(os.getpid())
    node = CnidNode(name=f"demo-node-{suffix}")
    failures = 0
    try:
        step(f"node namespace {node.name}: underlay eth0 {node.underlay_addr}, default route")
        node.create()
        step("starting the daemon in the node namespace (cnid run --config server.ini)")
        t0 = time.monotonic()
        node.start()
        print(f"    ready after {time.monotonic() - t0:.1f}s", flush=True)
        print(node.cnictl("status").stdout, flush=True)

        pods = {}
        for name in ("pod-a", "pod-b"):
            step(f"kubelet creates pod default/{name}: netns, then CNI ADD through cnid-plugin")
            path = node.add_pod(f"{name}-{suffix}")
            cid = f"{name}-{suffix}-0123456789abcdef"
            run = node.plugin(
                "ADD", container_id=cid, netns=path, pod=("default", name), conf=conflist_conf()
            )
            failures += not check(run.rc == 0, f"ADD exit {run.rc} in {run.seconds * 1000:.1f} ms")
            if run.rc != 0:
                print(run.stdout, run.stderr)
                continue
            result = run.json
            ip = result["ips"][0]["address"]
            print(
                f"    {name}: eth0 {ip} gw {result['ips'][0]['gateway']}"
                f" host-if {result['interfaces'][0]['name']}"
            )
            pods[name] = (cid, path, ip.split("/")[0])
            out = sh("ip", "-br", "addr", "show", "eth0", ns=f"{name}-{suffix}")
            print(f"    in the pod: {out.stdout.strip()}")

        step("pings")
        if len(pods) == 2:
            a, b = pods["pod-a"], pods["pod-b"]
            failures += not check(node.ping(f"pod-a-{suffix}", b[2], 3), f"pod-a -> pod-b {b[2]}")
            failures += not check(node.ping(f"pod-b-{suffix}", a[2], 3), f"pod-b -> pod-a {a[2]}")
            for name, (_, _, ip) in pods.items():
                failures += not check(
                    node.ping(node.name, ip, 3, vrf="vrf-42"), f"node (vrf-42) -> {name} {ip}"
                )

        step("cnictl pods / cnictl ipam")
        print(node.cnictl("pods").stdout)
        print(node.cnictl("ipam").stdout, flush=True)

        step("CHECK and DEL through cnid-plugin")
        for name, (cid, path, _) in pods.items():
            run = node.plugin("CHECK", container_id=cid, netns=path, pod=("default", name))
            failures += not check(run.rc == 0, f"CHECK {name}: exit {run.rc} {run.stdout.strip()}")
            run = node.plugin("DEL", container_id=cid, netns=path, pod=("default", name))
            failures += not check(run.rc == 0, f"DEL {name}: exit {run.rc}")
        left = sh("ip", "-j", "link", "show", ns=node.name).stdout
        ours = [link["ifname"] for link in json.loads(left) if link["ifname"].startswith("cn")]
        failures += not check(not ours, f"no pod link left on the node ({ours or 'none'})")
        blocks = json.loads(node.cnictl("--json", "ipam").stdout)
        used = sum(b["allocated"] for b in blocks)
        failures += not check(used <= len(blocks), f"addresses released ({used} left = gateways)")
    except Exception as exc:  # the demo reports, then cleans up
        print(f"\nFAILED: {exc}\n--- daemon log ---\n{node.log_tail()}", flush=True)
        failures += 1
    finally:
        step("cleanup: daemon stopped by PID, namespaces removed")
        node.stop()
    print(f"\n{'demo OK' if not failures else f'demo FAILED ({failures} checks)'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
