"""The eBGP lab's fabric (containerlab/cnid-ebgp.clab.yml) without cnid:
its leaves, spines and host as ``./just lab -t`` builds them (testbed.lab,
``ClusterLab.up_fabric``), each cnid node played by an FRR stand-in that
does what the node must do (its VTEP /32 on a loopback announced in IPv4
unicast to both leaves of its rack, ECMP over them, allowas-in where the
rack shares an AS, a type-5 route of its own in L3VNI 42 with the hand-set
route target, nothing passed on). No VRF needed: the stand-ins' L3VNI is on
their default VRF, as the leaf's.

    spine1 spine2 (AS 65000)
    leaf1a 65101 (h1)  leaf1b 65102  leaf2a 65103  leaf2b 65104
    k8s01 k8s02 (AS 65201)           k8s03 (65203) k8s04 (65204)
    each stand-in with a host behind it: 10.60.<n>.2/24

What it proves of the lab's FRR side: sessions up; every VTEP everywhere
with ECMP (a node over its two leaves, a leaf over the two spines, a spine
over a rack's two leaves); EVPN next hops unchanged across leaf, spine,
leaf (the originating VTEP); the hand-set route targets; pings over VXLAN
between racks and to h1; one leaf of a rack stopped, the rack keeps
everything through the other, and its return restores the ECMP.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.frr import FrrRouter, Host, L3Vni, Neighbor, Underlay, evpn_leaf
from testbed.jsoncmp import wait_for
from testbed.lab import (
    FRR_ROLES,
    FRR_TIMERS,
    ClusterLab,
    Progress,
    frr_router,
    kernel_nexthops,
    ping,
    shares_asn,
)
from testbed.node import REPO, sh
from testbed.topology import load

EBGP = REPO / "containerlab" / "cnid-ebgp.clab.yml"
TIMEOUT = 60.0
H1 = "10.50.0.2"
RT = "65000:42"
NODES = ("k8s01", "k8s02", "k8s03", "k8s04")
#: the rack 1 node-side ends of each leaf's links
LEAF1A, LEAF1B = (
    {"k8s01": "172.16.1.0", "k8s02": "172.16.1.2"},
    {
        "k8s01": "172.16.2.0",
        "k8s02": "172.16.2.2",
    },
)


def host_of(node: str) -> str:
    return f"10.60.{node[-1]}.2"


def standin(lab: ClusterLab, name: str) -> FrrRouter:
    """An FRR router in a cnid node's namespace, configured as the lab
    configures the node (VRFNodeConfig: AS, neighbours, allowAsIn, VTEP)."""
    topo = lab.topo
    node = topo.nodes[name]
    ns = lab.namespaces[name]
    sh("ip", "addr", "add", node.label("vtep"), "dev", "lo", ns=ns)
    neighbors = [
        Neighbor(
            topo.peer_address(name, leaf),
            remote_as=topo.nodes[leaf].asn,
            ipv4_unicast=True,
            allowas_in=1 if shares_asn(topo, node) else 0,
        )
        for leaf in node.words("neighbors")
    ]
    n = name[-1]
    router = evpn_leaf(
        name,
        ns,
        node.asn,
        node.vtep,
        vtep=node.vtep,
        neighbors=neighbors,
        l3vni=L3Vni(42, rt=RT),
        hosts=[Host(lab.ns(f"{name}-h"), routed=(f"10.60.{n}.1/24", f"10.60.{n}.2/24"))],
        timers=FRR_TIMERS,
        underlay=Underlay(announce=[node.label("vtep")], vteps=[node.label("vtep")]),
    )
    # a cnid node originates its routes and passes on none it receives
    router.extra_bgpd = "\n".join(
        [
            "bgp as-path access-list OWN seq 5 permit ^$",
            "route-map OWN permit 10",
            " match as-path OWN",
            "exit",
            f"router bgp {node.asn}",
            " address-family l2vpn evpn",
            *(f"  neighbor {x.address} route-map OWN out" for x in neighbors),
            " exit-address-family",
            "exit",
        ]
    )
    router.workdir = lab.workdir / name
    return router


@pytest.fixture(scope="module")
def fabric() -> Iterator[ClusterLab]:
    lab = ClusterLab(load(EBGP), name=f"fab{os.getpid() % 100000}", progress=Progress(quiet=True))
    try:
        lab.up_fabric()
        for name in NODES:
            router = standin(lab, name)
            lab.routers[name] = router
            router.start(wait=TIMEOUT)
        lab._save()
        yield lab
    finally:
        lab.down()
    assert not [ns for ns in os.listdir("/run/netns") if ns.startswith(lab.ns(""))]


def sessions(lab: ClusterLab) -> dict[str, dict[str, str]]:
    return {name: lab.sessions(name) for name in lab.routers}


def expected_sessions(lab: ClusterLab) -> dict[str, dict[str, str]]:
    return {
        name: dict.fromkeys(lab.topo.neighbor_addresses(name), "established")
        for name in lab.routers
        if lab.running(name)
    }


def test_sessions_up_and_every_vtep_everywhere_with_ecmp(fabric: ClusterLab) -> None:
    lab = fabric
    wait_for("every session", lambda: sessions(lab), expected_sessions(lab), TIMEOUT, 1.0)
    want = lab.expected_underlay()
    # what expected_underlay says, spelled out for a few: a node over both
    # of its leaves, a leaf over both spines, a spine over a rack's leaves
    assert want["k8s01"]["10.255.0.13/32"] == "172.16.1.0 172.16.2.0"
    assert want["k8s01"]["10.255.0.12/32"] == "172.16.1.0 172.16.2.0"  # allowas-in
    assert want["leaf2a"]["10.255.0.11/32"] == "172.16.3.5 172.16.3.7"
    assert want["leaf1a"]["10.255.0.11/32"] == "172.16.1.1"
    assert want["spine1"]["10.255.0.13/32"] == "172.16.3.4 172.16.4.4"
    assert set(want) == {*NODES, "leaf1a", "leaf1b", "leaf2a", "leaf2b", "spine1", "spine2"}
    lab.wait_underlay(TIMEOUT)
    # the leaves' loopback VTEPs reach the nodes too (h1's traffic)
    for node in NODES:
        assert kernel_nexthops(lab.namespaces[node], "10.255.1.1/32"), node
    # the tenant prefixes stay out of the underlay (type-5 routes only, which
    # routers without the L3VNI do not install): spines and plain leaves
    # route the VTEPs and nothing else
    for name in ("spine1", "spine2", "leaf1b", "leaf2a"):
        routes = json.loads(sh("ip", "-j", "route", "show", ns=lab.namespaces[name]).stdout)
        learned = {r["dst"] for r in routes if r.get("protocol") == "bgp"}
        vteps = {f"10.255.0.1{i}" for i in range(1, 5)} | {f"10.255.1.{i}" for i in range(1, 5)}
        assert learned == vteps - {lab.topo.nodes[name].vtep}, (name, learned)


def type5(router: FrrRouter, prefix: str) -> list[dict[str, Any]]:
    return [r for r in router.evpn_routes() if r.get("prefix") == prefix]


def test_evpn_next_hops_stay_the_originating_vtep_across_the_fabric(fabric: ClusterLab) -> None:
    lab = fabric
    # k8s03's type-5 at k8s01: leaf2a/2b -> spines -> leaf1a/1b -> k8s01,
    # next hop k8s03's VTEP, the hand-set route target
    wait_for(
        "k8s03's type-5 at k8s01",
        lambda: type5(lab.routers["k8s01"], "10.60.3.0/24"),
        [{"type": 5, "vni": 42, "nexthop": "10.255.0.13", "rt": [RT], "best": True}],
        TIMEOUT,
        1.0,
    )
    paths = type5(lab.routers["k8s01"], "10.60.3.0/24")
    assert {p["nexthop"] for p in paths} == {"10.255.0.13"}, paths
    assert {p["peer"] for p in paths} == {"172.16.1.0", "172.16.2.0"}, paths  # both leaves
    # h1's prefix from leaf1a at rack 2, next hop leaf1a's VTEP
    wait_for(
        "h1's prefix at k8s04",
        lambda: type5(lab.routers["k8s04"], "10.50.0.0/24"),
        [{"type": 5, "vni": 42, "nexthop": "10.255.1.1", "rt": [RT]}],
        TIMEOUT,
        1.0,
    )
    # the rack mate's route came back through allowas-in (its AS in the path)
    wait_for(
        "k8s02's type-5 at k8s01 (same AS)",
        lambda: type5(lab.routers["k8s01"], "10.60.2.0/24"),
        [{"type": 5, "nexthop": "10.255.0.12", "rt": [RT]}],
        TIMEOUT,
        1.0,
    )
    # a spine passes EVPN on without a VNI of its own
    assert {r["nexthop"] for r in type5(lab.routers["spine2"], "10.60.4.0/24")} == {"10.255.0.14"}


def pings(lab: ClusterLab) -> dict[str, bool]:
    h1 = lab.namespaces["h1"]
    out = {f"h1 -> {n}": ping(h1, host_of(n), count=2) for n in NODES}
    for a, b in (("k8s01", "k8s03"), ("k8s02", "k8s04"), ("k8s01", "k8s02"), ("k8s04", "k8s03")):
        out[f"{a} -> {b}"] = ping(lab.ns(f"{a}-h"), host_of(b), count=2)
    return out


def test_pings_over_vxlan_across_racks_and_to_h1(fabric: ClusterLab) -> None:
    lab = fabric
    lab.wait_underlay(TIMEOUT)
    want = dict.fromkeys(pings(lab), True)
    wait_for("every ping", lambda: pings(lab), want, TIMEOUT, 1.0)


def test_one_leaf_of_a_rack_stopped_the_rack_keeps_everything_through_the_other(
    fabric: ClusterLab,
) -> None:
    lab = fabric
    lab.wait_underlay(TIMEOUT)
    leaf = lab.routers["leaf1b"]
    leaf.stop()
    try:
        after = lab.expected_underlay()
        assert after["k8s01"]["10.255.0.13/32"] == "172.16.1.0"
        assert after["spine1"]["10.255.0.11/32"] == "172.16.1.4"
        assert "leaf1b" not in after
        lab.wait_underlay(TIMEOUT)
        want = dict.fromkeys(pings(lab), True)
        wait_for("every ping without leaf1b", lambda: pings(lab), want, TIMEOUT, 1.0)
        for node in ("k8s01", "k8s02"):
            assert [p["peer"] for p in type5(lab.routers[node], "10.60.3.0/24")] == [LEAF1A[node]]
    finally:
        leaf.start(wait=TIMEOUT)
        lab._save()
    wait_for("sessions back", lambda: sessions(lab), expected_sessions(lab), TIMEOUT, 1.0)
    lab.wait_underlay(TIMEOUT)
    assert kernel_nexthops(lab.namespaces["k8s02"], "10.255.0.14/32") == sorted(
        [LEAF1A["k8s02"], LEAF1B["k8s02"]]
    )


def test_every_router_configuration_parses_in_frr(tmp_path: Path) -> None:
    """What the lab renders for the leaves and spines, dry-run by FRR 8.4's
    own parser (``vtysh -C -f``: exit 0, or 2 and the line that failed)."""
    topo = load(EBGP)
    checked = []
    for node in topo.nodes.values():
        if node.role not in FRR_ROLES:
            continue
        router = frr_router(topo, node, f"x-{node.name}", tmp_path)
        files = {"bgpd": router.bgpd_conf(), "zebra": router.zebra_conf()}
        for daemon, text in files.items():
            path = tmp_path / f"{node.name}.{daemon}.conf"
            path.write_text(text)
            out = subprocess.run(
                ["vtysh", "-C", "-f", str(path)], capture_output=True, text=True, check=False
            )
            assert out.returncode == 0, (node.name, daemon, out.stdout[-800:], out.stderr)
            checked.append(f"{node.name}.{daemon}")
    assert len(checked) == 12
    # and the check does catch a bad line
    bad = tmp_path / "bad.conf"
    bad.write_text(router.bgpd_conf().replace("attribute-unchanged next-hop", "attribute-x"))
    assert (
        subprocess.run(["vtysh", "-C", "-f", str(bad)], capture_output=True, check=False).returncode
        != 0
    )
