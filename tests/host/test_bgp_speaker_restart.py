"""The speaker outlives the daemon (issue 15): the node's speaker is a
process of its own (``cnid speaker``, as the pod's speaker container runs
it), and the daemon's side (``Speaker`` + ``EvpnController``) is ended
abruptly and started afresh, as a killed daemon's replacement would be. The
sessions to an FRR 8.4 route reflector and to GoBGP never go down (FRR's
``connectionsEstablished`` and GoBGP's uptime unchanged), the node's routes
stay at both the whole time (polled while the daemon is away), and the new
daemon re-syncs: a pod deleted while it was away is withdrawn, one added is
announced, a route GoBGP withdrew meanwhile leaves the node's kernel.

    lan sr<pid>-lan: br0, 192.168.86.0/24
     |-- rr    .1   FRR route reflector (listen range)
     |-- gb    .20  GoBGP, a direct neighbour of the node
     `-- node  .11  cnid: vrf-42 (l3vni 42), vrf-300 (l2vni 300); speaker process
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from testbed.domains import VRF42, VRF300
from testbed.evpn_node import EvpnNode
from testbed.frr import FrrRouter, route_reflector
from testbed.gobgp import GoBgp, GoBgpNeighbor
from testbed.jsoncmp import async_wait_for, wait_for
from testbed.netlab import Lab, Lan

ASN = 65000
NET = "192.168.86"
RR, GB, NODE = f"{NET}.1", f"{NET}.20", f"{NET}.11"
TIMEOUT = 30.0
GB_RD, GB_RT = f"{GB}:9", f"{ASN}:42"


@pytest.fixture
def fabric() -> Iterator[tuple[Lab, Lan, FrrRouter, GoBgp]]:
    lab = Lab(f"sr{os.getpid() % 100000}")
    try:
        lan = lab.lan("lan", f"{NET}.0/24")
        rr = lab.add(
            route_reflector(
                "rr", lab.netns("rr", lan=lan, index=1), ASN, RR, listen_range=f"{NET}.0/24"
            )
        )
        gb = lab.add(
            GoBgp("gb", lab.netns("gb", lan=lan, index=20), ASN, GB,
                  neighbors=[GoBgpNeighbor(NODE, ASN, passive=True, graceful_restart=True)])
        )  # fmt: skip
        rr.start()
        gb.start()
        yield lab, lan, rr, gb
    finally:
        lab.stop()
        assert not lab.leftovers()


def sessions(rr: FrrRouter, gb: GoBgp) -> dict[str, Any]:
    """What says a session went down: FRR's counts of sessions established
    and dropped (its "up since" epoch is computed, it jitters by a second);
    GoBGP's state and uptime."""
    frr = rr.vtysh_json("show bgp neighbors json").get(NODE, {})
    peer = next(p for p in gb.neighbor_json() if p["conf"]["neighbor_address"] == NODE)
    return {
        "frr": (frr.get("bgpState"), frr.get("connectionsEstablished"),
                frr.get("connectionsDropped")),
        "gobgp": (peer["state"].get("session_state"),
                  peer.get("timers", {}).get("state", {}).get("uptime")),
    }  # fmt: skip


def ours(routes: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {
        (r.get("type"), r.get("mac") or r.get("prefix") or r.get("ip"))
        for r in routes
        if r.get("nexthop") == NODE
    }


async def test_a_killed_daemon_leaves_every_session_up_and_resyncs(
    fabric: tuple[Lab, Lan, FrrRouter, GoBgp], tmp_path: Path
) -> None:
    _, lan, rr, gb = fabric
    node = EvpnNode("node", NODE, tmp_path / "node", [VRF42, VRF300], lan, speaker_mode="external")
    try:
        node.start_speaker_process()
        p1 = await node.add_pod("p1", VRF42)
        p2 = await node.add_pod("p2", VRF300)
        config = node.reflectors(RR, GB)
        gb.add_prefix("10.77.0.0/24", 42, GB_RD, GB_RT, router_mac="02:00:00:00:77:01", nexthop=GB)
        gb.add_prefix("10.78.0.0/24", 42, GB_RD, GB_RT, router_mac="02:00:00:00:77:01", nexthop=GB)
        first = trio.CancelScope()
        async with trio.open_nursery() as nursery:

            async def daemon(scope: trio.CancelScope) -> None:
                with scope:
                    await node.run()

            nursery.start_soon(daemon, first)
            await trio.sleep(0)
            node.speaker.configure(config)
            await async_wait_for(
                "both sessions", lambda: {p: s.state for p, s in node.speaker.peers.items()},
                {RR: "up", GB: "up"}, TIMEOUT,
            )  # fmt: skip
            before_routes = ours(gb.rib())
            want = {(2, p2.mac), (3, NODE), (5, "10.244.0.0/26")}
            await async_wait_for(
                "our routes at GoBGP", lambda: ours(gb.rib()) >= want, True, TIMEOUT
            )
            await async_wait_for(
                "GoBGP's routes in the node's kernel",
                lambda: "10.78.0.0/24" in str(node.kernel()["routes"]), True, TIMEOUT,
            )  # fmt: skip
            before = sessions(rr, gb)
            before_routes = ours(gb.rib())
            speaker_pid = node.speaker.stats.pid
            assert speaker_pid and node.speaker_proc is not None

            # the daemon dies: its API connection closes without a word
            first.cancel()
            await trio.sleep(0.5)
            # meanwhile: a pod goes, GoBGP withdraws a route
            await node.delete_pod("p2")
            gb.del_prefix(
                "10.78.0.0/24", 42, GB_RD, GB_RT, router_mac="02:00:00:00:77:01", nexthop=GB
            )
            away_until = time.monotonic() + 3.0
            while time.monotonic() < away_until:  # the routes stay at the peers
                assert ours(gb.rib()) == before_routes
                assert sessions(rr, gb) == before
                await trio.sleep(0.3)
            p3 = await node.add_pod("p3", VRF300)

            # a new daemon: attaches to the running speaker and re-syncs
            node.new_controller()
            started = trio.current_time()
            await nursery.start(node.run)
            node.speaker.configure(config)
            await async_wait_for(
                "the re-sync at GoBGP",
                lambda: ours(gb.rib()),
                (before_routes - {(2, p2.mac)}) | {(2, p3.mac)},
                TIMEOUT,
            )
            resync = trio.current_time() - started
            await async_wait_for(
                "GoBGP's withdrawal in the node's kernel",
                lambda: (
                    "10.78.0.0/24" not in str(node.kernel()["routes"])
                    and "10.77.0.0/24" in str(node.kernel()["routes"])
                ),
                True,
                TIMEOUT,
            )
            assert sessions(rr, gb) == before, "a session went down"
            assert node.speaker.stats.pid == speaker_pid  # the same ExaBGP
            assert node.speaker.stats.restarts == 0
            assert {p: s.state for p, s in node.speaker.peers.items()} == {RR: "up", GB: "up"}
            print(f"re-synced {resync:.2f} s after the new daemon started; "
                  f"{node.speaker.stats.replayed} routes replayed in "
                  f"{node.speaker.stats.replay_seconds * 1000:.1f} ms")  # fmt: skip
            assert p1.mac  # the l3 pod's block is still announced (checked above)
            nursery.cancel_scope.cancel()
    finally:
        node.close()
        lan.unplug(node.ns.name)


async def test_replacing_the_speaker_ends_sessions_and_graceful_restart_applies(
    fabric: tuple[Lab, Lan, FrrRouter, GoBgp], tmp_path: Path
) -> None:
    """Only replacing the speaker ends the sessions: GoBGP, a graceful
    restart helper, keeps the node's routes until it is back."""
    _, lan, rr, gb = fabric
    node = EvpnNode("node", NODE, tmp_path / "node", [VRF42, VRF300], lan, speaker_mode="external")
    try:
        node.start_speaker_process()
        await node.add_pod("p1", VRF42)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            node.speaker.configure(node.reflectors(RR, GB))
            want = {(3, NODE), (5, "10.244.0.0/26")}
            await async_wait_for(
                "our routes at GoBGP", lambda: ours(gb.rib()) >= want, True, TIMEOUT
            )
            before = sessions(rr, gb)
            old_pid = node.speaker.stats.pid
            node.stop_speaker_process()
            node.start_speaker_process()
            # GoBGP keeps them (graceful restart) while the speaker is away
            seen_empty = False
            deadline = time.monotonic() + TIMEOUT
            while time.monotonic() < deadline:
                if not ours(gb.rib()) >= want:
                    seen_empty = True
                if (
                    node.speaker.stats.pid not in (0, old_pid)
                    and node.speaker.peers[GB].state == "up"
                ):
                    break
                await trio.sleep(0.1)
            assert node.speaker.stats.restarts == 1
            assert not seen_empty, "GoBGP dropped the node's routes during its restart"
            # new sessions (FRR forgets a listen-range peer with its session:
            # its counters start again; GoBGP's uptime is the new session's)
            wait_for(
                "FRR: the session back", lambda: sessions(rr, gb)["frr"][0], "Established", TIMEOUT
            )
            assert sessions(rr, gb)["gobgp"] != before["gobgp"]
            await async_wait_for(
                "our routes at GoBGP", lambda: ours(gb.rib()) >= want, True, TIMEOUT
            )
            nursery.cancel_scope.cancel()
    finally:
        node.close()
        lan.unplug(node.ns.name)
