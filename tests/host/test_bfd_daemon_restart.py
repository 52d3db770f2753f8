"""BFD outlives the daemon: a real daemon process and its speaker process (as
the pod's two containers run them) with ``bfd = yes`` to an FRR 8.4 leaf
(bgpd + bfdd, ``neighbor NODE bfd``), which resets its BGP session when BFD
goes down, AdminDown included:

    node   cdbf<pid>      192.168.77.2  cnid daemon + cnid speaker (ExaBGP, BFD)
    fabric cdbf<pid>-fab  192.168.77.1  FRR leaf, AS 65111

The daemon SIGKILLed, then started again; then stopped (SIGTERM) and started
again: FRR's BFD session (its discriminator, its uptime) and its BGP session
(``connectionsEstablished``) never go down: the BFD sessions are the
speaker's. The leaf falling silent (its namespace drops every packet) still
costs the node its BGP session within BFD's detection time; and while no
daemon is attached the speaker tears the session down itself, the next
daemon holding it down until BFD is Up again.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from testbed.frr import FrrRouter
from testbed.frr import Neighbor as FrrNeighbor
from testbed.jsoncmp import wait_for
from testbed.netlab import silence, unsilence
from testbed.node import CnidNode, node_beside

NODE, LEAF = "192.168.77.2", "192.168.77.1"
NODE_AS, LEAF_AS = 65001, 65111
TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    not Path("/usr/lib/frr/bfdd").exists() or os.geteuid() != 0,
    reason="needs FRR's bfdd and root",
)


@pytest.fixture
def node(cnid_plugin: Path) -> Iterator[tuple[CnidNode, FrrRouter]]:
    n = CnidNode(
        name=f"cdbf{os.getpid()}",
        ini_extra=(
            f"[bgp]\nasn = {NODE_AS}\nhold_time = 30\n"
            f"[neighbor {LEAF}]\nasn = {LEAF_AS}\nbfd = yes\n"
        ),
    )
    leaf = FrrRouter(
        name=f"bfl{os.getpid() % 100000}",
        netns=n.fabric,
        asn=LEAF_AS,
        router_id=LEAF,
        neighbors=[FrrNeighbor(NODE, remote_as="external")],
        timers=(10, 30),
        zebra=True,  # bgpd registers its BFD peers with bfdd through zebra
        extra_bgpd=f"router bgp {LEAF_AS}\n neighbor {NODE} bfd\nexit\n",
        bfdd="bfd\nexit\n",  # the peer from bgpd's `neighbor X bfd`: 300 ms x 3
    )
    with node_beside(n, leaf) as both:
        yield both


def frr_bfd(leaf: FrrRouter) -> dict[str, Any]:
    peers: list[dict[str, Any]] = leaf.vtysh_json("show bfd peers json") or []
    return next((p for p in peers if p.get("peer") == NODE), {})


def frr_bgp(leaf: FrrRouter) -> dict[str, Any]:
    peer: dict[str, Any] = leaf.vtysh_json("show bgp neighbors json").get(NODE, {})
    return {k: peer.get(k) for k in ("bgpState", "connectionsEstablished", "connectionsDropped")}


def cnictl(n: CnidNode, *args: str) -> dict[str, Any]:
    out = n.cnictl("--json", *args)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def our_bfd(n: CnidNode) -> dict[str, Any]:
    peers = cnictl(n, "bfd", "peers").get("peers", [])
    mine = next((p for p in peers if p["peer"] == LEAF), {})
    return {k: mine.get(k) for k in ("state", "bgp_held_down", "last_reaction")}


def our_bgp(n: CnidNode) -> str | None:
    peers = cnictl(n, "bgp", "summary").get("peers", [])
    return next((p["state"] for p in peers if p["address"] == LEAF), None)


def up_everywhere(n: CnidNode, leaf: FrrRouter) -> None:
    try:
        wait_for("FRR's BFD session", lambda: frr_bfd(leaf).get("status"), "up", TIMEOUT)
        wait_for("FRR's BGP session", lambda: frr_bgp(leaf)["bgpState"], "Established", TIMEOUT)
        wait_for("the daemon's BFD view", lambda: our_bfd(n),
                 {"state": "up", "bgp_held_down": False}, TIMEOUT)  # fmt: skip
        wait_for("the daemon's BGP view", lambda: our_bgp(n), "established", TIMEOUT)
    except AssertionError as exc:
        speaker_log = (n.workdir / "speaker.log").read_text()[-3000:]
        raise AssertionError(f"{exc}\n{n.log_tail(60)}\n--- speaker:\n{speaker_log}") from None


def logged(n: CnidNode, text: str) -> float:
    """When the daemon last logged a line with ``text`` (time.time())."""
    line = next(x for x in reversed(n.log_path.read_text().splitlines()) if text in x)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def still_up(leaf: FrrRouter, seconds: float, bfd_id: int, established: int) -> None:
    """FRR's sessions polled for ``seconds``: never down."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        bfd, bgp = frr_bfd(leaf), frr_bgp(leaf)
        assert (bfd.get("status"), bfd.get("id")) == ("up", bfd_id), bfd
        assert (bgp["bgpState"], bgp["connectionsEstablished"]) == ("Established", established)
        time.sleep(0.2)


def test_bfd_and_bgp_stay_up_through_daemon_restarts_and_a_silent_leaf_still_counts(
    node: tuple[CnidNode, FrrRouter],
) -> None:
    n, leaf = node
    n.start_unready()
    up_everywhere(n, leaf)
    bfd, bgp = frr_bfd(leaf), frr_bgp(leaf)
    bfd_id, established, uptime, began = (
        bfd["id"],
        bgp["connectionsEstablished"],
        bfd["uptime"],
        time.monotonic(),
    )

    # the daemon killed: no AdminDown, no timeout (the speaker runs BFD)
    n.kill(signal.SIGKILL)
    still_up(leaf, 3.0, bfd_id, established)
    n.start_unready()
    up_everywhere(n, leaf)
    still_up(leaf, 1.0, bfd_id, established)
    # the daemon stopped cleanly: it sends no AdminDown either
    n.kill(signal.SIGTERM)
    still_up(leaf, 2.0, bfd_id, established)
    n.start_unready()
    up_everywhere(n, leaf)
    bfd = frr_bfd(leaf)
    assert bfd["uptime"] >= uptime + (time.monotonic() - began) - 2, bfd  # never reset
    assert frr_bgp(leaf)["connectionsDropped"] == bgp["connectionsDropped"]
    print(f"\nFRR's BFD session up {bfd['uptime']} s through two daemon restarts")

    # the leaf falls silent: BFD tears the BGP session down, not the hold time
    silence(n.fabric)
    cut = time.time()
    wait_for("the session held down", lambda: our_bfd(n),
             {"state": "down", "bgp_held_down": True}, 10.0, interval=0.05)  # fmt: skip
    polled = time.time() - cut
    took = logged(n, f"BFD {LEAF} down (") - cut  # the daemon's reaction, as it logged it
    print(f"leaf silent -> BGP session torn down after {took:.2f} s (seen by cnictl after"
          f" {polled:.2f} s; hold time 30 s)")  # fmt: skip
    assert 0 < took < 1.5, f"{took:.2f} s: not BFD's 0.9 s"
    assert our_bgp(n) != "established"
    unsilence(n.fabric)
    up_everywhere(n, leaf)

    # no daemon: the speaker tears the session down itself; the next
    # daemon learns of it and holds the session down until BFD is Up
    n.kill(signal.SIGKILL)
    silence(n.fabric)
    speaker_log = n.workdir / "speaker.log"
    wait_for("the speaker's teardown",
             lambda: "no daemon attached: BGP session torn down" in speaker_log.read_text(),
             True, 10.0)  # fmt: skip
    n.start_unready()
    wait_for("the new daemon holds it down", lambda: our_bfd(n),
             {"state": "down", "bgp_held_down": True, "last_reaction": "teardown"},
             TIMEOUT)  # fmt: skip
    assert our_bgp(n) != "established"
    unsilence(n.fabric)
    up_everywhere(n, leaf)
