"""Host integration in the VM tier: the node's root namespace reaches its
pods in every VRF, pods reach out with the node's address, ClusterIPs of a
kube-proxy-like DNAT in the root namespace work, and no path leads from one
tenant to another. One node on the cluster LAN, an "outside" host behind
the LAN's router:

    out (203.0.113.10, servers) -- lan: br0 192.168.77.1 + API server, router
                                      `-- ha: eth0 192.168.77.11 (cnid)
    ha's pods: a42 10.244.0.2 + a42b 10.244.0.3 (vrf-42, the default domain)
               b200 10.1.0.2 + b200b 10.1.0.3   (vrf-200, namespace test02)
               c300 10.244.0.2                  (vrf-300, namespace twin: vrf-42's prefix)

``out`` has no route to any pod prefix: an answer reaching a pod proves the
source NAT. ha's root namespace serves on 0.0.0.0 too (the node's own
services: 7100 closed to tenants, 7101 in ``node_allow``, 7102 the endpoint
of ClusterIP 10.96.0.13, as an API server on a control-plane node). Every
server answers with the address and port it saw and its own name, so a test
knows who answered whom.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cluster import Pods, address_of, vrf_table, wait_for

from testbed import seeds
from testbed.cluster import Cluster
from testbed.node import CnidNode, sh

PY = "/usr/bin/python3"
SERVER = r"""
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, peer = s.accept()
        c.sendall(f"{name} {peer[0]}:{peer[1]}\n".encode()); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", port))
    while True:
        data, peer = u.recvfrom(100)
        u.sendto(f"{name} {peer[0]}:{peer[1]}\n".encode(), peer)
threading.Thread(target=udp, daemon=True).start()
tcp()
"""
CLIENT = r"""
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sport = int(sys.argv[4]) if len(sys.argv) > 4 else 0
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=3)
        print(s.recv(200).decode().strip())
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
        s.bind(("0.0.0.0", sport)); s.sendto(b"?", (host, port))
        print(s.recv(200).decode().strip())
except OSError as exc:
    print(f"FAIL {exc}")
"""
PORT = 7000
OUT = "203.0.113.10"
NODE = "192.168.77.11"
#: the node's own listeners: closed to tenants, allowed, a ClusterIP's endpoint
NODE_PORTS = (7100, 7101, 7102)

TWIN_DOMAIN = seeds.VRFDOMAIN.replace("200", "300").replace("10.1.0.0", "10.244.0.0")
TWIN_BINDING = seeds.VRFDOMAINBINDING.replace("test02", "twin").replace("vrf-200", "vrf-300")

#: kube-proxy's part, simulated: DNAT of ClusterIPs in the node's root namespace.
KUBE_PROXY = f"""
table ip kubeproxy-sim {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr 10.96.0.10 tcp dport 80 dnat to {OUT}:{PORT}
        ip daddr 10.96.0.11 tcp dport 80 dnat to 10.244.0.3:{PORT}
        ip daddr 10.96.0.12 tcp dport 80 dnat to 10.1.0.3:{PORT}
        ip daddr 10.96.0.13 tcp dport 80 dnat to {NODE}:{NODE_PORTS[2]}
    }}
}}
"""


class Lab:
    def __init__(self, cluster: Cluster, node: CnidNode) -> None:
        self.cluster = cluster
        self.node = node
        self.pods = Pods(cluster)
        self.addresses: dict[str, str] = {}
        self.procs: list[subprocess.Popen[bytes]] = []

    def pod_ns(self, pod: str) -> str:
        return f"{self.node.netns}-{pod}"

    def serve(self, ns: str, name: str, port: int = PORT) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, PY, "-I", "-S", "-c", SERVER, name, str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)

    def ask(self, ns: str, host: str, proto: str = "tcp", port: int = PORT, sport: int = 0) -> str:
        args = [PY, "-I", "-S", "-c", CLIENT, proto, host, str(port)]
        if sport:
            args.append(str(sport))
        out = sh(*args, ns=ns, check=False)
        return out.stdout.strip() or f"FAIL {out.stderr.strip()}"

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


def _wait_server(lab: Lab, ns: str, host: str, name: str) -> None:
    wait_for(f"{name} serving", lambda: lab.ask(ns, host).startswith(name), timeout=60)


@pytest.fixture(scope="module")
def lab(cnid_plugin: Path) -> Iterator[Lab]:
    c = Cluster(name=f"hi{os.getpid()}")
    out = f"{c.name}-out"
    lab: Lab | None = None
    try:
        c.up()
        # the outside host, behind the LAN's router
        sh("ip", "netns", "add", out)
        sh("ip", "link", "set", "lo", "up", ns=out)
        sh("ip", "link", "add", "ext0", "type", "veth", "peer", "name", "eth0", "netns", out,
           ns=c.lan)  # fmt: skip
        sh("ip", "addr", "add", "203.0.113.1/24", "dev", "ext0", ns=c.lan)
        sh("ip", "link", "set", "ext0", "up", ns=c.lan)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=c.lan)
        sh("ip", "addr", "add", f"{OUT}/24", "dev", "eth0", ns=out)
        sh("ip", "link", "set", "eth0", "up", ns=out)
        sh("ip", "route", "add", "default", "via", "203.0.113.1", ns=out)
        k = c.kubectl
        for ns in ("default", "test02", "twin"):
            k.add_namespace(ns)
        node = c.add_node("ha", 1, start=False)
        ini = node.workdir / "server.ini"
        allow = f"[network]\nnode_allow = tcp/{NODE_PORTS[1]}\n"
        ini.write_text(ini.read_text().replace("[network]\n", allow, 1))
        node.start(wait=600)  # other VMs may share the machine's two cores
        wait_for("the default domain", lambda: k.get("vrfdomains", "vrf-42"))
        k.apply_yaml(seeds.VRFDOMAIN)
        k.apply_yaml(seeds.VRFDOMAINBINDING)
        k.apply_yaml(TWIN_DOMAIN)
        k.apply_yaml(TWIN_BINDING)
        wait_for("vrf-200", lambda: vrf_table(node, "vrf-200") == 10200)
        wait_for("vrf-300", lambda: vrf_table(node, "vrf-300") == 10300)
        lab = Lab(c, node)
        for pod, namespace in (
            ("a42", "default"),
            ("a42b", "default"),
            ("b200", "test02"),
            ("b200b", "test02"),
            ("c300", "twin"),
        ):
            run = wait_for(f"pod {pod}", lambda p=pod, n=namespace: _added(lab, n, p))
            lab.addresses[pod] = address_of(run)
        assert lab.addresses == {
            "a42": "10.244.0.2",
            "a42b": "10.244.0.3",
            "b200": "10.1.0.2",
            "b200b": "10.1.0.3",
            "c300": "10.244.0.2",
        }, lab.addresses
        lab.serve(out, "outside")
        for pod in lab.addresses:
            lab.serve(lab.pod_ns(pod), pod)
        for port in NODE_PORTS:
            lab.serve(node.netns, "node", port)
        subprocess.run(
            ["ip", "netns", "exec", node.netns, "nft", "-f", "-"],
            input=KUBE_PROXY, text=True, check=True,
        )  # fmt: skip
        wait_for("probe rules", lambda: "lookup 10300" in rules(node), timeout=120)
        _wait_server(lab, lab.pod_ns("a42"), OUT, "outside")
        yield lab
    finally:
        if lab is not None:
            lab.stop()
        c.stop()
        sh("ip", "netns", "del", out, check=False)


def _added(lab: Lab, namespace: str, pod: str) -> Any:
    run = lab.pods.add(lab.node, namespace, pod)
    if run.rc == 0:
        return run
    assert run.json["code"] == 11, run.stdout  # a binding not there yet: kubelet retries
    lab.pods.delete(lab.node, namespace, pod)
    return None


def rules(node: CnidNode) -> str:
    return (
        sh("ip", "rule", "show", ns=node.netns).stdout
        + sh("ip", "-6", "rule", "show", ns=node.netns, check=False).stdout
    )


def our_table(node: CnidNode, handles: bool = False) -> str:
    args = ["nft", *(["-a"] if handles else []), "list", "table", "inet", "cnid"]
    return sh(*args, ns=node.netns).stdout


def conntrack(node: CnidNode) -> list[str]:
    path = "/proc/net/nf_conntrack"
    out = sh("cat", path, ns=node.netns, check=False)
    return out.stdout.splitlines() if out.returncode == 0 else []


# -- probes ------------------------------------------------------------------


def test_the_root_namespace_reaches_pods_in_every_vrf(lab: Lab) -> None:
    node = lab.node
    assert node.ping(node.netns, "10.244.0.3", 2)  # vrf-42
    assert node.ping(node.netns, "10.1.0.2", 2)  # vrf-200
    # A TCP probe (kubelet's httpGet/tcpSocket): the pod sees its gateway.
    assert lab.ask(node.netns, "10.1.0.2").startswith("b200 10.1.0.1:")
    # The address two domains hold on this node: the older domain's pod.
    assert lab.ask(node.netns, "10.244.0.2").startswith("a42 10.244.0.1:")
    text = rules(node)
    assert re.search(r"from all to 10\.244\.0\.0/26 iif lo lookup 42 proto 149", text), text
    assert re.search(r"from all to 10\.1\.0\.0/26 iif lo lookup 10200 proto 149", text), text
    # nothing else of the VRFs: not an address outside this node's blocks
    assert not node.ping(node.netns, "10.1.0.100", 1)


# -- egress ------------------------------------------------------------------


def test_pods_reach_out_with_the_node_address_and_replies_find_their_vrf(lab: Lab) -> None:
    a42, c300 = lab.pod_ns("a42"), lab.pod_ns("c300")
    assert lab.ask(a42, OUT).startswith(f"outside {NODE}:")
    assert lab.ask(c300, OUT).startswith(f"outside {NODE}:")
    # The same pod address, source port and destination in two VRFs at
    # once: two connections (zones), two NAT ports, each reply to its VRF.
    first = lab.ask(a42, OUT, "udp", sport=40000)
    second = lab.ask(c300, OUT, "udp", sport=40000)
    assert first.startswith(f"outside {NODE}:"), first
    assert second.startswith(f"outside {NODE}:"), second
    assert first != second  # distinct source ports after the NAT
    entries = [e for e in conntrack(lab.node) if "dport=40000" in e or "sport=40000" in e]
    # Debian's kernel has the procfs view: marks and zones as designed
    assert any("mark=2752512" in e and "zone-orig=42" in e for e in entries), entries
    assert any("mark=19660800" in e and "zone-orig=300" in e for e in entries), entries


# -- services ----------------------------------------------------------------


def test_pods_reach_cluster_ips_through_the_root_namespace(lab: Lab) -> None:
    a42 = lab.pod_ns("a42")
    # a hostNetwork-like endpoint outside: DNAT, then source NAT
    assert lab.ask(a42, "10.96.0.10", port=80).startswith(f"outside {NODE}:")
    # an endpoint in the pod's own domain: DNAT only, the pod's own address
    assert lab.ask(a42, "10.96.0.11", port=80).startswith("a42b 10.244.0.2:")
    # tenant 200's pods reach their own service
    assert lab.ask(lab.pod_ns("b200"), "10.96.0.12", port=80).startswith("b200b 10.1.0.2:")


# -- isolation ---------------------------------------------------------------


def test_one_tenant_never_reaches_another(lab: Lab) -> None:
    a42, b200, c300 = lab.pod_ns("a42"), lab.pod_ns("b200"), lab.pod_ns("c300")
    # direct (routed in the VRF, then the egress path for an address outside it)
    assert lab.ask(a42, "10.1.0.3").startswith("FAIL")
    assert lab.ask(b200, "10.244.0.3").startswith("FAIL")
    assert lab.ask(c300, "10.244.0.3").startswith("FAIL")  # vrf-42's pod, same prefix
    # service path: a ClusterIP whose endpoint is another tenant's pod
    assert lab.ask(a42, "10.96.0.12", port=80).startswith("FAIL")
    assert lab.ask(c300, "10.96.0.11", port=80).startswith("FAIL")
    assert lab.ask(b200, "10.96.0.11", port=80).startswith("FAIL")
    # probe path: pods do not get into the root namespace's rules
    assert not lab.node.ping(b200, "10.244.0.2", 1)
    # ... and the tenants' own paths still work (the failures are isolation)
    assert lab.ask(a42, "10.244.0.3").startswith("a42b 10.244.0.2:")
    assert lab.ask(b200, "10.1.0.3").startswith("b200b 10.1.0.2:")


# -- tenant-to-node policy --------------------------------------------------------


def test_tenants_reach_only_what_the_node_allows_them(lab: Lab) -> None:
    node, a42, b200 = lab.node, lab.pod_ns("a42"), lab.pod_ns("b200")
    closed, allowed, _ = NODE_PORTS
    for port in NODE_PORTS:  # the node's services listen on 0.0.0.0
        wait_for(f"the node serving {port}",
                 lambda p=port: lab.ask(node.netns, NODE, port=p).startswith("node "),
                 timeout=60)  # fmt: skip
    # closed: at the pod's gateway (through the VRF) and at the node's address
    assert lab.ask(a42, "10.244.0.1", port=closed).startswith("FAIL")
    assert lab.ask(a42, NODE, port=closed).startswith("FAIL")
    assert lab.ask(b200, "10.1.0.1", port=closed).startswith("FAIL")
    # [network] node_allow
    assert lab.ask(a42, "10.244.0.1", port=allowed).startswith("node 10.244.0.2:")
    assert lab.ask(b200, NODE, port=allowed).startswith("node 10.1.0.2:")
    # a ClusterIP whose endpoint is the node itself: DNATed, so it passes
    assert lab.ask(a42, "10.96.0.13", port=80).startswith("node 10.244.0.2:")
    assert lab.ask(b200, "10.96.0.13", port=80).startswith("node 10.1.0.2:")
    # ping (ICMP echo) still answers; probes are the node's own connections
    assert node.ping(a42, "10.244.0.1", 1)
    assert lab.ask(node.netns, "10.1.0.2").startswith("b200 10.1.0.1:")
    assert "tcp dport 7101 return" in our_table(node)


# -- VRFRoutingPolicy --------------------------------------------------------

POLICY = """
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFRoutingPolicy
metadata:
  name: probe-vrf-200
spec:
  vrfDomainRef:
    name: vrf-200
  match:
    - dst: 10.1.0.0/16
      iifname: lo
"""


def _policy_state(lab: Lab, name: str) -> tuple[str, str]:
    obj = lab.cluster.kubectl.get("vrfroutingpolicies", name)
    conds = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
    node = obj.get("status", {}).get("nodes", {}).get("ha", {})
    return conds.get("Accepted", {}).get("status", ""), node.get("state", "")


def test_a_routing_policy_leaks_into_its_domain_and_goes_away(lab: Lab) -> None:
    k = lab.cluster.kubectl
    k.apply_yaml(POLICY)
    k.apply_yaml(POLICY.replace("probe-vrf-200", "orphan").replace("vrf-200", "vrf-999"))
    wait_for("the policy applied", lambda: _policy_state(lab, "probe-vrf-200") == ("True", "Ready"))
    text = rules(lab.node)
    assert re.search(r"^110\d\d:\s+from all to 10\.1\.0\.0/16 iif lo lookup 10200 proto 149", text,
                     re.M), text  # fmt: skip
    wait_for("the orphan refused", lambda: _policy_state(lab, "orphan")[0] == "False")
    orphan = k.get("vrfroutingpolicies", "orphan")["status"]["conditions"][0]
    assert orphan["reason"] == "DomainNotFound"
    k.delete("vrfroutingpolicies", "probe-vrf-200")
    k.delete("vrfroutingpolicies", "orphan")
    wait_for("the policy's rule gone", lambda: "10.1.0.0/16 iif lo" not in rules(lab.node))


# -- restart and removal -------------------------------------------------------


def test_a_restart_leaves_the_ruleset_and_rules_identical(lab: Lab) -> None:
    node = lab.node
    before = (our_table(node, handles=True), rules(node))
    node.kill(signal.SIGTERM)
    node.start(wait=600)
    wait_for("the node ready", lambda: (s := node.status()) and s["ready"])
    time.sleep(3)  # a reconcile or two after readiness
    after = (our_table(node, handles=True), rules(node))
    assert after == before  # handles included: the table was not even rewritten
    assert lab.ask(lab.pod_ns("a42"), OUT).startswith(f"outside {NODE}:")


def test_deleting_a_domain_leaves_nothing_of_it(lab: Lab) -> None:
    node, k = lab.node, lab.cluster.kubectl
    assert lab.ask(lab.pod_ns("c300"), OUT).startswith("outside")  # a connection to forget
    assert lab.pods.delete(node, "twin", "c300").rc == 0
    k.delete("vrfdomainbindings", "twin-vrf-300")
    k.delete("vrfdomains", "vrf-300")
    k.wait_gone("vrfdomains", "vrf-300", timeout=120)
    wait_for("vrf-300's rules gone", lambda: "10300" not in rules(node), timeout=120)
    table = our_table(node)
    assert "-300 " not in table and "vrf-300" not in table, table
    assert "0x012c0000" not in table
    assert sh("ip", "route", "show", "table", "10300", ns=node.netns, check=False).stdout == ""
    assert not [e for e in conntrack(node) if "mark=19660800" in e]
    # the others are untouched
    assert "zone-42" in table and "zone-200" in table
    assert lab.ask(lab.pod_ns("a42"), OUT).startswith(f"outside {NODE}:")
    assert json.loads(node.cnictl("--json", "status").stdout)["ready"]


def test_a_new_pod_gets_its_domain_group_at_once(lab: Lab) -> None:
    """A pod added now is wired with its domain's interface group at once."""
    run = lab.pods.add(lab.node, "default", "late")
    assert run.rc == 0, run.stdout
    links = json.loads(sh("ip", "-j", "-d", "link", "show", ns=lab.node.netns).stdout)
    ours = [x for x in links if x.get("ifalias", "").startswith("cnid:pod:late-cid")]
    assert ours and ours[0]["group"] in ("0xc1d002a", "203227178"), ours
    assert lab.pods.delete(lab.node, "default", "late").rc == 0
