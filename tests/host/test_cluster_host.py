"""The controllers against the API server emulation, on the host (no VRF
device here, so the nodes report their domains' kernel error; everything
about the custom resources, their status and the API's availability is
tested here, the kernel side in tests/vm/test_cluster.py).

    lan: br0 192.168.78.1 + API server :6443 (HTTPS, RBAC of kube/deploy/rbac.yaml)
      |-- ha (192.168.78.11)   `-- hb (.12)
"""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.cluster import Cluster
from testbed.kubectl import Kubectl, path
from testbed.node import CnidNode


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0) -> Any:
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (RuntimeError, KeyError, TypeError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def condition(kubectl: Kubectl, plural: str, name: str, ctype: str) -> dict[str, Any]:
    conds = kubectl.get(plural, name).get("status", {}).get("conditions", [])
    return next((c for c in conds if c["type"] == ctype), {})


@pytest.fixture(scope="module")
def cluster(cnid_plugin: Path) -> Iterator[Cluster]:
    c = Cluster(name=f"hc{os.getpid()}", subnet="192.168.78", gc_grace=2.0, gc_interval=0.5)
    try:
        c.up()
        c.kubectl.add_namespace("default")
        for i, name in enumerate(("ha", "hb"), start=1):
            c.add_node(name, i, start=False)
        for node in c.nodes.values():
            node.start_unready()
        yield c
    finally:
        c.stop()


def domain(name: str, vrf: int, vni: int, prefix: str = "10.50.0.0") -> dict[str, Any]:
    return {
        "apiVersion": "cni.pyroute2.org/v1alpha1",
        "kind": "VRFDomain",
        "metadata": {"name": name},
        "spec": {
            "vrf": vrf,
            "table": vrf,
            "prefix": prefix,
            "prefixlen": 16,
            "ipblocklen": 26,
            "attachments": [{"type": "l3vni", "vni": vni}],
        },
    }


def serving(node: CnidNode) -> bool:
    return node.status() is not None


def test_the_default_domain_is_created_once_and_accepted(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    wait_for("vrf-42", lambda: kubectl.exists("vrfdomains", "vrf-42"))
    assert [d["metadata"]["name"] for d in kubectl.list("vrfdomains")] == ["vrf-42"]
    wait_for(
        "vrf-42 accepted",
        lambda: condition(kubectl, "vrfdomains", "vrf-42", "Accepted").get("status") == "True",
    )

    def both_reported() -> Any:
        nodes = kubectl.get("vrfdomains", "vrf-42")["status"].get("nodes", {})
        return set(nodes) == {"ha", "hb"} and nodes

    nodes = wait_for("both nodes report", both_reported)
    # No VRF device on this kernel: each node says so, per node, and lives on.
    assert all(n["state"] == "Error" and "vrf" in n["message"].lower() for n in nodes.values())
    assert all(serving(n) for n in cluster.nodes.values())
    fins = kubectl.get("vrfdomains", "vrf-42")["metadata"]["finalizers"]
    assert sorted(fins) == ["cni.pyroute2.org/node.ha", "cni.pyroute2.org/node.hb"]


def test_the_api_server_rejects_what_the_code_cannot_handle(cluster: Cluster) -> None:
    bad = domain("bad", 77, 77)
    bad["spec"]["ipblocklen"] = 12
    with pytest.raises(RuntimeError, match="422"):
        cluster.kubectl.apply(bad)
    bad = domain("bad", 77, 77)
    bad["spec"]["attachments"][0]["type"] = "l4vni"
    with pytest.raises(RuntimeError, match="422"):
        cluster.kubectl.apply(bad)


def test_a_clashing_domain_is_reported_and_the_agents_keep_serving(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    wait_for("vrf-42", lambda: kubectl.exists("vrfdomains", "vrf-42"))
    # The older domain keeps the VRF; creation times have a resolution of a
    # second, and a tie goes by name ("copycat" first): be a second younger.
    created = kubectl.get("vrfdomains", "vrf-42")["metadata"]["creationTimestamp"]
    born = datetime.datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    time.sleep(max(0.0, born + 1.1 - time.time()))
    kubectl.apply(domain("copycat", 42, 4242))
    try:
        cond = wait_for(
            "copycat refused",
            lambda: (
                (c := condition(kubectl, "vrfdomains", "copycat", "Accepted"))
                and c["status"] == "False"
                and c
            ),
        )
    except AssertionError as exc:
        logs = "\n".join(f"--- {n.name}\n{n.log_tail(80)}" for n in cluster.nodes.values())
        raise AssertionError(f"{exc}\n{kubectl.get('vrfdomains', 'copycat')}\n{logs}") from None
    assert cond["reason"] == "Conflict" and "vrf 42" in cond["message"]
    assert all(serving(n) for n in cluster.nodes.values())
    kubectl.delete("vrfdomains", "copycat")
    kubectl.wait_gone("vrfdomains", "copycat")


def test_a_binding_to_a_missing_domain_is_reported_until_it_exists(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    kubectl.apply(
        {
            "apiVersion": "cni.pyroute2.org/v1alpha1",
            "kind": "VRFDomainBinding",
            "metadata": {"name": "web-vrf-51"},
            "spec": {"namespaceRef": {"name": "web"}, "vrfDomainRef": {"name": "vrf-51"}},
        }
    )

    def resolved() -> str:
        return str(condition(kubectl, "vrfdomainbindings", "web-vrf-51", "Resolved").get("reason"))

    wait_for("DomainNotFound", lambda: resolved() == "DomainNotFound")
    kubectl.apply(domain("vrf-51", 51, 51))
    wait_for("Resolved", lambda: resolved() == "Resolved")
    kubectl.delete("vrfdomainbindings", "web-vrf-51")
    kubectl.delete("vrfdomains", "vrf-51")
    kubectl.wait_gone("vrfdomains", "vrf-51")


def test_a_node_config_changed_after_start_asks_for_a_restart(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    kubectl.apply(
        {
            "apiVersion": "cni.pyroute2.org/v1alpha1",
            "kind": "VRFNodeConfig",
            "metadata": {"name": "hb-vrnc"},
            "spec": {
                "nodeRef": {"name": "hb"},
                "routerId": "192.168.78.12",
                "interfaces": [{"name": "eth0", "local": "192.168.78.12"}],
            },
        }
    )
    ready = wait_for(
        "hb's config reported",
        lambda: (c := condition(kubectl, "vrfnodeconfigs", "hb-vrnc", "Ready")) and c,
    )
    assert (ready["status"], ready["reason"]) == ("False", "RestartRequired")
    accepted = condition(kubectl, "vrfnodeconfigs", "hb-vrnc", "Accepted")
    assert accepted["status"] == "True"
    hb = cluster.nodes["hb"]
    hb.kill()
    hb.start_unready()
    wait_for(
        "hb's config applied",
        lambda: condition(kubectl, "vrfnodeconfigs", "hb-vrnc", "Ready").get("reason") == "Applied",
    )
    kubectl.delete("vrfnodeconfigs", "hb-vrnc")


def test_readiness_follows_the_api_server_and_the_agents_resync(cluster: Cluster) -> None:
    ha = cluster.nodes["ha"]

    def api_component() -> str:
        status = ha.status()
        assert status is not None
        return str(status["components"]["kube-api"])

    wait_for("kube-api ready", lambda: api_component() == "ready")
    cluster.stop_api()
    try:
        wait_for("kube-api not ready", lambda: api_component() != "ready")
    finally:
        cluster.start_api()
    wait_for("kube-api ready again", lambda: api_component() == "ready", timeout=90)
    # Resynced: a change made now reaches the node.
    cluster.kubectl.apply(domain("vrf-61", 61, 61))
    wait_for(
        "ha reports vrf-61",
        lambda: "ha" in cluster.kubectl.get("vrfdomains", "vrf-61")["status"].get("nodes", {}),
    )
    cluster.kubectl.delete("vrfdomains", "vrf-61")
    cluster.kubectl.wait_gone("vrfdomains", "vrf-61")


def test_a_node_that_left_releases_its_blocks_and_finalizers(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    kubectl.add_node("gone", "192.168.78.99")
    kubectl.apply(domain("vrf-71", 71, 71))
    # The departed node had a block and a finalizer on the domain.
    kubectl.apply(
        {
            "apiVersion": "ipam.pyroute2.org/v1alpha1",
            "kind": "IPBlock",
            "metadata": {
                "name": "vrf-71-10-50-0-0-26",
                "labels": {"ipam.pyroute2.org/node": "gone", "ipam.pyroute2.org/vrf": "71"},
            },
            "spec": {"cidr": "10.50.0.0/26", "node": "gone", "vrf": 71, "gateway": "10.50.0.1"},
        }
    )
    # The nodes add their own finalizers meanwhile: retry on a stale read.
    for _ in range(20):
        obj = kubectl.get("vrfdomains", "vrf-71")
        meta = obj["metadata"]
        meta["finalizers"] = [*meta.get("finalizers", []), "cni.pyroute2.org/node.gone"]
        put = kubectl.http.put(path("vrfdomains", "vrf-71"), json=obj)
        if put.status_code != 409:
            put.raise_for_status()
            break
    else:
        raise AssertionError("vrf-71 kept changing under the test")
    kubectl.delete("nodes", "gone")
    wait_for("the block reclaimed", lambda: not kubectl.exists("ipblocks", "vrf-71-10-50-0-0-26"))
    kubectl.delete("vrfdomains", "vrf-71")
    kubectl.wait_gone("vrfdomains", "vrf-71")


def test_the_agents_used_only_what_rbac_grants(cluster: Cluster) -> None:
    log = json.loads(cluster.kubectl.http.get("/debug/requests").text)
    mine = [r for r in log if r["user"].startswith("system:serviceaccount:")]
    assert mine, "the agents made no API call"
    assert [r for r in mine if r["code"] in (401, 403)] == []
