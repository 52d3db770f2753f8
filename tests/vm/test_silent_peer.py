"""Issue 15: a silent peer failure in the VM tier. The daemon in the routed
fabric of testbed/underlay.py (two FRR 8.4 leaves, a spine; the ECMP route
to the spine's VTEP through both leaves), a ping every 100 ms between the
VTEPs; the leaf that carries it falls silent: nftables in its namespace
drop everything in, out and through it (ARP too), no link goes down, no
session is closed.

* With BFD (``bfd = yes`` on the node's neighbours, bfdd with ``neighbor
  NODES bfd`` at the leaves and BFD on the leaf-spine sessions, 300 ms x 3):
  BFD Down tears the BGP session down through ExaBGP and holds it down
  (``cnictl bfd peers``), the silent leaf's ECMP member leaves the route and
  the ping flows again through the other leaf within 3 s (the target is
  1 s: BFD's detection time is 0.9 s; 3 s is the bound safe under TCG on
  shared cores), far below the 9 s hold time; the leaf answers again: BFD,
  BGP and both ECMP members come back.
* Without BFD, the same fabric and the same cut: the traffic is back only
  when the hold time has run out (at least ``HOLD - HOLD / 3`` after the
  cut: the last keepalive came at most a third of it before), which shows
  that the first case measures BFD and not something faster.

The fabric has no EVPN routes (the leaves originate none): what is learned
through the silent leaf is its underlay route.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from testbed.jsoncmp import wait_for
from testbed.netlab import Lab, silence, unsilence
from testbed.node import CnidNode, sh
from testbed.underlay import FAR_VTEP, LEAVES, UnderlayFabric, underlay_fabric

VTEP = "10.255.0.11"
HOLD = 9  # BGP's hold time at the node and the leaves (keepalives every 3 s)
BFD_BOUND = 3.0  # the ping's longest gap with BFD (target 1 s, TCG on shared cores)
TIMEOUT = 90.0
BOTH = {FAR_VTEP: [LEAVES[1][0], LEAVES[2][0]]}


def fabric_ini(bfd: bool) -> str:
    lines = ["[underlay]", f"vtep_address = {VTEP}", "[bgp]", "asn = 65011",
             f"hold_time = {HOLD}"]  # fmt: skip
    for leaf_ip, _, asn in LEAVES.values():
        lines += [f"[neighbor {leaf_ip}]", f"asn = {asn}", *(["bfd = yes"] if bfd else [])]
    return "\n".join(lines) + "\n"


def exactly(probe: Callable[[], Any]) -> Callable[[], Any]:
    """The probe's value wrapped so that lists compare whole."""
    return lambda: {"v": probe()}


def ctl(node: CnidNode, *args: str) -> dict[str, Any]:
    out = node.cnictl("--json", *args)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def bgp_states(node: CnidNode) -> dict[str, str]:
    return {p["address"]: p["state"] for p in ctl(node, "bgp", "summary").get("peers", [])}


def bfd_peers(node: CnidNode) -> dict[str, dict[str, Any]]:
    return {p["peer"]: p for p in ctl(node, "bfd", "peers").get("peers", [])}


def frr_bfd(fabric: UnderlayFabric, i: int) -> dict[str, str]:
    """Leaf ``i``'s BFD sessions: peer -> status."""
    peers = fabric.leaves[i].vtysh_json("show bfd peers json") or []
    return {p["peer"]: p["status"] for p in peers if isinstance(p, dict)}


def ping_ok(node: CnidNode) -> dict[str, bool]:
    cmd = ["ping", "-c", "1", "-W", "1", "-I", VTEP, FAR_VTEP]
    return {"ok": sh(*cmd, ns=node.netns, check=False).returncode == 0}


def tx_packets(node: CnidNode) -> dict[int, int]:
    """Packets sent on each uplink (``up1``, ``up2``) so far."""
    out = {}
    for i in LEAVES:
        (link,) = json.loads(sh("ip", "-j", "-s", "link", "show", f"up{i}", ns=node.netns).stdout)
        out[i] = int(link["stats64"]["tx"]["packets"])
    return out


class Pinger:
    """``ping -D`` every 100 ms from the node's VTEP to the spine's: the
    reply times (time.time())."""

    def __init__(self, node: CnidNode) -> None:
        cmd = ["ping", "-n", "-D", "-i", "0.1", "-W", "1", "-I", VTEP, FAR_VTEP]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", node.netns, *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> tuple[int, int, list[float]]:
        """(sent, received, reply times)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        replies = [float(t) for t in re.findall(r"\[(\d+\.\d+)\] \d+ bytes from", out)]
        found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert found, out[-500:]
        return int(found.group(1)), int(found.group(2)), replies


def outage(replies: list[float], cut: float) -> tuple[float, float]:
    """(the longest gap between two replies across the cut, the first reply
    after that gap minus the cut): how long the traffic stopped."""
    before = [t for t in replies if t <= cut]
    after = [t for t in replies if t > cut]
    assert before and after, (len(before), len(after))
    times = [before[-1], *after]
    gap, resumed = max((b - a, b) for a, b in itertools.pairwise(times))
    return gap, resumed - cut


def logged(node: CnidNode, text: str) -> float:
    """When the daemon last logged a line with ``text`` (time.time())."""
    line = next(x for x in reversed(node.log_path.read_text().splitlines()) if text in x)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


@pytest.mark.parametrize("bfd", [True, False], ids=["bfd", "hold-time"])
def test_a_silent_leaf_its_traffic_moves_to_the_other_leaf(cnid_plugin: Path, bfd: bool) -> None:
    tag = f"sp{'b' if bfd else 'h'}{os.getpid() % 100000}"
    node = CnidNode(name=tag, ini_extra=fabric_ini(bfd))
    lab = Lab(tag)
    pinger: Pinger | None = None
    silent: str | None = None
    try:
        node.create()
        fabric = underlay_fabric(lab, node.netns, bfd=bfd, spine_bfd=bfd, hold=HOLD)
        node.start()
        wait_for("both next hops", exactly(fabric.node_routes), {"v": BOTH}, TIMEOUT,
                 exact_lists=True)  # fmt: skip
        wait_for("ping between the VTEPs", lambda: ping_ok(node), {"ok": True}, TIMEOUT)
        established = {leaf_ip: "established" for leaf_ip, _, _ in LEAVES.values()}
        wait_for("both sessions", lambda: bgp_states(node), established, TIMEOUT)
        if bfd:
            wait_for(
                "BFD Up with both leaves",
                lambda: {p: r["state"] for p, r in bfd_peers(node).items()},
                {leaf_ip: "up" for leaf_ip, _, _ in LEAVES.values()},
                TIMEOUT,
            )
            for i, (_, node_ip, _) in LEAVES.items():  # the node's and the spine's
                wait_for(f"l{i}'s BFD Up", lambda i=i: frr_bfd(fabric, i),
                         {node_ip: "up", f"10.3.{i}.1": "up"}, TIMEOUT)  # fmt: skip
        else:
            assert bfd_peers(node) == {}

        # the ping, and the leaf that carries it from the node: its uplink's
        # counter grows by the 20 pings of 2 s more than the other's (BFD and
        # BGP send on both)
        flaps = {p: r["flaps"] for p, r in bfd_peers(node).items()}
        pinger = Pinger(node)
        time.sleep(2)
        before = tx_packets(node)
        time.sleep(2)
        sent = {i: n - before[i] for i, n in tx_packets(node).items()}
        side = max(sent, key=lambda i: sent[i])
        assert sent[side] - sent[3 - side] >= 12, sent
        leaf_ip, other_ip = LEAVES[side][0], LEAVES[3 - side][0]
        leaf_ns = fabric.leaves[side].netns

        silence(leaf_ns, through=True)
        silent = leaf_ns
        cut = time.time()
        one = {"v": {FAR_VTEP: [other_ip]}}
        wait_for(f"l{side}'s ECMP member out", exactly(fabric.node_routes), one,
                 10.0 if bfd else HOLD + 10.0, 0.05, exact_lists=True)  # fmt: skip
        member_out = time.time() - cut
        wait_for(f"l{side}'s session down", lambda: {"up": bgp_states(node).get(leaf_ip)
                 == "established"}, {"up": False}, 10.0, 0.05)  # fmt: skip
        session_down = time.time() - cut
        took, seen = 0.0, ""
        assert bgp_states(node).get(other_ip) == "established"
        if bfd:
            # BFD tore the session down through ExaBGP and holds it down
            took = logged(node, f"BFD {leaf_ip} down (") - cut
            mine = bfd_peers(node)[leaf_ip]
            assert mine["state"] != "up" and mine["bgp_held_down"], mine
            seen = (f"{mine['state']} ({mine['local_diag']}), flaps {flaps[leaf_ip]} before the"
                    f" cut, {mine['flaps']} after")  # fmt: skip
            assert mine["last_reaction"] == "teardown", mine
            assert bfd_peers(node)[other_ip]["state"] == "up"
        wait_for(f"the ping through l{3 - side}", lambda: ping_ok(node), {"ok": True}, 30)
        time.sleep(2)
        _, _, replies = pinger.stop()
        pinger = None
        gap, resumed = outage(replies, cut)
        how = "BFD 300 ms x 3" if bfd else "no BFD"
        print(
            f"\nl{side} silent, {how}, hold time {HOLD} s: ECMP member out after "
            f"{member_out:.2f} s, session down seen after {session_down:.2f} s"
            + (f" (the daemon's BFD reaction after {took:.2f} s; BFD {seen})" if bfd else "")
            + f"; the ping's longest gap {gap:.2f} s, back {resumed:.2f} s after the cut"
        )
        if bfd:
            assert gap <= BFD_BOUND, f"{gap:.2f} s: not BFD's 0.9 s (hold time {HOLD} s)"
            assert 0 < took <= BFD_BOUND, f"the daemon's reaction after {took:.2f} s"
            # torn down by BFD: the hold time could not have run out yet
            assert session_down < HOLD - HOLD / 3, f"session down after {session_down:.2f} s"
        else:
            assert gap >= HOLD - HOLD / 3 - 0.5, f"{gap:.2f} s: less than the hold time"

        if bfd:  # still held down, BFD still not Up, seconds later
            mine = bfd_peers(node)[leaf_ip]
            print(f"BFD with l{side} {time.time() - cut:.1f} s after the cut: {mine['state']}")
            assert mine["state"] != "up" and mine["bgp_held_down"], mine

        # the leaf speaks again: BFD, the session, both ECMP members
        unsilence(leaf_ns)
        silent = None
        back = time.time()
        if bfd:
            wait_for(f"BFD with l{side} Up again", lambda: bfd_peers(node)[leaf_ip]["state"],
                     "up", TIMEOUT)  # fmt: skip
        wait_for("both sessions again", lambda: bgp_states(node), established, TIMEOUT)
        wait_for("both next hops again", exactly(fabric.node_routes), {"v": BOTH}, TIMEOUT,
                 exact_lists=True)  # fmt: skip
        print(f"l{side} answers again: both next hops back after {time.time() - back:.1f} s")
        if bfd:
            assert not bfd_peers(node)[leaf_ip]["bgp_held_down"]
            wait_for(f"l{side}'s BFD Up", lambda: frr_bfd(fabric, side),
                     {LEAVES[side][1]: "up", f"10.3.{side}.1": "up"}, TIMEOUT)  # fmt: skip
        wait_for("ping between the VTEPs", lambda: ping_ok(node), {"ok": True}, 30)
    except AssertionError:
        print(f"--- the daemon's log:\n{node.log_tail(80)}")
        speaker_log = node.workdir / "speaker.log"
        if speaker_log.exists():
            print(f"--- the speaker's:\n{speaker_log.read_text()[-6000:]}")
        raise
    finally:
        if pinger is not None:
            pinger.stop()
        if silent is not None:
            unsilence(silent)
        node.stop()
        lab.stop()
