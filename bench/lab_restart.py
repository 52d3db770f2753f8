"""Packets lost while one node's daemon restarts, in route-reflector mode
(the lab's default) and in a full iBGP mesh (``--mode mesh``: no
VRFNodeConfig names reflectors).

A pod on k8s01 pings a pod on k8s02 every 100 ms (``ping -D``); on k8s02
(``--event``):

* ``daemon``: the daemon is stopped (SIGTERM) and started again; its speaker
  process (``cnid speaker``, as the pod's speaker container) runs on, the
  BGP sessions stay up;
* ``kill``: the same with SIGKILL (a crash);
* ``pod``: the daemon and the speaker stopped and started (a pod replaced):
  the sessions end; ExaBGP closes them without a NOTIFICATION (graceful
  restart negotiated), cnid nodes keep the routes, FRR 8.4 reflectors drop
  them until they are announced again.

The ping goes on until the fabric has recovered (every session back, a reply
again) and three more seconds. Reported: packets sent and lost, the longest
gap between two replies, how long the restart took (stop + start until
ready) and until replies came back.

    python -m bench lab_restart [--mode rr|mesh|both] [--event daemon|kill|pod] [--rounds N]
    (in the VM tier)

Prints a Markdown table, writes build/bench/lab_restart.json.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import time
from typing import Any

from testbed.lab import ClusterLab, ping

from .lab_common import Pinger, kernel, lab_up, longest_gap, table, write_report

INTERVAL = 0.1


def restart_once(lab: ClusterLab, src: str, dst: str, event: str = "daemon") -> dict[str, Any]:
    a, b = lab.pods[src], lab.pods[dst]
    deadline = time.monotonic() + 240
    while not ping(a.netns, b.ip, count=1):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{src} never reached {dst}")
    pinger = Pinger(a.netns, b.ip, INTERVAL)
    time.sleep(2)
    t0 = time.monotonic()
    node = lab.nodes[b.node]
    if event == "kill":
        node.kill(signal.SIGKILL)
    else:
        lab.stop_daemon(b.node)
    if event == "pod":
        node.kill_speaker()
    lab.start_daemon(b.node)
    restarted = time.monotonic() - t0
    lab.wait_sessions()
    while not ping(a.netns, b.ip, count=1):
        if time.monotonic() > t0 + 600:
            break
    recovered = time.monotonic() - t0
    time.sleep(3)
    sent, received, replies = pinger.stop()
    if event == "pod":  # where the time went: the node's BGP lines
        lines = [ln for ln in node.log_tail(400).splitlines() if "cnid.bgp" in ln or " ready" in ln]
        print("\n".join(lines[-25:]), flush=True)
    return {
        "sent": sent,
        "received": received,
        "lost": sent - received,
        "longest_gap_s": round(longest_gap(replies), 2),
        "restart_s": round(restarted, 1),
        "recovered_s": round(recovered, 1),
    }


def run_mode(mesh: bool, rounds: int, event: str = "daemon") -> list[dict[str, Any]]:
    out = []
    with lab_up("benchrst" + ("m" if mesh else "r"), mesh=mesh) as lab:
        lab.add_pod("k8s01", "default", "src")
        lab.add_pod("k8s02", "default", "dst")
        for _ in range(rounds):
            out.append(restart_once(lab, "default/src", "default/dst", event))
            print(f"{'full mesh' if mesh else 'route reflectors'}: {out[-1]}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench lab_restart", description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--mode", choices=["both", "rr", "mesh"], default="both")
    parser.add_argument("--event", choices=["daemon", "kill", "pod"], default="daemon")
    args = parser.parse_args(sys.argv[1:])
    modes = {"both": [False, True], "rr": [False], "mesh": [True]}[args.mode]
    results = {("mesh" if m else "rr"): run_mode(m, args.rounds, args.event) for m in modes}
    rows = []
    for mode, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        rows.append(
            [
                "full iBGP mesh" if mode == "mesh" else "2 route reflectors",
                f"{med['sent']:.0f}",
                f"{med['lost']:.0f}",
                f"{med['lost'] * INTERVAL:.1f}",
                f"{med['longest_gap_s']:.1f}",
                f"{med['restart_s']:.1f}",
                f"{med['recovered_s']:.1f}",
                str(len(runs)),
            ]
        )
    print(
        f"\n{args.event} restart on k8s02 under a 100 ms ping from k8s01, kernel {kernel()}"
        " (medians):\n"
    )
    print(
        table(
            [
                "mode",
                "sent",
                "lost",
                "lost s",
                "longest gap s",
                "restart s",
                "replies back after s",
                "rounds",
            ],
            rows,
        )
    )
    path = write_report(
        "lab_restart",
        {"kernel": kernel(), "interval_s": INTERVAL, "event": args.event, **results},
    )
    print(f"\n(wrote {path})")
    return 0
