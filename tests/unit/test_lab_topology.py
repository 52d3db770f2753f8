"""The containerlab files of containerlab/ as the lab reads them
(testbed/topology.py): containerlab's own structure, cnid's labels, and
every problem reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from testbed.topology import TopologyError, load, parse

REPO = Path(__file__).resolve().parents[2]
DEFAULT = REPO / "containerlab" / "cnid.clab.yml"

MINI = """
name: mini
topology:
  defaults: {kind: linux}
  kinds:
    linux: {image: img, labels: {cnid.asn: "65001"}}
  nodes:
    seg: {kind: bridge}
    kapi: {labels: {cnid.role: kube-api, cnid.eth1: 192.168.9.1/24}}
    rr: {labels: {cnid.role: route-reflector, cnid.eth1: 192.168.9.2/24,
                  cnid.listen-range: 192.168.9.0/24}}
    n1: {labels: {cnid.role: node, cnid.eth1: 192.168.9.11/24, cnid.route-reflectors: rr}}
  links:
    - endpoints: ["kapi:eth1", "seg:p-kapi"]
    - endpoints: ["rr:eth1", "seg:p-rr"]
    - endpoints: ["n1:eth1", "seg:p-n1"]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse(text)
    return info.value.problems


def test_the_default_lab_is_three_nodes_two_reflectors_and_a_leaf_with_a_host() -> None:
    topo = load(DEFAULT)
    assert topo.name == "cnid"
    roles = {n.name: n.role for n in topo.nodes.values() if not n.is_bridge}
    assert roles == {
        "kapi": "kube-api",
        "rr1": "route-reflector",
        "rr2": "route-reflector",
        "leaf": "leaf",
        "h1": "host",
        "k8s01": "node",
        "k8s02": "node",
        "k8s03": "node",
    }
    assert [n.name for n in topo.nodes.values() if n.is_bridge] == ["cnid-fabric"]
    assert {n.address for n in topo.role("node")} == {f"192.168.124.{i}" for i in (11, 12, 13)}
    for node in topo.role("node"):
        assert node.words("route-reflectors") == ["rr1", "rr2"]
        assert topo.bridge_of(node.name, node.ifname) == "cnid-fabric"
    leaf = topo.nodes["leaf"]
    assert leaf.addresses == {"eth1": "192.168.124.4/24", "eth2": "10.50.0.1/24"}
    assert leaf.label("l3vni") == "42" and leaf.words("networks") == ["10.50.0.0/24"]
    # h1 hangs off the leaf, not the fabric
    assert [(m.ifname, o.node) for m, o in topo.links_of("h1")] == [("eth1", "leaf")]
    assert topo.nodes["h1"].label("gateway") == "10.50.0.1"


def test_the_default_lab_is_containerlab_syntax() -> None:
    """What containerlab's schema requires of it (additional properties
    refused at the top and in nodes; labels are strings or numbers;
    endpoints are node:interface; a linux node has an image)."""
    doc = yaml.safe_load(DEFAULT.read_text())
    assert set(doc) <= {"name", "prefix", "mgmt", "topology"}
    assert set(doc["topology"]) <= {"nodes", "kinds", "defaults", "links"}
    image = doc["topology"]["kinds"]["linux"]["image"]
    for name, node in doc["topology"]["nodes"].items():
        kind = node.get("kind", doc["topology"]["defaults"]["kind"])
        assert kind in ("linux", "bridge"), name
        for value in node.get("labels", {}).values():
            assert isinstance(value, str | int), (name, value)
        if kind == "linux":
            assert node.get("image", image)
    for link in doc["topology"]["links"]:
        assert set(link) == {"endpoints"}
        assert len(link["endpoints"]) == 2
        assert all(ep.count(":") == 1 for ep in link["endpoints"])


def test_settings_merge_as_containerlab_merges_them() -> None:
    topo = parse(MINI)
    n1 = topo.nodes["n1"]
    assert n1.kind == "linux" and n1.image == "img"
    assert n1.asn == 65001  # from the kind's labels
    assert n1.labels["cnid.role"] == "node"  # the node's own
    assert topo.addresses_of(n1.words("route-reflectors")) == ["192.168.9.2"]
    over = MINI.replace("cnid.route-reflectors: rr}", 'cnid.route-reflectors: rr, cnid.asn: "7"}')
    assert parse(over).nodes["n1"].asn == 7


def test_every_problem_is_reported_at_once() -> None:
    bad = (
        MINI.replace("  links:", "  extra: 1\n  links:")
        .replace("cnid.role: node,", "cnid.role: nod, image2: x,")
        .replace('"rr:eth1"', '"rx:eth1"')
        .replace("192.168.9.2/24", "192.168.9.300/24")
    )
    found = problems(bad)
    text = "\n".join(found)
    assert "topology: unknown key 'extra'" in text
    assert "cnid.role 'nod'" in text
    assert "no node 'rx'" in text
    # rr's only interface is gone with its link: no address at all
    assert "node rr: no address" in text


def test_containerlab_structure_is_checked() -> None:
    assert "unknown top-level key 'lab'" in problems(MINI + "lab: x\n")[0]
    assert any(
        "unknown key 'kindd'" in p for p in problems(MINI.replace("{kind: bridge}", "{kindd: x}"))
    )
    text = "\n".join(problems(MINI.replace('"n1:eth1"', '"n1-eth1"')))
    assert "is not 'node:interface'" in text
    text = "\n".join(
        problems(MINI.replace("kinds:\n    linux: {image: img,", "kinds:\n    linux: {"))
    )
    assert "a linux node needs an image" in text
    text = "\n".join(problems(MINI.replace('"n1:eth1"', '"n1:an-interface-name-too-long"')))
    assert "at most 15 characters" in text
    text = "\n".join(problems(MINI.replace("{kind: bridge}", "{kind: nokia_srlinux}")))
    assert "cannot be realised here" in text


def test_cnid_labels_are_checked() -> None:
    cases = [
        (("192.168.9.11/24", "192.168.9.11/32"), "give the prefix length of the segment"),
        (("cnid.route-reflectors: rr}", "cnid.route-reflectors: n1}"), "n1 is a node"),
        (("listen-range: 192.168.9.0/24", "listen-range: 192.168.9.0/33"), "is not a prefix"),
        (("cnid.eth1: 192.168.9.11/24", "cnid.eth7: 192.168.9.11/24"), "interface 'eth7'"),
        (("cnid.role: route-reflector", "cnid.role: kube-api"), "exactly one kube-api"),
        (('"seg:p-rr"', '"seg:p-kapi"'), "bridge port 'p-kapi' used twice"),
        (('cnid.asn: "65001"', 'cnid.asn: "x"'), "is not a number"),
    ]
    for (old, new), message in cases:
        assert old in MINI
        found = problems(MINI.replace(old, new))
        assert any(message in p for p in found), (new, found)
