"""Import by route target and hand-set route targets against real peers
(issue 14), on the host (no VRF: a domain is its bridges, VXLAN devices and
routing table, as in test_evpn_interop.py). The node is
``testbed.evpn_node``: the real speaker (ExaBGP), controller and dataplane.

    lan rt<pid>-lan: br0, 192.168.93.0/24
     |-- rr    .1   FRR route reflector (listen range; GoBGP as a static client)
     |-- leaf  .4   FRR leaf, route targets set by hand, not FRR's auto RTs:
     |      |       L3VNI 4242 (default VRF) route-target import/export 65000:42,
     |      |       L2VNI 100 route-target import/export 65000:7100
     |      `-- h1  10.50.0.2/24 routed (type-5 10.50.0.0/24), 10.7.0.250/16 in L2VNI 100
     |-- gb    .20  GoBGP: routes whose targets and VNIs disagree
     `-- node  .11  cnid, four domains:
                      blue   l3vni 4242, importRouteTargets = exportRouteTargets = [65000:42]
                      green  l2vni 100,  importRouteTargets = exportRouteTargets = [65000:7100]
                      red    l3vni 4300  (derived: 65000:4300)
                      yellow l2vni 200   (derived: 65000:200)

Without its explicit targets, blue would announce and import 65000:4242 and
the leaf (65000:42) would take none of its routes nor give it any.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from cnid.core import Domain, VniAttachment
from cnid.daemon import evpn_routes
from testbed.evpn_fabric import EvpnFabric, addresses, evpn_fabric, up_with_reflector
from testbed.evpn_node import EvpnNode
from testbed.frr import L2Vni, L3Vni
from testbed.gobgp import MacAdv, Multicast, Prefix
from testbed.jsoncmp import async_wait_for
from testbed.netlab import sh

NET = "192.168.93"
RR, LEAF, GB, NODE = addresses(NET)
GB_RMAC = "02:00:00:00:00:20"
TIMEOUT = 30.0


def domain(name: str, vrf: int, prefix: str, kind: str, rt: str = "") -> Domain:
    return Domain(
        name=name,
        vrf=vrf,
        table=vrf,
        prefix=prefix,
        prefixlen=16,
        ipblocklen=26,
        attachments=(VniAttachment(type=kind, vni=vrf),),  # type: ignore[arg-type]
        import_route_targets=(rt,) if rt else (),
        export_route_targets=(rt,) if rt else (),
    ).validated()


BLUE = domain("blue", 4242, "10.244.0.0", "l3vni", "65000:42")
GREEN = domain("green", 100, "10.7.0.0", "l2vni", "65000:7100")
RED = domain("red", 4300, "10.8.0.0", "l3vni")
YELLOW = domain("yellow", 200, "10.9.0.0", "l2vni")


@pytest.fixture(scope="module")
def fabric() -> Iterator[EvpnFabric]:
    with evpn_fabric(
        "rt",
        NET,
        l2vnis=[L2Vni(100, rt="65000:7100")],
        l3vni=L3Vni(4242, rt="65000:42"),
        routed=("10.50.0.1/24", "10.50.0.2/24"),
        bridged={100: "10.7.0.250/16"},
        timeout=TIMEOUT,
    ) as fab:
        yield fab


@pytest.fixture
async def node(fabric: EvpnFabric, tmp_path: Path) -> AsyncIterator[EvpnNode]:
    with fabric.node("rtn", tmp_path, [BLUE, GREEN, RED, YELLOW]) as n:
        yield n


async def up(node: EvpnNode, nursery: trio.Nursery) -> None:
    await up_with_reflector(node, nursery, RR, TIMEOUT)


def skipped(node: EvpnNode) -> dict[str, float]:
    out = {}
    for metric in node.metrics.evpn_skipped.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[sample.labels["reason"]] = sample.value
    return out


def leaf_kernel(fabric: EvpnFabric) -> dict[str, Any]:
    route = json.loads(fabric.leaf.ip("-j", "route", "show", "10.244.0.0/26") or "[]")
    fdb = json.loads(fabric.leaf.run("bridge", "-j", "fdb", "show", "dev", "vxlan100") or "[]")
    return {"route": route, "fdb": fdb}


async def test_hand_set_route_targets_interoperate_with_an_frr_leaf(
    fabric: EvpnFabric, node: EvpnNode
) -> None:
    async with trio.open_nursery() as nursery:
        blue_pod = await node.add_pod("rb1", BLUE)
        green_pod = await node.add_pod("rg1", GREEN)
        await up(node, nursery)
        # the leaf holds ours with the hand-set targets (not 65000:4242 / :100)
        rmac = node.link_mac("br-4242")
        expected = [
            {"type": 5, "prefix": "10.244.0.0/26", "vni": 4242, "rt": ["65000:42"],
             "rmac": rmac, "nexthop": NODE, "rd": f"{NODE}:1"},
            {"type": 3, "ip": NODE, "vni": 100, "rt": ["65000:7100"], "nexthop": NODE,
             "rd": f"{NODE}:3"},
            {"type": 2, "mac": green_pod.mac, "ip": green_pod.address, "vni": 100,
             "rt": ["65000:7100"], "nexthop": NODE, "rd": f"{NODE}:3"},
        ]  # fmt: skip
        await async_wait_for("our routes at the leaf", fabric.leaf.evpn_routes, expected, TIMEOUT)
        # ... imported by the leaf's zebra: our block and our pod's MAC
        await async_wait_for(
            "ours in the leaf's kernel",
            lambda: leaf_kernel(fabric),
            {
                "route": [{"dst": "10.244.0.0/26", "gateway": NODE, "dev": "br4242"}],
                "fdb": [{"mac": green_pod.mac, "dst": NODE}],
            },
            TIMEOUT,
        )
        # the leaf's routes (65000:42, 65000:7100) in blue's and green's
        leaf_rmac = fabric.leaf.router_mac
        await async_wait_for(
            "the leaf's routes in our kernel",
            node.kernel,
            {
                "routes": [{"dst": "10.50.0.0/24", "gateway": LEAF, "dev": "br-4242",
                            "table": 4242}],
                "fdb": [
                    {"mac": leaf_rmac, "ifname": "vx-4242", "dst": LEAF},
                    {"mac": "00:00:00:00:00:00", "ifname": "vx-100", "dst": LEAF},
                ],
                "neigh": [{"dst": LEAF, "dev": "br-4242", "lladdr": leaf_rmac}],
            },
            TIMEOUT,
        )  # fmt: skip
        # routed and bridged traffic, both ways (the replies use the leaf's
        # import of our routes)
        await async_wait_for(
            "blue pod -> h1", lambda: {"ok": node.ping("rb1", "10.50.0.2")}, {"ok": True}, TIMEOUT
        )
        await async_wait_for(
            "green pod -> h1's leg in L2VNI 100",
            lambda: {"ok": node.ping("rg1", "10.7.0.250")},
            {"ok": True},
            TIMEOUT,
        )
        assert fabric.leaf.leaf is not None
        h1 = fabric.leaf.leaf.hosts[0].netns
        ping = ("ping", "-c", "1", "-W", "1")
        assert sh(*ping, blue_pod.address, ns=h1, check=False).returncode == 0
        assert sh(*ping, green_pod.address, ns=h1, check=False).returncode == 0
        assert skipped(node).get("no-route-target", 0) == 0
        nursery.cancel_scope.cancel()


async def test_a_route_lands_in_the_domain_of_its_target_or_nowhere(
    fabric: EvpnFabric, node: EvpnNode
) -> None:
    gb = fabric.gb
    routes = {
        # blue's target, red's VNI: blue's table and devices only
        "t5-crossed": Prefix("10.70.0.0/24", 4300, f"{GB}:1", "65000:42", GB_RMAC, GB),
        # green's target, yellow's VNI: green's segment (vx-100) only
        "t2-crossed": MacAdv("0a:00:00:00:70:01", "10.7.70.1", 200, f"{GB}:2", "65000:7100", GB),
        "t3-crossed": Multicast(GB, 200, f"{GB}:2", "65000:7100"),
        # blue's VNI, nobody's targets: nowhere
        "t5-stray": Prefix("10.71.0.0/24", 4242, f"{GB}:3", "65000:999", GB_RMAC, GB),
        "t2-stray": MacAdv("0a:00:00:00:71:01", "10.7.71.1", 100, f"{GB}:4", "65001:7100", GB),
    }
    async with trio.open_nursery() as nursery:
        await up(node, nursery)
        for route in routes.values():
            gb.add(route)
        try:
            await async_wait_for(
                "GoBGP's crossed routes in blue's and green's",
                node.kernel,
                {
                    "routes": [{"dst": "10.70.0.0/24", "gateway": GB, "dev": "br-4242",
                                "table": 4242}],
                    "fdb": [
                        {"mac": GB_RMAC, "ifname": "vx-4242", "dst": GB},
                        {"mac": "0a:00:00:00:70:01", "ifname": "vx-100", "dst": GB},
                        {"mac": "00:00:00:00:00:00", "ifname": "vx-100", "dst": GB},
                    ],
                    "neigh": [{"dst": "10.7.70.1", "dev": "br-100",
                               "lladdr": "0a:00:00:00:70:01"}],
                },
                TIMEOUT,
            )  # fmt: skip
            await async_wait_for(
                "the stray routes counted", lambda: skipped(node), {"no-route-target": 2.0}, TIMEOUT
            )
            kernel = node.kernel()
            # nothing in red's or yellow's, whose VNIs the crossed routes name
            assert [r for r in kernel["routes"] if r["table"] == 4300] == []
            assert [f for f in kernel["fdb"] if f["ifname"] in ("vx-4300", "vx-200")] == []
            ours = (GB, "10.7.70.1")  # (the kernel's own multicast entries aside)
            assert [n for n in kernel["neigh"]
                    if n["dev"] in ("br-4300", "br-200") and n["dst"] in ours] == []  # fmt: skip
            # nothing of the stray ones anywhere
            assert not any(r["dst"] == "10.71.0.0/24" for r in kernel["routes"])
            assert not any(f["mac"] == "0a:00:00:00:71:01" for f in kernel["fdb"])
            assert not any(n["dst"] == "10.7.71.1" for n in kernel["neigh"])
            rows = {r["route"]: r for r in evpn_routes(node.evpn) if r["from"] == RR}
            stray = rows["[5]:[0]:[24]:[10.71.0.0]"]
            assert stray["state"].startswith("not programmed: no-route-target"), stray
            assert stray["domains"] == []
            crossed = rows["[5]:[0]:[24]:[10.70.0.0]"]
            assert (crossed["state"], crossed["domains"]) == ("programmed", ["blue"])
        finally:
            for route in routes.values():
                gb.delete(route)
        await async_wait_for(
            "GoBGP's routes gone",
            lambda: {
                "gb": [e for kind in node.kernel().values() for e in kind
                       if GB in (e.get("gateway"), e.get("dst"))]
            },
            {"gb": []},
            TIMEOUT,
            exact_lists=True,
        )  # fmt: skip
        nursery.cancel_scope.cancel()
