"""The whole CNI path on one node, in the VM tier (needs the VRF device):
the real plugin executed with a CNI environment against the real daemon,
pods wired into vrf-42, pings, and every verb's semantics."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.node import CnidNode, PluginRun, conflist_conf, sh

pytestmark = pytest.mark.vrf


def _shared_node(name: str, extra: str = "") -> Iterator[CnidNode]:
    node = CnidNode(name=f"{name}{os.getpid()}", ini_extra=extra)
    try:
        node.create().start()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def shared_node(cnid_plugin: Path) -> Iterator[CnidNode]:
    """One daemon for the module (a daemon start is slow under TCG)."""
    yield from _shared_node("cni")


@pytest.fixture
def cnid_node(shared_node: CnidNode) -> Iterator[CnidNode]:
    """The shared node; every test leaves it as it found it, and that is checked."""
    yield shared_node
    if shared_node.pid is None:
        shared_node.start()
    for pod in json.loads(shared_node.cnictl("--json", "pods").stdout):
        ok(shared_node.plugin("DEL", container_id=pod["container_id"], ifname=pod["ifname"]))
    for name in list(shared_node.pods):
        shared_node.del_pod_netns(name)
    assert_clean(shared_node)


@pytest.fixture(scope="module")
def l2_node(cnid_plugin: Path) -> Iterator[CnidNode]:
    yield from _shared_node(
        "cl2", "[default]\nsystem_vrf_type = l2vni\nvrf = 200\nprefix = 10.1.0.0\n"
    )


def ok(run: PluginRun) -> Any:
    assert run.rc == 0, f"exit {run.rc}: {run.stdout} {run.stderr}"
    return run.json


def add(node: CnidNode, pod: str, version: str = "1.1.0") -> tuple[str, str, Any]:
    path = node.add_pod(pod)
    cid = f"{pod}-cid"
    result = ok(
        node.plugin(
            "ADD",
            container_id=cid,
            netns=path,
            pod=("default", pod),
            conf=conflist_conf(version=version),
        )
    )
    return cid, path, result


def our_links(node: CnidNode) -> list[str]:
    links = json.loads(sh("ip", "-j", "-d", "link", "show", ns=node.netns).stdout)
    return [
        link["ifname"] for link in links if str(link.get("ifalias", "")).startswith("cnid:pod:")
    ]


def our_routes(node: CnidNode) -> list[str]:
    """Our routes in vrf-42's table, less the domain's own unreachable default
    and host integration's leak routes (metric 4278198271): they belong to the
    domain, not to a pod."""
    out = sh("ip", "route", "show", "table", "42", "proto", "149", ns=node.netns, check=False)
    return [
        line
        for line in out.stdout.splitlines()
        if line.strip()
        and not line.startswith("unreachable default")
        and "metric 4278198271" not in line
    ]


def pod_allocations(node: CnidNode) -> int:
    blocks = json.loads(node.cnictl("--json", "ipam").stdout)
    return sum(b["allocated"] - 1 for b in blocks)  # minus each block's gateway


def assert_clean(node: CnidNode) -> None:
    assert our_links(node) == []
    assert our_routes(node) == []
    assert pod_allocations(node) == 0
    assert json.loads(node.cnictl("--json", "pods").stdout) == []


def test_two_pods_talk_and_leave_nothing_behind(cnid_node: CnidNode) -> None:
    node = cnid_node
    cid_a, path_a, res_a = add(node, "pa")
    cid_b, path_b, res_b = add(node, "pb")
    ip_a = res_a["ips"][0]["address"].split("/")[0]
    ip_b = res_b["ips"][0]["address"].split("/")[0]
    assert ip_a != ip_b
    assert res_a["ips"][0]["address"].endswith("/32")
    assert res_a["interfaces"][1]["name"] == "eth0"
    assert res_a["interfaces"][1]["sandbox"] == path_a
    # the pod end is where the result says, with the MTU of the underlay minus 50
    pod_link = json.loads(sh("ip", "-j", "link", "show", "eth0", ns="pa").stdout)[0]
    assert pod_link["mtu"] == 1450
    assert pod_link["address"] == res_a["interfaces"][1]["mac"]
    host = res_a["interfaces"][0]["name"]
    master = json.loads(sh("ip", "-j", "link", "show", host, ns=node.netns).stdout)[0]["master"]
    assert master == "vrf-42"
    assert node.ping("pa", ip_b, 2)
    assert node.ping("pb", ip_a, 2)
    assert node.ping(node.netns, ip_a, 2, vrf="vrf-42")
    # the root of the node (kubelet's probes) reaches the pods through host
    # integration's rules (README: Host integration); test_host_integration.py
    # checks that nothing else of the VRF is reachable
    assert node.ping(node.netns, ip_a, 1)
    ok(node.plugin("CHECK", container_id=cid_a, netns=path_a, conf=conflist_conf(prevResult=res_a)))
    metrics = sh(
        "python3",
        "-c",
        "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:24800/metrics').read().decode())",
        ns=node.netns,
    ).stdout
    assert 'cnid_pods_attached{vrf="42"} 2.0' in metrics
    assert 'cnid_cni_requests_total{command="ADD",result="ok"} 2.0' in metrics
    for cid, path in ((cid_a, path_a), (cid_b, path_b)):
        ok(node.plugin("DEL", container_id=cid, netns=path))
    assert_clean(node)


def test_check_fails_when_the_pod_lost_its_address(cnid_node: CnidNode) -> None:
    cid, path, res = add(cnid_node, "pc")
    sh("ip", "addr", "flush", "dev", "eth0", ns="pc")
    run = cnid_node.plugin(
        "CHECK", container_id=cid, netns=path, conf=conflist_conf(prevResult=res)
    )
    assert run.rc == 1
    assert json.loads(run.stdout)["code"] != 0


def test_result_versions_and_idempotent_add(cnid_node: CnidNode) -> None:
    for version in ("0.3.1", "0.4.0", "1.0.0", "1.1.0"):
        pod = f"v{version.replace('.', '')}"
        cid, path, res = add(cnid_node, pod, version)
        assert res["cniVersion"] == version
        assert ("version" in res["ips"][0]) == (version < "1.0.0")
        assert ("mtu" in res["interfaces"][1]) == (version == "1.1.0")
        again = ok(
            cnid_node.plugin(
                "ADD", container_id=cid, netns=path, conf=conflist_conf(version=version)
            )
        )
        assert again == res
    assert len(our_links(cnid_node)) == 4


def test_del_is_idempotent(cnid_node: CnidNode) -> None:
    cid, path, _ = add(cnid_node, "pd")
    ok(cnid_node.plugin("DEL", container_id=cid, netns=path))
    ok(cnid_node.plugin("DEL", container_id=cid, netns=path))
    cnid_node.del_pod_netns("pd")
    ok(cnid_node.plugin("DEL", container_id=cid, netns=""))  # containerd's remove-time DEL
    ok(cnid_node.plugin("DEL", container_id=cid, netns=path))  # netns gone
    ok(cnid_node.plugin("DEL", container_id="never-seen", netns=""))
    assert_clean(cnid_node)


def test_status_and_gc(cnid_node: CnidNode) -> None:
    assert cnid_node.plugin("STATUS").rc == 0
    pods = [add(cnid_node, f"g{i}") for i in range(3)]
    keep = pods[0][0]
    conf = conflist_conf(**{"cni.dev/valid-attachments": [{"containerID": keep, "ifname": "eth0"}]})
    ok(cnid_node.plugin("GC", conf=conf))
    records = json.loads(cnid_node.cnictl("--json", "pods").stdout)
    assert [r["container_id"] for r in records] == [keep]
    assert len(our_links(cnid_node)) == 1
    assert pod_allocations(cnid_node) == 1


def test_concurrent_adds(cnid_node: CnidNode) -> None:
    results: dict[int, PluginRun] = {}

    def one(i: int) -> None:
        path = cnid_node.add_pod(f"cc{i}")
        results[i] = cnid_node.plugin("ADD", container_id=f"cc{i}-cid", netns=path)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    addresses = {ok(r)["ips"][0]["address"] for r in results.values()}
    assert len(addresses) == 12
    assert len(our_links(cnid_node)) == 12


def test_restart_adopts_pods_without_interrupting_them(cnid_node: CnidNode) -> None:
    cid, path, res = add(cnid_node, "pr")
    ip = res["ips"][0]["address"].split("/")[0]
    host = res["interfaces"][0]["name"]
    before = json.loads(sh("ip", "-j", "link", "show", host, ns=cnid_node.netns).stdout)[0][
        "ifindex"
    ]
    assert cnid_node.kill(signal.SIGTERM) == 0
    # the daemon is down: the pod keeps its network
    assert cnid_node.ping(cnid_node.netns, ip, 2, vrf="vrf-42")
    cnid_node.start()
    after = json.loads(sh("ip", "-j", "link", "show", host, ns=cnid_node.netns).stdout)[0][
        "ifindex"
    ]
    assert before == after
    again = ok(cnid_node.plugin("ADD", container_id=cid, netns=path))
    assert again == res
    ok(cnid_node.plugin("DEL", container_id=cid, netns=path))
    assert_clean(cnid_node)


def test_killed_in_the_middle_of_adds(cnid_node: CnidNode) -> None:
    """SIGKILL while ADDs are in flight; after the restart every attachment is
    either whole (record, link, address) or absent; then the runtime's DELs
    leave nothing."""
    paths = {i: cnid_node.add_pod(f"k{i}") for i in range(8)}
    threads = [
        threading.Thread(
            target=cnid_node.plugin, args=("ADD",), kwargs={"container_id": f"k{i}-cid", "netns": p}
        )
        for i, p in paths.items()
    ]
    for t in threads:
        t.start()
    time.sleep(0.4)
    cnid_node.kill(signal.SIGKILL)
    for t in threads:
        t.join()
    cnid_node.start()
    records = {r["container_id"]: r for r in json.loads(cnid_node.cnictl("--json", "pods").stdout)}
    links = set(our_links(cnid_node))
    assert all(r["state"] == "ready" for r in records.values())
    assert {r["host_ifname"] for r in records.values()} == links
    assert pod_allocations(cnid_node) == len(records)
    for i, p in paths.items():
        ok(cnid_node.plugin("DEL", container_id=f"k{i}-cid", netns=p))
    assert_clean(cnid_node)


def test_l2vni_domain(l2_node: CnidNode) -> None:
    cnid_node = l2_node
    _, _, res_a = add(cnid_node, "la")
    _, _, res_b = add(cnid_node, "lb")
    assert res_a["ips"][0]["address"].endswith("/16")
    assert res_a["ips"][0]["gateway"] == "10.1.0.1"
    ip_b = res_b["ips"][0]["address"].split("/")[0]
    assert cnid_node.ping("la", ip_b, 2)
    assert cnid_node.ping("la", "10.1.0.1", 2)  # the anycast gateway on the bridge
    host = res_a["interfaces"][0]["name"]
    master = json.loads(sh("ip", "-j", "link", "show", host, ns=cnid_node.netns).stdout)[0][
        "master"
    ]
    assert master.startswith("br-")
    for pod in ("la", "lb"):
        ok(cnid_node.plugin("DEL", container_id=f"{pod}-cid", netns=f"/run/netns/{pod}"))
    assert our_links(cnid_node) == []
