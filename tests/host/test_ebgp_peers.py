"""eBGP to real peers on the host (issue 14, item 1): a cnid node in its own
AS peering with FRR 8.4 leaves in theirs, with GoBGP, and a second cnid
node of the same AS behind the same leaf (the rack-in-one-AS design, which
needs ``allow_as_in``). The node is ``testbed.evpn_node`` (the real speaker,
controller and dataplane in a namespace; no VRF device); the second node is
a bare cnid ``Speaker`` (its own ExaBGP) announcing a pod's routes.

    lan eb<pid>-lan: br0, 192.168.91.0/24
     |-- leaf1 .1   FRR leaf, AS 65101: L2VNI 300, L3VNI 42 (hand-set RTs
     |      |        65000:N), remote-as external to the nodes (MD5 with the
     |      |        node) and the spine
     |      `-- h1  10.61.0.2/24 routed (type-5 10.61.0.0/24)
     |-- leaf2 .2   FRR bgpd, AS 65102: remote-as external to the node and
     |              the spine (the rack's second leaf)
     |-- spine .100 FRR bgpd, AS 65000, attribute-unchanged next-hop
     |-- gb    .20  GoBGP, AS 65200: the spine and the node
     |-- node  .11  cnid, AS 65001: vrf-42 (l3vni 42), vrf-300 (l2vni 300)
     `-- node2 .12  cnid's speaker, AS 65001 (the node's rack mate)

Convergence is waited for on JSON views (testbed.jsoncmp); every namespace
and process is removed by the lab, by PID.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio

from cnid.bgp import EvpnPath, ImetRoute, MacIpRoute, Neighbor, Speaker, SpeakerConfig
from cnid.daemon import bgp_summary, evpn_routes
from testbed.domains import VRF42, VRF300
from testbed.evpn_node import EvpnNode, on_lan
from testbed.frr import FrrRouter, Host, L2Vni, L3Vni, evpn_leaf
from testbed.frr import Neighbor as FrrNeighbor
from testbed.gobgp import GoBgp, GoBgpNeighbor, MacAdv
from testbed.jsoncmp import async_wait_for, wait_for
from testbed.netlab import Lab, Lan
from testbed.netns import Netns

NET = "192.168.91"
LEAF1, LEAF2, SPINE, GB = f"{NET}.1", f"{NET}.2", f"{NET}.100", f"{NET}.20"
NODE, NODE2 = f"{NET}.11", f"{NET}.12"
NODE_AS, LEAF1_AS, LEAF2_AS, SPINE_AS, GB_AS = 65001, 65101, 65102, 65000, 65200
MD5 = "leaf1-node-md5"
RT = 65000  # the hand-set route targets' AS: every leaf's, whatever its own
TIMEOUT = 30.0


@dataclass
class Fabric:
    lab: Lab
    lan: Lan
    leaf1: FrrRouter
    leaf2: FrrRouter
    spine: FrrRouter
    gb: GoBgp


def _relay(name: str, netns: str, asn: int, router_id: str, peers: list[str]) -> FrrRouter:
    """A bgpd (``-Z``) that only relays EVPN routes, next hops unchanged."""
    unchanged = "\n".join(f"  neighbor {p} attribute-unchanged next-hop" for p in peers)
    return FrrRouter(
        name=name,
        netns=netns,
        asn=asn,
        router_id=router_id,
        neighbors=[FrrNeighbor(p, remote_as="external") for p in peers],
        extra_bgpd=f"router bgp {asn}\n address-family l2vpn evpn\n{unchanged}\n"
        " exit-address-family\nexit\n",
    )


@pytest.fixture(scope="module")
def fabric() -> Iterator[Fabric]:
    lab = Lab(f"eb{os.getpid() % 100000}")
    try:
        lan = lab.lan("lan", f"{NET}.0/24")
        peers1 = [NODE, NODE2, SPINE]
        leaf1 = evpn_leaf(
            "leaf1",
            lab.netns("leaf1", lan=lan, index=1),
            LEAF1_AS,
            LEAF1,
            vtep=LEAF1,
            neighbors=[FrrNeighbor(p, remote_as="external") for p in peers1],
            l2vnis=[L2Vni(300, rt=f"{RT}:300")],
            l3vni=L3Vni(42, rt=f"{RT}:42"),
            hosts=[Host(lab.name("h1"), routed=("10.61.0.1/24", "10.61.0.2/24"))],
        )
        # as fabric.md's leaf: the nodes' routes keep their VTEP as next hop
        unchanged = "\n".join(f"  neighbor {p} attribute-unchanged next-hop" for p in peers1)
        leaf1.extra_bgpd = (
            f"router bgp {LEAF1_AS}\n neighbor {NODE} password {MD5}\n"
            f" address-family l2vpn evpn\n{unchanged}\n exit-address-family\nexit\n"
        )
        lab.add(leaf1)
        leaf2 = lab.add(
            _relay("leaf2", lab.netns("leaf2", lan=lan, index=2), LEAF2_AS, LEAF2, [NODE, SPINE])
        )
        spine = lab.add(
            _relay(
                "spine", lab.netns("spine", lan=lan, index=100), SPINE_AS, SPINE,
                [LEAF1, LEAF2, GB],
            )
        )  # fmt: skip
        gb = lab.add(
            GoBgp("gb", lab.netns("gb", lan=lan, index=20), GB_AS, GB,
                  neighbors=[GoBgpNeighbor(SPINE, SPINE_AS), GoBgpNeighbor(NODE, NODE_AS)])
        )  # fmt: skip
        for router in (spine, leaf1, leaf2):
            router.start()
        gb.start()
        sessions = {LEAF1: "Established", LEAF2: "Established", GB: "Established"}
        wait_for("the spine's sessions", spine.peers, sessions, TIMEOUT)
        yield Fabric(lab, lan, leaf1, leaf2, spine, gb)
    finally:
        lab.stop()
        assert not lab.leftovers()


@pytest.fixture
async def node(fabric: Fabric, tmp_path: Path) -> AsyncIterator[EvpnNode]:
    with on_lan(
        fabric.lan, f"b{os.getpid() % 100000}", NODE, tmp_path / "node", [VRF42, VRF300]
    ) as n:
        yield n


def ebgp(*neighbors: Neighbor, address: str = NODE) -> SpeakerConfig:
    return SpeakerConfig(
        router_id=address, local_address=address, asn=NODE_AS, neighbors=neighbors, hold_time=9
    )


LEAF1_NB = Neighbor(LEAF1, role="neighbor", asn=LEAF1_AS, password=MD5, bfd=True)
LEAF2_NB = Neighbor(LEAF2, role="neighbor", asn=LEAF2_AS)


async def up(node: EvpnNode, nursery: trio.Nursery, config: SpeakerConfig) -> None:
    await nursery.start(node.run)
    node.speaker.configure(config)
    want = {n.address: "up" for n in config.neighbors}
    await async_wait_for(
        "the node's eBGP sessions",
        lambda: {a: p.state for a, p in node.speaker.peers.items()},
        want,
        TIMEOUT,
    )


def received(node: EvpnNode) -> list[dict[str, Any]]:
    return evpn_routes(node.evpn)


def as_paths(router: FrrRouter, nexthop: str) -> set[str]:
    """The AS_PATHs of the router's EVPN paths with this next hop."""
    table = router.vtysh_json("show bgp l2vpn evpn route detail json")
    out = set()
    for by_prefix in table.values() if isinstance(table, dict) else ():
        for entry in by_prefix.values() if isinstance(by_prefix, dict) else ():
            for path in entry.get("paths", []) if isinstance(entry, dict) else ():
                for p in path if isinstance(path, list) else [path]:
                    hops = [h.get("ip") for h in p.get("nexthops", [])]
                    if nexthop in hops:
                        out.add(str(p.get("aspath", {}).get("string", "")))
    return out


async def test_a_node_in_its_own_as_and_an_frr_leaf_in_another_with_md5(
    fabric: Fabric, node: EvpnNode
) -> None:
    async with trio.open_nursery() as nursery:
        await node.add_pod("p1", VRF42)
        p2 = await node.add_pod("p2", VRF300)
        await up(node, nursery, ebgp(LEAF1_NB))
        wait_for("the leaf's side", fabric.leaf1.peers, {NODE: "Established"}, TIMEOUT)
        # ours at the leaf: next hop our VTEP, AS_PATH our AS
        rmac = node.link_mac("br-42")
        ours = [
            {"type": 5, "prefix": "10.244.0.0/26", "vni": 42, "rmac": rmac, "nexthop": NODE},
            {"type": 3, "ip": NODE, "vni": 300, "nexthop": NODE},
            {"type": 2, "mac": p2.mac, "ip": p2.address, "vni": 300, "nexthop": NODE},
        ]
        await async_wait_for("our routes at the leaf", fabric.leaf1.evpn_routes, ours, TIMEOUT)
        assert as_paths(fabric.leaf1, NODE) == {str(NODE_AS)}
        # the leaf's in our table and kernel: its own VTEP as next hop
        await async_wait_for(
            "the leaf's routes at the node",
            lambda: received(node),
            [
                {"type": 5, "route": "[5]:[0]:[24]:[10.61.0.0]", "nexthop": LEAF1,
                 "from": LEAF1, "state": "programmed"},
                {"type": 3, "nexthop": LEAF1, "from": LEAF1, "state": "programmed"},
            ],
            TIMEOUT,
        )  # fmt: skip
        # traffic over VXLAN both ways: pod in vrf-42 <-> the host behind the leaf
        await async_wait_for(
            "p1 -> h1", lambda: {"ok": node.ping("p1", "10.61.0.2")}, {"ok": True}, TIMEOUT
        )
        summary = bgp_summary(node.evpn)
        assert summary["asn"] == NODE_AS and summary["mode"] == "neighbors"
        [peer] = summary["peers"]
        assert (peer["asn"], peer["type"], peer["bfd"], peer["state"]) == (
            LEAF1_AS, "ebgp", True, "established"
        )  # fmt: skip
        nursery.cancel_scope.cancel()


async def test_gobgp_in_ebgp(fabric: Fabric, node: EvpnNode) -> None:
    mac = MacAdv("02:61:00:00:00:20", "10.3.0.220", 300, f"{GB}:300", f"{RT}:300", nexthop=GB)
    fabric.gb.add(mac)
    try:
        async with trio.open_nursery() as nursery:
            p2 = await node.add_pod("p2", VRF300)
            await up(node, nursery, ebgp(Neighbor(GB, role="neighbor", asn=GB_AS)))
            await async_wait_for(
                "GoBGP's route at the node",
                lambda: received(node),
                [{"type": 2, "route": "[2]:[0]:[48]:[02:61:00:00:00:20]:[32]:[10.3.0.220]",
                  "nexthop": GB, "from": GB, "state": "programmed"}],
                TIMEOUT,
            )  # fmt: skip
            await async_wait_for(
                "GoBGP's MAC in our kernel",
                node.kernel,
                {"fdb": [{"mac": "02:61:00:00:00:20", "ifname": "vx-300", "dst": GB}]},
                TIMEOUT,
            )
            await async_wait_for(
                "our type-2 at GoBGP, our VTEP as next hop",
                fabric.gb.rib,
                [{"type": 2, "mac": p2.mac, "nexthop": NODE}],
                TIMEOUT,
            )
            nursery.cancel_scope.cancel()
    finally:
        fabric.gb.delete(mac)


NODE2_MAC, NODE2_IP = "02:12:00:00:00:12", "10.3.0.212"


def node2_paths() -> frozenset[EvpnPath]:
    rts = (f"{RT}:300",)
    return frozenset(
        {
            EvpnPath(MacIpRoute(rd=f"{NODE2}:3", mac=NODE2_MAC, vni=300, ip=NODE2_IP), NODE2,
                     route_targets=rts),
            EvpnPath(ImetRoute(rd=f"{NODE2}:3", ip=NODE2, vni=300), NODE2, route_targets=rts),
        }
    )  # fmt: skip


@pytest.fixture
async def node2(fabric: Fabric, tmp_path: Path) -> AsyncIterator[Speaker]:
    """The node's rack mate: cnid's speaker alone, AS 65001, peering with leaf1."""
    ns = Netns("eb2")
    fabric.lan.plug(ns.name, f"{NODE2}/24")
    try:
        async with trio.open_nursery() as nursery:
            speaker = Speaker(run_dir=tmp_path / "node2", launcher=("ip", "netns", "exec", ns.name))
            await nursery.start(speaker.run)
            speaker.configure(ebgp(Neighbor(LEAF1, role="neighbor", asn=LEAF1_AS), address=NODE2))
            speaker.announce(node2_paths())
            yield speaker
            nursery.cancel_scope.cancel()  # ExaBGP ends with it (SIGTERM, reaped)
    finally:
        fabric.lan.unplug(ns.name)
        ns.close()


def skipped_as_loop(node: EvpnNode) -> float:
    for line in node.metrics.render().decode().splitlines():
        if line.startswith('cnid_evpn_routes_skipped_total{reason="as-loop"}'):
            return float(line.split()[-1])
    return 0.0


async def test_two_nodes_of_one_as_behind_a_leaf_need_allow_as_in(
    fabric: Fabric, node: EvpnNode, node2: Speaker
) -> None:
    async with trio.open_nursery() as nursery:
        await up(node, nursery, ebgp(LEAF1_NB))
        wait_for("the rack mate's session", fabric.leaf1.peers, {NODE2: "Established"}, TIMEOUT)
        # the leaf has the rack mate's routes, with its VTEP and AS, and sends them on
        await async_wait_for(
            "the rack mate's routes at the leaf",
            fabric.leaf1.evpn_routes,
            [{"type": 2, "mac": NODE2_MAC, "nexthop": NODE2}],
            TIMEOUT,
        )
        assert as_paths(fabric.leaf1, NODE2) == {str(NODE_AS)}
        # ... and the node drops them: its own AS in the path (65101 65001)
        await async_wait_for(
            "the rack mate's routes skipped as as-loop",
            lambda: {"skipped": skipped_as_loop(node) >= 2},
            {"skipped": True},
            TIMEOUT,
        )
        assert not [r for r in received(node) if r["nexthop"] == NODE2]
        assert node2_mac_in_kernel(node) is False
        # allowAsIn 1: the leaf is asked to send them again (a route refresh,
        # no session reset) and they are installed, next hop the rack mate's VTEP
        flaps = node.speaker.peers[LEAF1].flaps
        node.speaker.configure(ebgp(msgspec.structs.replace(LEAF1_NB, allow_as_in=1)))
        await async_wait_for(
            "the rack mate's routes at the node",
            lambda: received(node),
            [
                {"type": 2, "nexthop": NODE2, "from": LEAF1, "state": "programmed"},
                {"type": 3, "nexthop": NODE2, "from": LEAF1, "state": "programmed"},
            ],
            TIMEOUT,
        )
        await async_wait_for(
            "the rack mate's MAC in our kernel",
            node.kernel,
            {"fdb": [{"mac": NODE2_MAC, "ifname": "vx-300", "dst": NODE2}]},
            TIMEOUT,
        )
        assert node.speaker.peers[LEAF1].flaps == flaps
        assert node.speaker.peers[LEAF1].state == "up"
        # and back to 0: they are withdrawn again
        node.speaker.configure(ebgp(LEAF1_NB))
        await async_wait_for(
            "the rack mate's MAC gone from our kernel",
            lambda: {"present": node2_mac_in_kernel(node)},
            {"present": False},
            TIMEOUT,
        )
        nursery.cancel_scope.cancel()


def node2_mac_in_kernel(node: EvpnNode) -> bool:
    return any(f.get("mac") == NODE2_MAC for f in node.kernel()["fdb"])


async def test_both_leaves_of_a_rack_send_every_remote_route(
    fabric: Fabric, node: EvpnNode
) -> None:
    """GoBGP's route (AS 65200, beyond the spine) reaches the node through
    both leaves, its next hop GoBGP's all the way."""
    mac = MacAdv("02:61:00:00:00:21", "10.3.0.221", 300, f"{GB}:301", f"{RT}:300", nexthop=GB)
    fabric.gb.add(mac)
    try:
        async with trio.open_nursery() as nursery:
            await up(node, nursery, ebgp(LEAF1_NB, LEAF2_NB))
            route = "[2]:[0]:[48]:[02:61:00:00:00:21]:[32]:[10.3.0.221]"
            rows = await async_wait_for(
                "GoBGP's route from both leaves",
                lambda: [r for r in received(node) if r["route"] == route],
                [{"from": LEAF1, "nexthop": GB}, {"from": LEAF2, "nexthop": GB}],
                TIMEOUT,
            )
            assert sorted(r["from"] for r in rows) == [LEAF1, LEAF2]
            assert node.evpn.table.counts(LEAF1)[2] >= 1 and node.evpn.table.counts(LEAF2)[2] >= 1
            # one leaf gone: the route stays, through the other
            node.speaker.configure(ebgp(LEAF2_NB))
            await async_wait_for(
                "GoBGP's route from leaf2 alone",
                lambda: sorted(r["from"] for r in received(node) if r["route"] == route),
                [LEAF2],
                TIMEOUT,
                exact_lists=True,
            )
            await async_wait_for(
                "GoBGP's MAC still in our kernel",
                node.kernel,
                {"fdb": [{"mac": "02:61:00:00:00:21", "ifname": "vx-300", "dst": GB}]},
                TIMEOUT,
            )
            nursery.cancel_scope.cancel()
    finally:
        fabric.gb.delete(mac)
