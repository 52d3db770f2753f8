"""The eBGP lab (containerlab/cnid-ebgp.clab.yml) as testbed reads it: the
topology's new role and labels, the peer addresses over point-to-point
links, what the lab gives the cnid nodes (VRFNodeConfig, VRFDomains with
hand-set route targets), the FRR routers' configuration, and what the lab
waits for (sessions, the underlay's ECMP next hops). No namespace needed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testbed.frr import FrrRouter
from testbed.lab import (
    DEFAULT_DOMAIN,
    ClusterLab,
    Progress,
    frr_router,
    nodeconfig,
    pruned,
    route_target_admin,
    with_route_targets,
)
from testbed.labdemo import DEMO_CRS, demo_documents
from testbed.topology import TopologyError, load, parse

REPO = Path(__file__).resolve().parents[2]
EBGP = REPO / "containerlab" / "cnid-ebgp.clab.yml"
DEFAULT = REPO / "containerlab" / "cnid.clab.yml"


def router(name: str) -> FrrRouter:
    topo = load(EBGP)
    return frr_router(topo, topo.nodes[name], f"x-{name}", Path("/nonexistent"))


def test_two_racks_of_two_nodes_four_leaves_two_spines_a_host_and_the_api() -> None:
    topo = load(EBGP)
    assert topo.name == "ebgp" and topo.routed and not load(DEFAULT).routed
    roles: dict[str, list[str]] = {}
    for node in topo.nodes.values():
        roles.setdefault(node.role or node.kind, []).append(node.name)
    assert roles == {
        "bridge": ["ebgp-mgmt"],
        "kube-api": ["kapi"],
        "spine": ["spine1", "spine2"],
        "leaf": ["leaf1a", "leaf1b", "leaf2a", "leaf2b"],
        "host": ["h1"],
        "node": ["k8s01", "k8s02", "k8s03", "k8s04"],
    }
    # every leaf and spine its own AS but the spine pair's; rack 1's nodes share one
    asn = {n.name: n.asn for n in topo.nodes.values() if n.role in ("leaf", "spine", "node")}
    assert asn == {
        "spine1": 65000,
        "spine2": 65000,
        "leaf1a": 65101,
        "leaf1b": 65102,
        "leaf2a": 65103,
        "leaf2b": 65104,
        "k8s01": 65201,
        "k8s02": 65201,
        "k8s03": 65203,
        "k8s04": 65204,
    }
    # the nodes: the API on the management segment, BGP over their two uplinks
    k8s01 = topo.nodes["k8s01"]
    assert (k8s01.ifname, k8s01.address, k8s01.vtep) == ("eth1", "192.168.124.11", "10.255.0.11")
    assert (
        topo.bridge_of("k8s01", "eth1") == "ebgp-mgmt"
        and topo.bridge_of("kapi", "eth1") == "ebgp-mgmt"
    )
    assert topo.neighbor_addresses("k8s01") == ["172.16.1.0", "172.16.2.0"]
    assert topo.neighbor_addresses("k8s04") == ["172.16.3.2", "172.16.4.2"]
    assert topo.neighbor_addresses("leaf2b") == [
        "172.16.4.1",
        "172.16.4.3",
        "172.16.4.5",
        "172.16.4.7",
    ]
    assert topo.neighbor_addresses("spine2") == [
        "172.16.1.6",
        "172.16.2.6",
        "172.16.3.6",
        "172.16.4.6",
    ]
    assert [(m.ifname, o.node) for m, o in topo.links_of("h1")] == [("eth1", "leaf1a")]
    # the default lab: neighbours on the shared segment, as before
    assert load(DEFAULT).neighbor_addresses("leaf") == ["192.168.124.2", "192.168.124.3"]


EBGP_MINI = """
name: mini
topology:
  defaults: {kind: linux}
  kinds: {linux: {image: img}}
  nodes:
    seg: {kind: bridge}
    kapi: {labels: {cnid.role: kube-api, cnid.eth1: 192.168.9.1/24}}
    sp: {labels: {cnid.role: spine, cnid.asn: "65000", cnid.eth1: 172.16.0.1/31,
                  cnid.neighbors: lf}}
    lf: {labels: {cnid.role: leaf, cnid.asn: "65100", cnid.vtep: 10.255.1.1/32,
                  cnid.eth1: 172.16.0.0/31, cnid.eth2: 172.16.1.0/31, cnid.neighbors: sp n1}}
    n1: {labels: {cnid.role: node, cnid.asn: "65200", cnid.eth1: 192.168.9.11/24,
                  cnid.eth2: 172.16.1.1/31, cnid.vtep: 10.255.0.1/32, cnid.neighbors: lf}}
  links:
    - endpoints: ["kapi:eth1", "seg:p-kapi"]
    - endpoints: ["n1:eth1", "seg:p-n1"]
    - endpoints: ["sp:eth1", "lf:eth1"]
    - endpoints: ["n1:eth2", "lf:eth2"]
"""


def test_the_ebgp_labels_are_checked() -> None:
    parse(EBGP_MINI)
    cases = [
        # a session needs both ends
        (("cnid.neighbors: sp n1}", "cnid.neighbors: sp}"), "lf does not name n1"),
        # who peers with whom
        (("cnid.neighbors: lf}}", "cnid.neighbors: n1}}"), "a spine does not peer with a node"),
        # a VTEP is a /32 of its own, on a leaf or a node
        (("10.255.0.1/32", "10.255.0.1/24"), "is a /32 of its own"),
        (("10.255.0.1/32", "10.255.0.300/32"), "cnid.vtep: '10.255.0.300/32' is not an address"),
        (("cnid.role: spine,", "cnid.role: spine, cnid.vtep: 10.255.2.1/32,"), "not a spine"),
        # a node with leaves has a routed underlay
        ((", cnid.vtep: 10.255.0.1/32", ""), "needs cnid.vtep"),
        # a neighbour it has no link or segment with
        (('["n1:eth2", "lf:eth2"]', '["n1:eth2", "sp:eth2"]'), "no address on a link"),
    ]
    for (old, new), message in cases:
        assert old in EBGP_MINI
        with pytest.raises(TopologyError) as info:
            parse(EBGP_MINI.replace(old, new))
        assert any(message in p for p in info.value.problems), (new, info.value.problems)


def test_a_node_gets_its_as_its_leaves_and_its_vtep_in_its_vrfnodeconfig() -> None:
    topo = load(EBGP)
    rack1 = nodeconfig(topo.nodes["k8s02"], [], topo)
    assert rack1 == {
        "apiVersion": "cni.pyroute2.org/v1alpha1",
        "kind": "VRFNodeConfig",
        "metadata": {"name": "k8s02-vrnc"},
        "spec": {
            "nodeRef": {"name": "k8s02"},
            "routerId": "10.255.0.12",
            "asn": 65201,
            # its rack mate has its AS: its routes come back with it in the path
            "neighbors": [
                {"address": "172.16.1.2", "asn": 65101, "allowAsIn": 1},
                {"address": "172.16.2.2", "asn": 65102, "allowAsIn": 1},
            ],
            "underlay": {"vtepAddress": "10.255.0.12"},
        },
    }
    rack2 = nodeconfig(topo.nodes["k8s03"], [], topo)["spec"]
    assert rack2["neighbors"] == [
        {"address": "172.16.3.0", "asn": 65103},
        {"address": "172.16.4.0", "asn": 65104},
    ]
    assert "interfaces" not in rack2 and "routeReflectors" not in rack2
    # the default lab's nodes: the seeds' kind, unchanged
    default = load(DEFAULT)
    seeds = nodeconfig(default.nodes["k8s01"], ["192.168.124.2"], default)["spec"]
    assert seeds == {
        "nodeRef": {"name": "k8s01"},
        "routerId": "192.168.124.11",
        "interfaces": [{"name": "eth1", "local": "192.168.124.11"}],
        "routeReflectors": ["192.168.124.2"],
    }


def test_the_domains_get_the_hand_set_route_targets_of_the_fabric() -> None:
    topo = load(EBGP)
    assert route_target_admin(topo) == "65000"
    vrf42 = with_route_targets(topo, DEFAULT_DOMAIN)["spec"]
    assert vrf42["importRouteTargets"] == vrf42["exportRouteTargets"] == ["65000:42"]
    assert "importRouteTargets" not in DEFAULT_DOMAIN["spec"]  # a copy, not changed
    docs = {d["metadata"]["name"]: d for d in demo_documents(topo) if d["kind"] == "VRFDomain"}
    assert {n: d["spec"]["exportRouteTargets"] for n, d in docs.items()} == {
        "vrf-200": ["65000:60200"],
        "vrf-201": ["65000:60201"],
        "vrf-300": ["65000:300"],
    }
    # the default lab: derived route targets, the demo's documents as they are
    default = load(DEFAULT)
    assert route_target_admin(default) == ""
    assert with_route_targets(default, DEFAULT_DOMAIN) is DEFAULT_DOMAIN
    assert "RouteTargets" not in str(demo_documents(default))
    assert len(demo_documents(default)) == DEMO_CRS.count("kind:")


def test_the_leaves_and_spines_are_ebgp_with_the_underlay_and_evpn() -> None:
    leaf = router("leaf1a")
    conf = leaf.bgpd_conf()
    assert leaf.asn == 65101 and leaf.router_id == "10.255.1.1" and leaf.with_zebra
    assert leaf.leaf is not None and leaf.leaf.vtep == "10.255.1.1"
    lines = conf.splitlines()
    for expected in [
        "router bgp 65101",
        " bgp bestpath as-path multipath-relax",
        " neighbor 172.16.1.1 remote-as 65201",  # k8s01
        " neighbor 172.16.1.5 remote-as 65000",  # spine1
        "  network 10.255.1.1/32",
        "  neighbor 172.16.1.1 prefix-list UNDERLAY out",
        "  neighbor 172.16.1.1 allowas-in 1",  # rack 1's nodes share an AS
        "  neighbor 172.16.1.5 attribute-unchanged next-hop",
        "  maximum-paths 4",
        "  advertise ipv4 unicast route-map TYPE5",
        "  route-target import 65000:42",
        "  route-target export 65000:42",
        "ip prefix-list TYPE5 seq 5 permit 10.50.0.0/24",
        "ip prefix-list UNDERLAY seq 25 permit 10.255.0.11/32",
    ]:
        assert expected in lines, expected
    assert "allowas-in" not in router("leaf2a").bgpd_conf()  # rack 2: an AS per node
    sp = router("spine2")
    assert sp.with_zebra and sp.leaf is None and sp.router_id == "172.16.1.7"
    spine = sp.bgpd_conf().splitlines()
    assert " neighbor 172.16.4.6 remote-as 65104" in spine
    assert "  neighbor 172.16.4.6 attribute-unchanged next-hop" in spine
    assert "  advertise-all-vni" not in spine and "  network" not in "\n".join(spine)


def test_the_lab_waits_for_every_session_and_ecmp_over_both_leaves_of_a_rack() -> None:
    lab = ClusterLab(load(EBGP), name="unit", progress=Progress(quiet=True))
    sessions = lab.expected_sessions()
    assert sessions["k8s01"] == {"172.16.1.0": "established", "172.16.2.0": "established"}
    assert set(sessions["leaf1a"]) == {"172.16.1.1", "172.16.1.3", "172.16.1.5", "172.16.1.7"}
    assert set(sessions["spine1"]) == {"172.16.1.4", "172.16.2.4", "172.16.3.4", "172.16.4.4"}
    want = lab.expected_underlay()
    assert want["k8s01"] == {
        "10.255.0.12/32": "172.16.1.0 172.16.2.0",
        "10.255.0.13/32": "172.16.1.0 172.16.2.0",
        "10.255.0.14/32": "172.16.1.0 172.16.2.0",
    }
    assert want["leaf1a"]["10.255.0.11/32"] == "172.16.1.1"
    assert want["leaf1a"]["10.255.0.14/32"] == "172.16.1.5 172.16.1.7"
    assert want["spine2"]["10.255.0.14/32"] == "172.16.3.6 172.16.4.6"
    assert ClusterLab(load(DEFAULT), name="unit").expected_underlay() == {}


def test_fields_an_api_server_pruned_are_found() -> None:
    sent = {"asn": 1, "underlay": {"vtepAddress": "a"}, "neighbors": [{"address": "x"}], "r": "1"}
    assert pruned(sent, sent, "spec") == []
    assert pruned(sent, {"neighbors": [], "r": "1", "underlay": {}}, "spec") == [
        "spec.asn",
        "spec.underlay.vtepAddress",
    ]
    assert pruned(sent, {"underlay": "a"}, "spec") == [
        "spec.asn",
        "spec.underlay",
        "spec.neighbors",
        "spec.r",
    ]


def test_the_ebgp_lab_is_containerlab_syntax() -> None:
    """As tests/unit/test_lab_topology.py checks the default lab: what
    containerlab's schema requires (labels are strings, endpoints are
    node:interface, only known keys)."""
    doc = yaml.safe_load(EBGP.read_text())
    assert set(doc) == {"name", "topology"}
    assert set(doc["topology"]) == {"defaults", "kinds", "nodes", "links"}
    for name, node in doc["topology"]["nodes"].items():
        assert node.get("kind", "linux") in ("linux", "bridge"), name
        assert all(isinstance(v, str) for v in node.get("labels", {}).values()), name
    for link in doc["topology"]["links"]:
        assert set(link) == {"endpoints"} and all(e.count(":") == 1 for e in link["endpoints"])


def test_bfd_on_a_peer_reaches_the_nodes_vrfnodeconfig_and_frrs_configuration() -> None:
    """ClusterLab.set_bfd's configuration (issue 15's silent peer): the
    nodes' neighbour gets ``bfd`` with its timers, FRR ``neighbor X bfd``
    (FRR's default timers as the plain command); a reflector becomes an
    explicit iBGP neighbour with BFD and stays a reflector; ``bfdd`` runs
    bfdd on every FRR router, reflectors with zebra (bgpd reaches bfdd
    through it)."""
    lab = ClusterLab(load(EBGP), name="unit", progress=Progress(quiet=True))
    lab.bfd["leaf1b"] = (3, 300)
    [a, b] = lab.nodeconfig("k8s01")["spec"]["neighbors"]
    assert "bfd" not in a and b["address"] == "172.16.2.0"
    assert (b["bfd"], b["bfdIntervalMs"], b["bfdMultiplier"]) == (True, 300, 3)
    assert all("bfd" not in n for n in lab.nodeconfig("k8s03")["spec"]["neighbors"])
    leaf = router("leaf1b")
    leaf.neighbors[0].bfd = (3, 300)
    leaf.neighbors[1].bfd = (5, 100)
    lines = leaf.bgpd_conf().splitlines()
    assert " neighbor 172.16.2.1 bfd" in lines and " neighbor 172.16.2.3 bfd 5 100 100" in lines
    rr = ClusterLab(load(DEFAULT), name="unit", bfdd=True)
    rr.bfd["rr1"] = (3, 300)
    spec = rr.nodeconfig("k8s02")["spec"]
    assert spec["routeReflectors"] == ["192.168.124.2", "192.168.124.3"]
    assert spec["neighbors"] == [
        {"address": "192.168.124.2", "asn": 65000, "bfd": True, "bfdIntervalMs": 300,
         "bfdMultiplier": 3}
    ]  # fmt: skip
    topo = load(DEFAULT)
    rr.namespaces["rr1"] = "x-rr1"
    reflector = rr._router(topo.nodes["rr1"])
    assert reflector.daemons == ("zebra", "bgpd", "bfdd")
    assert reflector.reflector is not None
    reflector.reflector.bfd = (3, 300)
    assert " neighbor CLIENTS bfd" in reflector.bgpd_conf().splitlines()
