"""cnid's EVPN control plane against real peers, on the host (no VRF: the
node's domains are bridges, VXLAN devices and routing tables; the VM tier
runs the whole daemon with VRFs). The node is ``testbed.evpn_node``: the real
speaker (ExaBGP), controller and dataplane, in a namespace of its own.

    lan ei<pid>-lan: br0, 192.168.83.0/24
     |-- rr    .1   FRR route reflector (listen range; GoBGP as a static client)
     |-- leaf  .4   FRR EVPN leaf: L2VNI 300, L3VNI 42 on its default VRF
     |      `-- h1  10.50.0.2/24 routed (type-5 10.50.0.0/24), 10.3.0.250/16 in L2VNI 300
     |-- gb    .20  GoBGP (injects type-2/3/5, odd routes too)
     `-- node  .11  cnid: vrf-42 (l3vni 42, blocks of 10.244.0.0/16)
                          vrf-300 (l2vni 300, 10.3.0.0/16, anycast gateway 10.3.0.1)
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from cnid.daemon import bgp_summary, evpn_routes
from cnid.dataplane import EvpnRoute, FdbEntry, NeighEntry
from testbed.domains import VRF42, VRF300
from testbed.evpn_fabric import ASN, EvpnFabric, addresses, evpn_fabric, up_with_reflector
from testbed.evpn_node import EvpnNode
from testbed.frr import L2Vni, L3Vni
from testbed.gobgp import MacAdv, Multicast, Prefix
from testbed.jsoncmp import async_wait_for, wait_for

NET = "192.168.83"
RR, LEAF, GB, NODE = addresses(NET)
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def fabric() -> Iterator[EvpnFabric]:
    with evpn_fabric(
        "ei",
        NET,
        l2vnis=[L2Vni(300)],  # FRR's auto RT 65000:300, what cnid sends for type-2/3
        l3vni=L3Vni(42, rt=f"{ASN}:42"),
        routed=("10.50.0.1/24", "10.50.0.2/24"),
        bridged={300: "10.3.0.250/16"},
        timeout=TIMEOUT,
    ) as fab:
        yield fab


@pytest.fixture
async def node(fabric: EvpnFabric, tmp_path: Path) -> AsyncIterator[EvpnNode]:
    with fabric.node("node", tmp_path, [VRF42, VRF300], stale_timeout=60) as n:
        yield n


async def up(node: EvpnNode, nursery: trio.Nursery) -> None:
    await up_with_reflector(node, nursery, RR, TIMEOUT)


def our_routes(node: EvpnNode, p42: str, p300: str) -> list[dict[str, Any]]:
    """What FRR must hold from the node: a type-5 per block, the type-3 of
    the l2vni, a type-2 per l2vni pod (flattened as testbed.frr gives them)."""
    rmac = node.link_mac("br-42")
    pod = node.pods[p300]
    return [
        {
            "type": 5,
            "prefix": "10.244.0.0/26",
            "vni": 42,
            "rt": [f"{ASN}:42"],
            "rmac": rmac,
            "nexthop": NODE,
            "rd": f"{NODE}:1",  # router-id:index, the node's first VRF
        },
        {"type": 3, "ip": NODE, "vni": 300, "rt": [f"{ASN}:300"], "nexthop": NODE},
        {"type": 2, "mac": pod.mac, "ip": pod.address, "vni": 300, "nexthop": NODE},
    ]


def leaf_kernel(fabric: EvpnFabric) -> dict[str, Any]:
    import json

    route = json.loads(fabric.leaf.ip("-j", "route", "show", "10.244.0.0/26") or "[]")
    fdb = json.loads(fabric.leaf.ip("-j", "neigh", "show", "dev", "br42") or "[]")
    return {"route": route, "neigh": fdb}


async def test_routes_both_ways_and_traffic_over_vxlan(fabric: EvpnFabric, node: EvpnNode) -> None:
    async with trio.open_nursery() as nursery:
        await node.add_pod("p1", VRF42)
        await node.add_pod("p2", VRF300)
        await up(node, nursery)
        # ours in FRR's table, with VNI, RT, router MAC, next-hop
        expected = our_routes(node, "p1", "p2")
        await async_wait_for("our routes at the leaf", fabric.leaf.evpn_routes, expected, TIMEOUT)
        # ... and at GoBGP, a second implementation, through the reflector
        await async_wait_for("our routes at GoBGP", fabric.gb.rib, expected, TIMEOUT)
        # ... and programmed by the leaf's zebra
        await async_wait_for(
            "our type-5 in the leaf's kernel",
            lambda: leaf_kernel(fabric),
            {"route": [{"dst": "10.244.0.0/26", "gateway": NODE, "dev": "br42"}]},
            TIMEOUT,
        )
        # the leaf's routes in our kernel, as zebra would have made them
        leaf_rmac = fabric.leaf.router_mac
        await async_wait_for(
            "the leaf's routes in our kernel",
            node.kernel,
            {
                "routes": [
                    {"dst": "10.50.0.0/24", "gateway": LEAF, "dev": "br-42", "flags": ["onlink"]}
                ],
                "fdb": [
                    {"mac": leaf_rmac, "ifname": "vx-42", "dst": LEAF},
                    {"mac": "00:00:00:00:00:00", "ifname": "vx-300", "dst": LEAF},
                ],
                "neigh": [{"dst": LEAF, "dev": "br-42", "lladdr": leaf_rmac}],
            },
            TIMEOUT,
        )
        # routed: pod in vrf-42 <-> host behind the leaf (type-5 both ways)
        await async_wait_for(
            "p1 -> h1", lambda: {"ok": node.ping("p1", "10.50.0.2")}, {"ok": True}, TIMEOUT
        )
        # bridged: pod in vrf-300 <-> the host's leg in L2VNI 300 (type-2/3)
        await async_wait_for(
            "p2 -> h1", lambda: {"ok": node.ping("p2", "10.3.0.250")}, {"ok": True}, TIMEOUT
        )
        metrics = node.metrics.render().decode()
        assert f'cnid_bgp_session_established{{peer="{RR}"}} 1.0' in metrics
        assert 'cnid_evpn_routes_announced{type="5"} 1.0' in metrics
        assert "cnid_evpn_update_to_kernel_seconds_count" in metrics
        summary = bgp_summary(node.evpn)
        assert summary["peers"][0]["state"] == "established"
        assert summary["received"]["5"] >= 1 and summary["announced"]["5"] == 1
        rows = evpn_routes(node.evpn, rtype=5)
        assert any(r["from"] == "local" and r["route"] == "[5]:[0]:[26]:[10.244.0.0]" for r in rows)
        assert any(r["state"] == "programmed" and "10.50.0.0" in r["route"] for r in rows)
        nursery.cancel_scope.cancel()


async def test_gobgp_routes_odd_routes_and_withdrawals(fabric: EvpnFabric, node: EvpnNode) -> None:
    gb = fabric.gb
    good = [
        Prefix("10.60.0.0/24", 42, f"{GB}:42", f"{ASN}:42", "02:00:00:00:00:20", GB),
        MacAdv("0a:00:00:00:20:01", "10.3.20.1", 300, f"{GB}:300", f"{ASN}:300", GB),
        Multicast(GB, 300, f"{GB}:300", f"{ASN}:300"),
    ]
    bad = [
        Prefix("10.61.0.0/24", 4711, f"{GB}:4711", f"{ASN}:4711", "02:00:00:00:00:20", GB),
        Prefix("10.62.0.0/24", 42, f"{GB}:43", f"{ASN}:42", "00:00:00:00:00:00", GB),
        Prefix("10.63.0.0/24", 42, f"{GB}:44", f"{ASN}:42", "02:00:00:00:00:20", "2001:db8::20"),
        MacAdv("01:00:5e:00:00:01", None, 300, f"{GB}:301", f"{ASN}:300", GB),
    ]
    async with trio.open_nursery() as nursery:
        await up(node, nursery)
        for route in good + bad:
            gb.add(route)
        await async_wait_for(
            "GoBGP's routes in our kernel",
            node.kernel,
            {
                "routes": [{"dst": "10.60.0.0/24", "gateway": GB, "dev": "br-42"}],
                "fdb": [
                    {"mac": "02:00:00:00:00:20", "ifname": "vx-42", "dst": GB},
                    {"mac": "0a:00:00:00:20:01", "ifname": "vx-300", "dst": GB},
                    {"mac": "00:00:00:00:00:00", "ifname": "vx-300", "dst": GB},
                ],
                "neigh": [{"dst": "10.3.20.1", "dev": "br-300", "lladdr": "0a:00:00:00:20:01"}],
            },
            TIMEOUT,
        )

        def skipped() -> dict[str, float]:
            out = {}
            for metric in node.metrics.evpn_skipped.collect():
                for sample in metric.samples:
                    if sample.name.endswith("_total"):
                        out[sample.labels["reason"]] = sample.value
            return out

        await async_wait_for(
            "the odd routes counted",
            skipped,
            {"no-route-target": 1.0, "no-router-mac": 1.0, "next-hop-family": 1.0, "bad-mac": 1.0},
            TIMEOUT,
        )
        kernel = node.kernel()
        assert not any(
            r["dst"].startswith(("10.61.", "10.62.", "10.63.")) for r in kernel["routes"]
        )
        rows = {r["route"]: r for r in evpn_routes(node.evpn)}
        assert "route targets 65000:4711" in rows["[5]:[0]:[24]:[10.61.0.0]"]["state"]
        # withdrawals remove exactly what the announcements added
        for route in good:
            gb.delete(route)
        await async_wait_for(
            "GoBGP's routes gone",
            lambda: {
                "gb": [
                    e
                    for kind in node.kernel().values()
                    for e in kind
                    if GB in (e.get("gateway"), e.get("dst")) or e.get("dst") == "10.3.20.1"
                ]
            },
            {"gb": []},
            TIMEOUT,
            exact_lists=True,
        )
        for route in bad:
            gb.delete(route)
        assert node.speaker.peers[RR].state == "up" and node.speaker.stats.restarts == 0
        nursery.cancel_scope.cancel()


async def test_pod_and_block_withdrawals(fabric: EvpnFabric, node: EvpnNode) -> None:
    async with trio.open_nursery() as nursery:
        await node.add_pod("p1", VRF42)
        pod = await node.add_pod("p2", VRF300)
        await up(node, nursery)
        await async_wait_for(
            "our routes at the leaf", fabric.leaf.evpn_routes, our_routes(node, "p1", "p2"), TIMEOUT
        )
        await node.delete_pod("p2")
        await async_wait_for(
            "p2's type-2 gone at the leaf",
            lambda: {"p2": [r for r in fabric.leaf.evpn_routes() if r.get("mac") == pod.mac]},
            {"p2": []},
            TIMEOUT,
            exact_lists=True,
        )
        await node.pool.release_domain(42)  # the domain's blocks released
        await async_wait_for(
            "the block's type-5 gone at the leaf",
            lambda: {
                "t5": [r for r in fabric.leaf.evpn_routes() if r.get("prefix") == "10.244.0.0/26"]
            },
            {"t5": []},
            TIMEOUT,
            exact_lists=True,
        )
        nursery.cancel_scope.cancel()


def entries(node: EvpnNode) -> set[object]:
    return set(node.evpn.installed.values())


async def settled(node: EvpnNode) -> None:
    """The reflector's whole table received (its End-of-RIB) and in the
    kernel: what a test then takes as "the kernel before" is complete (the
    leaf's routes come in several UPDATEs, programmed in as many passes)."""
    await async_wait_for(
        "the reflector's table in the kernel",
        lambda: {
            "eor": RR in node.evpn.graceful.eor,
            "programmed": node.evpn.installed == node.evpn.table.desired(),
        },
        {"eor": True, "programmed": True},
        TIMEOUT,
    )


async def test_exabgp_killed_kernel_kept_nothing_duplicated(
    fabric: EvpnFabric, node: EvpnNode
) -> None:
    async with trio.open_nursery() as nursery:
        await node.add_pod("p1", VRF42)
        await up(node, nursery)
        await async_wait_for(
            "p1 -> h1", lambda: {"ok": node.ping("p1", "10.50.0.2")}, {"ok": True}, TIMEOUT
        )
        await settled(node)
        before = await node.dump()
        installed = entries(node)
        pid = node.speaker.stats.pid
        os.kill(pid, signal.SIGKILL)
        # while ExaBGP is down and comes back, the kernel keeps the routes
        deadline = trio.current_time() + 40
        while node.speaker.stats.pid == pid or node.speaker.peers[RR].state != "up":
            assert any(r["dst"] == "10.50.0.0/24" for r in node.kernel()["routes"])
            assert trio.current_time() < deadline, "ExaBGP did not come back"
            await trio.sleep(0.1)
        assert node.speaker.stats.restarts == 1
        # converged: the leaf's End-of-RIB dropped the stale copies, nothing twice
        await async_wait_for(
            "no stale paths left",
            lambda: {"stale": [s for s, _ in node.evpn.table.paths() if s.startswith("stale:")]},
            {"stale": []},
            TIMEOUT,
            exact_lists=True,
        )
        assert entries(node) == installed
        assert await node.dump() == before
        assert node.ping("p1", "10.50.0.2")
        nursery.cancel_scope.cancel()


async def test_a_restarted_node_adopts_then_sweeps(fabric: EvpnFabric, node: EvpnNode) -> None:
    gb = fabric.gb
    extra = Prefix("10.70.0.0/24", 42, f"{GB}:42", f"{ASN}:42", "02:00:00:00:00:20", GB)
    gb.add(extra)
    async with trio.open_nursery() as nursery:
        await up(node, nursery)
        await async_wait_for(
            "GoBGP's route in our kernel",
            node.kernel,
            {"routes": [{"dst": "10.70.0.0/24"}, {"dst": "10.50.0.0/24"}]},
            TIMEOUT,
        )
        nursery.cancel_scope.cancel()
    kept = entries(node)
    # the daemon is gone; meanwhile GoBGP withdraws its route
    gb.delete(extra)
    node.new_controller()
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        # adopted, not flushed: the kernel still has everything, GoBGP's route too,
        # also after program passes that ran before the peering said who the
        # neighbours are (each second at most)
        await trio.sleep(2.5)
        assert entries(node) == kept and node.evpn.adopting
        assert any(r["dst"] == "10.70.0.0/24" for r in node.kernel()["routes"])
        node.speaker.configure(node.reflectors(RR))
        await async_wait_for(
            "re-learned, then swept",
            lambda: {
                "adopting": node.evpn.adopting,
                "routes": [r["dst"] for r in node.kernel()["routes"]],
            },
            {"adopting": False, "routes": ["10.50.0.0/24"]},
            TIMEOUT,
            exact_lists=True,
        )
        assert kept - entries(node) == {
            EvpnRoute(42, "10.70.0.0/24", GB, 42),
            NeighEntry(42, GB, "02:00:00:00:00:20"),
            FdbEntry(42, "02:00:00:00:00:20", GB),
        }
        nursery.cancel_scope.cancel()


async def test_a_peer_that_restarts_keeps_its_routes_in_the_kernel(
    fabric: EvpnFabric, node: EvpnNode
) -> None:
    """The route reflector stops (FRR's NOTIFICATION) and comes back: its
    paths stay as stale copies and the kernel is untouched until its
    End-of-RIB makes them fresh (a peer's daemon restarting costs no
    traffic). A peer that does not come back in its time (the longer of
    ``stale_timeout`` and its Restart Time) goes then; one that is no
    neighbour any more goes at once."""

    def session() -> dict[str, bool]:
        peer = node.speaker.peers.get(RR)
        return {"up": peer is not None and peer.state == "up"}

    async def cleared(what: str) -> None:
        await async_wait_for(
            what,
            lambda: {"paths": len(node.evpn.table), "routes": node.kernel()["routes"]},
            {"paths": 0, "routes": []},
            TIMEOUT,
            exact_lists=True,
        )

    def sources() -> dict[str, Any]:
        return {"sources": sorted({src for src, _ in node.evpn.table.paths()})}

    leaf_route = {"routes": [{"dst": "10.50.0.0/24", "gateway": LEAF}]}
    async with trio.open_nursery() as nursery:
        await up(node, nursery)
        await async_wait_for("the leaf's type-5 in our kernel", node.kernel, leaf_route, TIMEOUT)
        await settled(node)
        kept = entries(node)
        node.evpn.stale_timeout = 300.0
        fabric.rr.stop()
        await async_wait_for("the session down", session, {"up": False}, TIMEOUT)
        await trio.sleep(2.0)  # the program loop ran (every second at most)
        assert sources() == {"sources": [f"stale:{RR}"]}
        assert entries(node) == kept and await node.dump() == node.evpn.installed
        fabric.rr.start()
        await async_wait_for(
            "back: fresh again, nothing stale",
            sources,
            {"sources": [RR]},
            TIMEOUT,
            exact_lists=True,
        )
        assert entries(node) == kept and await node.dump() == node.evpn.installed

        # gone for longer than its time (the longer of stale_timeout and
        # the Restart Time it advertised, RFC 4724): its paths go then.
        # FRR advertises 120 s: learned from its OPEN, through ExaBGP's state
        await async_wait_for(
            "FRR's restart time learned",
            lambda: {"restart_time": node.speaker.peers[RR].restart_time},
            {"restart_time": 120},
            TIMEOUT,
        )
        node.speaker.peers[RR].restart_time = 2  # as if it advertised 2 s
        node.evpn.stale_timeout = 3.0
        fabric.rr.stop()
        await async_wait_for("the session down", session, {"up": False}, TIMEOUT)
        await cleared("the stale paths dropped after stale_timeout")
        fabric.rr.start()
        await async_wait_for("the route back", node.kernel, leaf_route, TIMEOUT)

        # no neighbour any more (its Node deleted): at once, stale or not
        node.evpn.stale_timeout = 300.0
        node.speaker.configure(node.reflectors())
        await cleared("a departed peer's paths dropped")
        assert await node.dump() == node.evpn.installed
        nursery.cancel_scope.cancel()
    wait_for("the leaf back", fabric.leaf.peers, {RR: "Established"}, TIMEOUT)
    wait_for("GoBGP back", fabric.gb.peers, {RR: "established"}, TIMEOUT)


async def test_a_peer_gone_is_removed_after_the_hold_time(
    fabric: EvpnFabric, node: EvpnNode
) -> None:
    async with trio.open_nursery() as nursery:
        await up(node, nursery)
        await async_wait_for(
            "the leaf's type-5 in our kernel",
            node.kernel,
            {"routes": [{"dst": "10.50.0.0/24", "gateway": LEAF}]},
            TIMEOUT,
        )
        # the leaf goes silent (frozen: no NOTIFICATION, no FIN, no keepalive)
        pids = list(fabric.leaf.pids.values())
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        await async_wait_for(
            "the leaf's entries gone from our kernel",
            lambda: {
                "leaf": [
                    e for kind in node.kernel().values() for e in kind
                    if LEAF in (e.get("gateway"), e.get("dst"))
                ]
            },
            {"leaf": []},
            TIMEOUT,
            exact_lists=True,
        )  # fmt: skip
        gone_after = time.monotonic() - started
        assert gone_after >= 1.5  # the RR's hold time (3 s) ran out first
        assert not any(rp.path.nexthop == LEAF for _, rp in node.evpn.table.paths())
        assert await node.dump() == node.evpn.installed  # nothing stale in the kernel
        nursery.cancel_scope.cancel()
    for pid in pids:
        os.kill(pid, signal.SIGCONT)
    fabric.leaf.restart()
    wait_for("the leaf back", fabric.leaf.peers, {RR: "Established"}, TIMEOUT)
