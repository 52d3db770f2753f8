"""BFD in the routed underlay against real FRR 8.4 leaves (bgpd + bfdd): the
fabric of testbed/underlay.py (a node with a /31 link to each of two leaves,
a spine's VTEP reached through both: one ECMP route), the leaves with
``neighbor NODES bfd`` and a BGP hold time of 30 s. The node runs the real
``Speaker`` (with its BFD sessions beside ExaBGP, their sockets in the
node's namespace) and ``BfdGuard``, wired to each other as the EVPN
controller and the daemon wire them (tests/host/test_bfd_bgp.py runs that
wiring whole).

Asserted: a BFD session per leaf, from the node's end of each link; leaf 1
fallen silent (its namespace drops every packet, no link event): its next
hop leaves the ECMP route within BFD's detection time, not the hold time,
and its BGP session is held down; leaf 1 back: BFD, BGP and both next hops.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from cnid import dataplane
from cnid.bfd import StateChange
from cnid.bgp import BfdLink, Speaker, SpeakerConfig, SpeakerDown, SpeakerUp, StateEvent
from cnid.core import Metrics
from cnid.evpn import BfdGuard, UnderlayController
from testbed.jsoncmp import async_wait_for
from testbed.netlab import Lab, silence, unsilence
from testbed.underlay import (
    FAR_VTEP,
    LEAVES,
    NODE_AS,
    NODE_VTEP,
    UnderlayFabric,
    leaf_neighbors,
    node_dataplane,
    node_speaker,
    node_underlay,
    underlay_fabric,
)

VTEP = NODE_VTEP
HOLD = 30
TIMEOUT = 40.0
BOTH = {FAR_VTEP: [LEAVES[1][0], LEAVES[2][0]]}

pytestmark = pytest.mark.skipif(
    not Path("/usr/lib/frr/bfdd").exists() or os.geteuid() != 0,
    reason="needs FRR's bfdd and root",
)


@dataclass
class Fabric:
    lab: Lab
    node: str
    underlay: UnderlayFabric
    fd: int


@pytest.fixture(scope="module")
def fabric() -> Iterator[Fabric]:
    lab = Lab(f"bu{os.getpid() % 100000}")
    try:
        node = lab.netns("node")
        underlay = underlay_fabric(lab, node, bfd=True, hold=HOLD)
        with node_dataplane(node) as fd:
            yield Fabric(lab, node, underlay, fd)
    finally:
        lab.stop()
        assert not lab.leftovers()


@dataclass
class Node:
    speaker: Speaker
    underlay: UnderlayController
    bfd: BfdLink
    guard: BfdGuard
    metrics: Metrics


@asynccontextmanager
async def cnid_node(fabric: Fabric, tmp: Path) -> AsyncIterator[Node]:
    metrics = Metrics()
    speaker = node_speaker(fabric.node, tmp)
    underlay = node_underlay(speaker, fabric.node, metrics)

    async def udp_socket() -> trio.socket.SocketType:
        def open_inside() -> socket.socket:
            with dataplane.inside(dataplane.checked_netns(fabric.fd)):
                return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        return trio.socket.from_stdlib_socket(await trio.to_thread.run_sync(open_inside))

    speaker.bfd_sockets = udp_socket  # BFD beside ExaBGP, in the node's namespace
    bfd = speaker.bfd
    guard = BfdGuard(bfd, speaker, metrics)
    guard.on_failure(underlay.peer_down)  # as the daemon wires them

    def bfd_changed(change: StateChange) -> None:  # as the EVPN controller does
        peer = speaker.peers.get(change.key.peer)
        guard.changed(change, peer is not None and peer.state == "up", trio.current_time())

    def bgp_event(event: object) -> None:
        if isinstance(event, StateEvent) and event.state == "up":
            guard.bgp_up(event.peer)
        elif isinstance(event, SpeakerUp | SpeakerDown):
            guard.speaker_restarted()

    bfd.subscribe(bfd_changed)
    speaker.subscribe(bgp_event)
    async with trio.open_nursery() as nursery:
        await nursery.start(speaker.run)
        await nursery.start(underlay.run)
        neighbors = leaf_neighbors(bfd=True)
        speaker.configure(SpeakerConfig(VTEP, VTEP, NODE_AS, neighbors, hold_time=HOLD))
        speaker.announce(frozenset())
        await nursery.start(guard.run)
        yield Node(speaker, underlay, bfd, guard, metrics)
        nursery.cancel_scope.cancel()


async def routes(fabric: Fabric) -> dict[str, list[str]]:
    return await trio.to_thread.run_sync(fabric.underlay.node_routes)


def frr_bfd(fabric: Fabric, i: int) -> dict[str, Any]:
    node_ip = LEAVES[i][1]
    peers: list[dict[str, Any]] = fabric.underlay.leaves[i].vtysh_json("show bfd peers json") or []
    return next((p for p in peers if p.get("peer") == node_ip), {})


def ours(node: Node) -> dict[str, tuple[str | None, str]]:
    return {p.peer: (p.local, p.state) for p in node.bfd.peers()}


async def test_a_silent_leaf_leaves_the_ecmp_route_within_bfds_detection_time(
    fabric: Fabric, tmp_path: Path
) -> None:
    l1, l2 = LEAVES[1][0], LEAVES[2][0]
    async with cnid_node(fabric, tmp_path / "bgp") as node:
        await async_wait_for(
            "both next hops", lambda: routes(fabric), BOTH, TIMEOUT, exact_lists=True
        )
        # a session per leaf, single hop, from the node's end of each link
        up = {leaf: (node_ip, "up") for leaf, node_ip, _ in LEAVES.values()}
        await async_wait_for("BFD Up with both leaves", lambda: ours(node), up, TIMEOUT)
        for i in LEAVES:
            await async_wait_for(
                f"l{i}'s BFD up", lambda i=i: frr_bfd(fabric, i), {"status": "up"}, TIMEOUT
            )

        leaf_ns = fabric.underlay.leaves[1].netns
        silence(leaf_ns)
        cut = time.monotonic()
        try:
            await async_wait_for(
                "l2's next hop only", lambda: routes(fabric), {FAR_VTEP: [l2]}, 10.0, 0.02,
                exact_lists=True,
            )  # fmt: skip
            gone = time.monotonic() - cut
            print(f"\nBFD: l1 silent -> its ECMP member out in {gone:.3f} s")
            assert gone < 3.0, f"{gone:.2f} s: not BFD's 0.9 s (the hold time is {HOLD} s)"
            assert node.guard.holds_down(l1) and not node.guard.holds_down(l2)
            await async_wait_for(
                "l1's session torn down",
                lambda: {"up": node.speaker.peers[l1].state == "up"},
                {"up": False},
                5.0,
            )
            assert node.speaker.peers[l2].state == "up"
        finally:
            unsilence(leaf_ns)
        back = time.monotonic()
        await async_wait_for("both next hops again", lambda: routes(fabric), BOTH, TIMEOUT,
                             exact_lists=True)  # fmt: skip
        print(f"BFD: l1 back -> both next hops again in {time.monotonic() - back:.1f} s")
        assert not node.guard.holds_down(l1)
        assert ours(node) == up
