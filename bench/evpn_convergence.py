"""Convergence: a pod added on one node until its route is programmed in
another node's kernel, p50/p95 over N pods; two of our nodes in a full mesh
(no route reflector) and through an FRR route reflector; the same with two
FRR EVPN leaves as the reference, in the same run.

    lan 172.30.0.0/16
     |-- rr   .0.1   FRR route reflector (bgpd -Z), for the "rr" topology
     |-- a    .0.11  cnid node (runner process): the pods are added here
     |-- b    .0.12  cnid node (runner process): its kernel is watched
     |-- l1   .0.4   FRR leaf (reference): the "pods" are added here
     `-- l2   .0.5   FRR leaf (reference): its kernel is watched

Ours, per pod (``EvpnNode.add_pod`` in node a's process: a namespace, a
veth wired as cnid wires it, the lease, then the journal record, which is
what the controller announces from):

* **l2vni** pod (vrf-301): a type-2 MAC/IP route; done when b's kernel has
  both the FDB entry (MAC -> a's VTEP on ``vx-301``) and the neighbour entry
  (IP -> MAC on ``br-301``);
* **l3vni** pod (vrf-42), each the first of a new block (the block of the
  previous sample is released): a type-5 route for the block; done when b's
  kernel has the route in table 42.

Then the pod is deleted (and for l3vni the block released) and the
withdrawal timed the same way, until b's kernel has none of it. b's kernel
is watched through its rtnetlink notifications (the multicast groups of
neighbours/FDB and IPv4 routes, read by a thread in the benchmark's
process): the time of a change is when the kernel announced it, no
polling. Times are reported from the start of ``add_pod`` ("ADD") and from
the journal record ("record": the pod is wired and recorded, what the CNI
ADD answers after), both on the machine's monotonic clock.

The reference, on FRR leaf l1 (zebra + bgpd): for type-2 a MAC and a
neighbour entry appear on its L2VNI bridge (``bridge fdb add MAC dev <port>
master static`` and ``ip neigh replace IP lladdr MAC dev br301 nud
reachable``: zebra learns a local MAC/IP, bgpd announces it), done when l2's
kernel has the FDB entry and the neighbour entry; for type-5 a kernel route
appears on l1 (``ip route add blackhole <prefix>``, bgpd ``redistribute
kernel``, so announced as type-5 in the L3VNI), done when l2's kernel has the
route. The clock starts before the commands (each a process of a few ms,
like the steps of ours' ADD).

Needs no VRF: runs on the host (``.venv/bin/python -m bench evpn_convergence``).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import FrameType
from typing import Any

from testbed.frr import FrrRouter, L2Vni, L3Vni, Neighbor, evpn_leaf, route_reflector
from testbed.jsoncmp import wait_for
from testbed.netlab import Lab, Lan

from ._evpn_lab import (
    ASN,
    L3VNI,
    NODES,
    RR,
    SUBNET,
    KernelEvent,
    Monitor,
    NodeProcess,
    machine,
    new_lab,
    pct,
    workdir,
)

L2VNI = 301
LEAVES = {"l1": "172.30.0.4", "l2": "172.30.0.5"}
TIMEOUT = 30.0


def ifindex(netns: str, name: str) -> int:
    out = subprocess.run(
        ["ip", "-n", netns, "-j", "link", "show", name], capture_output=True, text=True, check=True
    )
    return int(json.loads(out.stdout)[0]["ifindex"])


def stats(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": pct(values, 50) * 1e3,
        "p95_ms": pct(values, 95) * 1e3,
        "min_ms": min(values) * 1e3,
        "max_ms": max(values) * 1e3,
        "n": len(values),
    }


class Watch:
    """What "programmed" means in the watched kernel: all of ``wanted``
    (kinds and keys) seen after ``since``; the time of the last one."""

    def __init__(self, mon: Monitor) -> None:
        self.mon = mon

    def until(self, since: int, wanted: list[tuple[str, int, str, str | None]]) -> float:
        times = []
        for kind, index, key, value in wanted:

            def match(
                e: KernelEvent, k: str = kind, i: int = index, key: str = key, v: Any = value
            ) -> bool:
                return e.kind == k and e.ifindex == i and e.key == key and v in (None, e.value)

            times.append(self.mon.wait(since, match, TIMEOUT).at)
        return max(times)


# -- ours ------------------------------------------------------------------------------


def run_ours(lan: Lan, topology: str, args: argparse.Namespace) -> dict[str, Any]:
    a = NodeProcess("a", NODES["a"], lan, len(lan.ports), 1, args.workdir / f"{topology}-a")
    b = NodeProcess("b", NODES["b"], lan, len(lan.ports) + 1, 1, args.workdir / f"{topology}-b")
    mon: Monitor | None = None
    try:
        a.start()
        b.start()
        for node, other in ((a, b), (b, a)):
            if topology == "mesh":
                node.call("mesh", peers={other.name: other.address})
            else:
                node.call("reflectors", addresses=[RR])
        for node in (a, b):
            node.call("wait_up", timeout=60)
        time.sleep(args.settle)
        mon = Monitor(b.netns)
        watch = Watch(mon)
        vx, br = ifindex(b.netns, f"vx-{L2VNI}"), ifindex(b.netns, f"br-{L2VNI}")
        samples: dict[str, dict[str, list[float]]] = {}

        def record(kind: str, what: str, value: float) -> None:
            samples.setdefault(kind, {}).setdefault(what, []).append(value)

        for i in range(args.pods):
            # l2vni: a type-2
            since = mon.mark()
            pod = a.call("add_pod", name=f"l2p{i}", domain=f"vrf-{L2VNI}")
            done = watch.until(
                since,
                [("+fdb", vx, pod["mac"], NODES["a"]), ("+neigh", br, pod["ip"], pod["mac"])],
            )
            record("l2vni type-2", "add", done - pod["t0"])
            record("l2vni type-2", "add_from_record", done - pod["t1"])
            since = mon.mark()
            gone = a.call("delete_pod", name=f"l2p{i}")
            done = watch.until(
                since, [("-fdb", vx, pod["mac"], None), ("-neigh", br, pod["ip"], None)]
            )
            record("l2vni type-2", "delete", done - gone["t0"])
            # l3vni: the first pod of a block, a type-5
            since = mon.mark()
            pod = a.call("add_pod", name=f"l3p{i}", domain="vrf-42")
            block = str(ipaddress.ip_network(f"{pod['ip']}/26", strict=False))
            done = watch.until(since, [("+route", L3VNI, block, None)])
            record("l3vni type-5", "add", done - pod["t0"])
            record("l3vni type-5", "add_from_record", done - pod["t1"])
            since = mon.mark()
            gone = a.call("delete_pod", name=f"l3p{i}")
            a.call("release_domain", vrf=42)
            done = watch.until(since, [("-route", L3VNI, block, None)])
            record("l3vni type-5", "delete", done - gone["t0"])
            time.sleep(args.gap)
        status = b.call("status")
        return {"samples": samples, "overruns": mon.overruns, "b_restarts": status["restarts"]}
    finally:
        if mon is not None:
            mon.close()
        b.stop()
        a.stop()


# -- the reference ---------------------------------------------------------------------


def run_frr(
    lab: Lab, lan: Lan, ns: dict[str, str], topology: str, args: argparse.Namespace
) -> dict[str, Any]:
    leaves: dict[str, FrrRouter] = {}
    for name, address in LEAVES.items():
        other = next(a for n, a in LEAVES.items() if n != name)
        leaves[name] = lab.add(
            evpn_leaf(
                name,
                ns[name],
                ASN,
                address,
                vtep=address,
                neighbors=[Neighbor(RR if topology == "rr" else other)],
                l2vnis=[L2Vni(L2VNI)],
                l3vni=L3Vni(L3VNI, rt=f"{ASN}:{L3VNI}"),
            )
        )
    l1, l2 = leaves["l1"], leaves["l2"]
    mon: Monitor | None = None
    port = "hpod"
    try:
        for leaf in (l1, l2):
            leaf.start()
        for name, leaf in leaves.items():
            peer = RR if topology == "rr" else next(a for n, a in LEAVES.items() if n != name)
            wait_for(f"{name}'s session", leaf.peers, {peer: "Established"}, 60)
        # a local port on l1's L2VNI bridge for the "pods"' MACs
        l1.run("ip", "link", "add", port, "type", "veth", "peer", "name", f"{port}p")
        l1.run("ip", "link", "set", port, "master", f"br{L2VNI}", "up")
        l1.run("ip", "link", "set", f"{port}p", "up")
        # the "blocks": kernel routes on l1, redistributed (announced as type-5)
        l1.vtysh("configure terminal", f"router bgp {ASN}", "address-family ipv4 unicast",
                 "redistribute kernel")  # fmt: skip
        time.sleep(args.settle)
        mon = Monitor(ns["l2"])
        watch = Watch(mon)
        vx, br = ifindex(ns["l2"], f"vxlan{L2VNI}"), ifindex(ns["l2"], f"br{L2VNI}")
        samples: dict[str, dict[str, list[float]]] = {}

        def record(kind: str, what: str, value: float) -> None:
            samples.setdefault(kind, {}).setdefault(what, []).append(value)

        for i in range(args.pods):
            mac = f"0a:cc:00:00:{i >> 8:02x}:{i & 0xFF:02x}"
            ip = f"10.3.{100 + i // 200}.{1 + i % 200}"
            since = mon.mark()
            t0 = time.monotonic()
            l1.run("bridge", "fdb", "add", mac, "dev", port, "master", "static")
            l1.run(
                "ip", "neigh", "replace", ip, "lladdr", mac, "dev", f"br{L2VNI}", "nud", "reachable"
            )
            done = watch.until(since, [("+fdb", vx, mac, LEAVES["l1"]), ("+neigh", br, ip, mac)])
            record("l2vni type-2", "add", done - t0)
            since = mon.mark()
            t0 = time.monotonic()
            l1.run("ip", "neigh", "del", ip, "dev", f"br{L2VNI}")
            l1.run("bridge", "fdb", "del", mac, "dev", port, "master")
            done = watch.until(since, [("-fdb", vx, mac, None), ("-neigh", br, ip, None)])
            record("l2vni type-2", "delete", done - t0)
            prefix = f"10.77.{i // 4}.{64 * (i % 4)}/26"
            since = mon.mark()
            t0 = time.monotonic()
            l1.run("ip", "route", "add", "blackhole", prefix)
            done = watch.until(since, [("+route", 254, prefix, None)])
            record("l3vni type-5", "add", done - t0)
            since = mon.mark()
            t0 = time.monotonic()
            l1.run("ip", "route", "del", "blackhole", prefix)
            done = watch.until(since, [("-route", 254, prefix, None)])
            record("l3vni type-5", "delete", done - t0)
            time.sleep(args.gap)
        return {"samples": samples, "overruns": mon.overruns}
    finally:
        if mon is not None:
            mon.close()
        l1.run("ip", "link", "del", port, check=False)
        for leaf in (l2, l1):
            leaf.stop()


# -- the report ----------------------------------------------------------------------------


def report(res: dict[str, Any]) -> None:
    print(f"\n{res['date']}, {res['machine']}; {res['pods']} pods per kind and topology")
    print("\n| topology | who | route | ADD p50 ms | ADD p95 ms | from the record p50 / p95 ms |"
          " DEL p50 ms | DEL p95 ms |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for topology, by_who in res["results"].items():
        for who, kinds in by_who.items():
            for kind, s in kinds.items():
                rec = s.get("add_from_record")
                rec_txt = f"{rec['p50_ms']:.1f} / {rec['p95_ms']:.1f}" if rec else "-"
                print(f"| {topology} | {who} | {kind} | {s['add']['p50_ms']:.1f} | "
                      f"{s['add']['p95_ms']:.1f} | {rec_txt} | {s['delete']['p50_ms']:.1f} | "
                      f"{s['delete']['p95_ms']:.1f} |")  # fmt: skip
    for topology, r in res["ratios"].items():
        print(f"{topology}: ours / FRR (p50): " + ", ".join(f"{k} {v:.2f}" for k, v in r.items()))


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench evpn_convergence")
    parser.add_argument("--pods", type=int, default=30, help="pods per kind and topology")
    parser.add_argument("--topology", choices=("mesh", "rr"), default=None)
    parser.add_argument("--only", choices=("ours", "frr"), default=None)
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between pods")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/evpn_convergence.json"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lab = new_lab("bc")
    args.workdir = workdir("conv")
    topologies = [t for t in ("mesh", "rr") if args.topology in (None, t)]
    raw: dict[str, dict[str, Any]] = {t: {} for t in topologies}
    try:
        lan = lab.lan("lan", SUBNET)
        rr = lab.add(
            route_reflector("rr", lab.netns("rr", lan=lan, cidr=f"{RR}/16"), ASN, RR,
                            listen_range=SUBNET)
        )  # fmt: skip
        rr.start()
        ns = {n: lab.netns(n, lan=lan, cidr=f"{a}/16") for n, a in LEAVES.items()}
        for topology in topologies:
            for who in ("ours", "frr"):
                if args.only not in (None, who):
                    continue
                print(f"{topology}: {who} ...", flush=True)
                if who == "ours":
                    raw[topology][who] = run_ours(lan, topology, args)
                else:
                    raw[topology][who] = run_frr(lab, lan, ns, topology, args)
    finally:
        lab.stop()
        shutil.rmtree(args.workdir, ignore_errors=True)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    ratios: dict[str, dict[str, float]] = {}
    for topology, by_who in raw.items():
        results[topology] = {
            who: {
                kind: {what: stats(v) for what, v in whats.items()}
                for kind, whats in r["samples"].items()
            }
            for who, r in by_who.items()
        }
        if "ours" in results[topology] and "frr" in results[topology]:
            ours, frr = results[topology]["ours"], results[topology]["frr"]
            ratios[topology] = {}
            for kind in ours:
                ref = frr[kind]["add"]["p50_ms"]
                ratios[topology][f"{kind} ADD"] = ours[kind]["add"]["p50_ms"] / ref
                ratios[topology][f"{kind} record"] = ours[kind]["add_from_record"]["p50_ms"] / ref
                ratios[topology][f"{kind} DEL"] = (
                    ours[kind]["delete"]["p50_ms"] / frr[kind]["delete"]["p50_ms"]
                )
    res = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "pods": args.pods,
        "results": results,
        "ratios": ratios,
        "raw": raw,
    }
    args.out.write_text(json.dumps(res, indent=2))
    report(res)
    print(f"\nraw: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
