"""A hostile EVPN peer: GoBGP injects routes that would hijack what the node
owns, routes nobody can use, and more routes than the node accepts from one
peer. The node is ``testbed.evpn_node`` (the real speaker, controller and
dataplane, no VRF device); GoBGP is its only peer.

    lan eh<pid>-lan: br0, 192.168.84.0/24
     |-- gb    .20  GoBGP, passive (the node connects)
     `-- node  .11  cnid: vrf-42 (l3vni 42, blocks of 10.244.0.0/16)
                          vrf-300 (l2vni 300, 10.3.0.0/16, anycast gateway 10.3.0.1)
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from cnid.daemon import evpn_routes
from testbed.domains import VRF42, VRF300
from testbed.evpn_node import EvpnNode
from testbed.gobgp import GoBgp, GoBgpNeighbor, MacAdv, Prefix
from testbed.jsoncmp import async_wait_for, wait_for
from testbed.netlab import Lab, Lan

ASN = 65000
NET = "192.168.84"
GB, NODE = f"{NET}.20", f"{NET}.11"
RMAC = "02:00:00:00:00:20"
TIMEOUT = 30.0


@pytest.fixture(scope="module")
def peer() -> Iterator[tuple[Lab, Lan, GoBgp]]:
    lab = Lab(f"eh{os.getpid() % 100000}")
    try:
        lan = lab.lan("lan", f"{NET}.0/24")
        gb = lab.add(
            GoBgp("gb", lab.netns("gb", lan=lan, index=20), ASN, GB,
                  neighbors=[GoBgpNeighbor(NODE, ASN, passive=True)])
        )  # fmt: skip
        gb.start()
        yield lab, lan, gb
    finally:
        lab.stop()
        assert not lab.leftovers()


@pytest.fixture
async def node(peer: tuple[Lab, Lan, GoBgp], tmp_path: Path) -> AsyncIterator[EvpnNode]:
    _, lan, gb = peer
    # GoBGP (no graceful restart) sends no End-of-RIB: the node's adoption of
    # what a previous run left in the kernel ends with stale_timeout
    n = EvpnNode("node", NODE, tmp_path / "node", [VRF42, VRF300], lan, stale_timeout=3)
    try:
        yield n
    finally:
        n.close()
        lan.unplug(n.ns.name)
        wait_for("GoBGP without the node", lambda: {"up": gb.peers().get(NODE) == "established"},
                 {"up": False}, TIMEOUT)  # fmt: skip


def session(node: EvpnNode) -> dict[str, bool]:
    p = node.speaker.peers.get(GB)
    return {"up": p is not None and p.state == "up"}


async def up(node: EvpnNode, nursery: trio.Nursery) -> None:
    await nursery.start(node.run)
    node.speaker.configure(node.reflectors(GB))
    await async_wait_for("the session to GoBGP", lambda: session(node), {"up": True}, TIMEOUT)


def states(node: EvpnNode) -> dict[str, str]:
    """What ``cnictl evpn routes`` shows of GoBGP's routes: route -> state."""
    return {r["route"]: r["state"] for r in evpn_routes(node.evpn) if r["from"] == GB}


def counter(node: EvpnNode, name: str, label: str) -> dict[str, float]:
    out = {}
    for metric in getattr(node.metrics, name).collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[sample.labels[label]] = sample.value
    return out


def t5(prefix: str, n: int, rmac: str = RMAC, nexthop: str = GB) -> Prefix:
    return Prefix(prefix, 42, f"{GB}:{n}", f"{ASN}:42", rmac, nexthop)


def t5_key(prefix: str) -> str:
    net = ipaddress.ip_network(prefix)
    return f"[5]:[0]:[{net.prefixlen}]:[{net.network_address}]"


async def test_hijacks_and_unusable_routes_are_not_programmed(
    peer: tuple[Lab, Lan, GoBgp], node: EvpnNode
) -> None:
    _, _, gb = peer
    p1 = await node.add_pod("p1", VRF42)
    p2 = await node.add_pod("p2", VRF300)
    block = str(ipaddress.ip_network(f"{p1.address}/26", strict=False))
    rt300 = f"{ASN}:300"
    routes = {
        "local-ip": MacAdv("0a:00:00:00:66:01", p2.address, 300, f"{GB}:300", rt300, GB),
        "local-mac": MacAdv(p2.mac, "10.3.66.66", 300, f"{GB}:301", rt300, GB),
        "service-cidr": t5("10.96.0.0/24", 1),
        "own-block": t5(block, 2),
        "bad-next-hop": t5("10.77.0.0/24", 3, nexthop="127.0.0.1"),
        "bad-router-mac": t5("10.78.0.0/24", 4, rmac="ff:ff:ff:ff:ff:ff"),
    }
    covering = [t5("0.0.0.0/0", 5), t5("10.0.0.0/8", 6)]  # the fabric's: still programmed

    def pod_entries() -> dict[str, Any]:
        neigh = json.loads(node.ns.ip("-j", "neigh", "show", p2.address, "dev", "br-300"))
        fdb = json.loads(node.ns.run("bridge", "-j", "fdb", "show", "br", "br-300").stdout)
        return {
            "neigh": [n.get("lladdr") for n in neigh],
            "fdb": sorted(e["ifname"] for e in fdb if e.get("mac") == p2.mac),
        }

    async with trio.open_nursery() as nursery:
        await up(node, nursery)
        assert node.ping("p2", str(VRF300.anycast_gateway))  # the bridge learns the pod
        before = pod_entries()
        assert before == {"neigh": [p2.mac], "fdb": ["hp2"]}, before
        for route in [*routes.values(), *covering]:
            gb.add(route)
        await async_wait_for(
            "the covering prefixes programmed",
            lambda: {r["dst"]: r["gateway"] for r in node.kernel()["routes"]},
            {"default": GB, "10.0.0.0/8": GB},
            TIMEOUT,
        )
        await async_wait_for(
            "every hostile route skipped",
            lambda: counter(node, "evpn_skipped", "reason"),
            dict.fromkeys(routes, 1.0),
            TIMEOUT,
        )
        shown = states(node)
        for reason, key in [
            ("service-cidr", t5_key("10.96.0.0/24")),
            ("own-block", t5_key(block)),
            ("bad-next-hop", t5_key("10.77.0.0/24")),
            ("bad-router-mac", t5_key("10.78.0.0/24")),
        ]:
            assert shown[key].startswith("not programmed: "), (reason, shown)
        assert "Service CIDR" in shown[t5_key("10.96.0.0/24")]
        assert "this node's block" in shown[t5_key(block)]
        assert "127.0.0.1" in shown[t5_key("10.77.0.0/24")]
        assert "ff:ff:ff:ff:ff:ff" in shown[t5_key("10.78.0.0/24")]
        type2 = [s for k, s in shown.items() if k.startswith("[2]")]
        assert len(type2) == 2 and all("a pod of this node's" in s for s in type2), shown
        assert shown[t5_key("0.0.0.0/0")] == "programmed"
        # the pod's entries are untouched; nothing of the hostile routes in the kernel
        assert pod_entries() == before
        kernel = node.kernel()
        assert {r["dst"] for r in kernel["routes"]} == {"default", "10.0.0.0/8"}, kernel
        assert not [e for e in kernel["neigh"] if e["dst"] in (p2.address, "10.3.66.66")]
        assert not [e for e in kernel["fdb"] if e["mac"] in (p2.mac, "0a:00:00:00:66:01")]
        assert node.ping("p2", str(VRF300.anycast_gateway))
        assert session(node) == {"up": True}
        for route in [*routes.values(), *covering]:
            gb.delete(route)
        nursery.cancel_scope.cancel()


async def test_max_prefix_warning_holds_back_and_restart_tears_down(
    peer: tuple[Lab, Lan, GoBgp], node: EvpnNode
) -> None:
    _, _, gb = peer
    many = [t5(f"10.80.{i}.0/24", 10 + i) for i in range(6)]
    node.evpn.set_max_prefix(3, "warning")

    def shown() -> dict[str, Any]:
        s = list(states(node).values())
        held = [x for x in s if x.startswith("not programmed: held back") and "maximum" in x]
        return {"programmed": s.count("programmed"), "held": len(held)}

    def routes() -> list[str]:
        return sorted(r["dst"] for r in node.kernel()["routes"])

    async with trio.open_nursery() as nursery:
        await up(node, nursery)
        await async_wait_for(
            "adoption over", lambda: {"a": node.evpn.adopting}, {"a": False}, TIMEOUT
        )
        for route in many[:5]:
            gb.add(route)
        await async_wait_for(
            "3 accepted, 2 held back", shown, {"programmed": 3, "held": 2}, TIMEOUT
        )
        await async_wait_for("3 in the kernel", lambda: {"n": len(routes())}, {"n": 3}, TIMEOUT)
        assert session(node) == {"up": True}
        assert counter(node, "evpn_max_prefix", "action") == {"warning": 1.0}
        # restart: one more route and the session goes, with its routes
        node.evpn.set_max_prefix(3, "restart", 5.0)
        gb.add(many[5])
        await async_wait_for("the session torn down", lambda: session(node), {"up": False},
                             TIMEOUT)  # fmt: skip
        down_at = time.monotonic()
        assert counter(node, "evpn_max_prefix", "action")["restart"] == 1.0
        await async_wait_for("its routes gone", lambda: {"r": routes()}, {"r": []}, TIMEOUT,
                             exact_lists=True)  # fmt: skip
        for route in many[2:]:  # meanwhile the peer is fixed: 2 routes left
            gb.delete(route)
        await async_wait_for("the session back", lambda: session(node), {"up": True}, TIMEOUT)
        assert time.monotonic() - down_at >= 4.0  # held down for max_prefix_restart
        await async_wait_for(
            "its 2 routes back",
            lambda: {"r": routes()},
            {"r": ["10.80.0.0/24", "10.80.1.0/24"]},
            TIMEOUT,
            exact_lists=True,
        )
        assert counter(node, "evpn_max_prefix", "action")["restart"] == 1.0
        for route in many[:2]:
            gb.delete(route)
        nursery.cancel_scope.cancel()
