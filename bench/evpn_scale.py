"""50,000 EVPN routes from GoBGP through an FRR route reflector: how long
until they are all in our node's kernel, and what the node (and its ExaBGP)
costs in memory; the same load into an FRR EVPN leaf (bgpd + zebra) as the
reference, in the same run, on the same LAN and route reflector. Then all of
them withdrawn, until each kernel is clean.

    GoBGP .0.20 --AddPathStream--> gobgpd --iBGP--> FRR RR .0.1 --iBGP--> node .0.11 (cnid)
                                                                     `--> leaf .0.4 (FRR)

Two scenarios per receiver, each with a fresh receiver (and a fresh gobgpd:
once it has withdrawn a big table, gobgpd 3.10 takes 10-20 times longer to
take the next one):

* **inject**: the receiver's session is up and idle; the clock starts when
  the paths (encoded beforehand) are streamed to gobgpd (``AddPathStream``,
  1,000 a request) and stops when the receiver's kernel holds every entry.
  Withdrawal: gobgpd drops its whole EVPN table (``DeletePath`` of the
  family, ``gobgp global rib -a evpn del all``), until the kernel is clean.
  Withdrawing 50,000 paths one by one is not an option: gobgpd's MAC
  mobility scan makes 8,000 MAC/IP withdrawals take minutes.
  Here gobgpd and the route reflector set the pace (gobgpd takes the
  stream at 1,000-15,000 routes/s, with the load): this says whether a receiver
  keeps up with a fabric that learns 50,000 routes at once.
* **table**: the route reflector already holds the 50,000 routes when the
  receiver's session comes up (a node that starts, or restarts, in a big
  fabric); the clock starts when the route reflector sees the session
  Established (polled with vtysh, ~20 ms apart, from a thread started
  before the receiver) and stops when the kernel holds every entry. This is
  the receiver's own speed. Withdrawal: GoBGP's session to the route
  reflector is shut (``gobgp neighbor <rr> disable``), the reflector
  withdraws all 50,000 at once.

Only one receiver is connected at a time (ours or the leaf; runs
alternating), so each has the machine to itself and the route reflector's
work is the same for both.

The load (``--routes`` 50,000 by default), from ``--vteps`` 500 remote VTEPs
(each with its router MAC): ``--type2`` MAC/IP routes (8,000, 2,000 in each of
the ``--l2vnis`` 4 L2VNIs), one IMET (type-3) per VTEP and L2VNI (2,000), the
rest type-5 prefixes (/26) in the L3VNI 42 (40,000, 80 per VTEP). Why this
mix: a node receives mostly prefixes (every other node's blocks, the
fabric's external routes), one IMET per remote VTEP and L2VNI, and the
MAC/IPs of the L2VNI pods. Type-2 stays at 8,000 because gobgpd 3.10 scans
its whole EVPN table for MAC mobility on each added MAC/IP route (quadratic:
8,000 take 2.4-6 s, 16,000 about 20 s; testbed/gobgp.py), which would time
GoBGP rather than the receivers; they are sent first, into an empty table,
for the same reason.

What each route asks of a receiver's kernel (zebra and cnid make the same):
a type-5 a route ``via <VTEP> dev <l3vni bridge> onlink`` (+ per VTEP a
neighbour entry VTEP -> router MAC and an FDB entry router MAC -> VTEP, the
driver's and the bridge's); a type-2 an FDB entry (the driver's and the
bridge's) and a neighbour entry; a type-3 a flood remote. The kernel is
counted with strict netlink dumps (filtered by the kernel, headers only)
every ``--poll`` seconds, the same way for both; "in the kernel" is the first
poll that sees every entry. Our node also reports, from its own process,
when the first path reached its route table, when the table was complete and
when its installed state was (polled every 2 ms), and how long its
``apply_evpn`` calls took in all.

Memory: VmRSS / VmHWM from /proc/<pid>/status, of our node's process
(bench._evpn_runner: the Speaker, the EvpnController and the dataplane, in
its own trio loop) plus its ExaBGP child, ExaBGP's API relay and the
dataplane's kernel worker (``kworker``: ``apply_evpn``'s process); of bgpd +
zebra for the leaf. CPU: utime + stime of the same processes over the run.

Needs no VRF: runs on the host (``.venv/bin/python -m bench evpn_scale``).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import shutil
import signal
import statistics
import subprocess
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from testbed.frr import FrrRouter, L2Vni, L3Vni, Neighbor, evpn_leaf, route_reflector
from testbed.gobgp import GoBgp, GoBgpNeighbor, MacAdv, Multicast, Prefix, _Encoder, api
from testbed.jsoncmp import wait_for
from testbed.netlab import Lab, Lan

from ._evpn_lab import (
    ASN,
    GB,
    L3VNI,
    LEAF,
    NODES,
    PROTO_BGP,
    PROTO_EVPN,
    RR,
    SUBNET,
    KernelCounter,
    NodeProcess,
    l2vni_list,
    machine,
    new_lab,
    snapshot,
    spread,
    wait_counts,
    workdir,
)

Route = MacAdv | Multicast | Prefix
Memory = dict[str, dict[str, float]]


def vtep(i: int) -> str:
    return f"172.30.{16 + i // 200}.{1 + i % 200}"


def router_mac(i: int) -> str:
    return f"02:aa:00:00:{i >> 8:02x}:{i & 0xFF:02x}"


def load(args: argparse.Namespace) -> tuple[list[Route], dict[str, int]]:
    """The routes (type-2 first), and what they ask of a kernel."""
    vnis = l2vni_list(args.l2vnis)
    type2: list[Route] = []
    for i in range(args.type2):
        v = i % args.vteps
        vni = vnis[(i // args.vteps) % len(vnis)]
        n = i + 1
        mac = "0a:bb:" + n.to_bytes(4, "big").hex(":")
        ip = f"10.{vni - 270}.{(n >> 8) & 0xFF}.{n & 0xFF}"  # 10.31.x.y for VNI 301
        if ip.endswith(".0.1"):  # the anycast gateway of the domain: not a remote host
            ip = f"10.{vni - 270}.255.254"
        type2.append(MacAdv(mac, ip, vni, f"{vtep(v)}:{vni}", f"{ASN}:{vni}", vtep(v)))
    type3: list[Route] = [
        Multicast(vtep(v), vni, f"{vtep(v)}:{vni}", f"{ASN}:{vni}")
        for v in range(args.vteps)
        for vni in vnis
    ]
    n5 = args.routes - len(type2) - len(type3)
    if n5 <= 0:
        raise SystemExit("--routes must exceed the type-2 and type-3 routes")
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    type5: list[Route] = []
    for i in range(n5):
        v = i % args.vteps
        prefix = f"{ipaddress.IPv4Address(base + 64 * i)}/26"
        type5.append(
            Prefix(prefix, L3VNI, f"{vtep(v)}:{L3VNI}", f"{ASN}:{L3VNI}", router_mac(v), vtep(v))
        )
    vteps5 = min(args.vteps, n5)
    delta = {
        "routes": n5,
        "neigh": vteps5 + len(type2),
        "fdb_self": vteps5 + len(type2) + len(type3),
        "fdb_master": vteps5 + len(type2),
    }
    return type2 + type3 + type5, delta


# -- the injector -------------------------------------------------------------------


class Injector:
    """gobgpd, and the paths encoded once, streamed to it."""

    def __init__(self, gb: GoBgp, rr: FrrRouter, routes: list[Route], batch: int = 1000) -> None:
        self.gb, self.rr, self.n = gb, rr, len(routes)
        self.pb = pb = api()
        encoder = _Encoder(pb)
        paths = [encoder.path(r, False) for r in routes]
        self.requests = [
            pb.AddPathStreamRequest(table_type=pb.GLOBAL, paths=paths[i : i + batch])
            for i in range(0, len(paths), batch)
        ]

    def fresh(self) -> None:
        """A new gobgpd (empty), its session to the route reflector up."""
        self.gb.restart()
        wait_for("GoBGP's session", self.gb.peers, {RR: "established"}, 60)

    def send(self) -> float:
        pb = self.pb
        call = self.gb._grpc().stream_unary(
            "/apipb.GobgpApi/AddPathStream",
            request_serializer=pb.AddPathStreamRequest.SerializeToString,
            response_deserializer=pb.Empty.FromString,
        )
        call(iter(self.requests), timeout=600)
        return time.monotonic()

    def send_in_thread(self) -> tuple[threading.Thread, dict[str, Any]]:
        out: dict[str, Any] = {}

        def run() -> None:
            try:
                out["done"] = self.send()
            except Exception as exc:  # reported by the caller
                out["error"] = exc

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, out

    def delete_all(self) -> None:
        self.gb.gobgp("global", "rib", "-a", "evpn", "del", "all")

    def rr_received(self) -> int:
        peer = self.rr.summary().get("peers", {}).get(GB, {})
        return int(peer.get("pfxRcd", 0) or 0)

    def preload(self, timeout: float) -> float:
        """Into gobgpd and on to the route reflector (no receiver)."""
        start = time.monotonic()
        self.send()
        wait_for(
            "the RR holding GoBGP's routes",
            lambda: {"n": self.rr_received()},
            {"n": self.n},
            timeout,
        )
        return time.monotonic() - start


class SessionWatch:
    """A thread polling the route reflector until ``peer`` is Established:
    ``at`` is the monotonic time of the first poll that saw it."""

    def __init__(self, rr: FrrRouter, peer: str, timeout: float = 120.0) -> None:
        self.at: float | None = None
        self.error: str | None = None
        self._stop = threading.Event()

        def run() -> None:
            deadline = time.monotonic() + timeout
            while not self._stop.is_set() and time.monotonic() < deadline:
                asked = time.monotonic()
                try:
                    state = rr.summary().get("peers", {}).get(peer, {}).get("state")
                except Exception as exc:  # vtysh while bgpd is busy: try again
                    self.error = str(exc)
                    state = None
                if state == "Established":
                    self.at = asked
                    return
                time.sleep(0.01)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> float:
        self._stop.set()
        self._thread.join()
        if self.at is None:
            raise RuntimeError(f"session never seen Established ({self.error})")
        return self.at


# -- receivers ----------------------------------------------------------------------


class Ours:
    """Our node in a runner process; its kernel counted in its namespace."""

    name = "ours"

    def __init__(self, lan: Lan, args: argparse.Namespace, tag: str) -> None:
        self.node = NodeProcess(
            "a",
            NODES["a"],
            lan,
            len(lan.ports),
            args.l2vnis,
            args.workdir / tag,
            log_level=args.log_level,
        )
        self.args = args
        self.counter: KernelCounter | None = None
        self.peer = NODES["a"]

    def start(self, profile: bool = False) -> None:
        self.node.start()
        vnis = [L3VNI, *l2vni_list(self.args.l2vnis)]
        self.counter = KernelCounter(
            self.node.netns, L3VNI, PROTO_EVPN, [f"br-{v}" for v in vnis], [f"vx-{v}" for v in vnis]
        )
        if profile:
            self.node.call("profile", on=True)
        self.node.call("reflectors", addresses=[RR])

    def wait_up(self) -> None:
        self.node.call("wait_up", timeout=120)

    def status(self) -> dict[str, Any]:
        return self.node.call("status")

    def memory(self) -> Memory:
        mem: Memory = self.status()["memory"]
        return mem

    def stop(self) -> None:
        if self.counter is not None:
            self.counter.close()
        self.node.stop()


class Frr:
    """An FRR EVPN leaf with the same VNIs, in a namespace of the lab."""

    name = "frr"

    def __init__(self, lab: Lab, leaf_ns: str, args: argparse.Namespace) -> None:
        self.vnis = [L3VNI, *l2vni_list(args.l2vnis)]
        self.leaf: FrrRouter = lab.add(
            evpn_leaf(
                "leaf",
                leaf_ns,
                ASN,
                LEAF,
                vtep=LEAF,
                neighbors=[Neighbor(RR)],
                l2vnis=[L2Vni(v) for v in self.vnis[1:]],
                l3vni=L3Vni(L3VNI, rt=f"{ASN}:{L3VNI}"),
            )
        )
        self.netns = leaf_ns
        self.counter: KernelCounter | None = None
        self.peer = LEAF

    def start(self, profile: bool = False) -> None:
        self.leaf.start()
        self.counter = KernelCounter(
            self.netns,
            254,
            PROTO_BGP,
            [f"br{v}" for v in self.vnis],
            [f"vxlan{v}" for v in self.vnis],
        )

    def wait_up(self) -> None:
        wait_for("the leaf's session", self.leaf.peers, {RR: "Established"}, 60)

    def memory(self) -> Memory:
        return snapshot(self.leaf.pids)

    def stop(self) -> None:
        if self.counter is not None:
            self.counter.close()
        self.leaf.stop()


Receiver = Ours | Frr


class Sampler:
    """``py-spy record`` (``--py-spy``: its path) of our node's process and
    of its ExaBGP, all threads, while a phase runs (folded stacks; the
    withdrawal's are tagged ``w``)."""

    def __init__(self, args: argparse.Namespace, rx: Receiver, tag: str, memory: Memory) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        if not args.py_spy or not isinstance(rx, Ours):
            return
        deadline = time.monotonic() + 10.0
        while "exabgp" not in memory and time.monotonic() < deadline:
            time.sleep(0.05)  # the speaker starts ExaBGP after the node
            memory = rx.memory()
        for name in ("node", "exabgp", "kworker"):
            if name not in memory:
                continue
            out = args.out.with_name(f"{args.out.stem}.{tag}.{name}.folded")
            cmd = [
                args.py_spy,
                "record",
                "--pid",
                str(int(memory[name]["pid"])),
                "--threads",
                "--rate",
                str(args.py_spy_rate),
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
                *(["--gil"] if args.py_spy_gil else []),
            ]
            self.procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        time.sleep(1.0)  # py-spy attaches

    def stop(self) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def plus(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a[k] + b.get(k, 0) for k in a}


def rss(snap: Memory, key: str = "VmRSS") -> float:
    return sum(p.get(key, 0) for p in snap.values()) / 1024


def cpu(before: Memory, after: Memory) -> dict[str, float]:
    # a process started in between (ExaBGP, once the node peers) counts from 0
    return {name: after[name]["cpu"] - before.get(name, {}).get("cpu", 0.0) for name in after}


def zero(counts: dict[str, int]) -> dict[str, int]:
    return {k: 0 for k in counts}


def node_times(rx: Receiver, watch: dict[str, Any], t0: float) -> dict[str, Any]:
    out = {k: watch[k] - t0 for k in ("first_path", "all_paths", "installed_at") if watch.get(k)}
    log = watch.get("apply_log", ())
    out["apply_log"] = [(round(t - t0, 3), n, round(s, 3)) for t, n, s in log]
    out.update({k: watch[k] for k in ("applies", "apply_entries", "apply_seconds")})
    return out


def inject_run(
    rx: Receiver, inj: Injector, delta: dict[str, int], args: argparse.Namespace
) -> dict[str, Any]:
    """Scenario "inject": the receiver up and idle, then 50,000 routes."""
    inj.fresh()
    rx.start()
    try:
        rx.wait_up()
        assert rx.counter is not None
        time.sleep(args.settle)
        base = rx.counter.counts()
        out: dict[str, Any] = {"base": base}
        before = rx.memory()
        sampler = Sampler(args, rx, f"inject{args.rep}", before)
        if isinstance(rx, Ours):
            status = rx.status()
            base_paths = status["paths"]
            base_installed = sum(status["installed"].values())
            want = base_installed + delta["routes"] + delta["neigh"] + delta["fdb_self"]
            if args.profile:
                rx.node.call("profile", on=True)
            rx.node.send("watch", installed=want, paths=base_paths + inj.n, timeout=args.timeout)
        t0 = time.monotonic()
        thread, sent = inj.send_in_thread()
        t_kernel, _, polls = wait_counts(rx.counter, plus(base, delta), args.timeout, args.poll)
        thread.join()
        sampler.stop()
        if "error" in sent:
            raise RuntimeError(f"injection failed: {sent['error']}")
        add: dict[str, Any] = {
            "kernel": t_kernel - t0,
            "injected": sent["done"] - t0,
            "polls": polls,
        }
        if isinstance(rx, Ours):
            add["node"] = node_times(rx, rx.node.receive(args.timeout + 30), t0)
            if args.profile:
                path = args.out.with_name(f"{args.out.stem}.inject{args.rep}.pstats")
                rx.node.call("profile", on=False, path=str(path))
        after = rx.memory()
        add["cpu"] = cpu(before, after)
        out.update(add=add, memory_before=before, memory_after=after)
        print(
            f"  {rx.name} inject: all in the kernel {add['kernel']:.2f} s (gobgpd took the "
            f"stream in {add['injected']:.2f} s)",
            flush=True,
        )
        time.sleep(args.settle)
        settled = rx.memory()
        if isinstance(rx, Ours):
            rx.node.send("watch", installed=base_installed, paths=base_paths, timeout=args.timeout)
        t0 = time.monotonic()
        inj.delete_all()
        t_kernel, _, polls = wait_counts(rx.counter, base, args.timeout, args.poll)
        withdraw: dict[str, Any] = {"kernel": t_kernel - t0, "polls": polls}
        if isinstance(rx, Ours):
            withdraw["node"] = node_times(rx, rx.node.receive(args.timeout + 30), t0)
        end = rx.memory()
        withdraw["cpu"] = cpu(settled, end)
        out.update(withdraw=withdraw, memory_end=end)
        if isinstance(rx, Ours):
            status = rx.status()
            out.update(restarts=status["restarts"], failures=status["failures"])
        print(f"  {rx.name} inject: withdrawn, kernel clean {withdraw['kernel']:.2f} s", flush=True)
        return out
    finally:
        rx.stop()


def table_run(
    rx: Receiver, inj: Injector, delta: dict[str, int], args: argparse.Namespace
) -> dict[str, Any]:
    """Scenario "table": the route reflector holds the routes, the receiver
    comes up."""
    inj.fresh()
    preload = inj.preload(args.timeout)
    watch = SessionWatch(inj.rr, rx.peer)
    rx.start(profile=args.profile)
    try:
        assert rx.counter is not None
        start = rx.memory()
        sampler = Sampler(args, rx, f"table{args.rep}", start)
        if isinstance(rx, Ours):
            want = delta["routes"] + delta["neigh"] + delta["fdb_self"]
            rx.node.send("watch", installed=want, paths=inj.n, timeout=args.timeout)
        t_kernel, _, polls = wait_counts(rx.counter, delta, args.timeout, args.poll)
        sampler.stop()
        t_up = watch.result()
        add: dict[str, Any] = {"kernel": t_kernel - t_up, "polls": polls, "preload": preload}
        if isinstance(rx, Ours):
            add["node"] = node_times(rx, rx.node.receive(args.timeout + 30), t_up)
        rx.wait_up()
        if isinstance(rx, Ours) and args.profile:
            path = args.out.with_name(f"{args.out.stem}.table{args.rep}.pstats")
            rx.node.call("profile", on=False, path=str(path))
        after = rx.memory()
        add["cpu"] = cpu(start, after)
        out: dict[str, Any] = {"add": add, "memory_start": start, "memory_after": after}
        print(
            f"  {rx.name} table: all in the kernel {add['kernel']:.2f} s after the session came up",
            flush=True,
        )
        time.sleep(args.settle)
        settled = rx.memory()
        if isinstance(rx, Ours):
            rx.node.send("watch", installed=0, timeout=args.timeout)
        sampler = Sampler(args, rx, f"table{args.rep}w", settled)
        t0 = time.monotonic()
        inj.gb.gobgp("neighbor", RR, "disable")
        t_kernel, _, polls = wait_counts(rx.counter, zero(delta), args.timeout, args.poll)
        sampler.stop()
        withdraw: dict[str, Any] = {"kernel": t_kernel - t0, "polls": polls}
        if isinstance(rx, Ours):
            withdraw["node"] = node_times(rx, rx.node.receive(args.timeout + 30), t0)
        end = rx.memory()
        withdraw["cpu"] = cpu(settled, end)
        out.update(withdraw=withdraw, memory_end=end)
        print(f"  {rx.name} table: withdrawn, kernel clean {withdraw['kernel']:.2f} s", flush=True)
        return out
    finally:
        rx.stop()


# -- the report ---------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    s: dict[str, Any] = {
        "add_s": spread([r["add"]["kernel"] for r in runs]),
        "withdraw_s": spread([r["withdraw"]["kernel"] for r in runs]),
        "rss_after_mib": spread([rss(r["memory_after"]) for r in runs]),
        "hwm_mib": spread([rss(r["memory_after"], "VmHWM") for r in runs]),
        "rss_end_mib": spread([rss(r["memory_end"]) for r in runs]),
        "cpu_add_s": spread([sum(r["add"]["cpu"].values()) for r in runs]),
        "cpu_withdraw_s": spread([sum(r["withdraw"]["cpu"].values()) for r in runs]),
    }
    if "memory_before" in runs[0]:
        s["rss_before_mib"] = spread([rss(r["memory_before"]) for r in runs])
    if "injected" in runs[0]["add"]:
        s["injected_s"] = spread([r["add"]["injected"] for r in runs])
    procs = sorted({p for r in runs for p in r["memory_after"]})
    per: dict[str, dict[str, float]] = {}
    for p in procs:
        first = "memory_before" if "memory_before" in runs[0] else "memory_start"
        per[p] = {
            "rss_first_mib": statistics.median(
                [r[first].get(p, {}).get("VmRSS", 0) / 1024 for r in runs]
            ),
            "rss_after_mib": statistics.median(
                [r["memory_after"].get(p, {}).get("VmRSS", 0) / 1024 for r in runs]
            ),
            "hwm_mib": statistics.median(
                [r["memory_after"].get(p, {}).get("VmHWM", 0) / 1024 for r in runs]
            ),
            "cpu_add_s": statistics.median([r["add"]["cpu"].get(p, 0.0) for r in runs]),
        }
    s["per_process"] = per
    if "node" in runs[0]["add"]:
        for k in ("first_path", "all_paths", "installed_at", "apply_seconds", "applies"):
            if k in runs[0]["add"]["node"]:
                s[f"node_{k}"] = spread([r["add"]["node"][k] for r in runs])
        s["node_withdraw_apply_seconds"] = spread(
            [r["withdraw"]["node"]["apply_seconds"] for r in runs]
        )
    return s


def ratios(ours: dict[str, Any], frr: dict[str, Any]) -> dict[str, float]:
    out = {
        "time_all_in_kernel": ours["add_s"]["median"] / frr["add_s"]["median"],
        "time_withdrawn": ours["withdraw_s"]["median"] / frr["withdraw_s"]["median"],
        "rss_after": ours["rss_after_mib"]["median"] / frr["rss_after_mib"]["median"],
        "peak_hwm": ours["hwm_mib"]["median"] / frr["hwm_mib"]["median"],
        "cpu_add": ours["cpu_add_s"]["median"] / frr["cpu_add_s"]["median"],
    }
    if "rss_before_mib" in ours:
        out["rss_before"] = ours["rss_before_mib"]["median"] / frr["rss_before_mib"]["median"]
    return out


def fmt(s: dict[str, float], digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def report(res: dict[str, Any]) -> None:
    print(f"\n{res['date']}, {res['machine']}; {res['reps']} runs each, median (min-max)")
    print(f"load: {res['load']}; kernel entries per receiver: {res['expected_kernel_delta']}")
    names = {"ours": "cnid (node + ExaBGP + relay)", "frr": "FRR leaf (bgpd + zebra)"}
    for scenario, summ in res["summary"].items():
        print(f"\n### {scenario}\n")
        print(
            "| receiver | all in kernel s | withdrawn, kernel clean s | RSS before MiB |"
            " RSS after MiB | peak (HWM) MiB | CPU s (add) |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for who in ("frr", "ours"):
            if who not in summ:
                continue
            r = summ[who]
            before = fmt(r["rss_before_mib"]) if "rss_before_mib" in r else "-"
            print(
                f"| {names[who]} | {fmt(r['add_s'], 2)} | {fmt(r['withdraw_s'], 2)} | {before}"
                f" | {fmt(r['rss_after_mib'])} | {fmt(r['hwm_mib'])} | {fmt(r['cpu_add_s'])} |"
            )
        if "ratios" in summ:
            print("\nours / FRR: " + ", ".join(f"{k} {v:.2f}" for k, v in summ["ratios"].items()))
        for who in ("frr", "ours"):
            if who in summ:
                print(f"{who} per process (medians):")
                for p, v in summ[who]["per_process"].items():
                    print(f"  {p}: {json.dumps({k: round(x, 2) for k, x in v.items()})}")
        if "ours" in summ and "node_first_path" in summ["ours"]:
            o = summ["ours"]
            table = fmt(o["node_all_paths"], 2) if "node_all_paths" in o else "-"
            print(
                f"ours, seen from the node's process: first path {fmt(o['node_first_path'], 2)}"
                f" s, route table complete {table} s, installed "
                f"{fmt(o['node_installed_at'], 2)} s; apply_evpn {fmt(o['node_apply_seconds'], 2)}"
                f" s in {fmt(o['node_applies'], 0)} calls (withdraw: "
                f"{fmt(o['node_withdraw_apply_seconds'], 2)} s)"
            )
        for who in ("frr", "ours"):
            if who in summ and "injected_s" in summ[who]:
                print(f"gobgpd took the stream in {fmt(summ[who]['injected_s'], 2)} s ({who} runs)")


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench evpn_scale")
    parser.add_argument("--routes", type=int, default=50_000)
    parser.add_argument("--type2", type=int, default=8_000)
    parser.add_argument("--vteps", type=int, default=500)
    parser.add_argument("--l2vnis", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", choices=("ours", "frr"), default=None)
    parser.add_argument("--scenario", choices=("inject", "table"), default=None)
    parser.add_argument("--poll", type=float, default=0.1, help="kernel poll interval, seconds")
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", action="store_true", help="cProfile our node's trio thread")
    parser.add_argument("--py-spy", default="", help="py-spy executable: sample our node")
    parser.add_argument("--py-spy-rate", type=int, default=200, help="py-spy samples a second")
    parser.add_argument(
        "--py-spy-gil", action="store_true", help="py-spy: only the thread holding the GIL"
    )
    parser.add_argument("--log-level", default="WARNING", help="our node's log level")
    parser.add_argument("--out", type=Path, default=Path("bench/results/evpn_scale.json"))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)  # clean up (finally) when killed
    args.out.parent.mkdir(parents=True, exist_ok=True)
    routes, delta = load(args)
    counts = {
        t: sum(1 for r in routes if isinstance(r, c))
        for t, c in (("type2", MacAdv), ("type3", Multicast), ("type5", Prefix))
    }
    lab = new_lab("bs")
    args.workdir = workdir("scale")
    scenarios = [s for s in ("inject", "table") if args.scenario in (None, s)]
    receivers = [w for w in ("ours", "frr") if args.only in (None, w)]
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        s: {w: [] for w in receivers} for s in scenarios
    }
    try:
        lan = lab.lan("lan", SUBNET)
        rr = lab.add(
            route_reflector(
                "rr",
                lab.netns("rr", lan=lan, cidr=f"{RR}/16"),
                ASN,
                RR,
                listen_range=SUBNET,
                neighbors=[Neighbor(GB, rr_client=True)],
            )
        )
        gb = lab.add(
            GoBgp(
                "gb",
                lab.netns("gb", lan=lan, cidr=f"{GB}/16"),
                ASN,
                GB,
                neighbors=[GoBgpNeighbor(RR, ASN, passive=True)],
            )
        )
        leaf_ns = lab.netns("leaf", lan=lan, cidr=f"{LEAF}/16")
        rr.start()
        gb.start()
        injector = Injector(gb, rr, routes)
        for rep in range(args.reps):
            args.rep = rep
            for scenario in scenarios:
                for who in receivers if rep % 2 == 0 else receivers[::-1]:
                    print(f"run {rep + 1}/{args.reps}: {scenario}, {who}", flush=True)
                    rx: Receiver = (
                        Ours(lan, args, f"{scenario}{rep}")
                        if who == "ours"
                        else Frr(lab, leaf_ns, args)
                    )
                    fn = inject_run if scenario == "inject" else table_run
                    runs[scenario][who].append(fn(rx, injector, delta, args))
    finally:
        lab.stop()
        shutil.rmtree(args.workdir, ignore_errors=True)
    summary: dict[str, Any] = {}
    for scenario, by_who in runs.items():
        summary[scenario] = {who: summarize(rs) for who, rs in by_who.items() if rs}
        if "ours" in summary[scenario] and "frr" in summary[scenario]:
            summary[scenario]["ratios"] = ratios(
                summary[scenario]["ours"], summary[scenario]["frr"]
            )
    res = {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "reps": args.reps,
        "load": {**counts, "total": len(routes), "vteps": args.vteps, "l2vnis": args.l2vnis},
        "expected_kernel_delta": delta,
        "args": {k: str(v) for k, v in vars(args).items()},
        "runs": runs,
        "summary": summary,
    }
    args.out.write_text(json.dumps(res, indent=2))
    report(res)
    print(f"\nraw: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
