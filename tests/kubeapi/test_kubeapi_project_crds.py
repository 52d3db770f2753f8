"""cnid's own CRDs (kube/crds) load into the emulation, and the seeds'
example manifests create; a domain the CEL rules refuse does not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from testbed import seeds
from testbed.kubeapi import KubeApi, open_kubeapi
from tests.kubeapi._helpers import HERE, make_client

CRDS = HERE.parents[1] / "kube" / "crds"
CNI = "/apis/cni.pyroute2.org/v1alpha1"

# The seeds' examples, verbatim.
NODE_CONFIG = seeds.parsed(seeds.VRFNODECONFIG)
DOMAIN = seeds.parsed(seeds.VRFDOMAIN)
BINDING = seeds.parsed(seeds.VRFDOMAINBINDING)


@pytest.fixture
async def cnid_api() -> AsyncIterator[KubeApi]:
    async with open_kubeapi(crd_paths=[CRDS]) as server:
        yield server


@pytest.fixture
async def admin(cnid_api: KubeApi) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(cnid_api, cnid_api.token) as client:
        yield client


@pytest.mark.parametrize(
    ("plural", "manifest"),
    [("vrfnodeconfigs", NODE_CONFIG), ("vrfdomains", DOMAIN), ("vrfdomainbindings", BINDING)],
)
async def test_seed_examples_create(
    admin: httpx.AsyncClient, plural: str, manifest: dict[str, Any]
) -> None:
    response = await admin.post(f"{CNI}/{plural}", json=manifest)
    assert response.status_code == 201, response.text
    assert response.headers.get_list("warning") == []  # nothing pruned
    assert response.json()["spec"] == manifest["spec"]


async def test_domain_rules_refuse_a_bad_domain(admin: httpx.AsyncClient) -> None:
    bad = {**DOMAIN, "metadata": {"name": "bad"}}
    bad["spec"] = {**DOMAIN["spec"], "table": 254, "prefix": "10.1.0.1", "ipblocklen": 8}
    response = await admin.post(f"{CNI}/vrfdomains", json=bad)
    assert response.status_code == 422
    fields = {c["field"] for c in response.json()["details"]["causes"]}
    assert {"spec.table", "spec.prefix", "spec.ipblocklen"} <= fields


async def test_route_targets_of_a_domain_are_checked_at_admission(
    admin: httpx.AsyncClient,
) -> None:
    good = {**DOMAIN, "metadata": {"name": "hand-set"}}
    good["spec"] = {
        **DOMAIN["spec"],
        "importRouteTargets": ["65000:42", "*:42"],
        "exportRouteTargets": ["65000:42"],
        "routeTargetDerivation": "rfc8365",
    }
    response = await admin.post(f"{CNI}/vrfdomains", json=good)
    assert response.status_code == 201, response.text
    assert response.json()["spec"] == good["spec"]
    bad = {**DOMAIN, "metadata": {"name": "bad-targets"}}
    bad["spec"] = {
        **DOMAIN["spec"],
        "importRouteTargets": ["target:65000:42"],
        "exportRouteTargets": ["*:42"],
        "routeTargetDerivation": "auto",
    }
    response = await admin.post(f"{CNI}/vrfdomains", json=bad)
    assert response.status_code == 422
    fields = {c["field"] for c in response.json()["details"]["causes"]}
    assert {
        "spec.importRouteTargets[0]",
        "spec.exportRouteTargets[0]",
        "spec.routeTargetDerivation",
    } <= fields, fields


async def test_ipblock_claim_in_two_writes(admin: httpx.AsyncClient) -> None:
    path = "/apis/ipam.pyroute2.org/v1alpha1/ipblocks"
    block = {
        "apiVersion": "ipam.pyroute2.org/v1alpha1",
        "kind": "IPBlock",
        "metadata": {
            "name": "vrf-42-10-244-0-0-26",
            "labels": {"ipam.pyroute2.org/node": "k8s03", "ipam.pyroute2.org/vrf": "42"},
        },
        "spec": {"cidr": "10.244.0.0/26", "node": "k8s03", "vrf": 42, "gateway": "10.244.0.1"},
        "status": {"allocated": 1},
    }
    created = await admin.post(path, json=block)
    assert created.status_code == 201, created.text
    claimed = created.json()
    assert "status" not in claimed
    claimed["status"] = {
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
    }
    written = await admin.put(f"{path}/vrf-42-10-244-0-0-26/status", json=claimed)
    assert written.status_code == 200, written.text
    assert written.json()["status"]["allocations"]["10.244.0.2"]["podName"] == "web-1"
