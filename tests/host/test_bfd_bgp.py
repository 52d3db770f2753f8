"""BFD on an eBGP session with a real FRR leaf (bgpd + bfdd, FRR 8.4): a leaf
that falls silent without closing its session costs the node its BGP
session and the leaf's routes within BFD's detection time (300 ms x 3), not
the 30 s hold time; the session and the routes come back with BFD.

    lan bb<pid>-lan: br0, 192.168.93.0/24
     |-- leaf1 .1  FRR leaf, AS 65111 (zebra, bgpd, bfdd): L2VNI 300, L3VNI 42,
     |     |       `neighbor 192.168.93.11 bfd`, BGP timers 10/30: single hop
     |     `-- h1  10.63.0.2/24 routed (type-5 10.63.0.0/24)
     |-- leaf2 .2  the same, AS 65112, its BGP from its loopback 10.93.255.2
     |     |       (`ebgp-multihop 2`, `update-source`): multihop BFD (RFC 5883)
     |     `-- h2  10.64.0.2/24 routed (type-5 10.64.0.0/24)
     `-- node .11  cnid (testbed.evpn_node), AS 65001: `bfd: true` for one of
                   the leaves (leaf2: `multihop: 2`, to its loopback), hold time 30

The leaf falls silent by an nftables table dropping everything in its
namespace (no link event on either side), then speaks again. Last, BFD is
turned off for the leaf: cnid ends the session with AdminDown and takes no
action on BGP (FRR 8.4 resets the session on it: docs/evpn.md, "BFD").
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from cnid.bgp import Neighbor, SpeakerConfig
from cnid.ctl import render
from cnid.daemon import bfd_peers, bgp_summary, evpn_routes
from testbed.domains import VRF42, VRF300
from testbed.evpn_node import EvpnNode, on_lan
from testbed.frr import FrrRouter, Host, L2Vni, L3Vni, evpn_leaf
from testbed.frr import Neighbor as FrrNeighbor
from testbed.jsoncmp import async_wait_for
from testbed.netlab import Lab, Lan, silence, unsilence

NET = "192.168.93"
NODE, NODE_AS = f"{NET}.11", 65001
RT = 65000
HOLD = 30  # BGP's hold time, both sides: what BFD must beat
TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    not Path("/usr/lib/frr/bfdd").exists() or os.geteuid() != 0,
    reason="needs FRR's bfdd and root",
)


@dataclass(frozen=True)
class LeafSpec:
    name: str
    index: int
    asn: int
    vtep: str
    peer: str  # the BGP (and BFD) address the node peers with
    multihop: int
    prefix: str  # its host's, announced as type-5


LEAVES = {
    "single-hop": LeafSpec("leaf1", 1, 65111, f"{NET}.1", f"{NET}.1", 0, "10.63.0.0/24"),
    "multihop": LeafSpec("leaf2", 2, 65112, f"{NET}.2", "10.93.255.2", 2, "10.64.0.0/24"),
}
#: A reflector-like leaf whose peers are dynamic (`bgp listen range`): FRR
#: deletes the peer and its BFD session when the BGP session ends.
DYNAMIC = LeafSpec("leaf3", 3, 65113, f"{NET}.3", f"{NET}.3", 0, "10.65.0.0/24")


@dataclass
class Fabric:
    lab: Lab
    lan: Lan
    leaves: dict[str, FrrRouter]


def _leaf(lab: Lab, lan: Lan, spec: LeafSpec, *, dynamic: bool = False) -> FrrRouter:
    """An FRR leaf peering with the node with BFD: an explicit neighbour, or
    (``dynamic``) a ``bgp listen range`` peer group the node connects to."""
    ns = lab.netns(spec.name, lan=lan, index=spec.index)
    net = spec.prefix.rsplit(".", 1)[0]
    leaf = evpn_leaf(
        spec.name,
        ns,
        spec.asn,
        spec.vtep,
        vtep=spec.vtep,
        neighbors=[] if dynamic else [FrrNeighbor(NODE, remote_as="external")],
        l2vnis=[L2Vni(300, rt=f"{RT}:300")],
        l3vni=L3Vni(42, rt=f"{RT}:42"),
        hosts=[Host(lab.name(f"h{spec.index}"), routed=(f"{net}.1/24", f"{net}.2/24"))],
        timers=(10, HOLD),
    )
    if dynamic:
        leaf.extra_bgpd = (
            f"router bgp {spec.asn}\n"
            " neighbor NODES peer-group\n neighbor NODES remote-as external\n"
            f" neighbor NODES timers 10 {HOLD}\n neighbor NODES advertisement-interval 0\n"
            " neighbor NODES bfd\n"
            f" bgp listen range {NET}.0/24 peer-group NODES\n"
            " address-family l2vpn evpn\n  neighbor NODES activate\n"
            "  neighbor NODES attribute-unchanged next-hop\n exit-address-family\nexit\n"
        )
    else:
        multihop = ""
        if spec.multihop:
            subprocess.run(
                ["ip", "-n", ns, "addr", "add", f"{spec.peer}/32", "dev", "lo"], check=True
            )
            multihop = (
                f" neighbor {NODE} ebgp-multihop {spec.multihop}\n"
                f" neighbor {NODE} update-source {spec.peer}\n"
            )
        leaf.extra_bgpd = (
            f"router bgp {spec.asn}\n{multihop} neighbor {NODE} bfd\n"
            f" address-family l2vpn evpn\n  neighbor {NODE} attribute-unchanged next-hop\n"
            " exit-address-family\nexit\n"
        )
    leaf.bfdd = "bfd\nexit\n"  # the peer comes from bgpd's `neighbor X bfd` (300 ms x 3)
    return leaf


@pytest.fixture(scope="module")
def fabric() -> Iterator[Fabric]:
    lab = Lab(f"bb{os.getpid() % 100000}")
    try:
        lan = lab.lan("lan", f"{NET}.0/24")
        leaves = {kind: lab.add(_leaf(lab, lan, spec)) for kind, spec in LEAVES.items()}
        leaves["dynamic"] = lab.add(_leaf(lab, lan, DYNAMIC, dynamic=True))
        for leaf in leaves.values():
            leaf.start()
        yield Fabric(lab, lan, leaves)
    finally:
        lab.stop()
        assert not lab.leftovers()


@pytest.fixture
async def node(fabric: Fabric, tmp_path: Path) -> AsyncIterator[EvpnNode]:
    with on_lan(
        fabric.lan, f"f{os.getpid() % 100000}", NODE, tmp_path / "node", [VRF42, VRF300]
    ) as n:
        yield n


def config(spec: LeafSpec, bfd: bool = True) -> SpeakerConfig:
    leaf = Neighbor(spec.peer, role="neighbor", asn=spec.asn, multihop=spec.multihop, bfd=bfd)
    return SpeakerConfig(
        router_id=NODE, local_address=NODE, asn=NODE_AS, neighbors=(leaf,), hold_time=HOLD
    )


def leaf_paths(node: EvpnNode, spec: LeafSpec) -> list[dict[str, Any]]:
    return [r for r in evpn_routes(node.evpn) if r["from"] == spec.peer]


def leaf_in_kernel(node: EvpnNode, spec: LeafSpec) -> dict[str, bool]:
    """Whether the node's kernel has the leaf's type-5 route and flood entry."""
    k = node.kernel()
    route = any(r.get("dst") == spec.prefix for r in k["routes"])
    flood = any(f.get("dst") == spec.vtep for f in k["fdb"])
    return {"route": route, "flood": flood}


def frr_bfd(leaf: FrrRouter) -> dict[str, Any]:
    peers: list[dict[str, Any]] = leaf.vtysh_json("show bfd peers json") or []
    return next((p for p in peers if p.get("peer") == NODE), {})


def ours(node: EvpnNode, spec: LeafSpec) -> dict[str, Any]:
    peers: list[dict[str, Any]] = bfd_peers(node.evpn)["peers"]
    return next((p for p in peers if p["peer"] == spec.peer), {})


def established(node: EvpnNode) -> dict[str, str]:
    return {a: p.state for a, p in node.speaker.peers.items()}


@pytest.mark.parametrize("kind", list(LEAVES))
async def test_a_silent_leaf_costs_its_session_and_routes_within_a_second(
    fabric: Fabric, node: EvpnNode, kind: str
) -> None:
    leaf, spec = fabric.leaves[kind], LEAVES[kind]
    peer = spec.peer
    multihop = bool(spec.multihop)
    if multihop:
        node.ns.ip("route", "add", f"{spec.peer}/32", "via", spec.vtep)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        node.speaker.configure(config(spec))
        await async_wait_for("the BGP session", lambda: established(node), {peer: "up"}, TIMEOUT)
        # BFD Up on both sides, as each shows it
        await async_wait_for(
            "cnid's BFD session Up",
            lambda: ours(node, spec),
            {"state": "up", "local": NODE, "multihop": multihop, "bgp_held_down": False},
            TIMEOUT,
        )
        await async_wait_for(
            "FRR's BFD session up", lambda: frr_bfd(leaf), {"status": "up"}, TIMEOUT
        )
        frr = frr_bfd(leaf)
        assert (frr["remote-transmit-interval"], frr["remote-receive-interval"]) == (300, 300)
        assert frr["remote-detect-multiplier"] == 3
        assert frr["multihop"] is multihop  # RFC 5883 on both sides, or neither
        mine = ours(node, spec)
        assert (mine["tx_interval_ms"], mine["rx_interval_ms"], mine["detection_time_ms"]) == (
            300, 300, 900
        )  # fmt: skip
        text = render("bfd-peers", bfd_peers(node.evpn))
        assert peer in text and " up " in text, text
        # the leaf's routes, in the table and the kernel
        await async_wait_for(
            "the leaf's routes programmed",
            lambda: leaf_paths(node, spec),
            [{"type": 5, "route": f"[5]:[0]:[24]:[{spec.prefix[:-3]}]", "state": "programmed"},
             {"type": 3, "nexthop": spec.vtep, "state": "programmed"}],
            TIMEOUT,
        )  # fmt: skip
        await async_wait_for(
            "the leaf in the kernel",
            lambda: leaf_in_kernel(node, spec),
            {"route": True, "flood": True},
            TIMEOUT,
        )
        flaps = ours(node, spec)["flaps"]

        # the leaf falls silent: nothing in or out of its namespace
        leaf_ns = fabric.lab.name(spec.name)
        silence(leaf_ns)
        cut = time.monotonic()
        await async_wait_for(
            "the leaf's routes gone from the kernel",
            lambda: leaf_in_kernel(node, spec),
            {"route": False, "flood": False},
            10.0,
            interval=0.02,
        )
        gone = time.monotonic() - cut
        print(f"\nBFD ({kind}): leaf silent -> its routes out of the kernel in {gone:.3f} s")
        assert gone < 3.0, f"{gone:.2f} s: not BFD's 0.9 s (the hold time is {HOLD} s)"
        assert leaf_paths(node, spec) == []
        down = ours(node, spec)
        assert down["state"] == "down" and down["local_diag"] == "control_detection_time_expired"
        assert down["bgp_held_down"] is True and down["last_reaction"] == "teardown"
        assert down["flaps"] == flaps + 1
        await async_wait_for(
            "the BGP session torn down",
            lambda: {"up": node.speaker.peers[peer].state == "up"},
            {"up": False},
            5.0,
        )
        [summary] = bgp_summary(node.evpn)["peers"]
        assert (summary["address"], summary["held_down"]) == (peer, True)
        metrics = node.metrics.render().decode()
        assert f'cnid_bfd_session_state{{peer="{peer}"}} 1.0' in metrics
        assert f'cnid_bfd_bgp_teardowns_total{{peer="{peer}"}} 1.0' in metrics
        # held down: still down a while later (no session while BFD is down)
        await trio.sleep(3.0)
        assert node.speaker.peers[peer].state != "up"

        # the leaf speaks again: BFD, then BGP, then the routes come back
        unsilence(leaf_ns)
        back = time.monotonic()
        await async_wait_for(
            "BFD Up again",
            lambda: ours(node, spec),
            {"state": "up", "bgp_held_down": False},
            TIMEOUT,
        )
        await async_wait_for(
            "the BGP session again", lambda: established(node), {peer: "up"}, TIMEOUT
        )
        await async_wait_for(
            "the leaf's routes back in the kernel",
            lambda: leaf_in_kernel(node, spec),
            {"route": True, "flood": True},
            TIMEOUT,
        )
        again = time.monotonic() - back
        print(f"BFD ({kind}): leaf back -> its routes in the kernel again in {again:.1f} s")
        await async_wait_for(
            "FRR's BFD session up again", lambda: frr_bfd(leaf), {"status": "up"}, TIMEOUT
        )

        # BFD turned off for the leaf: the session ends with AdminDown and
        # cnid takes no action on BGP (RFC 5882 3.2). FRR 8.4 does: it takes
        # the peer's AdminDown for a failure and resets the session (Cease,
        # "BFD Down"); the session comes back at once all the same, without BFD.
        # (multihop: FRR 8.4 signals Down once more after the BGP session is
        # back, and cnid tears it down again: compare with what was counted)
        teardowns = node.metrics.registry.get_sample_value(
            "cnid_bfd_bgp_teardowns_total", {"peer": peer}
        )
        node.speaker.configure(config(spec, bfd=False))
        await async_wait_for(
            "FRR told AdminDown",
            lambda: frr_bfd(leaf),
            {"status": "down", "remote-diagnostic": "administratively down"},
            5.0,
        )
        assert bfd_peers(node.evpn)["peers"] == []
        await trio.sleep(3.0)
        assert node.evpn.bfd is not None and not node.evpn.bfd.holds_down(peer)
        assert (
            node.metrics.registry.get_sample_value("cnid_bfd_bgp_teardowns_total", {"peer": peer})
            == teardowns
        )  # none for AdminDown
        await async_wait_for(
            "the session without BFD", lambda: established(node), {peer: "up"}, TIMEOUT
        )
        await async_wait_for(
            "the leaf's routes, without BFD",
            lambda: leaf_in_kernel(node, spec),
            {"route": True, "flood": True},
            TIMEOUT,
        )
        nursery.cancel_scope.cancel()


async def test_a_dynamic_peer_whose_bfd_starts_with_bgp_comes_back_after_the_bound(
    fabric: Fabric, node: EvpnNode
) -> None:
    """FRR with `bgp listen range` (dynamic neighbours, as route reflectors
    often are) deletes the peer and its BFD session when BFD ends the BGP
    session, and starts them again only when the node connects: BFD never
    comes Up while cnid holds BGP down. The hold is bounded (BFD_HOLD, 10 s
    here instead of 30): then the session, FRR's BFD and the routes return."""
    bound = 10.0
    assert node.evpn.bfd is not None
    node.evpn.bfd.hold = bound
    leaf, spec = fabric.leaves["dynamic"], DYNAMIC
    peer = spec.peer
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        node.speaker.configure(config(spec))
        await async_wait_for("the BGP session", lambda: established(node), {peer: "up"}, TIMEOUT)
        await async_wait_for(
            "cnid's BFD session Up", lambda: ours(node, spec).get("state"), "up", TIMEOUT
        )
        await async_wait_for(
            "the leaf in the kernel",
            lambda: leaf_in_kernel(node, spec),
            {"route": True, "flood": True},
            TIMEOUT,
        )

        leaf_ns = fabric.lab.name(spec.name)
        silence(leaf_ns)
        cut = time.monotonic()
        await async_wait_for("held down", lambda: ours(node, spec).get("bgp_held_down"), True, 10.0)
        # FRR's side: BFD Down reset its session, and the dynamic peer went
        # with its BFD session
        await async_wait_for("FRR's BFD session deleted", lambda: frr_bfd(leaf) == {}, True, 10.0)
        unsilence(leaf_ns)
        healed = time.monotonic() - cut
        await trio.sleep(2.0)
        # the path works again, but nobody starts BFD: still held, FRR has no session
        assert frr_bfd(leaf) == {} and ours(node, spec)["state"] == "down"
        assert node.speaker.peers[peer].state != "up"

        # the bound passes: BGP connects, FRR makes the peer and its BFD
        # session again, BFD comes Up, the routes return
        await async_wait_for(
            "the BGP session again", lambda: established(node), {peer: "up"}, bound + TIMEOUT
        )
        back = time.monotonic() - cut
        await async_wait_for(
            "BFD Up again",
            lambda: ours(node, spec),
            {"state": "up", "bgp_held_down": False},
            TIMEOUT,
        )
        await async_wait_for(
            "FRR's BFD session up again", lambda: frr_bfd(leaf), {"status": "up"}, TIMEOUT
        )
        await async_wait_for(
            "the leaf's routes back in the kernel",
            lambda: leaf_in_kernel(node, spec),
            {"route": True, "flood": True},
            TIMEOUT,
        )
        print(
            f"\nBFD (dynamic peer): path healed {healed:.1f} s after the cut, "
            f"BGP back {back:.1f} s after it (bound {bound:.0f} s)"
        )
        assert back >= bound - 1.0, back
        nursery.cancel_scope.cancel()
