"""The EVPN control plane of whole cnid nodes, in the VM tier (VRFs): two
agents on one API server, in a full iBGP mesh first, then through two FRR
route reflectors, with an FRR leaf playing the existing fabric.

    lan: br0 192.168.77.1 + API server :6443
      |-- rr1 .2, rr2 .3   FRR route reflectors (bgpd -Z, listen range /24)
      |-- leaf .4          FRR leaf: L3VNI 42 on its default VRF, L2VNI 300;
      |                    peers with rr2 and with each node directly ([bgp] peers)
      |      `-- h1        10.50.0.2/24 routed (type-5), 10.3.0.250/16 in L2VNI 300
      |-- ka .11           cnid (pods in vrf-42: l3vni 42; in vrf-300: l2vni 300)
      `-- kb .12           cnid

Convergence is waited for on JSON views (testbed.jsoncmp): the leaf's
``show bgp l2vpn evpn``, the nodes' ``cnictl --json`` views.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.cluster import Cluster
from testbed.frr import FrrRouter, Host, L2Vni, L3Vni, Neighbor, evpn_leaf, route_reflector
from testbed.jsoncmp import wait_for
from testbed.kubectl import Kubectl
from testbed.netlab import Lab, Lan, Pinger
from testbed.node import CnidNode, PluginRun, conflist_conf, sh

ASN = 65000
SUBNET = "192.168.77"
RR1, RR2, LEAF = f"{SUBNET}.2", f"{SUBNET}.3", f"{SUBNET}.4"
KA, KB = f"{SUBNET}.11", f"{SUBNET}.12"
TIMEOUT = 180.0  # under TCG everything is about seven times slower
FRR_TIMERS = (3, 9)
#: Every node also peers with the FRR leaf directly (``[bgp] peers``): the
#: fabric is reachable in full-mesh mode too.
BGP_INI = f"[bgp]\nhold_time = 9\nstale_timeout = 60\npeers = {LEAF}\n"

L2_DOMAIN = """
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFDomain
metadata:
  name: vrf-300
spec:
  vrf: 300
  table: 300
  prefix: 10.3.0.0
  prefixlen: 16
  ipblocklen: 26
  attachments:
    - type: l2vni
      vni: 300
---
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFDomainBinding
metadata:
  name: l2-vrf-300
spec:
  namespaceRef:
    name: l2
  vrfDomainRef:
    name: vrf-300
"""


def nodeconfig(node: str, address: str) -> str:
    """The seeds' VRFNodeConfig: route reflectors for the node."""
    return f"""
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFNodeConfig
metadata:
  name: {node}-vrnc
spec:
  nodeRef:
    name: {node}
  routeReflectors:
    - {RR1}
    - {RR2}
"""


@dataclass
class Fabric:
    cluster: Cluster
    lab: Lab
    rr1: FrrRouter
    rr2: FrrRouter
    leaf: FrrRouter

    @property
    def kubectl(self) -> Kubectl:
        return self.cluster.kubectl

    @property
    def ka(self) -> CnidNode:
        return self.cluster.nodes["ka"]

    @property
    def kb(self) -> CnidNode:
        return self.cluster.nodes["kb"]


@pytest.fixture(scope="module")
def fabric(cnid_plugin: Path) -> Iterator[Fabric]:
    c = Cluster(name=f"ke{os.getpid()}", subnet=SUBNET)
    lab = Lab(f"kf{os.getpid() % 100000}")
    try:
        c.up()
        lan = Lan(c.lan, f"{SUBNET}.0/24")  # the cluster's segment (not ours to remove)
        rrs = [
            lab.add(
                route_reflector(
                    name,
                    lab.netns(name, lan=lan, cidr=f"{addr}/24"),
                    ASN,
                    addr,
                    listen_range=f"{SUBNET}.0/24",
                    cluster_id=RR1,
                    timers=FRR_TIMERS,
                )
            )
            for name, addr in (("rr1", RR1), ("rr2", RR2))
        ]
        leaf = lab.add(
            evpn_leaf(
                "leaf",
                lab.netns("leaf", lan=lan, cidr=f"{LEAF}/24"),
                ASN,
                LEAF,
                vtep=LEAF,
                # Both reflectors, as a production leaf has them. FRR 8.4's
                # zebra can lose a remote router MAC when a route's best
                # path moves between the two reflected copies (docs/evpn.md,
                # "Known limits"): the leaf runs ZEBRA_SERIAL_ZAPI and the
                # tests wait for its kernel with FrrRouter.wait_l3vni_kernel.
                neighbors=[
                    Neighbor(RR1),
                    Neighbor(RR2),
                    Neighbor(KA, passive=True),
                    Neighbor(KB, passive=True),
                ],
                l2vnis=[L2Vni(300)],
                l3vni=L3Vni(42, rt=f"{ASN}:42"),
                hosts=[
                    Host(
                        lab.name("h1"),
                        routed=("10.50.0.1/24", "10.50.0.2/24"),
                        bridged={300: "10.3.0.250/16"},
                    )
                ],
                timers=FRR_TIMERS,
            )
        )
        for router in (*rrs, leaf):
            router.start(wait=120)
        kubectl = c.kubectl
        for ns in ("default", "l2"):
            kubectl.add_namespace(ns)
        for i, name in enumerate(("ka", "kb"), start=1):
            c.add_node(name, i, ini_extra=BGP_INI, start=False)
        # a start is slow under TCG, slower on a loaded machine
        threads = [threading.Thread(target=n.start, args=(600.0,)) for n in c.nodes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for n in c.nodes.values():
            assert n.status() is not None, n.log_tail()
        yield Fabric(c, lab, rrs[0], rrs[1], leaf)
    finally:
        lab.stop()
        c.stop()


def ctl(node: CnidNode, *args: str) -> Any:
    out = node.cnictl("--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def ok(run: PluginRun) -> Any:
    assert run.rc == 0, f"exit {run.rc}: {run.stdout} {run.stderr}"
    return run.json


def add_pod(fabric: Fabric, node: CnidNode, namespace: str, name: str) -> str:
    uid = fabric.kubectl.add_pod(namespace, name, node.name)
    path = node.add_pod(f"{node.netns}-{name}")
    run = node.plugin(
        "ADD",
        container_id=f"{name}-cid",
        netns=path,
        pod=(namespace, name),
        pod_uid=uid,
        conf=conflist_conf(version="1.0.0"),
    )
    return str(ok(run)["ips"][0]["address"].split("/")[0])


def del_pod(fabric: Fabric, node: CnidNode, namespace: str, name: str) -> None:
    ok(node.plugin("DEL", container_id=f"{name}-cid", conf=conflist_conf(version="1.0.0")))
    node.del_pod_netns(f"{node.netns}-{name}")
    fabric.kubectl.delete("pods", name, namespace)


def pod_ns(node: CnidNode, name: str) -> str:
    return f"{node.netns}-{name}"


def ping(ns: str, address: str, count: int = 1) -> bool:
    cmd = ["ping", "-c", str(count), "-W", "2", "-i", "0.3", address]
    return sh(*cmd, ns=ns, check=False).returncode == 0


def wait_ping(what: str, ns: str, address: str) -> None:
    wait_for(what, lambda: {"ok": ping(ns, address)}, {"ok": True}, TIMEOUT, 0.5)


def peers(node: CnidNode) -> dict[str, str]:
    return {p["address"]: p["state"] for p in ctl(node, "bgp", "summary")["peers"]}


def diagnose(fabric: Fabric) -> str:
    """What the leaf and the nodes hold, for a failure message."""
    leaf = fabric.leaf
    parts = [
        "leaf routes: " + leaf.ip("route", "show", check=False),
        "leaf neigh: " + leaf.ip("neigh", "show", check=False),
        "leaf fdb: " + sh("bridge", "fdb", "show", ns=leaf.netns, check=False).stdout,
        "leaf evpn: " + json.dumps(leaf.evpn_routes())[:4000],
    ]
    for node in (fabric.ka, fabric.kb):
        parts.append(f"{node.name} vrf-42: " + node.cnictl("vrf", "routes", "42").stdout)
        parts.append(f"{node.name} evpn: " + node.cnictl("evpn", "routes").stdout)
        parts.append(f"{node.name} bgp: " + node.cnictl("bgp", "summary").stdout)
        parts.append(f"{node.name} log: " + node.log_tail(30))
    return "\n".join(parts)


def router_mac(node: CnidNode, domain: str) -> str:
    status = ctl(node, "status")
    return str(next(d for d in status["domains"] if d["name"] == domain)["links"]["router_mac"])


def pod_mac(node: CnidNode, name: str) -> str:
    out = sh("ip", "-j", "link", "show", "eth0", ns=pod_ns(node, name))
    return str(json.loads(out.stdout)[0]["address"])


# -- full mesh -------------------------------------------------------------------


def test_full_mesh_pods_reach_each_other(fabric: Fabric) -> None:
    ka, kb = fabric.ka, fabric.kb
    wait_for("ka-kb mesh", lambda: peers(ka), {KB: "established", LEAF: "established"}, TIMEOUT)
    wait_for("kb-ka mesh", lambda: peers(kb), {KA: "established", LEAF: "established"}, TIMEOUT)
    assert ctl(ka, "bgp", "summary")["mode"] == "full-mesh"
    a = add_pod(fabric, ka, "default", "ma")
    b = add_pod(fabric, kb, "default", "mb")
    block_b = next(x["cidr"] for x in ctl(kb, "ipam") if x["vrf"] == 42)
    # kb's block in ka's VRF table, as zebra would program it
    wait_for(
        "kb's block in ka's vrf-42",
        lambda: ctl(ka, "vrf", "routes", "vrf-42"),
        {
            "routes": [
                {
                    "prefix": block_b,
                    "protocol": "evpn",
                    "nexthops": [{"via": KB, "dev": "br-42", "onlink": True}],
                }
            ]
        },
        TIMEOUT,
    )
    wait_ping("ma -> mb across nodes", pod_ns(ka, "ma"), b)
    wait_ping("mb -> ma across nodes", pod_ns(kb, "mb"), a)
    wait_ping("ma -> h1 behind the FRR leaf, no reflector", pod_ns(ka, "ma"), "10.50.0.2")
    wait_ping("h1 -> mb", fabric.lab.name("h1"), b)
    routes = ctl(ka, "evpn", "routes", "--type", "5")
    assert {"from": KB, "state": "programmed", "vni": "42", "nexthop": KB} | {
        "route": f"[5]:[0]:[26]:[{block_b.split('/')[0]}]"
    } in [{k: r[k] for k in ("from", "state", "vni", "nexthop", "route")} for r in routes]
    text = ka.cnictl("bgp", "summary").stdout
    assert "BGP router identifier 192.168.77.11, local AS number 65000" in text
    assert KB in text and "established" in text


def test_full_mesh_daemon_killed_and_restarted_nothing_is_lost(fabric: Fabric) -> None:
    """Issue 15: the speaker outlives the daemon, so a daemon SIGKILLed and
    started again under a 100 ms ping across the mesh loses no packet (its
    sessions to the other node and the leaf never go down)."""
    ka, kb = fabric.ka, fabric.kb
    a, b = pod_ns(ka, "ma"), pod_ns(kb, "mb")
    info = json.loads(sh("ip", "-j", "-4", "addr", "show", "eth0", ns=b).stdout)
    mb = str(info[0]["addr_info"][0]["local"])
    wait_ping("ma -> mb before the restart", a, mb)
    before = {p["address"]: p["uptime_seconds"] for p in ctl(ka, "bgp", "summary")["peers"]}
    pinger = Pinger(a, mb, 0.1)
    try:
        time.sleep(2)
        kb.kill(signal.SIGKILL)
        kb.start(600.0)
        wait_for("kb's sessions", lambda: peers(kb), {KA: "established", LEAF: "established"},
                 TIMEOUT)  # fmt: skip
        wait_ping("ma -> mb after the restart", a, mb)
        time.sleep(3)
    finally:
        sent, received = pinger.stop()
    print(f"full mesh, kb's daemon SIGKILLed and restarted: {sent - received} of {sent} lost")
    after = {p["address"]: p["uptime_seconds"] for p in ctl(ka, "bgp", "summary")["peers"]}
    assert after[KB] >= before[KB], "ka's session to kb went down"
    assert received > 0 and sent == received, (sent, received)


# -- route reflectors and the fabric ---------------------------------------------


def test_route_reflectors_and_an_frr_leaf(fabric: Fabric) -> None:
    ka, kb, leaf = fabric.ka, fabric.kb, fabric.leaf
    for name, addr in (("ka", KA), ("kb", KB)):
        fabric.kubectl.apply_yaml(nodeconfig(name, addr))
    # applied live: the mesh session goes, the reflectors come
    for node in (ka, kb):
        wait_for(
            f"{node.name} on the reflectors",
            lambda n=node: {"peers": peers(n)},
            {"peers": {RR1: "established", RR2: "established", (KB if node is ka else KA): None}},
            TIMEOUT,
        )
    assert ctl(ka, "bgp", "summary")["mode"] == "route-reflector"
    a = add_pod(fabric, ka, "default", "ra")
    b = add_pod(fabric, kb, "default", "rb")
    blocks = {n.name: next(x["cidr"] for x in ctl(n, "ipam") if x["vrf"] == 42) for n in (ka, kb)}
    # our type-5 routes in FRR, with our router MAC, and programmed by its zebra
    rmac = {n.name: router_mac(n, "vrf-42") for n in (ka, kb)}
    wait_for(
        "our type-5 routes at the leaf",
        leaf.evpn_routes,
        [
            {"type": 5, "prefix": blocks["ka"], "vni": 42, "nexthop": KA, "rmac": rmac["ka"]},
            {"type": 5, "prefix": blocks["kb"], "vni": 42, "nexthop": KB, "rmac": rmac["kb"]},
        ],
        TIMEOUT,
    )
    # ... in the leaf's kernel, each with its router MAC's neighbour and FDB entries
    leaf.wait_l3vni_kernel(42, {KA: [blocks["ka"]], KB: [blocks["kb"]]}, timeout=TIMEOUT)
    # the leaf's host in our VRF
    wait_for(
        "h1's prefix in ka's vrf-42",
        lambda: ctl(ka, "vrf", "routes", "42"),
        {"routes": [{"prefix": "10.50.0.0/24", "protocol": "evpn", "nexthops": [{"via": LEAF}]}]},
        TIMEOUT,
    )
    wait_ping("ra -> h1 behind the FRR leaf", pod_ns(ka, "ra"), "10.50.0.2")
    wait_ping("h1 -> rb", fabric.lab.name("h1"), b)
    wait_ping("ra -> rb through the reflectors' routes", pod_ns(ka, "ra"), b)
    assert ping(pod_ns(kb, "rb"), a)


def test_one_reflector_stopped_traffic_flows_then_sessions_return(fabric: Fabric) -> None:
    ka, kb = fabric.ka, fabric.kb
    b = add_pod(fabric, kb, "default", "sb")
    add_pod(fabric, ka, "default", "sa")
    wait_ping("sa -> sb", pod_ns(ka, "sa"), b)
    wait_ping("sa -> h1", pod_ns(ka, "sa"), "10.50.0.2")
    # a continuous ping while rr1 goes away
    ping_proc = subprocess.Popen(
        ["ip", "netns", "exec", pod_ns(ka, "sa"), "ping", "-i", "0.2", "-W", "1", b],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        fabric.rr1.stop()
        wait_for(
            "rr1 down at ka",
            lambda: {"rr1 up": peers(ka)[RR1] == "established"},
            {"rr1 up": False},
            TIMEOUT,
        )
        time.sleep(5)
        assert ping(pod_ns(ka, "sa"), b, 3), diagnose(fabric)
        # the leaf's best paths moved to rr2's copies (FRR 8.4: see the fixture)
        blocks = {
            n.name: next(x["cidr"] for x in ctl(n, "ipam") if x["vrf"] == 42) for n in (ka, kb)
        }
        fabric.leaf.wait_l3vni_kernel(42, {KA: [blocks["ka"]], KB: [blocks["kb"]]}, TIMEOUT)
        assert ping(pod_ns(ka, "sa"), "10.50.0.2", 3), diagnose(fabric)
    finally:
        ping_proc.terminate()
        out, _ = ping_proc.communicate(timeout=30)
    sent = out.count("icmp_seq=")
    assert sent > 10
    fabric.rr1.start(wait=120)
    for node in (ka, kb):
        wait_for(
            f"{node.name} back on rr1",
            lambda n=node: peers(n),
            {RR1: "established", RR2: "established"},
            TIMEOUT,
        )
    assert ping(pod_ns(ka, "sa"), b, 2)


# -- l2vni: type-2/3 and withdrawals ------------------------------------------------


def test_l2vni_pods_bridge_across_nodes_and_withdraw(fabric: Fabric) -> None:
    ka, kb, leaf, kubectl = fabric.ka, fabric.kb, fabric.leaf, fabric.kubectl
    kubectl.apply_yaml(L2_DOMAIN)
    for node in (ka, kb):
        wait_for(
            f"vrf-300 on {node.name}",
            lambda n=node: {"domains": [d["name"] for d in ctl(n, "status")["domains"]]},
            {"domains": ["vrf-300"]},
            TIMEOUT,
        )
    a = add_pod(fabric, ka, "l2", "la")
    b = add_pod(fabric, kb, "l2", "lb")
    mac_a = pod_mac(ka, "la")
    wait_for(
        "la's type-2 at the leaf and at kb",
        lambda: {
            "leaf": leaf.evpn_routes(),
            "kb": ctl(kb, "evpn", "routes", "--type", "2"),
        },
        {
            "leaf": [{"type": 2, "mac": mac_a, "ip": a, "vni": 300, "nexthop": KA}],
            "kb": [{"route": f"[2]:[0]:[48]:[{mac_a}]:[32]:[{a}]", "state": "programmed"}],
        },
        TIMEOUT,
    )
    wait_ping("la -> lb over the l2vni", pod_ns(ka, "la"), b)
    wait_ping("lb -> the leaf's bridged host", pod_ns(kb, "lb"), "10.3.0.250")
    fdb = json.loads(sh("bridge", "-j", "fdb", "show", "dev", "vx-300", ns=kb.netns).stdout)
    assert {"mac": mac_a, "dst": KA} in [{"mac": f["mac"], "dst": f.get("dst")} for f in fdb]
    # a pod deleted: its type-2 gone everywhere, its FDB entry gone on kb
    del_pod(fabric, ka, "l2", "la")
    wait_for(
        "la's type-2 withdrawn",
        lambda: {
            "leaf": [r for r in leaf.evpn_routes() if r.get("mac") == mac_a],
            "kb": [
                f
                for f in json.loads(
                    sh("bridge", "-j", "fdb", "show", "dev", "vx-300", ns=kb.netns).stdout
                )
                if f["mac"] == mac_a
            ],
        },
        {"leaf": [], "kb": []},
        TIMEOUT,
        exact_lists=True,
    )
    # the domain deleted: its type-3 routes gone at the leaf
    del_pod(fabric, kb, "l2", "lb")
    kubectl.delete("vrfdomains", "vrf-300")
    kubectl.wait_gone("vrfdomains", "vrf-300", timeout=TIMEOUT)
    wait_for(
        "vrf-300's routes gone at the leaf",
        lambda: {
            "t3": [
                r
                for r in leaf.evpn_routes()
                if r.get("vni") == 300 and r.get("nexthop") in (KA, KB)
            ]
        },
        {"t3": []},
        TIMEOUT,
        exact_lists=True,
    )
