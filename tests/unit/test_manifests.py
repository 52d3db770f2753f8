"""kube/ and the Containerfile, checked offline.

The manifests are what users apply; a typo in them shows only on a real
cluster. Here: the kustomizations build (emulated: pykustomize needs Python
3.14), built-in kinds and the CRDs validate against Kubernetes 1.31's own
schemas (kubernetes-validate), the CRDs accept the seeds' examples and
reject what cnid cannot handle (testbed.kubeapi, which evaluates the CEL
rules as the API server does; status, which a create drops, with plain JSON
Schema), every field cnid.kube's models write is declared, RBAC is exactly
what cnid.kube declares, the ConfigMap parses with cnid's parser, and
install-cni.sh runs for real.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import msgspec
import msgspec.inspect
import pytest
import yaml

from cnid.daemon import parse_config
from testbed import seeds

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "kube"
CRDS = KUBE / "crds"
DEPLOY = KUBE / "deploy"
NAMESPACE = "pyroute2-cni"
#: The oldest Kubernetes the seeds support.
K8S_VERSION = "1.31.0"

Obj = dict[str, Any]

#: Kinds without a namespace, among those kube/ holds.
CLUSTER_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def load_docs(path: Path) -> list[Obj]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no document"
    for doc in docs:
        assert isinstance(doc, dict), f"{path}: a document is not a mapping"
    return docs


def kustomize_build(directory: Path) -> list[Obj]:
    """What `kubectl apply -k directory` sends, for the features kube/ uses:
    ``resources`` (files or directories) and ``namespace``. Anything else
    in the kustomization fails here, so the emulation cannot silently
    diverge from kustomize."""
    kfile = directory / "kustomization.yaml"
    (k,) = load_docs(kfile)
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert k["kind"] == "Kustomization"
    assert set(k) <= {"apiVersion", "kind", "namespace", "resources"}, set(k)
    out: list[Obj] = []
    for entry in k["resources"]:
        path = directory / entry
        assert path.resolve().is_relative_to(REPO), entry
        if path.is_dir():
            out += kustomize_build(path)
        else:
            assert path.is_file(), f"{kfile} lists {entry}, which does not exist"
            out += copy.deepcopy(load_docs(path))
    namespace = k.get("namespace")
    if namespace:
        for obj in out:
            if obj["kind"] not in CLUSTER_KINDS:
                obj["metadata"]["namespace"] = namespace
            for subject in obj.get("subjects", []):
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
    return out


def key(obj: Obj) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def built(directory: Path) -> dict[tuple[str, str, str], Obj]:
    objs = kustomize_build(directory)
    keys = [key(o) for o in objs]
    assert len(keys) == len(set(keys)), f"duplicates in {directory}: {keys}"
    return dict(zip(keys, objs, strict=True))


def only(directory: Path, kind: str, name: str, namespace: str = "") -> Obj:
    return built(directory)[(kind, namespace, name)]


def crd(plural: str, group: str) -> Obj:
    return only(CRDS, "CustomResourceDefinition", f"{plural}.{group}")


def daemonset() -> Obj:
    return only(DEPLOY, "DaemonSet", "cnid", NAMESPACE)


# -- files and kustomizations ------------------------------------------------


def test_every_yaml_under_kube_parses() -> None:
    files = sorted(KUBE.rglob("*.y*ml"))
    assert len(files) >= 10, files
    for path in files:
        for doc in load_docs(path):
            assert doc.get("apiVersion") and doc.get("kind"), path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path


@pytest.mark.parametrize("directory", [CRDS, DEPLOY], ids=["crds", "deploy"])
def test_kustomization_lists_every_manifest_and_builds_unique_objects(directory: Path) -> None:
    (k,) = load_docs(directory / "kustomization.yaml")
    listed = {directory / entry for entry in k["resources"]}
    manifests = {p for p in directory.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == manifests, "a manifest is missing from the kustomization, or is extra"
    objs = built(directory)
    assert objs
    if directory == DEPLOY:
        for kind, namespace, name in objs:
            assert namespace == ("" if kind in CLUSTER_KINDS else NAMESPACE), (kind, name)


def test_release_holds_the_seeds_install() -> None:
    objs = built(DEPLOY)
    assert {
        ("Namespace", "", NAMESPACE),
        ("ServiceAccount", NAMESPACE, "cnid"),
        ("ClusterRole", "", "cnid"),
        ("ClusterRoleBinding", "", "cnid"),
        ("Role", NAMESPACE, "cnid-bgp-secret"),
        ("RoleBinding", NAMESPACE, "cnid-bgp-secret"),
        ("ConfigMap", NAMESPACE, "server-config"),
        ("DaemonSet", NAMESPACE, "cnid"),
    } == set(objs)
    assert set(built(CRDS)) == {
        ("CustomResourceDefinition", "", f"{plural}.{group}")
        for plural, group in [
            ("vrfdomains", "cni.pyroute2.org"),
            ("vrfdomainbindings", "cni.pyroute2.org"),
            ("vrfnodeconfigs", "cni.pyroute2.org"),
            ("vrfroutingpolicies", "cni.pyroute2.org"),
            ("ipblocks", "ipam.pyroute2.org"),
        ]
    }


def test_everything_validates_against_kubernetes_schemas() -> None:
    objs = list(built(CRDS).values()) + list(built(DEPLOY).values())
    for obj in objs:
        # strict: unknown fields are errors, so a misspelt key fails here.
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_kubernetes_validate_catches_a_misspelt_field() -> None:
    ds = daemonset()
    ds["spec"]["template"]["spec"]["hostNetwrok"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, K8S_VERSION, strict=True)


# -- the CRDs ----------------------------------------------------------------

CRD_TABLE = [
    # plural, group, kind, short name, printer columns (name, jsonPath)
    (
        "vrfdomains",
        "cni.pyroute2.org",
        "VRFDomain",
        "vrfd",
        [
            ("VRF", ".spec.vrf"),
            ("TABLE", ".spec.table"),
            ("PREFIX", ".spec.prefix"),
            ("PREFIXLEN", ".spec.prefixlen"),
            ("ACCEPTED", '.status.conditions[?(@.type=="Accepted")].status'),
        ],
    ),
    (
        "vrfdomainbindings",
        "cni.pyroute2.org",
        "VRFDomainBinding",
        "vrfdb",
        [
            ("NAMESPACE", ".spec.namespaceRef.name"),
            ("DOMAIN", ".spec.vrfDomainRef.name"),
            ("RESOLVED", '.status.conditions[?(@.type=="Resolved")].status'),
        ],
    ),
    (
        "vrfnodeconfigs",
        "cni.pyroute2.org",
        "VRFNodeConfig",
        "vrfnc",
        [
            ("NODE", ".spec.nodeRef.name"),
            ("ROUTER-ID", ".spec.routerId"),
            ("AS", ".spec.asn"),
            ("ACCEPTED", '.status.conditions[?(@.type=="Accepted")].status'),
        ],
    ),
    (
        "vrfroutingpolicies",
        "cni.pyroute2.org",
        "VRFRoutingPolicy",
        "vrfrp",
        [
            ("DOMAIN", ".spec.vrfDomainRef.name"),
            ("ACCEPTED", '.status.conditions[?(@.type=="Accepted")].status'),
        ],
    ),
    (
        "ipblocks",
        "ipam.pyroute2.org",
        "IPBlock",
        "ipb",
        # The seeds' `kubectl get ipblocks.ipam.pyroute2.org`: NAME, then these.
        [
            ("CIDR", ".spec.cidr"),
            ("NODE", ".spec.node"),
            ("VRF", ".spec.vrf"),
            ("ALLOCATED", ".status.allocated"),
            ("CAPACITY", ".status.capacity"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("plural", "group", "kind", "short", "columns"), CRD_TABLE, ids=[t[0] for t in CRD_TABLE]
)
def test_crd_names_scope_version_and_columns(
    plural: str, group: str, kind: str, short: str, columns: list[tuple[str, str]]
) -> None:
    spec = crd(plural, group)["spec"]
    assert spec["group"] == group
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == [short]
    assert spec["names"]["categories"] == ["cnid"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True and version["storage"] is True
    assert version["subresources"] == {"status": {}}
    # kubectl prints column names upper-cased.
    got = [(c["name"].upper(), c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert got == columns


def schema_nodes(schema: Obj, path: str = "") -> list[tuple[str, Obj]]:
    """Every schema node that describes a value, with its path."""
    out = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        out += schema_nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("additionalProperties"), dict):
        out += schema_nodes(schema["additionalProperties"], f"{path}[*]")
    if "items" in schema:
        out += schema_nodes(schema["items"], f"{path}[]")
    return out


SCHEMA_TYPES = {"object", "array", "string", "integer", "boolean", "number"}

#: The CEL functions the API server's IP/CIDR library and standard CEL give
#: (Kubernetes 1.31), as far as the rules may use them.
CEL_FUNCTIONS = {
    "isIP", "ip", "family", "isCIDR", "cidr", "prefixLength", "masked",
    "size", "has", "string", "int", "matches", "all", "exists",
}  # fmt: skip


@pytest.mark.parametrize(
    "plural,group", [(t[0], t[1]) for t in CRD_TABLE], ids=[t[0] for t in CRD_TABLE]
)
def test_crd_schema_is_structural_and_rules_use_known_functions(plural: str, group: str) -> None:
    (version,) = crd(plural, group)["spec"]["versions"]
    root = version["schema"]["openAPIV3Schema"]
    assert root["required"] == ["spec"]
    assert root["properties"]["metadata"] == {"type": "object"}
    rules = 0
    for path, node in schema_nodes(root):
        assert node.get("type") in SCHEMA_TYPES, path
        assert not {"allOf", "anyOf", "oneOf", "not"} & set(node), path
        assert not node.get("x-kubernetes-preserve-unknown-fields"), path
        if node["type"] == "object" and path not in ("", ".metadata"):
            assert "properties" in node or "additionalProperties" in node, path
        for rule in node.get("x-kubernetes-validations", []):
            rules += 1
            assert rule["message"].strip(), (path, rule)
            used = set(re.findall(r"([A-Za-z_]\w*)\s*\(", rule["rule"]))
            assert used <= CEL_FUNCTIONS, (path, used - CEL_FUNCTIONS)
            # Strings a rule reads are bounded, or the API server's cost
            # estimate refuses the CRD.
            if node["type"] == "string":
                assert "maxLength" in node, path
    if plural != "vrfdomainbindings":
        assert rules, "the IP rules are CEL rules"


# -- custom resources against the CRDs (testbed.kubeapi evaluates CEL) -------

# Verbatim from the seeds (shared/seeds/001).
SEED_VRFNODECONFIG = seeds.VRFNODECONFIG
SEED_VRFDOMAIN = seeds.VRFDOMAIN
SEED_VRFDOMAINBINDING = seeds.VRFDOMAINBINDING

# docs/kubernetes.md's IPBlock (its status is below, with the other statuses).
IPBLOCK = """\
apiVersion: ipam.pyroute2.org/v1alpha1
kind: IPBlock
metadata:
  name: vrf-42-10-244-0-0-26
  labels:
    ipam.pyroute2.org/node: k8s03
    ipam.pyroute2.org/vrf: "42"
spec:
  cidr: 10.244.0.0/26
  node: k8s03
  vrf: 42
  gateway: 10.244.0.1
"""

# kube/examples/vrfroutingpolicy.yaml: pyroute2-cni's kind, cnid's example.
VRFROUTINGPOLICY = (KUBE / "examples" / "vrfroutingpolicy.yaml").read_text()

EXAMPLES = {
    "VRFDomain": ("vrfdomains", "cni.pyroute2.org", SEED_VRFDOMAIN),
    "VRFDomainBinding": ("vrfdomainbindings", "cni.pyroute2.org", SEED_VRFDOMAINBINDING),
    "VRFNodeConfig": ("vrfnodeconfigs", "cni.pyroute2.org", SEED_VRFNODECONFIG),
    "IPBlock": ("ipblocks", "ipam.pyroute2.org", IPBLOCK),
    "VRFRoutingPolicy": ("vrfroutingpolicies", "cni.pyroute2.org", VRFROUTINGPOLICY),
}


#: A change that removes the field.
DROP = object()


def errors_of(kind: str, changes: Mapping[str, object] | None = None) -> list[str]:
    """testbed.kubeapi's verdict on the example of ``kind`` with ``changes``:
    dotted paths (list indices as numbers) to new values, or DROP."""
    from testbed.kubeapi import validate

    plural, group, text = EXAMPLES[kind]
    obj = yaml.safe_load(text)
    for path, value in (changes or {}).items():
        *parents, last = path.split(".")
        node: Any = obj
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        index: Any = int(last) if last.isdigit() else last
        if value is DROP:
            del node[index]
        else:
            node[index] = value
    # strict: a field the server would prune (undeclared) is an error too.
    return validate(crd(plural, group), obj, strict=True)


@pytest.mark.parametrize("kind", sorted(EXAMPLES))
def test_seed_examples_are_accepted(kind: str) -> None:
    assert errors_of(kind) == []


VD, VDB, VNC, IPB = "VRFDomain", "VRFDomainBinding", "VRFNodeConfig", "IPBlock"
VRP = "VRFRoutingPolicy"
V6 = {"spec.prefix": "fd00:10::", "spec.prefixlen": 48}

# fmt: off
VALID: list[tuple[str, str, dict[str, object]]] = [
    (VD, "ipv6", {**V6, "spec.ipblocklen": 120}),
    (VD, "ipv6 /126 blocks", {**V6, "spec.ipblocklen": 126}),
    (VD, "ipv4 /30 blocks", {"spec.ipblocklen": 30}),
    (VD, "ipv4 whole space", {"spec.prefix": "0.0.0.0", "spec.prefixlen": 0}),
    (VD, "l2vni without port", {"spec.attachments": [{"type": "l2vni", "vni": 100}]}),
    (VD, "two attachments", {"spec.attachments": [
        {"type": "l2vni", "vni": 1}, {"type": "l3vni", "vni": 16777215, "port": 65535}]}),
    (VD, "table 252", {"spec.table": 252}),
    (VD, "table 256", {"spec.table": 256}),
    (VD, "max vrf and table", {"spec.vrf": 4294967295, "spec.table": 4294967295}),
    (VD, "route targets", {
        "spec.importRouteTargets": ["65000:42", "*:42", "192.0.2.1:7", "4200000001L:9"],
        "spec.exportRouteTargets": ["65000:42", "10.0.0.1:42"],
        "spec.routeTargetDerivation": "rfc8365"}),
    (VD, "derived FRR route targets", {"spec.routeTargetDerivation": "frr"}),
    (VNC, "no routerId", {"spec.routerId": DROP}),
    (VNC, "only nodeRef", {"spec.routerId": DROP, "spec.routeReflectors": DROP,
                           "spec.interfaces": DROP}),
    (VNC, "ipv6 reflector", {"spec.routeReflectors": ["fd00::1", "10.0.0.1"]}),
    (VNC, "interface without local", {"spec.interfaces": [{"name": "bond0.100"}]}),
    (VNC, "routed underlay", {"spec.underlay": {"vtepAddress": "10.255.0.11"}}),
    (IPB, "ipv6", {"spec.cidr": "fd00:10::100/120", "spec.gateway": "fd00:10::101"}),
    (VRP, "only oifname", {"spec.match": [{"oifname": "vrf-200"}]}),
    (VRP, "ipv6 dst and src", {"spec.match": [{"dst": "fd00:1::/64", "src": "fd00:2::/64"}]}),
    (VRP, "a host route", {"spec.match": [{"dst": "192.0.2.1/32", "iifname": "lo"}]}),
]

INVALID: list[tuple[str, str, dict[str, object], str]] = [
    # kind, what, changes, a word the error names
    (VD, "prefix not an address", {"spec.prefix": "10.1.0"}, "prefix"),
    (VD, "prefix is a CIDR", {"spec.prefix": "10.1.0.0/16"}, "prefix"),
    (VD, "prefix host bits", {"spec.prefix": "10.1.0.1"}, "prefix"),
    (VD, "ipv6 prefix host bits", {**V6, "spec.prefix": "fd00:10::1", "spec.ipblocklen": 64},
     "prefix"),
    (VD, "prefixlen 33 for IPv4", {"spec.prefixlen": 33, "spec.ipblocklen": 34}, "prefixlen"),
    (VD, "prefixlen 129", {**V6, "spec.prefixlen": 129}, "prefixlen"),
    (VD, "prefixlen negative", {"spec.prefixlen": -1}, "prefixlen"),
    (VD, "ipblocklen = prefixlen", {"spec.ipblocklen": 16}, "ipblocklen"),
    (VD, "ipblocklen < prefixlen", {"spec.ipblocklen": 8}, "ipblocklen"),
    (VD, "ipblocklen 31", {"spec.ipblocklen": 31}, "ipblocklen"),
    (VD, "ipblocklen 32", {"spec.ipblocklen": 32}, "ipblocklen"),
    (VD, "ipv6 ipblocklen 127", {**V6, "spec.ipblocklen": 127}, "ipblocklen"),
    (VD, "attachment type l4vni", {"spec.attachments.0.type": "l4vni"}, "type"),
    (VD, "vni 0", {"spec.attachments.0.vni": 0}, "vni"),
    (VD, "vni 2^24", {"spec.attachments.0.vni": 2**24}, "vni"),
    (VD, "port 0", {"spec.attachments.0.port": 0}, "port"),
    (VD, "port 65536", {"spec.attachments.0.port": 65536}, "port"),
    (VD, "attachment without vni", {"spec.attachments.0.vni": DROP}, "vni"),
    (VD, "no attachments", {"spec.attachments": []}, "attachments"),
    (VD, "attachments missing", {"spec.attachments": DROP}, "attachments"),
    (VD, "import target in ExaBGP's text", {"spec.importRouteTargets": ["target:65000:42"]},
     "importRouteTargets"),
    (VD, "import target without number", {"spec.importRouteTargets": ["65000"]},
     "importRouteTargets"),
    (VD, "export target *:NN", {"spec.exportRouteTargets": ["*:42"]}, "exportRouteTargets"),
    (VD, "export target a name", {"spec.exportRouteTargets": ["blue:42"]}, "exportRouteTargets"),
    (VD, "route targets a string", {"spec.importRouteTargets": "65000:42"},
     "importRouteTargets"),
    (VD, "17 route targets", {"spec.exportRouteTargets": [f"65000:{n}" for n in range(17)]},
     "exportRouteTargets"),
    (VD, "derivation cisco", {"spec.routeTargetDerivation": "cisco"}, "routeTargetDerivation"),
    (VD, "vrf 0", {"spec.vrf": 0}, "vrf"),
    (VD, "vrf 2^32", {"spec.vrf": 2**32}, "vrf"),
    (VD, "vrf a string", {"spec.vrf": "200"}, "vrf"),
    (VD, "table 0", {"spec.table": 0}, "table"),
    (VD, "table 2^32", {"spec.table": 2**32}, "table"),
    (VD, "table 253", {"spec.table": 253}, "table"),
    (VD, "table 254", {"spec.table": 254}, "table"),
    (VD, "table 255", {"spec.table": 255}, "table"),
    (VD, "no table", {"spec.table": DROP}, "table"),
    (VD, "no prefix", {"spec.prefix": DROP}, "prefix"),
    (VD, "no spec", {"spec": DROP}, "spec"),
    (VNC, "routerId x", {"spec.routerId": "x"}, "routerId"),
    (VNC, "routerId IPv6", {"spec.routerId": "fd00::2"}, "routerId"),
    (VNC, "routeReflector not an IP", {"spec.routeReflectors": ["rr1.example"]},
     "routeReflectors"),
    (VNC, "routeReflectors a string", {"spec.routeReflectors": "192.168.124.1"},
     "routeReflectors"),
    (VNC, "interface local not an IP", {"spec.interfaces.0.local": "eth1"}, "local"),
    (VNC, "interface name too long", {"spec.interfaces.0.name": "a" * 16}, "name"),
    (VNC, "interface name with /", {"spec.interfaces.0.name": "eth/1"}, "name"),
    (VNC, "interface named ..", {"spec.interfaces.0.name": ".."}, "name"),
    (VNC, "interface without name", {"spec.interfaces.0.name": DROP}, "name"),
    (VNC, "no nodeRef", {"spec.nodeRef": DROP}, "nodeRef"),
    (VNC, "underlay vtep IPv6", {"spec.underlay": {"vtepAddress": "fd00::2"}}, "vtepAddress"),
    (VNC, "underlay vtep 0.0.0.0", {"spec.underlay": {"vtepAddress": "0.0.0.0"}}, "vtepAddress"),
    (VNC, "underlay vtep a name", {"spec.underlay": {"vtepAddress": "vtep1"}}, "vtepAddress"),
    (VNC, "underlay without vtep", {"spec.underlay": {}}, "vtepAddress"),
    (VDB, "no namespaceRef", {"spec.namespaceRef": DROP}, "namespaceRef"),
    (VDB, "no vrfDomainRef", {"spec.vrfDomainRef": DROP}, "vrfDomainRef"),
    (VDB, "namespace not a DNS label", {"spec.namespaceRef.name": "Test_02"}, "name"),
    (VDB, "empty domain name", {"spec.vrfDomainRef.name": ""}, "name"),
    (IPB, "cidr host bits", {"spec.cidr": "10.244.0.1/26"}, "cidr"),
    (IPB, "cidr not a CIDR", {"spec.cidr": "10.244.0.0"}, "cidr"),
    (IPB, "cidr /31", {"spec.cidr": "10.244.0.0/31"}, "cidr"),
    (IPB, "cidr /127", {"spec.cidr": "fd00::/127", "spec.gateway": "fd00::1"},
     "cidr"),
    (IPB, "gateway not an IP", {"spec.gateway": "gw"}, "gateway"),
    (IPB, "gateway outside cidr", {"spec.gateway": "10.244.1.1"}, "gateway"),
    (IPB, "gateway of the other family", {"spec.gateway": "fd00::1"}, "gateway"),
    (IPB, "vrf 0", {"spec.vrf": 0}, "vrf"),
    (IPB, "no node", {"spec.node": DROP}, "node"),
    (IPB, "no gateway", {"spec.gateway": DROP}, "gateway"),
    (VRP, "empty match", {"spec.match": []}, "match"),
    (VRP, "no match", {"spec.match": DROP}, "match"),
    (VRP, "no vrfDomainRef", {"spec.vrfDomainRef": DROP}, "vrfDomainRef"),
    (VRP, "a match without selector", {"spec.match": [{}]}, "at least one"),
    (VRP, "dst not a CIDR", {"spec.match.0.dst": "192.0.2.0"}, "dst"),
    (VRP, "dst host bits", {"spec.match.0.dst": "192.0.2.1/24"}, "dst"),
    (VRP, "src not a CIDR", {"spec.match.1.src": "eth1"}, "src"),
    (VRP, "dst and src of two families", {"spec.match": [{"dst": "fd00::/64",
                                                         "src": "10.0.0.0/8"}]}, "family"),
    (VRP, "iifname too long", {"spec.match.1.iifname": "a" * 16}, "iifname"),
    (VRP, "oifname with /", {"spec.match.0.oifname": "a/b"}, "oifname"),
    (VRP, "unknown selector", {"spec.match.0.table": 200}, "table"),
]
# fmt: on


@pytest.mark.parametrize(("kind", "why", "changes"), VALID, ids=[f"{k}-{w}" for k, w, _ in VALID])
def test_valid_variants_are_accepted(kind: str, why: str, changes: dict[str, object]) -> None:
    assert errors_of(kind, changes) == []


@pytest.mark.parametrize(
    ("kind", "why", "changes", "word"), INVALID, ids=[f"{k}-{w}" for k, w, _, _ in INVALID]
)
def test_invalid_variants_are_rejected(
    kind: str, why: str, changes: dict[str, object], word: str
) -> None:
    errors = errors_of(kind, changes)
    assert errors, f"{kind} with {why} was accepted"
    assert any(word in e for e in errors), errors


def undeclared(info: msgspec.inspect.Type, schema: Obj, path: str) -> list[str]:
    """Fields of a msgspec type the schema does not declare (the API server
    would prune them from what cnid writes) or declares with another type."""
    mi = msgspec.inspect
    if isinstance(info, mi.StructType):
        if schema.get("type") != "object":
            return [f"{path}: an object in cnid, {schema.get('type')} in the CRD"]
        out = []
        for field in info.fields:
            sub = schema.get("properties", {}).get(field.encode_name)
            if sub is None:
                out.append(f"{path}.{field.encode_name}: not declared")
            else:
                out += undeclared(field.type, sub, f"{path}.{field.encode_name}")
        return out
    if isinstance(info, mi.ListType):
        if schema.get("type") != "array":
            return [f"{path}: a list in cnid, {schema.get('type')} in the CRD"]
        return undeclared(info.item_type, schema["items"], f"{path}[]")
    if isinstance(info, mi.DictType):
        if not isinstance(schema.get("additionalProperties"), dict):
            return [f"{path}: a map in cnid, not in the CRD"]
        return undeclared(info.value_type, schema["additionalProperties"], f"{path}[*]")
    expected = {mi.IntType: "integer", mi.StrType: "string", mi.BoolType: "boolean"}
    for cls, name in expected.items():
        if isinstance(info, cls) and schema.get("type") != name:
            return [f"{path}: {name} in cnid, {schema.get('type')} in the CRD"]
    if isinstance(info, mi.LiteralType) and not set(info.values) <= set(schema.get("enum", [])):
        return [f"{path}: cnid writes {info.values}, the CRD allows {schema.get('enum')}"]
    return []


def test_the_crds_declare_every_field_cnid_writes() -> None:
    """The API server prunes undeclared fields silently: what cnid.kube's
    models encode must all be in the CRDs, types and enums included."""
    from cnid import kube

    models = {
        "VRFDomain": kube.VRFDomain,
        "VRFDomainBinding": kube.VRFDomainBinding,
        "VRFNodeConfig": kube.VRFNodeConfig,
        "IPBlock": kube.IPBlock,
        "VRFRoutingPolicy": kube.VRFRoutingPolicy,
    }
    problems = []
    for kind, model in models.items():
        plural, group, _ = EXAMPLES[kind]
        (version,) = crd(plural, group)["spec"]["versions"]
        root = version["schema"]["openAPIV3Schema"]
        info = msgspec.inspect.type_info(model)
        assert isinstance(info, msgspec.inspect.StructType)
        for field in info.fields:
            if field.encode_name in ("spec", "status"):
                sub = root["properties"][field.encode_name]
                problems += undeclared(field.type, sub, f"{kind}.{field.encode_name}")
    assert problems == []


# -- status (written through the status subresource) -------------------------

# A create drops status, so testbed.kubeapi.validate never sees it. The
# status schemas hold no CEL rules: plain JSON Schema checks them whole.


def status_errors(kind: str, status: Obj) -> list[str]:
    plural, group, _ = EXAMPLES[kind]
    (version,) = crd(plural, group)["spec"]["versions"]

    def closed(schema: Any) -> Any:
        """The schema without Kubernetes extensions, and closed: a field the
        API server would prune is an error here."""
        if isinstance(schema, list):
            return [closed(s) for s in schema]
        if not isinstance(schema, dict):
            return schema
        out = {k: closed(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if "properties" in schema and "additionalProperties" not in schema:
            out["additionalProperties"] = False
        return out

    schema = closed(version["schema"]["openAPIV3Schema"]["properties"]["status"])
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(status)]


CONDITION = {
    "type": "Accepted",
    "status": "True",
    "reason": "Valid",
    "message": "",
    "lastTransitionTime": "2025-01-01T00:00:00Z",
    "observedGeneration": 1,
}

# docs/kubernetes.md's IPBlock status.
IPBLOCK_STATUS = """\
allocated: 2
capacity: 62
allocations:
  10.244.0.1: {kind: gateway}
  10.244.0.2: {kind: pod, containerId: 0f3a9c, ifname: eth0,
               podNamespace: default, podName: web-1, podUid: 6c1b-77}
"""

VALID_STATUS: list[tuple[str, str, Obj]] = [
    (
        "VRFDomain",
        "accepted, one node",
        {
            "conditions": [CONDITION],
            "nodes": {"k8s02": {"state": "Ready", "message": "", "observedGeneration": 1}},
        },
    ),
    (
        "VRFDomain",
        "invalid spec",
        {
            "conditions": [
                dict(CONDITION, status="False", reason="InvalidSpec", message="ipblocklen 31 ...")
            ]
        },
    ),
    (
        "VRFDomainBinding",
        "domain missing",
        {"conditions": [dict(CONDITION, type="Resolved", status="False", reason="DomainNotFound")]},
    ),
    (
        "VRFNodeConfig",
        "accepted and ready",
        {"conditions": [CONDITION, dict(CONDITION, type="Ready", reason="Running")]},
    ),
    ("IPBlock", "the docs' example", yaml.safe_load(IPBLOCK_STATUS)),
    (
        "VRFRoutingPolicy",
        "accepted, applied on one node",
        {
            "conditions": [CONDITION],
            "nodes": {"k8s02": {"state": "Ready", "message": "", "observedGeneration": 1}},
        },
    ),
    ("IPBlock", "empty", {}),
]

INVALID_STATUS: list[tuple[str, str, Obj, str]] = [
    ("VRFDomain", "condition status Maybe", {"conditions": [dict(CONDITION, status="Maybe")]},
     "Maybe"),
    ("VRFDomain", "empty reason", {"conditions": [dict(CONDITION, reason="")]}, "reason"),
    ("VRFDomain", "reason with a space", {"conditions": [dict(CONDITION, reason="Not valid")]},
     "reason"),
    ("VRFDomain", "no lastTransitionTime", {"conditions": [
        {k: v for k, v in CONDITION.items() if k != "lastTransitionTime"}]}, "lastTransitionTime"),
    ("VRFDomain", "no message", {"conditions": [
        {k: v for k, v in CONDITION.items() if k != "message"}]}, "message"),
    ("VRFDomain", "unknown node field", {"nodes": {"k8s02": {"state": "Ready", "ready": True}}},
     "ready"),
    ("VRFNodeConfig", "negative observedGeneration", {"conditions": [
        dict(CONDITION, observedGeneration=-1)]}, "observedGeneration"),
    ("IPBlock", "negative allocated", {"allocated": -1}, "allocated"),
    ("IPBlock", "capacity a string", {"capacity": "62"}, "capacity"),
    ("IPBlock", "allocation kind router", {"allocations": {"10.244.0.1": {"kind": "router"}}},
     "router"),
    ("IPBlock", "allocation without kind", {"allocations": {"10.244.0.9": {"podName": "x"}}},
     "kind"),
    ("IPBlock", "unknown allocation field", {"allocations": {"10.244.0.1": {
        "kind": "gateway", "mac": "02:00:00:00:00:01"}}}, "mac"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "why", "status"), VALID_STATUS, ids=[f"{k}-{w}" for k, w, _ in VALID_STATUS]
)
def test_valid_status_is_accepted(kind: str, why: str, status: Obj) -> None:
    assert status_errors(kind, status) == []


@pytest.mark.parametrize(
    ("kind", "why", "status", "word"),
    INVALID_STATUS,
    ids=[f"{k}-{w}" for k, w, _, _ in INVALID_STATUS],
)
def test_invalid_status_is_rejected(kind: str, why: str, status: Obj, word: str) -> None:
    errors = status_errors(kind, status)
    assert errors, f"{kind} status with {why} was accepted"
    assert any(word in e for e in errors), errors


# -- RBAC --------------------------------------------------------------------


def granted(role: Obj) -> set[tuple[str, str, str]]:
    """(group, resource, verb) the rules grant; wildcards and name or URL
    restrictions fail, so the set is exactly what is granted."""
    out = set()
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        out |= {
            (g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]
        }
    return out


def test_rbac_grants_exactly_what_cnid_kube_declares() -> None:
    from cnid.kube import RESOURCE_TYPES

    declared = set()
    for rt in RESOURCE_TYPES:
        declared |= {(rt.group, rt.plural, v) for v in rt.verbs}
        declared |= {(rt.group, f"{rt.plural}/status", v) for v in rt.status_verbs}
    assert declared
    role = only(DEPLOY, "ClusterRole", "cnid")
    assert granted(role) == declared
    (doc,) = [d for d in load_docs(DEPLOY / "rbac.yaml") if d["kind"] == "ClusterRole"]
    assert granted(doc) == declared


def test_secrets_are_granted_by_name_in_cnids_namespace_only() -> None:
    """No ClusterRole grants secrets; one Role, in cnid's namespace, grants
    get (no list, no watch) on the Secret cnid-bgp alone, to cnid."""
    roles = []
    for directory in (CRDS, DEPLOY):
        for (kind, namespace, name), obj in built(directory).items():
            if kind == "ClusterRole":
                resources = {(g, r) for g, r, _ in granted(obj)}
                assert not any(r.startswith("secrets") for _, r in resources), name
            if kind == "Role":
                roles.append((namespace, name, obj["rules"]))
    assert roles == [
        (
            NAMESPACE,
            "cnid-bgp-secret",
            [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["cnid-bgp"],
                    "verbs": ["get"],
                }
            ],
        )
    ]
    binding = only(DEPLOY, "RoleBinding", "cnid-bgp-secret", NAMESPACE)
    assert binding["roleRef"]["kind"] == "Role"
    assert binding["roleRef"]["name"] == "cnid-bgp-secret"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "cnid", "namespace": NAMESPACE}
    ]
    from cnid.kube import SECRETS

    assert SECRETS.verbs == {"get"}


def test_only_the_nodeconfig_controller_reads_secrets_through_the_api() -> None:
    """What needs RBAC on secrets: cnid.kube's SECRETS used outside cnid/kube
    (the client's own declaration aside): a neighbour's password only."""
    users = []
    for path in (REPO / "cnid").rglob("*.py"):
        if path.is_relative_to(REPO / "cnid" / "kube"):
            continue
        if re.search(r"\bSECRETS\b|/secrets\b", path.read_text()):
            users.append(str(path.relative_to(REPO)))
    assert users == ["cnid/cluster/_nodeconfig.py"]


def test_cnid_runs_as_the_bound_service_account() -> None:
    binding = only(DEPLOY, "ClusterRoleBinding", "cnid")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "cnid",
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "cnid", "namespace": NAMESPACE}
    ]
    pod = daemonset()["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "cnid"
    assert pod.get("automountServiceAccountToken", True) is True


# -- the DaemonSet and the ConfigMap -----------------------------------------


def server_ini() -> str:
    text: str = only(DEPLOY, "ConfigMap", "server-config", NAMESPACE)["data"]["server.ini"]
    return text


def test_configmap_is_the_seeds_default_domain() -> None:
    config = parse_config(server_ini())
    domain = config.default.domain()
    assert domain.name == "vrf-42"
    assert (domain.vrf, domain.table) == (42, 42)
    assert str(domain.network) == "10.244.0.0/16"
    assert domain.ipblocklen == 26
    assert [a.type for a in domain.attachments] == ["l3vni"]
    assert config.logging.level == "info"
    assert set(re.findall(r"^\[(\w+)\]", server_ini(), re.M)) >= {
        "api", "network", "default", "logging", "readiness",
    }  # fmt: skip


def mounts(container: Obj) -> dict[str, Obj]:
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def host_paths(pod: Obj) -> dict[str, str]:
    return {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}


def test_daemonset_runs_on_every_node_with_host_network() -> None:
    ds = daemonset()
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1},
    }
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod.get("hostPID", False) is False
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"]
    assert pod["terminationGracePeriodSeconds"] == 30
    cnid, _ = pod["containers"]
    assert cnid["securityContext"]["privileged"] is False
    assert cnid["args"] == ["run", "--config", "/etc/cnid/server.ini"]
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in cnid[
        "env"
    ]
    assert cnid["resources"]["requests"]


def test_daemonset_probes_the_health_port_of_server_ini() -> None:
    cnid, _ = daemonset()["spec"]["template"]["spec"]["containers"]
    port = parse_config(server_ini()).readiness.port
    assert port == 24800
    assert cnid["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port}
    assert cnid["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}


def test_daemonset_mounts_what_server_ini_names() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    cnid, _ = pod["containers"]
    by_path = mounts(cnid)
    hosts = host_paths(pod)
    config = parse_config(server_ini())
    # The ConfigMap at /etc/cnid/server.ini.
    cfg = by_path["/etc/cnid"]
    (vol,) = [v for v in pod["volumes"] if v["name"] == cfg["name"]]
    assert vol["configMap"]["name"] == "server-config"
    assert {"key": "server.ini", "path": "server.ini"} in vol["configMap"]["items"]
    # Sockets and state on the host, at the paths server.ini names.
    for path in (
        os.path.dirname(config.api.socket_path_api),
        os.path.dirname(config.api.socket_path_ctl),
        config.network.state_dir,
    ):
        assert hosts[by_path[path]["name"]] == path
    for path in ("/run/netns", "/var/run/netns"):
        assert hosts[by_path[path]["name"]] == path
        assert by_path[path]["mountPropagation"] == "HostToContainer"
    assert hosts[by_path["/lib/modules"]["name"]] == "/lib/modules"
    assert by_path["/lib/modules"]["readOnly"] is True


def test_the_speaker_is_a_container_of_its_own_sharing_its_directory_with_the_daemon() -> None:
    """The speaker outlives the daemon's container: the two share the
    speaker's directory (where the daemon writes ExaBGP's configuration and
    the relay serves the API socket) through an emptyDir, which lives as
    long as the pod; the daemon does not start a speaker of its own."""
    pod = daemonset()["spec"]["template"]["spec"]
    cnid, speaker = pod["containers"]
    assert (cnid["name"], speaker["name"]) == ("cnid", "speaker")
    config = parse_config(server_ini())
    assert config.bgp.speaker == "external"
    run_dir = os.path.join(os.path.dirname(config.api.socket_path_ctl), "bgp")
    assert speaker["command"][1:] == ["-m", "cnid.bgp"]
    assert speaker["args"] == ["--run-dir", run_dir]
    volumes = {v["name"]: v for v in pod["volumes"]}
    daemon_side, speaker_side = mounts(cnid)[run_dir], mounts(speaker)[run_dir]
    assert daemon_side["name"] == speaker_side["name"]
    assert "emptyDir" in volumes[daemon_side["name"]]
    assert not daemon_side.get("readOnly") and not speaker_side.get("readOnly")
    assert "livenessProbe" not in speaker  # nothing to restart it for: it exits on failure


def test_init_container_installs_the_plugin_into_the_host_cni_dirs() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    cnid, _ = pod["containers"]
    assert init["image"] == cnid["image"]
    assert init["command"] == ["/opt/cnid/install-cni.sh"]
    env = {e["name"]: e["value"] for e in init["env"]}
    by_path = mounts(init)
    hosts = host_paths(pod)
    assert hosts[by_path[env["CNI_BIN_DIR"]]["name"]] == "/opt/cni/bin"
    assert hosts[by_path[env["CNI_CONF_DIR"]]["name"]] == "/etc/cni/net.d"
    assert env["CNID_PLUGIN"] == "/opt/cnid/cnid-plugin"


def containers(pod: Obj) -> list[Obj]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_no_container_is_privileged_or_can_escalate() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    for c in containers(pod):
        sc = c["securityContext"]
        assert sc.get("privileged", False) is False, c["name"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]


def test_every_container_has_a_seccomp_profile() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in containers(pod):
        assert c["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, c["name"]


def test_root_filesystems_are_read_only_with_writable_mounts_for_what_cnid_writes() -> None:
    pod = daemonset()["spec"]["template"]["spec"]
    for c in containers(pod):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
    cnid, _ = pod["containers"]
    config = parse_config(server_ini())
    by_path = mounts(cnid)
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {p for p, m in by_path.items() if not m.get("readOnly", False)}

    def under_writable(path: str) -> bool:
        return any(path == w or path.startswith(w.rstrip("/") + "/") for w in writable)

    # the sockets, ExaBGP's run directory beside the control socket, the
    # journal, the temporary files
    bgp_run = os.path.join(os.path.dirname(config.api.socket_path_ctl), "bgp")
    for path in (
        config.api.socket_path_api,
        config.api.socket_path_ctl,
        bgp_run + "/exabgp.conf",
        config.network.state_dir + "/journal",
        "/tmp/x",
    ):
        assert under_writable(path), path
    assert "emptyDir" in volumes[by_path["/tmp"]["name"]]


def test_the_daemon_has_exactly_the_capabilities_it_uses() -> None:
    """NET_ADMIN (netlink, nftables), NET_RAW (raw sockets), SYS_ADMIN
    (setns into a pod's netns), NET_BIND_SERVICE (BGP's port 179); no
    SYS_MODULE, no SYS_PTRACE. kube/README.md says why for each."""
    cnid, speaker = daemonset()["spec"]["template"]["spec"]["containers"]
    added = set(cnid["securityContext"]["capabilities"]["add"])
    assert added == {"NET_ADMIN", "NET_RAW", "SYS_ADMIN", "NET_BIND_SERVICE"}
    readme = (KUBE / "README.md").read_text()
    for cap in added:
        assert cap in readme, cap
    (init,) = daemonset()["spec"]["template"]["spec"]["initContainers"]
    assert "add" not in init["securityContext"]["capabilities"]
    # the speaker: ExaBGP's port 179, nothing else
    assert speaker["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"]


# -- install-cni.sh ----------------------------------------------------------

SCRIPT = KUBE / "install-cni.sh"
CONFLIST = {"cniVersion": "1.0.0", "name": "cnid", "plugins": [{"type": "cnid-plugin"}]}


def install(*args: str, env: dict[str, str] | None = None) -> str:
    run = subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"], **(env or {})},
        timeout=30,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_install_cni_installs_plugin_and_conflist(tmp_path: Path) -> None:
    plugin = tmp_path / "cnid-plugin"
    plugin.write_bytes(b"\x7fELF v1")
    plugin.chmod(0o644)  # the script makes the installed copy executable
    bin_dir, conf_dir = tmp_path / "opt" / "cni" / "bin", tmp_path / "etc" / "cni" / "net.d"
    out = install("--plugin", str(plugin), "--bin-dir", str(bin_dir), "--conf-dir", str(conf_dir))
    assert out.count("installed") == 2
    installed = bin_dir / "cnid-plugin"
    assert installed.read_bytes() == b"\x7fELF v1"
    assert os.access(installed, os.X_OK)
    assert installed.stat().st_mode & 0o777 == 0o755
    conf = conf_dir / "10-cnid.conflist"
    assert json.loads(conf.read_text()) == CONFLIST
    # Nothing else: no temporary file left behind.
    assert sorted(p.name for p in bin_dir.iterdir()) == ["cnid-plugin"]
    assert sorted(p.name for p in conf_dir.iterdir()) == ["10-cnid.conflist"]


def test_install_cni_is_idempotent_and_replaces_atomically(tmp_path: Path) -> None:
    plugin = tmp_path / "src"
    plugin.write_bytes(b"old plugin")
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    env = {"CNID_PLUGIN": str(plugin), "CNI_BIN_DIR": str(bin_dir), "CNI_CONF_DIR": str(conf_dir)}
    install(env=env)
    installed, conf = bin_dir / "cnid-plugin", conf_dir / "10-cnid.conflist"
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (installed, conf)}
    # A second run with the same files changes nothing at all.
    out = install(env=env)
    assert out.count("up to date") == 2
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (installed, conf)} == before
    # A new plugin replaces the old one by rename: a runtime that opened
    # (or is executing) the old file keeps reading the old file whole.
    plugin.write_bytes(b"new plugin, longer than the old one")
    with installed.open("rb") as old:
        out = install(env=env)
        assert old.read() == b"old plugin"
    assert "installed" in out and "up to date" in out
    assert installed.read_bytes() == b"new plugin, longer than the old one"
    assert installed.stat().st_ino != before[installed][0]
    assert conf.stat().st_ino == before[conf][0]
    assert sorted(p.name for p in bin_dir.iterdir()) == ["cnid-plugin"]


def test_install_cni_fails_without_a_plugin(tmp_path: Path) -> None:
    run = subprocess.run(
        [
            str(SCRIPT),
            "--plugin",
            str(tmp_path / "missing"),
            "--bin-dir",
            str(tmp_path / "b"),
            "--conf-dir",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert run.returncode != 0
    assert "no plugin" in run.stderr
    assert not (tmp_path / "b").exists()


# -- the Containerfile -------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile: comments dropped,
    continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        word, _, rest = whole.partition(" ")
        assert word.isupper(), f"not an instruction: {whole!r}"
        out.append((word, " ".join(rest.split())))
    assert not pending, "the Containerfile ends in a continuation"
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            out.append([])
        assert out, "an instruction before the first FROM"
        out[-1].append(ins)
    return out


def test_containerfile_builds_plugin_then_runtime() -> None:
    text = (REPO / "Containerfile").read_text()
    known = {"FROM", "RUN", "COPY", "WORKDIR", "ENV", "ENTRYPOINT", "CMD", "ARG", "LABEL"}
    assert {word for word, _ in instructions(text)} <= known
    build, runtime = stages(text)
    base, _, name = build[0][1].partition(" AS ")
    assert base == "debian:12" and name
    assert runtime[0][1] == "debian:12-slim"
    assert ("COPY", "plugin_go_free/ plugin_go_free/") in build
    assert any(w == "RUN" and "make -C plugin_go_free" in a for w, a in build)
    copies = [shlex.split(a) for w, a in runtime if w == "COPY"]
    assert ["pyproject.toml", "./"] in copies
    assert ["cnid/", "cnid/"] in copies
    assert any(
        w == "RUN" and "pip install --no-cache-dir ." in a and "venv" in a for w, a in runtime
    )
    # The plugin from stage 1 (the Makefile's output), the script where
    # the init container runs it.
    assert [f"--from={name}", "/src/build/cnid-plugin", "/opt/cnid/cnid-plugin"] in copies
    assert ["kube/install-cni.sh", "/opt/cnid/install-cni.sh"] in copies
    apt = " ".join(a for w, a in runtime if w == "RUN" and "apt-get install" in a)
    for package in ("python3", "iproute2", "nftables"):
        assert f" {package} " in f" {apt} ", package
    # Every local source exists.
    for args in copies + [shlex.split(a) for w, a in build if w == "COPY"]:
        if not args[0].startswith("--from="):
            for src in args[:-1]:
                assert (REPO / src).exists(), src
    (entrypoint,) = [json.loads(a) for w, a in runtime if w == "ENTRYPOINT"]
    assert Path(entrypoint[0]).name == "cnid" and len(entrypoint) == 1
    # Run without args, the image does what the DaemonSet asks of it.
    (cmd,) = [json.loads(a) for w, a in runtime if w == "CMD"]
    cnid, speaker = daemonset()["spec"]["template"]["spec"]["containers"]
    assert cmd == cnid["args"]
    # the speaker container: the same image, the venv's python running cnid.bgp
    assert speaker["image"] == cnid["image"]
    assert Path(speaker["command"][0]).parent == Path(entrypoint[0]).parent


def test_the_ebgp_nodeconfig_example_is_accepted_and_read_by_the_node() -> None:
    from cnid.cluster import settings_from
    from cnid.kube import VRFNodeConfig
    from testbed.kubeapi import validate

    obj = yaml.safe_load((KUBE / "examples" / "vrfnodeconfig-ebgp.yaml").read_text())
    assert validate(crd("vrfnodeconfigs", "cni.pyroute2.org"), obj, strict=True) == []
    config = msgspec.convert(obj, VRFNodeConfig)
    passwords = {("cnid-bgp", "leaf1"): "one", ("cnid-bgp", "leaf2"): "two"}
    settings = settings_from(config, passwords)
    assert settings.asn == 65001
    assert [(n.address, n.asn, n.allow_as_in, n.bfd, n.password) for n in settings.neighbors] == [
        ("10.1.1.0", 65101, 1, True, "one"),
        ("10.1.2.0", 65102, 1, True, "two"),
    ]
