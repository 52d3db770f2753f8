"""MAC mobility (RFC 7432 section 15) against real peers: sequence numbers
between cnid, FRR 8.4 and GoBGP, and duplicate detection on both sides.

    lan em<pid>-lan: br0, 192.168.84.0/24
     |-- rr    .1   FRR route reflector (listen range; GoBGP as a static client)
     |-- leaf  .4   FRR EVPN leaf: L2VNI 300 (dup-addr-detection: FRR's default, 5 in 180 s)
     |      `-- h1  10.3.0.250/16 in L2VNI 300 (its MAC set per test)
     |-- gb    .20  GoBGP: "node 1", a VTEP whose pod had the address first
     `-- node  .11  cnid: vrf-300 (l2vni 300, 10.3.0.0/16)

One cnid node per test process (``testbed.evpn_node``), so the issue's
three nodes are played by three implementations: GoBGP is the node the pod
left (its route still announced: the withdrawal has not arrived), cnid or
the FRR leaf the node the address is reused on, and the third node (whose
kernel must end up at the new VTEP) the other one of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from cnid.daemon import evpn_duplicates, evpn_routes
from cnid.dataplane import pod_mac
from cnid.ipam import Owner
from testbed.domains import VRF300
from testbed.evpn_fabric import ASN, EvpnFabric, addresses, evpn_fabric, up_with_reflector
from testbed.evpn_node import EvpnNode
from testbed.frr import L2Vni
from testbed.gobgp import MacAdv
from testbed.jsoncmp import async_wait_for
from testbed.netlab import sh

NET = "192.168.84"
RR, LEAF, GB, NODE = addresses(NET)
TIMEOUT = 30.0
RT = f"{ASN}:300"


@pytest.fixture(scope="module")
def fabric() -> Iterator[EvpnFabric]:
    with evpn_fabric(
        "em", NET, l2vnis=[L2Vni(300)], bridged={300: "10.3.0.250/16"}, timeout=TIMEOUT
    ) as fab:
        yield fab


@pytest.fixture
async def node(fabric: EvpnFabric, tmp_path: Path) -> AsyncIterator[EvpnNode]:
    with fabric.node("node", tmp_path, [VRF300], stale_timeout=60) as n:
        yield n


async def up(node: EvpnNode, nursery: trio.Nursery) -> None:
    await up_with_reflector(node, nursery, RR, TIMEOUT)


async def next_address(node: EvpnNode) -> str:
    """The address the node's next pod in VRF300 gets (the lowest free)."""
    lease = await node.pool.allocate(VRF300, Owner("probe", "eth0", "default", "probe"))
    await node.pool.release(VRF300.vrf, "probe", "eth0")
    return str(lease.address)


def leaf_mac(fabric: EvpnFabric, mac: str) -> dict[str, Any]:
    """FRR's ``show evpn mac vni 300 mac MAC json`` (type, remoteVtep,
    localSequence, remoteSequence, detectionCount, isDuplicate)."""
    out = fabric.leaf.vtysh_json(f"show evpn mac vni 300 mac {mac} json")
    return dict(out.get(mac, out)) if isinstance(out, dict) else {}


def leaf_fdb(fabric: EvpnFabric, mac: str) -> dict[str, Any]:
    """The leaf kernel's FDB entry of ``mac`` on vxlan300 ({} if none)."""
    import json

    fdb = json.loads(fabric.leaf.run("bridge", "-j", "fdb", "show", "dev", "vxlan300") or "[]")
    return next((e for e in fdb if e.get("mac") == mac and "dst" in e), {})


def cnid_fdb(node: EvpnNode, mac: str) -> str:
    """The VTEP cnid's kernel sends ``mac`` to ("" if none)."""
    return next((e["dst"] for e in node.kernel()["fdb"] if e["mac"] == mac), "")


def set_host_mac(fabric: EvpnFabric, mac: str) -> None:
    sh("ip", "link", "set", "eth1", "address", mac, ns=fabric.host.netns)


def host_mac(fabric: EvpnFabric) -> str:
    import json

    out = subprocess.run(
        ["ip", "netns", "exec", fabric.host.netns, "ip", "-j", "link", "show", "eth1"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return str(json.loads(out)[0]["address"])


def host_speaks(fabric: EvpnFabric) -> None:
    """A few frames from the host (ARP for an absent address): the leaf
    learns its MAC on the host's port."""
    subprocess.run(
        ["ip", "netns", "exec", fabric.host.netns, "ping", "-c", "2", "-i", "0.3", "-W", "1",
         "10.3.99.99"], capture_output=True, check=False,
    )  # fmt: skip


@contextmanager
def node1_cut_off(fabric: EvpnFabric) -> Iterator[None]:
    """The reflector sends GoBGP nothing (and withdraws what it sent): node
    1 hears of no move, so its copy stays announced, as a node whose
    withdrawal is late. GoBGP does MAC mobility itself: hearing a higher
    sequence, it withdraws its own copy at once (that is what healing shows)."""

    def out(line: str) -> None:
        fabric.rr.vtysh(
            "configure terminal",
            f"router bgp {ASN}",
            "address-family l2vpn evpn",
            line,
            "end",
            f"clear bgp l2vpn evpn {GB} soft out",
        )

    fabric.rr.vtysh("configure terminal", "route-map CUT deny 10", "end")
    out(f"neighbor {GB} route-map CUT out")
    try:
        yield
    finally:
        out(f"no neighbor {GB} route-map CUT out")


def gb_has(fabric: EvpnFabric, mac: str) -> dict[str, Any]:
    """GoBGP's own (local) copies of ``mac``: their next hops."""
    return {
        "own": sorted(
            r["nexthop"] for r in fabric.gb.rib() if r.get("mac") == mac and not r.get("neighbor")
        )
    }


async def test_an_address_reused_on_another_node_moves_its_mac_there(
    fabric: EvpnFabric, node: EvpnNode
) -> None:
    """The issue's scenario: the pod at address A (MAC 0a:58:A) left node 1
    (GoBGP) whose withdrawal has not arrived; A is reused by a pod on cnid:
    cnid announces the MAC with node 1's sequence + 1, and the third node
    (the FRR leaf) moves the MAC to cnid's VTEP in BGP, zebra and its kernel,
    before node 1's withdrawal and after it."""
    gb = fabric.gb
    async with trio.open_nursery() as nursery:
        await up(node, nursery)
        address = await next_address(node)
        mac = pod_mac(address)
        assert mac is not None
        old = MacAdv(mac, address, 300, f"{GB}:300", RT, GB)
        gb.add(old)
        await async_wait_for("node 1's MAC at cnid", lambda: {"vtep": cnid_fdb(node, mac)},
                             {"vtep": GB}, TIMEOUT)  # fmt: skip
        await async_wait_for("node 1's MAC at the leaf", lambda: leaf_mac(fabric, mac),
                             {"type": "remote", "remoteVtep": GB, "remoteSequence": 0},
                             TIMEOUT)  # fmt: skip
        with node1_cut_off(fabric):
            pod = await node.add_pod("p1", VRF300)
            assert (pod.address, pod.mac) == (address, mac)  # the reused address, the same MAC

            def announced() -> dict[str, Any]:
                rows = [r for r in evpn_routes(node.evpn, rtype=2) if r["from"] == "local"]
                return {"seq": [r["mac_mobility_seq"] for r in rows]}

            await async_wait_for("cnid announces sequence 1", announced, {"seq": [1]}, TIMEOUT)
            await async_wait_for(
                "the leaf follows cnid's higher sequence",
                lambda: leaf_mac(fabric, mac),
                {"type": "remote", "remoteVtep": NODE, "remoteSequence": 1},
                TIMEOUT,
            )
            await async_wait_for("... in its kernel", lambda: leaf_fdb(fabric, mac),
                                 {"dst": NODE}, TIMEOUT)  # fmt: skip
            # node 1's copy is still announced, and still at the leaf and at cnid
            assert gb_has(fabric, mac) == {"own": [GB]}
            leaf_paths = fabric.leaf.evpn_routes()
            assert {(r.get("nexthop"), r.get("mac")) for r in leaf_paths} >= {
                (GB, mac),
                (NODE, mac),
            }
            copies = sorted(
                (r["nexthop"], r["mac_mobility_seq"], r["state"])
                for r in evpn_routes(node.evpn, rtype=2)
                if r["from"] != "local" and mac in r["route"]
            )
            # (the reflector sends ours back: not a copy of another VTEP's, no move)
            assert copies == [
                (NODE, 1, "not programmed: our own route, reflected back"),
                (GB, None, f"not programmed: MAC {mac} is a pod of this node's"),
            ]
            assert cnid_fdb(node, mac) == ""  # cnid's own pod: no remote entry for it
            assert metric(node, "cnid_evpn_mac_moves_total") == 1
        # node 1 hears of the move: GoBGP withdraws its copy (its MAC mobility);
        # nothing moves
        await async_wait_for("node 1's withdrawal", lambda: gb_has(fabric, mac), {"own": []},
                             TIMEOUT, exact_lists=True)  # fmt: skip
        await trio.sleep(1)
        assert leaf_mac(fabric, mac)["remoteVtep"] == NODE
        assert leaf_fdb(fabric, mac).get("dst") == NODE
        assert announced() == {"seq": [1]}
        assert evpn_duplicates(node.evpn)["duplicates"] == []
        gb.delete(old)
        nursery.cancel_scope.cancel()


async def test_a_mac_moved_to_an_frr_leaf_then_back_moves_cnids_fdb(
    fabric: EvpnFabric, node: EvpnNode
) -> None:
    """cnid is the third node. The MAC moves from node 1 (GoBGP) to the FRR
    leaf (a host behind it takes it over: FRR announces sequence 1), GoBGP's
    copy still announced: cnid's kernel follows FRR's sequence (decoded by
    ExaBGP from FRR's update), not the order. Then node 1 takes it back
    (GoBGP announces sequence 2): cnid's kernel and the FRR leaf move it
    there, and agree on the sequence."""
    gb = fabric.gb
    mac = "0a:00:00:84:00:02"
    original = host_mac(fabric)
    old = MacAdv(mac, None, 300, f"{GB}:300", RT, GB)

    def at_cnid() -> dict[str, Any]:
        rows = [
            r for r in evpn_routes(node.evpn, rtype=2) if mac in r["route"] and r["from"] != "local"
        ]
        return {
            "vtep": cnid_fdb(node, mac),
            "copies": sorted((r["nexthop"], r["mac_mobility_seq"]) for r in rows),
        }

    try:
        async with trio.open_nursery() as nursery:
            await up(node, nursery)
            gb.add(old)
            await async_wait_for("node 1's MAC at cnid", at_cnid,
                                 {"vtep": GB, "copies": [[GB, None]]}, TIMEOUT)  # fmt: skip
            await async_wait_for("... at the leaf", lambda: leaf_mac(fabric, mac),
                                 {"type": "remote", "remoteVtep": GB}, TIMEOUT)  # fmt: skip
            with node1_cut_off(fabric):
                set_host_mac(fabric, mac)
                host_speaks(fabric)
                await async_wait_for("the leaf learns it locally with sequence 1",
                                     lambda: leaf_mac(fabric, mac),
                                     {"type": "local", "localSequence": 1}, TIMEOUT)  # fmt: skip
                await async_wait_for(
                    "cnid follows the leaf's sequence 1, GoBGP's copy still there",
                    at_cnid,
                    {"vtep": LEAF, "copies": [[GB, None], [LEAF, 1]]},
                    TIMEOUT,
                    exact_lists=True,
                )
                assert metric(node, "cnid_evpn_mac_moves_total") == 1
                # the host stops using the MAC (FRR would learn it back from its
                # next frame: a move of its own)
                set_host_mac(fabric, original)
            # node 1 hears of it: GoBGP withdraws its copy
            await async_wait_for("node 1's withdrawal", at_cnid,
                                 {"vtep": LEAF, "copies": [[LEAF, 1]]}, TIMEOUT,
                                 exact_lists=True)  # fmt: skip
            # node 1 takes the MAC back: GoBGP announces the leaf's sequence + 1
            gb.add(old)
            await async_wait_for("cnid moves it back to node 1 with sequence 2", at_cnid,
                                 {"vtep": GB, "copies": [[GB, 2]]}, TIMEOUT,
                                 exact_lists=True)  # fmt: skip
            await async_wait_for(
                "the FRR leaf agrees",
                lambda: {"mac": leaf_mac(fabric, mac), "fdb": leaf_fdb(fabric, mac)},
                {"mac": {"type": "remote", "remoteVtep": GB, "remoteSequence": 2},
                 "fdb": {"dst": GB}},
                TIMEOUT,
            )  # fmt: skip
            assert metric(node, "cnid_evpn_mac_moves_total") == 2
            nursery.cancel_scope.cancel()
    finally:
        gb.delete(old)
        set_host_mac(fabric, original)


async def test_a_mac_on_two_vteps_at_once_is_flagged_a_duplicate_on_both(
    fabric: EvpnFabric, node: EvpnNode
) -> None:
    """A real duplicate: cnid's pod and the host behind the FRR leaf hold the
    same MAC (the host keeps talking, so FRR learns it back after each
    move). Each side raises its sequence past the other's until the fifth
    move in 180 s flags the MAC on both (FRR's default dup-addr-detection;
    cnid's [evpn] defaults); cnid then stops raising and traffic is not
    frozen (neither side's default freezes)."""
    original = host_mac(fabric)
    talker: subprocess.Popen[bytes] | None = None
    try:
        async with trio.open_nursery() as nursery:
            await up(node, nursery)
            pod = await node.add_pod("p1", VRF300)
            mac = pod.mac
            set_host_mac(fabric, mac)
            talker = subprocess.Popen(
                ["ip", "netns", "exec", fabric.host.netns, "ping", "-i", "0.3", "-W", "1",
                 "10.3.99.99"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip

            def flagged() -> dict[str, Any]:
                dups = evpn_duplicates(node.evpn)["duplicates"]
                return {"cnid": [(d["mac"], d["vni"]) for d in dups]}

            await async_wait_for("flagged at cnid", flagged, {"cnid": [[mac, 300]]}, 120.0)
            (dup,) = evpn_duplicates(node.evpn)["duplicates"]
            assert dup["moves"] == 5 and LEAF in dup["vteps"] and "local" in dup["vteps"]
            assert metric(node, "cnid_evpn_mac_duplicates_total") == 1
            await async_wait_for("flagged at the FRR leaf", lambda: leaf_mac(fabric, mac),
                                 {"isDuplicate": True}, 120.0)  # fmt: skip
            # cnid no longer raises its sequence: the FRR leaf's stays the highest
            held = announced_seq(node)
            await trio.sleep(5)
            assert announced_seq(node) == held
            nursery.cancel_scope.cancel()
    finally:
        if talker is not None:
            os.kill(talker.pid, signal.SIGTERM)
            talker.wait(5)
        set_host_mac(fabric, original)


def metric(node: EvpnNode, name: str) -> float:
    return node.metrics.registry.get_sample_value(name) or 0.0


def announced_seq(node: EvpnNode) -> int | None:
    (row,) = [r for r in evpn_routes(node.evpn, rtype=2) if r["from"] == "local"]
    seq = row["mac_mobility_seq"]
    return None if seq is None else int(seq)


async def test_a_mac_flapping_between_two_other_vteps_is_flagged_by_cnid(
    fabric: EvpnFabric, node: EvpnNode
) -> None:
    """cnid only watches: GoBGP (node 1) and a host behind the FRR leaf take
    a MAC from each other, each with the other's sequence + 1 (FRR learning
    it back from the host's frames, GoBGP's route added again; GoBGP
    withdraws its copy whenever it hears a higher sequence). cnid's kernel
    follows every move and the fifth within 180 s flags the MAC; FRR flags
    it too (the MAC is local there). GoBGP bumps only a sequence it was
    given: the first move is the host's (FRR's sequence 1)."""
    gb = fabric.gb
    mac = "0a:00:00:84:00:04"
    original = host_mac(fabric)
    route = MacAdv(mac, None, 300, f"{GB}:300", RT, GB)
    talker: subprocess.Popen[bytes] | None = None

    def at_cnid() -> dict[str, Any]:
        return {"vtep": cnid_fdb(node, mac)}

    try:
        async with trio.open_nursery() as nursery:
            await up(node, nursery)
            gb.add(route)
            await async_wait_for("node 1's MAC at cnid", at_cnid, {"vtep": GB}, TIMEOUT)
            set_host_mac(fabric, mac)

            def talk() -> subprocess.Popen[bytes]:
                return subprocess.Popen(
                    ["ip", "netns", "exec", fabric.host.netns, "ping", "-i", "0.3", "-W", "1",
                     "10.3.99.99"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip

            talker = talk()
            await async_wait_for("to the leaf", at_cnid, {"vtep": LEAF}, TIMEOUT)
            for n in range(3):
                # the host silent while node 1 holds the MAC (each frame of
                # it is FRR's learning it back: the kernel's stay at node 1
                # would be too short to see)
                os.kill(talker.pid, signal.SIGTERM)
                talker.wait(5)
                gb.add(route)  # node 1 takes it back: the leaf's sequence + 1
                await async_wait_for(f"to node 1 ({n})", at_cnid, {"vtep": GB}, TIMEOUT)
                # the host talks again: FRR learns it back with GoBGP's + 1
                talker = talk()
                await async_wait_for(f"to the leaf ({n})", at_cnid, {"vtep": LEAF}, TIMEOUT)
            (dup,) = evpn_duplicates(node.evpn)["duplicates"]
            assert (dup["mac"], dup["vni"]) == (mac, 300)
            assert {LEAF, GB} <= set(dup["vteps"]) and "local" not in dup["vteps"]
            assert dup["moves"] >= 5 and dup["seq"] >= 5
            # 7 moves, or 6 when GoBGP's first copy left before FRR's sequence 1 came
            assert metric(node, "cnid_evpn_mac_moves_total") >= 6
            assert metric(node, "cnid_evpn_mac_duplicates_total") == 1
            await async_wait_for("flagged at the FRR leaf", lambda: leaf_mac(fabric, mac),
                                 {"isDuplicate": True}, TIMEOUT)  # fmt: skip
            # flagged only: the kernel still follows the MAC (no freeze)
            assert cnid_fdb(node, mac) == LEAF
            nursery.cancel_scope.cancel()
    finally:
        if talker is not None and talker.poll() is None:
            os.kill(talker.pid, signal.SIGTERM)
            talker.wait(5)
        gb.delete(route)
        set_host_mac(fabric, original)
