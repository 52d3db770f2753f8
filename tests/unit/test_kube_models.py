"""The resource models: the seeds' manifests decode, what cnid writes
encodes with apiVersion/kind and without empty noise."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from cnid.core import AllocationRecord
from cnid.kube import (
    RESOURCE_TYPES,
    AttachmentSpec,
    Condition,
    DomainNodeStatus,
    IPBlock,
    IPBlockSpec,
    IPBlockStatus,
    Node,
    ObjectMeta,
    Pod,
    ResourceType,
    Secret,
    VRFDomain,
    VRFDomainBinding,
    VRFDomainSpec,
    VRFNodeConfig,
)
from testbed import seeds

# The seeds' examples, as kubectl sends them (YAML -> JSON).
SEED_DOMAIN = seeds.parsed(seeds.VRFDOMAIN)
SEED_NODE_CONFIG = seeds.parsed(seeds.VRFNODECONFIG)
SEED_BINDING = seeds.parsed(seeds.VRFDOMAINBINDING)


def decode(obj: dict[str, Any], model: type[Any]) -> Any:
    return msgspec.json.decode(json.dumps(obj), type=model)


def test_seed_manifests_decode() -> None:
    dom = decode(SEED_DOMAIN, VRFDomain)
    assert dom.spec.attachments == [AttachmentSpec(type="l3vni", vni=60200)]
    assert dom.status.conditions == [] and dom.status.nodes == {}
    nc = decode(SEED_NODE_CONFIG, VRFNodeConfig)
    assert nc.spec.node_ref.name == "k8s02"
    assert nc.spec.route_reflectors == ["192.168.124.1"]
    assert nc.spec.interfaces[0].local == "192.168.124.2"
    b = decode(SEED_BINDING, VRFDomainBinding)
    assert (b.spec.namespace_ref.name, b.spec.vrf_domain_ref.name) == ("test02", "vrf-200")


def test_attachment_port_defaults() -> None:
    spec: dict[str, Any] = dict(SEED_DOMAIN["spec"])
    spec["attachments"] = [{"type": "l2vni", "vni": 100}]
    dom = decode({**SEED_DOMAIN, "spec": spec}, VRFDomain)
    assert dom.spec.attachments[0].port == 4789


def test_server_fields_decode_and_unknown_ignored() -> None:
    dom = decode(
        {
            **SEED_DOMAIN,
            "metadata": {
                "name": "vrf-200",
                "uid": "u",
                "resourceVersion": "41",
                "generation": 3,
                "finalizers": ["cni.pyroute2.org/node.k8s02"],
                "deletionTimestamp": "2025-01-01T00:00:00Z",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl"}],
            },
            "status": {
                "conditions": [
                    {
                        "type": "Accepted",
                        "status": "True",
                        "reason": "Valid",
                        "message": "",
                        "lastTransitionTime": "2024-01-01T00:00:00Z",
                        "observedGeneration": 3,
                    }
                ],
                "nodes": {"k8s02": {"state": "Ready", "observedGeneration": 3}},
                "futureField": 1,
            },
        },
        VRFDomain,
    )
    assert dom.metadata.generation == 3
    assert dom.metadata.deletion_timestamp == "2025-01-01T00:00:00Z"
    assert dom.status.conditions[0].observed_generation == 3
    assert dom.status.nodes["k8s02"] == DomainNodeStatus(state="Ready", observed_generation=3)


def test_required_spec_fields() -> None:
    spec: dict[str, Any] = dict(SEED_DOMAIN["spec"])
    del spec["table"]
    with pytest.raises(msgspec.ValidationError, match="table"):
        decode({**SEED_DOMAIN, "spec": spec}, VRFDomain)


def test_encode_has_api_version_and_kind_and_no_empty_fields() -> None:
    dom = VRFDomain(
        metadata=ObjectMeta(name="vrf-42"),
        spec=VRFDomainSpec(
            vrf=42,
            table=10042,
            prefix="10.244.0.0",
            prefixlen=16,
            ipblocklen=26,
            attachments=[AttachmentSpec(type="l3vni", vni=42)],
        ),
    )
    out = json.loads(msgspec.json.encode(dom))
    assert out == {
        "apiVersion": "cni.pyroute2.org/v1alpha1",
        "kind": "VRFDomain",
        "metadata": {"name": "vrf-42"},
        "spec": {
            "vrf": 42,
            "table": 10042,
            "prefix": "10.244.0.0",
            "prefixlen": 16,
            "ipblocklen": 26,
            "attachments": [{"type": "l3vni", "vni": 42}],
        },
        "status": {},
    }
    # Decoded objects too (the values are equal to the defaults, not the
    # same objects).
    again = json.loads(msgspec.json.encode(decode(out, VRFDomain)))
    assert again["apiVersion"] == "cni.pyroute2.org/v1alpha1"
    assert again["kind"] == "VRFDomain"


@pytest.mark.parametrize("rt", RESOURCE_TYPES, ids=lambda rt: rt.plural)
def test_model_matches_resource_type(rt: ResourceType[Any]) -> None:
    fields = {f.name: f for f in msgspec.structs.fields(rt.model)}
    assert fields["api_version"].default_factory() == rt.api_version
    assert fields["kind"].default_factory() == rt.kind == rt.model.__name__


def test_condition_encoded_in_full() -> None:
    cond = Condition(type="Ready", status="False", reason="NoInterface")
    assert json.loads(msgspec.json.encode(cond)) == {
        "type": "Ready",
        "status": "False",
        "reason": "NoInterface",
        "message": "",
        "lastTransitionTime": "",
        "observedGeneration": 0,
    }


def test_ipblock_status_allocations() -> None:
    raw = {
        "apiVersion": "ipam.pyroute2.org/v1alpha1",
        "kind": "IPBlock",
        "metadata": {
            "name": "vrf-42-10-244-0-0-26",
            "labels": {"ipam.pyroute2.org/node": "k8s03", "ipam.pyroute2.org/vrf": "42"},
        },
        "spec": {"cidr": "10.244.0.0/26", "node": "k8s03", "vrf": 42, "gateway": "10.244.0.1"},
        "status": {
            "allocated": 2,
            "capacity": 62,
            "allocations": {
                "10.244.0.1": {"kind": "gateway"},
                "10.244.0.2": {
                    "kind": "pod",
                    "containerId": "0f3a",
                    "ifname": "eth0",
                    "podNamespace": "default",
                    "podName": "web-1",
                    "podUid": "6c1b",
                },
            },
        },
    }
    block = decode(raw, IPBlock)
    assert block.status.allocations["10.244.0.2"] == AllocationRecord(
        kind="pod",
        container_id="0f3a",
        ifname="eth0",
        pod_namespace="default",
        pod_name="web-1",
        pod_uid="6c1b",
    )
    assert json.loads(msgspec.json.encode(block)) == raw
    # Created without status: the API server drops it anyway.
    fresh = decode({k: v for k, v in raw.items() if k != "status"}, IPBlock)
    assert fresh.status == IPBlockStatus()
    assert fresh.spec == IPBlockSpec(
        cidr="10.244.0.0/26", node="k8s03", vrf=42, gateway="10.244.0.1"
    )


def test_builtin_kinds() -> None:
    pod = decode(
        {
            "metadata": {"name": "web-1", "namespace": "default", "uid": "6c1b"},
            "spec": {"nodeName": "k8s03", "hostNetwork": True, "containers": []},
            "status": {
                "phase": "Running",
                "podIP": "10.244.0.2",
                "podIPs": [{"ip": "10.244.0.2"}, {"ip": "fd00::2"}],
            },
        },
        Pod,
    )
    assert pod.spec.node_name == "k8s03" and pod.spec.host_network
    assert [p.ip for p in pod.status.pod_ips] == ["10.244.0.2", "fd00::2"]
    assert json.loads(msgspec.json.encode(pod))["status"]["podIPs"][1] == {"ip": "fd00::2"}
    node = decode(
        {
            "metadata": {"name": "k8s03"},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.124.3"}]},
        },
        Node,
    )
    assert node.kind == "Node"
    assert node.status.addresses[0].address == "192.168.124.3"
    secret = decode({"metadata": {"name": "bgp"}, "data": {"password": "c2VjcmV0"}}, Secret)
    assert secret.data == {"password": "c2VjcmV0"} and secret.kind == "Secret"
