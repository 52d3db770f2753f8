"""Packets lost while daemons restart, pods are replaced or a BGP peer falls
silent, on the lab: route reflectors (the default lab's mode), a full iBGP
mesh (``--mode mesh``: no VRFNodeConfig names reflectors), or the eBGP
fabric (``--topology containerlab/cnid-ebgp.clab.yml``: nodes behind two
FRR leaves per rack, a routed underlay).

A pod of the default domain (vrf-42) on every node; every pair of them
pings each other every 100 ms (``ping -D``, one ping per pair: its requests
and replies cross both ways) during each event (``--events``, a comma
separated list, run in order in one lab):

* ``daemon``: the target node's daemon stopped (SIGTERM) and started again;
  its speaker process (``cnid speaker``, the pod's speaker container) runs
  on, the BGP sessions stay up;
* ``kill``: the same with SIGKILL (a crash);
* ``pod``: the daemon and the speaker stopped and started (a pod replaced):
  the sessions end; ExaBGP closes them without a NOTIFICATION (graceful
  restart negotiated), cnid nodes keep the routes (for the restart time the
  node advertised, 120 s, at least), FRR 8.4 reflectors drop them until they
  are announced again; ``--away S``: S seconds between the stop and the
  start (of ``daemon`` and ``kill`` too);
* ``rolling``: every node's daemon restarted (SIGTERM, start) one after the
  other as a DaemonSet with ``maxUnavailable: 1`` does: the next node only
  once the previous one is ready and every BGP session is back;
  ``rolling-pod`` (or ``rolling`` with ``--with-speaker``): the speakers
  replaced too;
* ``silent``: a BGP peer (``--peer``; default: the first reflector, or in
  the eBGP fabric the leaf through which the first node reaches the first
  node of the other rack) stops answering without closing anything:
  nftables in its namespace drop everything in, out and through it (no
  link goes down). Measured without BFD (the sessions end at the hold
  time, 9 s in the lab) and then with BFD on every session of the peer
  (``--bfd-interval`` ms x ``--bfd-multiplier``, both ends: cnid's
  VRFNodeConfig neighbours, FRR's ``neighbor X bfd`` and bfdd); ``--bfd``
  picks ``off``, ``on`` or ``both``. Traffic goes on until every pair
  replies again; then the peer speaks again (its own row: ``back``).

Reported per event: packets sent and lost over all pairs, the longest gap
between two replies of a pair, when replies flowed again on every pair
(from the event's start), how long the restarts took (stop + start until
ready; a rolling upgrade's whole), and for ``silent`` when the sessions
with the peer were seen down at the cnid nodes.

    python -m bench lab_restart [--topology FILE] [--mode rr|mesh|both]
        [--event daemon|kill|pod | --events kill,pod,rolling,rolling-pod,silent]
        [--with-speaker] [--rounds N] [--target NODE] [--away S] [--peer ROUTER]
        [--bfd off|on|both] [--bfd-interval MS] [--bfd-multiplier N]
    (in the VM tier)

Prints a Markdown table, writes build/bench/lab_restart.json.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.lab import DEFAULT_TOPOLOGY, ClusterLab, Pod, ping
from testbed.topology import load

from .lab_common import Pinger, kernel, lab_up, table, write_report

INTERVAL = 0.1
EVENTS = ("daemon", "kill", "pod", "rolling", "rolling-pod", "silent")
#: a gap: no reply for longer than this (three intervals)
GAP = 3 * INTERVAL


class Flows:
    """A ping between every pair of the bench's pods, each started now."""

    def __init__(self, pods: list[Pod]) -> None:
        self.started = time.time()
        self.pingers = {
            f"{a.node}-{b.node}": Pinger(a.netns, b.ip, INTERVAL)
            for a, b in itertools.combinations(pods, 2)
        }

    def stop(self, t0: float) -> dict[str, Any]:
        """Sent, lost, the longest gap and when replies flowed again after
        ``t0`` (wall clock), over all pairs and per pair."""
        pairs: dict[str, dict[str, Any]] = {}
        for pair, pinger in self.pingers.items():
            sent, received, replies = pinger.stop()
            gaps = [(a, b) for a, b in itertools.pairwise(replies) if b - a > GAP]
            after = [b for a, b in gaps if b > t0]
            pairs[pair] = {
                "sent": sent,
                "lost": sent - received,
                "longest_gap_s": round(max((b - a for a, b in gaps), default=0.0), 2),
                "back_after_s": round(max(after) - t0, 2) if after else 0.0,
            }
        return {
            "sent": sum(p["sent"] for p in pairs.values()),
            "lost": sum(p["lost"] for p in pairs.values()),
            "longest_gap_s": max(p["longest_gap_s"] for p in pairs.values()),
            "back_after_s": max(p["back_after_s"] for p in pairs.values()),
            "pairs": pairs,
        }


def all_reply(pods: list[Pod], timeout: float) -> bool:
    """Every pair replies (a ping each way), within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    todo = list(itertools.combinations(pods, 2))
    while todo:
        a, b = todo[0]
        if ping(a.netns, b.ip, count=1):
            todo.pop(0)
        elif time.monotonic() > deadline:
            return False
    return True


def settle(lab: ClusterLab, pods: list[Pod]) -> None:
    lab.wait_sessions()
    if lab.topo.routed:
        lab.wait_underlay()
    if not all_reply(pods, 600):
        raise RuntimeError("the pods do not all reach each other")


def measured(
    lab: ClusterLab, pods: list[Pod], action: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Flows started, 2 s, ``action`` (its result kept), the fabric back
    (sessions, underlay, every pair replying), 3 s more, flows stopped."""
    flows = Flows(pods)
    time.sleep(2)
    t0 = time.time()
    out = action()
    settle(lab, pods)
    out["settled_s"] = round(time.time() - t0, 1)
    time.sleep(3)
    return {**flows.stop(t0), **out}


def restart(lab: ClusterLab, node: str, how: str, away: float = 0.0) -> float:
    """One node's daemon stopped (SIGTERM; SIGKILL for ``kill``; with the
    speaker for ``pod``), ``away`` seconds without it (a replacement pod
    scheduled or pulled slowly), started until ready: its duration."""
    t0 = time.monotonic()
    lab_node = lab.nodes[node]
    if how == "kill":
        lab_node.kill(signal.SIGKILL)
    else:
        lab.stop_daemon(node)
    if how == "pod":
        lab_node.kill_speaker()
    time.sleep(away)
    lab.start_daemon(node)
    return round(time.monotonic() - t0, 1)


def event_restart(
    lab: ClusterLab, pods: list[Pod], target: str, how: str, away: float = 0.0
) -> dict[str, Any]:
    return measured(lab, pods, lambda: {"restart_s": restart(lab, target, how, away)})


def event_rolling(lab: ClusterLab, pods: list[Pod], speaker: bool) -> dict[str, Any]:
    def roll() -> dict[str, Any]:
        t0 = time.monotonic()
        each = {}
        for node in lab.node_names():
            each[node] = restart(lab, node, "pod" if speaker else "daemon")
            lab.wait_sessions()  # maxUnavailable 1: the next one once this one is back
        return {"restart_s": round(time.monotonic() - t0, 1), "each_s": each}

    return measured(lab, pods, roll)


def default_peer(lab: ClusterLab) -> str:
    """The first reflector; in a routed fabric the leaf through which the
    first node reaches the first node of another rack (its kernel's ECMP
    choice for that VTEP: that flow must move to the other leaf)."""
    topo = lab.topo
    if not topo.routed:
        return topo.role("route-reflector")[0].name
    first, *others = topo.role("node")
    other = next(n for n in others if set(n.words("neighbors")) != set(first.words("neighbors")))
    out = lab.run(first.name, "ip", "route", "get", other.vtep, "from", first.vtep)
    for leaf in first.words("neighbors"):
        if f"via {topo.peer_address(first.name, leaf)} " in out.stdout:
            return leaf
    raise RuntimeError(f"{first.name} -> {other.vtep}: no leaf in {out.stdout!r}")


def event_silent(
    lab: ClusterLab, pods: list[Pod], peer: str, bfd: bool, timers: tuple[int, int]
) -> list[dict[str, Any]]:
    """``peer`` silent until every pair replies again, then back."""
    if bfd and peer not in lab.bfd:
        multiplier, interval = timers
        lab.set_bfd(peer, interval_ms=interval, multiplier=multiplier)
    watchers = [n for n in lab.node_names() if lab.topo.peer_address(n, peer)]
    addresses = {n: lab.topo.peer_address(n, peer) for n in watchers}
    flows = Flows(pods)
    time.sleep(2)
    t0 = time.time()
    lab.silence(peer)
    down: dict[str, float] = {}
    while len(down) < len(watchers) and time.time() - t0 < 120:
        for n in watchers:
            if n not in down and lab.sessions(n).get(addresses[n]) != "established":
                down[n] = round(time.time() - t0, 2)
        time.sleep(0.05)
    recovered = all_reply(pods, 120)
    seen = round(time.time() - t0, 1)
    time.sleep(3)
    silent = {
        **flows.stop(t0),
        "sessions_down_s": max(down.values(), default=-1.0),
        "down_at_s": down,
        "all_reply_seen_s": seen if recovered else -1.0,
    }
    print(f"silent phase ({'BFD' if bfd else 'no BFD'}): {silent}", flush=True)
    flows = Flows(pods)
    time.sleep(2)
    t1 = time.time()
    lab.unsilence(peer)
    settle(lab, pods)
    if bfd:
        want = {n: "up" for n in watchers}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            states = {n: lab.bfd_sessions(n).get(addresses[n]) for n in watchers}
            if states == want:
                break
            time.sleep(0.5)
    settled = round(time.time() - t1, 1)
    time.sleep(3)
    back = {**flows.stop(t1), "settled_s": settled}
    return [silent, back]


def run_lab(
    args: argparse.Namespace, mode: str, events: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """One lab: its pods, then each event (``--rounds`` times): (label, result)."""
    topology = Path(args.topology)
    routed = load(topology).routed
    bfdd = "silent" in events and not routed and args.bfd != "off"  # reflectors need zebra
    out: list[tuple[str, dict[str, Any]]] = []
    name = "benchrst" + {"rr": "r", "mesh": "m", "ebgp": "e"}[mode]
    with lab_up(name, mesh=mode == "mesh", topology=topology, demo=False, bfdd=bfdd) as lab:
        nodes = lab.node_names()
        pods = [lab.add_pod(n, "default", f"bench{i}") for i, n in enumerate(nodes, start=1)]
        if not all_reply(pods, 600):
            raise RuntimeError("the pods never reached each other")
        target = args.target or nodes[1]
        for event in events:
            for _ in range(args.rounds):
                if event in ("daemon", "kill", "pod"):
                    label = f"{event} {target}" + (f", {args.away:g} s away" if args.away else "")
                    rows = [(label, event_restart(lab, pods, target, event, args.away))]
                elif event.startswith("rolling"):
                    speaker = event == "rolling-pod" or args.with_speaker
                    label = "rolling, speakers replaced too" if speaker else "rolling, daemons"
                    rows = [(label, event_rolling(lab, pods, speaker))]
                else:
                    peer = args.peer or default_peer(lab)
                    timers = (args.bfd_multiplier, args.bfd_interval)
                    bfds = {"off": [False], "on": [True], "both": [False, True]}[args.bfd]
                    rows = []
                    for bfd in bfds:
                        how = f"BFD {timers[1]} ms x {timers[0]}" if bfd else "no BFD"
                        silent, back = event_silent(lab, pods, peer, bfd, timers)
                        for row in [
                            (f"{peer} silent, {how}", silent),
                            (f"{peer} back, {how}", back),
                        ]:
                            print(f"{mode}: {row[0]}: {row[1]}", flush=True)
                            out.append(row)
                    continue
                for label, result in rows:
                    print(f"{mode}: {label}: {result}", flush=True)
                    out.append((label, result))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench lab_restart", description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", choices=["both", "rr", "mesh"], default="both")
    parser.add_argument("--topology", default=str(DEFAULT_TOPOLOGY))
    parser.add_argument("--event", choices=EVENTS, default="daemon")
    parser.add_argument("--events", default="", help="a comma separated list, run in one lab")
    parser.add_argument("--with-speaker", action="store_true", help="rolling: speakers too")
    parser.add_argument("--target", default="", help="the node restarted (default: the second)")
    parser.add_argument("--peer", default="", help="silent: the FRR router silenced")
    parser.add_argument(
        "--away", type=float, default=0.0, help="daemon, kill, pod: seconds between stop and start"
    )
    parser.add_argument("--bfd", choices=["off", "on", "both"], default="both")
    parser.add_argument("--bfd-interval", type=int, default=300, help="ms")
    parser.add_argument("--bfd-multiplier", type=int, default=3)
    args = parser.parse_args(sys.argv[1:])
    events = [e.strip() for e in args.events.split(",") if e.strip()] or [args.event]
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        parser.error(f"unknown events {unknown} (known: {', '.join(EVENTS)})")
    if load(Path(args.topology)).routed:
        modes = ["ebgp"]
    else:
        modes = {"both": ["rr", "mesh"], "rr": ["rr"], "mesh": ["mesh"]}[args.mode]
    results = {mode: run_lab(args, mode, events) for mode in modes}
    names = {"rr": "2 route reflectors", "mesh": "full iBGP mesh", "ebgp": "eBGP, 2 leaves a rack"}
    rows = []
    for mode, runs in results.items():
        labels = list(dict.fromkeys(label for label, _ in runs))
        for label in labels:
            mine = [r for lb, r in runs if lb == label]
            med = {
                k: statistics.median(float(r.get(k, 0.0)) for r in mine)
                for k in ("sent", "lost", "longest_gap_s", "back_after_s", "restart_s")
            }
            down = [r["sessions_down_s"] for r in mine if "sessions_down_s" in r]
            rows.append(
                [
                    names[mode],
                    label,
                    f"{med['sent']:.0f}",
                    f"{med['lost']:.0f}",
                    f"{med['longest_gap_s']:.1f}",
                    f"{med['back_after_s']:.1f}",
                    f"{med['restart_s']:.1f}" if med["restart_s"] else "",
                    f"{statistics.median(down):.2f}" if down else "",
                    str(len(mine)),
                ]
            )
    print(
        f"\nevents {', '.join(events)} under 100 ms pings between every pair of nodes' pods, "
        f"kernel {kernel()} (medians over the rounds, packets over all pairs):\n"
    )
    print(
        table(
            [
                "mode",
                "event",
                "sent",
                "lost",
                "longest gap s",
                "replies back after s",
                "restart s",
                "sessions down after s",
                "rounds",
            ],
            rows,
        )
    )
    path = write_report(
        "lab_restart",
        {
            "kernel": kernel(),
            "interval_s": INTERVAL,
            "events": events,
            "topology": args.topology,
            **{mode: [{"event": lb, **r} for lb, r in runs] for mode, runs in results.items()},
        },
    )
    print(f"\n(wrote {path})")
    return 0
