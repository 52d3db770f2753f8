"""cnid as a cluster citizen, in the VM tier: three agents, one API server
(the emulation, HTTPS, the service account's RBAC enforced), the seeds'
custom resources driving real kernel state, IPBlocks shared by every node.

    lan: br0 192.168.77.1 + API server :6443
      |-- ka (192.168.77.11)   |-- kb (.12)   `-- kc (.13)
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed import seeds
from testbed.cluster import Cluster
from testbed.kubectl import Kubectl
from testbed.node import CnidNode, PluginRun, conflist_conf, sh

#: Pods per agent in the race with real daemons, pods and kernels (under TCG a
#: pod costs about a second of VM time; tests/host/test_kube_against_emulation.py
#: races 3 x 300 allocations through the same IPAM path); CNID_RACE_PODS overrides.
RACE_PODS = int(os.environ.get("CNID_RACE_PODS", "40"))

SEED_DOMAIN = seeds.VRFDOMAIN
SEED_BINDING = seeds.VRFDOMAINBINDING


def seed_nodeconfig(node: str, address: str) -> str:
    """The seeds' VRFNodeConfig, for one of our nodes."""
    return f"""
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFNodeConfig
metadata:
  name: {node}-vrnc
spec:
  nodeRef:
    name: {node}
  routerId: {address}
  routeReflectors:
    - 192.168.77.1
  interfaces:
    - name: eth0
      local: {address}
"""


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll ``probe`` until it returns something truthy; the last value in
    the failure message."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except Exception as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture(scope="module")
def cluster(cnid_plugin: Path) -> Iterator[Cluster]:
    c = Cluster(name=f"kc{os.getpid()}")
    try:
        c.up()
        kubectl = c.kubectl
        kubectl.add_namespace("default")
        kubectl.add_namespace("test02")
        # ka's VRFNodeConfig exists before its daemon starts: it is applied.
        kubectl.apply_yaml(seed_nodeconfig("ka", "192.168.77.11"))
        for i, name in enumerate(("ka", "kb", "kc"), start=1):
            c.add_node(name, i, start=False)
        # The three daemons start together (a start is slow under TCG).
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda n: n.start(wait=600), c.nodes.values()))
        yield c
    finally:
        c.stop()


def ok(run: PluginRun) -> Any:
    assert run.rc == 0, f"exit {run.rc}: {run.stdout} {run.stderr}"
    return run.json


class Pods:
    """Pods the way kubelet makes them: the Pod object, a namespace, ADD."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.kubectl: Kubectl = cluster.kubectl

    def add(self, node: CnidNode, namespace: str, name: str) -> PluginRun:
        uid = self.kubectl.add_pod(namespace, name, node.name)
        path = node.add_pod(f"{node.netns}-{name}")
        return node.plugin(
            "ADD",
            container_id=f"{name}-cid",
            netns=path,
            pod=(namespace, name),
            pod_uid=uid,
            conf=conflist_conf(version="1.0.0"),
        )

    def delete(self, node: CnidNode, namespace: str, name: str) -> PluginRun:
        run = node.plugin("DEL", container_id=f"{name}-cid", conf=conflist_conf(version="1.0.0"))
        node.del_pod_netns(f"{node.netns}-{name}")
        self.kubectl.delete("pods", name, namespace)
        return run


def address_of(run: PluginRun) -> str:
    return str(ok(run)["ips"][0]["address"].split("/")[0])


def link_exists(node: CnidNode, name: str) -> bool:
    return sh("ip", "link", "show", name, ns=node.netns, check=False).returncode == 0


def vrf_table(node: CnidNode, vrf: str) -> int | None:
    out = sh("ip", "-j", "-d", "link", "show", vrf, ns=node.netns, check=False)
    if out.returncode != 0:
        return None
    return int(json.loads(out.stdout)[0]["linkinfo"]["info_data"]["table"])


def allocations(kubectl: Kubectl) -> list[tuple[str, str, dict[str, Any]]]:
    """Every (block, address, holder) of every IPBlock."""
    return [
        (b["metadata"]["name"], addr, holder)
        for b in kubectl.ipblocks()
        for addr, holder in b.get("status", {}).get("allocations", {}).items()
    ]


def assert_blocks_consistent(kubectl: Kubectl) -> None:
    """Every block: ALLOCATED and CAPACITY true, addresses inside it, the
    gateway recorded as such."""
    for b in kubectl.ipblocks():
        net = ipaddress.ip_network(b["spec"]["cidr"])
        status = b["status"]
        allocs = status["allocations"]
        assert status["allocated"] == len(allocs), b["metadata"]["name"]
        assert status["capacity"] == net.num_addresses - 2
        assert allocs[b["spec"]["gateway"]] == {"kind": "gateway"}
        assert all(ipaddress.ip_address(a) in net for a in allocs)


# -- the seeds' resources drive the kernel --------------------------------


def test_the_seeds_resources_drive_every_nodes_kernel(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    nodes = list(cluster.nodes.values())
    # No VRFDomain existed: a node created the default one from server.ini.
    default = wait_for("the default domain", lambda: kubectl.get("vrfdomains", "vrf-42"))
    assert default["spec"]["prefix"] == "10.244.0.0" and default["spec"]["ipblocklen"] == 26
    kubectl.apply_yaml(SEED_DOMAIN)
    kubectl.apply_yaml(SEED_BINDING)
    for node in nodes:
        wait_for(f"vrf-200 on {node.name}", lambda n=node: vrf_table(n, "vrf-200") == 10200)
        assert vrf_table(node, "vrf-42") == 42
        assert link_exists(node, "vx-60200") and link_exists(node, "br-60200")

    def domain_ready() -> Any:
        obj = kubectl.get("vrfdomains", "vrf-200")
        states = {n: s.get("state") for n, s in obj["status"].get("nodes", {}).items()}
        return obj if states == {"ka": "Ready", "kb": "Ready", "kc": "Ready"} else None

    obj = wait_for("vrf-200 ready on every node", domain_ready)
    accepted = {c["type"]: c for c in obj["status"]["conditions"]}["Accepted"]
    assert accepted["status"] == "True"
    assert sorted(obj["metadata"]["finalizers"]) == [
        "cni.pyroute2.org/node.ka",
        "cni.pyroute2.org/node.kb",
        "cni.pyroute2.org/node.kc",
    ]

    def condition(plural: str, name: str, ctype: str) -> str:
        conds = kubectl.get(plural, name).get("status", {}).get("conditions", [])
        return next((c["status"] for c in conds if c["type"] == ctype), "")

    binding = ("vrfdomainbindings", "test02-vrf-200", "Resolved")
    wait_for("the binding resolved", lambda: condition(*binding) == "True")
    wait_for("ka's config ready", lambda: condition("vrfnodeconfigs", "ka-vrnc", "Ready") == "True")
    assert condition("vrfnodeconfigs", "ka-vrnc", "Accepted") == "True"

    # A pod of test02 lands in vrf-200, one of default in vrf-42.
    pods = Pods(cluster)
    ka = cluster.nodes["ka"]
    tenant = address_of(pods.add(ka, "test02", "seed-t"))
    plain = address_of(pods.add(ka, "default", "seed-d"))
    assert ipaddress.ip_address(tenant) in ipaddress.ip_network("10.1.0.0/16")
    assert ipaddress.ip_address(plain) in ipaddress.ip_network("10.244.0.0/16")
    assert ka.ping(ka.netns, tenant, 2, vrf="vrf-200")
    assert not ka.ping(ka.netns, tenant, 1, vrf="vrf-42")
    assert_blocks_consistent(kubectl)
    # cnictl ipam prints the seeds' listing.
    listing = ka.cnictl("ipam").stdout.splitlines()
    assert listing[0].split() == ["NAME", "CIDR", "NODE", "VRF", "ALLOCATED", "CAPACITY"]
    assert ["vrf-200-10-1-0-0-26", "10.1.0.0/26", "ka", "200", "2", "62"] in [
        line.split() for line in listing
    ]
    held = ka.cnictl("ipam", "--allocations").stdout
    assert tenant in held and "seed-t" in held

    # An attachment added, then dropped again: its devices follow.
    grown = seeds.parsed(seeds.VRFDOMAIN)
    grown["spec"]["attachments"].append({"type": "l2vni", "vni": 60201})
    kubectl.apply(grown)
    wait_for("br-60201 on ka", lambda: link_exists(ka, "br-60201"))
    kubectl.apply_yaml(SEED_DOMAIN)
    wait_for("br-60201 gone from ka", lambda: not link_exists(ka, "br-60201"))
    assert link_exists(ka, "br-60200")

    # Delete the domain: every node removes its objects and drops its finalizer.
    ok(pods.delete(ka, "test02", "seed-t"))
    ok(pods.delete(ka, "default", "seed-d"))
    kubectl.delete("vrfdomains", "vrf-200")
    kubectl.wait_gone("vrfdomains", "vrf-200", timeout=120)
    for node in nodes:
        wait_for(f"vrf-200 gone from {node.name}", lambda n=node: vrf_table(n, "vrf-200") is None)
        assert not link_exists(node, "vx-60200")
        assert vrf_table(node, "vrf-42") == 42
    assert not [b for b in kubectl.ipblocks() if b["spec"]["vrf"] == 200]
    # The binding's domain is gone: reported, not crashed on; pods of test02 wait.
    wait_for("the binding unresolved", lambda: condition(*binding) == "False")
    run = pods.add(ka, "test02", "orphan")
    assert run.rc != 0 and run.json["code"] == 11 and "vrf-200" in run.json["msg"], run.stdout
    pods.delete(ka, "test02", "orphan")
    kubectl.delete("vrfdomainbindings", "test02-vrf-200")
    assert ka.status() is not None  # still serving


def test_two_tenants_with_the_same_prefix_allocate_independently(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    kubectl.add_namespace("twin")
    twin_domain = SEED_DOMAIN.replace("200", "300").replace("10.1.0.0", "10.244.0.0")
    kubectl.apply_yaml(twin_domain)
    kubectl.apply_yaml(SEED_BINDING.replace("test02", "twin").replace("vrf-200", "vrf-300"))
    ka, kb = cluster.nodes["ka"], cluster.nodes["kb"]
    wait_for("vrf-300 on kb", lambda: vrf_table(kb, "vrf-300") == 10300)
    pods = Pods(cluster)
    # ka kept its first vrf-42 block (10.244.0.0/26) as its spare; kb claims
    # the first block of vrf-300, the same prefix: both pods get 10.244.0.2.
    a = address_of(pods.add(ka, "default", "same-a"))
    # The binding may reach kb a moment after the domain: a refused ADD (11)
    # is what kubelet retries.
    b = address_of(wait_for("the twin pod", lambda: _added(pods, kb, "twin", "same-b")))
    assert a == b == "10.244.0.2"
    assert json.loads(kb.cnictl("--json", "pods").stdout)[0]["domain"] == "vrf-300"
    blocks = {(x["metadata"]["name"], x["spec"]["node"]) for x in kubectl.ipblocks()}
    assert {("vrf-42-10-244-0-0-26", "ka"), ("vrf-300-10-244-0-0-26", "kb")} <= blocks
    assert ka.ping(ka.netns, a, 1, vrf="vrf-42")
    assert kb.ping(kb.netns, b, 1, vrf="vrf-300")
    assert not kb.ping(kb.netns, b, 1, vrf="vrf-42")  # kb's vrf-42 has no such pod
    ok(pods.delete(ka, "default", "same-a"))
    ok(pods.delete(kb, "twin", "same-b"))
    kubectl.delete("vrfdomainbindings", "twin-vrf-300")
    kubectl.delete("vrfdomains", "vrf-300")
    kubectl.wait_gone("vrfdomains", "vrf-300", timeout=120)


def _added(pods: Pods, node: CnidNode, namespace: str, name: str) -> PluginRun | None:
    run = pods.add(node, namespace, name)
    if run.rc == 0:
        return run
    assert run.json["code"] == 11, run.stdout
    pods.delete(node, namespace, name)
    return None


# -- the race and the kill ------------------------------------------------


Job = tuple[str, CnidNode, str]


def _burst(pods: Pods, jobs: list[Job], workers: int = 12) -> dict[str, PluginRun]:
    """Run ADDs ("add") and DELs ("del") concurrently, as kubelets would."""

    def one(job: Job) -> tuple[str, PluginRun]:
        verb, node, name = job
        if verb == "add":
            return name, pods.add(node, "default", name)
        return name, pods.delete(node, "default", name)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(one, jobs))


def _journal(node: CnidNode) -> dict[str, str]:
    """container id -> address, of the node's ready attachments."""
    return {
        p["container_id"]: p["address"].split("/")[0]
        for p in json.loads(node.cnictl("--json", "pods").stdout)
        if p["state"] == "ready"
    }


def assert_no_leak_no_double_booking(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    assert_blocks_consistent(kubectl)
    held = [(addr, h) for _, addr, h in allocations(kubectl) if h["kind"] == "pod"]
    counts = Counter(addr for addr, _ in held)
    assert [a for a, n in counts.items() if n > 1] == []
    alive = {(p["metadata"]["name"]) for p in kubectl.list("pods", "default")}
    attached: dict[str, str] = {}
    for node in cluster.nodes.values():
        attached.update(_journal(node))
    by_cid = {h["containerId"]: addr for addr, h in held}
    # every allocation is an attached pod that exists, and the other way round
    assert by_cid == attached
    assert {cid.removesuffix("-cid") for cid in by_cid} <= alive


def test_three_agents_race_for_addresses_without_double_booking(cluster: Cluster) -> None:
    pods = Pods(cluster)
    nodes = list(cluster.nodes.values())
    jobs = [("add", node, f"r{node.name}-{i}") for i in range(RACE_PODS) for node in nodes]
    start = time.monotonic()
    runs = _burst(pods, jobs)
    took = time.monotonic() - start
    failed = {n: (r.rc, r.stdout) for n, r in runs.items() if r.rc != 0}
    assert failed == {}
    addresses = [address_of(r) for r in runs.values()]
    assert len(set(addresses)) == len(addresses) == 3 * RACE_PODS
    assert_no_leak_no_double_booking(cluster)
    print(f"race: {3 * RACE_PODS} concurrent ADDs on 3 agents in {took:.1f}s")
    runs = _burst(pods, [("del", node, name) for (_, node, name) in jobs])
    assert {n: r.rc for n, r in runs.items() if r.rc != 0} == {}
    assert_no_leak_no_double_booking(cluster)


def test_an_agent_killed_mid_burst_leaks_nothing_after_the_grace_period(cluster: Cluster) -> None:
    pods = Pods(cluster)
    kubectl = cluster.kubectl
    kc = cluster.nodes["kc"]
    # Some pods to delete during the burst, some to add.
    before = _burst(pods, [("add", kc, f"k-old-{i}") for i in range(20)])
    assert all(r.rc == 0 for r in before.values())
    jobs = [("add", kc, f"k-new-{i}") for i in range(40)] + [
        ("del", kc, f"k-old-{i}") for i in range(20)
    ]

    def killer() -> None:
        time.sleep(1.5)
        kc.kill(signal.SIGKILL)

    t = threading.Thread(target=killer)
    t.start()
    runs = _burst(pods, jobs, workers=8)
    t.join()
    interrupted = [n for n, r in runs.items() if r.rc != 0]
    assert interrupted, "the kill came too late to interrupt anything"
    # kubelet gives up on the failed sandboxes: their Pod objects go, no DEL.
    for name in interrupted:
        kubectl.delete("pods", name, "default")
        kc.del_pod_netns(f"{kc.netns}-{name}")
    kc.start()
    # After the grace period the GC has released what belonged to no pod.
    wait_for(
        "the GC to release the interrupted pods' addresses",
        lambda: _settled(cluster),
        timeout=cluster.gc_grace + 120,
    )
    assert_no_leak_no_double_booking(cluster)
    # The surviving pods still work and leave cleanly.
    survivors = [p["metadata"]["name"] for p in kubectl.list("pods", "default")]
    runs = _burst(pods, [("del", kc, n) for n in survivors if n.startswith("k-")])
    assert all(r.rc == 0 for r in runs.values())
    assert_no_leak_no_double_booking(cluster)


def _settled(cluster: Cluster) -> bool:
    try:
        assert_no_leak_no_double_booking(cluster)
    except AssertionError:
        return False
    return True


# -- the API server goes away ---------------------------------------------


def test_api_down_pods_keep_working_adds_wait_and_the_agent_resyncs(cluster: Cluster) -> None:
    pods = Pods(cluster)
    kb = cluster.nodes["kb"]
    a = address_of(pods.add(kb, "default", "steady"))
    cluster.stop_api()
    try:
        status = wait_for(
            "kb to say the API is gone",
            lambda: (s := kb.status()) and not s["ready"] and s,
        )
        assert "kube-api" in json.dumps(status["components"])
        assert kb.ping(kb.netns, a, 1, vrf="vrf-42")  # the pod keeps working
        links = sh("ip", "-o", "link", "show", ns=kb.netns).stdout.count("cnid:pod:")
        path = kb.add_pod(f"{kb.netns}-refused")
        run = kb.plugin(
            "ADD",
            container_id="refused-cid",
            netns=path,
            pod=("default", "refused"),
            conf=conflist_conf(version="1.0.0"),
        )
        assert run.rc != 0 and run.json["code"] == 11, run.stdout
        assert sh("ip", "-o", "link", "show", ns=kb.netns).stdout.count("cnid:pod:") == links
        assert "refused-cid" not in kb.cnictl("--json", "pods").stdout
        kb.del_pod_netns(f"{kb.netns}-refused")
    finally:
        cluster.start_api()
    wait_for("kb ready again", lambda: (s := kb.status()) and s["ready"])
    ok(pods.delete(kb, "default", "steady"))
    assert_no_leak_no_double_booking(cluster)


def test_the_agents_used_only_what_rbac_grants(cluster: Cluster) -> None:
    log = cluster.kubectl.http.get("/debug/requests").json()
    mine = [r for r in log if r["user"].startswith("system:serviceaccount:")]
    used = {(r["verb"], r["resource"], r["subresource"]) for r in mine}
    # the IPBlock path was taken: claims, status writes, releases
    assert {("create", "ipblocks", ""), ("update", "ipblocks", "status")} <= used
    assert {("delete", "ipblocks", "")} <= used
    assert [r for r in mine if r["code"] in (401, 403)] == []
