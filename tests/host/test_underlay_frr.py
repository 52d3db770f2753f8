"""The routed underlay against real FRR 8.4 leaves (RFC 7938): a node with
a point-to-point /31 link to each of two leaves, eBGP to both (each leaf in
its own AS, ``maximum-paths 4``), a spine's VTEP announced through both
(testbed/underlay.py draws the fabric). The node runs the real ``Speaker``
(ExaBGP in its namespace) and the real ``UnderlayController`` and
dataplane calls on its namespace. Its VTEP /32 is on ``lo`` here, the one
departure from the daemon: this kernel has no dummy driver (``cnid-vtep``
and the whole daemon are checked in the VM tier).

Asserted: the node's main table has one route to the spine's VTEP with both
leaves as next hops (protocol 151); both leaves learned the node's VTEP
(``show ip route json``) and got its ipv4 unicast End-of-RIB; a ping between
the VTEPs; one leaf's bgpd killed: the route keeps the other next hop at
once and the pings go on; the leaf back: both next hops again; the other
leaf's link cut: the same, after the hold time; the node's control plane
restarted (a new speaker and controller over the same kernel): the route is
adopted and never deleted or re-added (``ip monitor route`` sees nothing of
it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from cnid.bgp import Speaker, SpeakerConfig
from cnid.core import Metrics
from cnid.evpn import UnderlayController
from testbed.frr import FrrRouter
from testbed.jsoncmp import async_wait_for
from testbed.netlab import Lab, sh
from testbed.underlay import (
    FAR_VTEP,
    LEAVES,
    NODE_AS,
    NODE_VTEP,
    Router,
    UnderlayFabric,
    leaf_neighbors,
    node_dataplane,
    node_speaker,
    node_underlay,
    underlay_fabric,
)

VTEP = NODE_VTEP
TIMEOUT = 12.0


@dataclass
class Fabric:
    lab: Lab
    node: str
    underlay: UnderlayFabric

    @property
    def leaves(self) -> dict[int, Router]:
        return self.underlay.leaves


@pytest.fixture(scope="module")
def fabric() -> Iterator[Fabric]:
    lab = Lab(f"ul{os.getpid()}")
    try:
        node = lab.netns("node")
        underlay = underlay_fabric(lab, node)
        with node_dataplane(node):  # the dataplane's node is the node namespace
            yield Fabric(lab, node, underlay)
    finally:
        lab.stop()


@asynccontextmanager
async def cnid_node(
    fabric: Fabric, tmp: Path, metrics: Metrics
) -> AsyncIterator[tuple[Speaker, UnderlayController]]:
    """The node's speaker and underlay controller, as the daemon starts them."""
    speaker = node_speaker(fabric.node, tmp)
    underlay = node_underlay(speaker, fabric.node, metrics)
    async with trio.open_nursery() as nursery:
        await nursery.start(speaker.run)
        await nursery.start(underlay.run)
        speaker.configure(SpeakerConfig(VTEP, VTEP, NODE_AS, leaf_neighbors(), hold_time=3))
        speaker.announce(frozenset())  # what the EVPN controller says: nothing, then End-of-RIB
        yield speaker, underlay
        nursery.cancel_scope.cancel()


def node_routes(fabric: Fabric) -> dict[str, list[str]]:
    return fabric.underlay.node_routes()


async def routes_probe(fabric: Fabric) -> dict[str, list[str]]:
    return await trio.to_thread.run_sync(node_routes, fabric)


def ping(fabric: Fabric) -> bool:
    cmd = ["ping", "-c", "1", "-W", "1", "-I", VTEP, FAR_VTEP]
    return sh(*cmd, ns=fabric.node, check=False).returncode == 0


BOTH = {FAR_VTEP: [LEAVES[1][0], LEAVES[2][0]]}


async def wait_routes(what: str, expected: dict[str, list[str]], timeout: float) -> None:
    """The node's routes of protocol 151 become exactly ``expected``."""
    fabric = fabric_of_test[0]
    await async_wait_for(what, lambda: routes_probe(fabric), expected, timeout, 0.02,
                         exact_lists=True)  # fmt: skip
    assert node_routes(fabric) == expected


async def wait_ping(since: float, what: str) -> None:
    """The VTEPs reach each other again (the node's side changed at once; the
    spine's return path is FRR's to converge)."""
    await async_wait_for(
        "ping between the VTEPs", lambda: trio.to_thread.run_sync(ping, fabric_of_test[0]),
        True, 10, 0.05,
    )  # fmt: skip
    print(f"ping through the other leaf {trio.current_time() - since:.2f} s after {what}")


fabric_of_test: list[Fabric] = []


def test_ecmp_failover_and_restart_against_frr_leaves(fabric: Fabric, tmp_path: Path) -> None:
    metrics = Metrics()
    fabric_of_test[:] = [fabric]

    async def main() -> None:
        async with cnid_node(fabric, tmp_path / "bgp1", metrics):
            started = trio.current_time()
            await wait_routes("both next hops", BOTH, TIMEOUT)
            print(f"ECMP route after {trio.current_time() - started:.2f} s")
            assert metrics.underlay_routes._value.get() == 1
            for i, (_, node_ip, _) in LEAVES.items():
                leaf = fabric.leaves[i]

                async def learned(leaf: FrrRouter = leaf) -> Any:
                    return await trio.to_thread.run_sync(leaf.vtysh_json, "show ip route json")

                want = {
                    f"{VTEP}/32": [
                        {"protocol": "bgp", "selected": True, "nexthops": [{"ip": node_ip}]}
                    ]
                }
                await async_wait_for(f"l{i} learned the node's VTEP", learned, want, TIMEOUT)

                async def neighbor(leaf: FrrRouter = leaf, node_ip: str = node_ip) -> Any:
                    command = f"show bgp neighbors {node_ip} json"
                    return await trio.to_thread.run_sync(leaf.vtysh_json, command)

                # the node's End-of-RIB covers ipv4 unicast (manual-eor: ours to send)
                eor = {node_ip: {"gracefulRestartInfo": {"endOfRibRecv": {"ipv4Unicast": True}}}}
                await async_wait_for(f"l{i} got the node's End-of-RIB", neighbor, eor, TIMEOUT)
            await async_wait_for(
                "ping between the VTEPs", lambda: trio.to_thread.run_sync(ping, fabric),
                True, TIMEOUT,
            )  # fmt: skip

            # one leaf stopped: the other next hop stays, traffic goes on
            l2 = fabric.leaves[2]
            os.kill(l2.pids["bgpd"], signal.SIGKILL)
            killed = trio.current_time()
            one = {FAR_VTEP: [LEAVES[1][0]]}
            await wait_routes("l1's next hop only", one, 10)
            print(f"l2's next hop removed {trio.current_time() - killed:.2f} s after its bgpd died")
            await wait_ping(killed, "l2's bgpd died")
            await trio.to_thread.run_sync(l2.restart)
            await wait_routes("both next hops again", BOTH, 30)
            assert await trio.to_thread.run_sync(ping, fabric)

            # l1's link cut in its namespace (no TCP reset: the hold timer, 3 s here)
            l1 = fabric.leaves[1]
            sh("ip", "link", "set", "node0", "down", ns=l1.netns)
            cut = trio.current_time()
            two = {FAR_VTEP: [LEAVES[2][0]]}
            await wait_routes("l2's next hop only", two, 10)
            print(
                f"l1's next hop removed {trio.current_time() - cut:.2f} s after its link went down"
            )
            await wait_ping(cut, "l1's link went down")
            sh("ip", "link", "set", "node0", "up", ns=l1.netns)
            await wait_routes("both next hops at last", BOTH, 30)
            assert await trio.to_thread.run_sync(ping, fabric)

        # the control plane restarted: the kernel route adopted, no flap
        monitor = subprocess.Popen(
            ["ip", "netns", "exec", fabric.node, "ip", "monitor", "route"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert node_routes(fabric) == BOTH  # left in place by the stop
            async with cnid_node(fabric, tmp_path / "bgp2", metrics) as (speaker, underlay):
                assert underlay.adopted == {FAR_VTEP + "/32": frozenset(BOTH[FAR_VTEP])}

                def both_up() -> dict[str, str]:
                    return {p.address: p.state for p in speaker.peers.values()}

                await async_wait_for(
                    "sessions", both_up, {a: "up" for a, _, _ in LEAVES.values()}, TIMEOUT
                )
                # both leaves' ipv4 unicast End-of-RIB ends the adoption
                await async_wait_for("adoption over", lambda: underlay.adopted, {}, TIMEOUT)
                assert underlay.installed == {FAR_VTEP + "/32": frozenset(BOTH[FAR_VTEP])}
                assert underlay.errors == {}
                assert await routes_probe(fabric) == BOTH
                assert await trio.to_thread.run_sync(ping, fabric)
            # the monitor does see route changes of the node
            sh("ip", "route", "add", "10.77.0.0/24", "via", LEAVES[1][0], ns=fabric.node)
            await trio.sleep(0.5)
        finally:
            monitor.send_signal(signal.SIGTERM)
            events, _ = monitor.communicate(timeout=5)
        assert "10.77.0.0/24" in events
        assert FAR_VTEP not in events, f"the route flapped across the restart:\n{events}"
        sh("ip", "route", "del", "10.77.0.0/24", ns=fabric.node)

    begin = time.monotonic()
    trio.run(main)
    print(f"whole scenario {time.monotonic() - begin:.1f} s")
