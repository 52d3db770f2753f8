"""The real-client harnesses (cnitool, containerd's CRI) proven against Debian's reference
plugins, with no cnid involved: if these fail, the harness is broken, not cnid.

The reference plugins speak CNI 1.0.0 at most, so the conflists here say 1.0.0.
Everything lives in namespaces the tests create; containerd runs in a node namespace.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.cnitool import CniTool, nat_rules, plugin_dir
from testbed.cri import Containerd
from testbed.netns import Netns

SUBNET = ipaddress.ip_network("10.99.0.0/24")
PORTS = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}
BANDWIDTH = {
    "bandwidth": {
        "ingressRate": 1_000_000, "ingressBurst": 100_000,
        "egressRate": 1_000_000, "egressBurst": 100_000,
    }
}  # fmt: skip


def reference_conflist(ipam_dir: Path) -> dict[str, object]:
    return {
        "cniVersion": "1.0.0",
        "name": "refnet",
        "plugins": [
            {
                "type": "bridge", "bridge": "refbr0", "isGateway": True,
                "ipam": {
                    "type": "host-local", "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": str(SUBNET)}]], "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "bandwidth", "capabilities": {"bandwidth": True}},
        ],
    }  # fmt: skip


def links(ns: str, kind: str | None = None) -> dict[int, str]:
    """ifindex -> name of the links in namespace ``ns`` (optionally of one kind)."""
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "-d", "link", "show"], capture_output=True, text=True, check=True
    ).stdout
    return {
        link["ifindex"]: link["ifname"]
        for link in json.loads(out)
        if kind is None or link.get("linkinfo", {}).get("info_kind") == kind
    }


def in_netns(path: str, *cmd: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net={path}", *cmd], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Netns]:
    ns = Netns("refnode")
    try:
        yield ns
    finally:
        ns.close()


def test_cnitool_add_check_del_with_reference_plugins(node: Netns, tmp_path: Path) -> None:
    pod = Netns("refpod")
    conf = reference_conflist(tmp_path / "ipam")
    try:
        with CniTool(conf, plugin_dir(tmp_path / "bin"), netns=node.name) as tool:
            path = f"/run/netns/{pod.name}"
            veths_before = links(node.name, "veth")
            add = tool.add(path, cap_args={**PORTS, **BANDWIDTH}).check()
            result = add.json
            assert result["cniVersion"] == "1.0.0"
            address = ipaddress.ip_interface(result["ips"][0]["address"])
            assert address.ip in SUBNET
            eth0 = json.loads(in_netns(path, "ip", "-j", "addr", "show", "eth0"))[0]
            assert f"{address.ip}" in {a["local"] for a in eth0["addr_info"]}
            host_veths = set(links(node.name, "veth")) - set(veths_before)
            assert len(host_veths) == 1
            assert f"--dport 18080 -j DNAT --to-destination {address.ip}:80" in nat_rules(node.name)
            qdiscs = node.run("tc", "qdisc", "show").stdout
            assert "qdisc tbf" in qdiscs
            assert len(tool.cached_results()) == 1  # in the private /var/lib/cni

            # the reference portmap's CHECK fails for IPv4-only pods when ip6tables exists
            # (containernetworking/plugins#819): CHECK the chain without port mappings
            tool.check(path, cap_args=BANDWIDTH).check()

            tool.delete(path, cap_args={**PORTS, **BANDWIDTH}).check()
            assert links(node.name, "veth") == veths_before
            assert "18080" not in nat_rules(node.name)
            assert "bwp" not in " ".join(links(node.name).values())
            assert tool.cached_results() == []
            tool.delete(path).check()  # DEL is idempotent
            workdir = tool.workdir
        assert not workdir.exists()
    finally:
        pod.close()


def test_containerd_runs_two_pods_with_reference_plugins(node: Netns, tmp_path: Path) -> None:
    conf = reference_conflist(tmp_path / "ipam")
    veths_before = links(node.name, "veth")
    with Containerd(
        tmp_path / "containerd", conflist=conf, cni_bin_dir=plugin_dir(tmp_path / "bin"),
        netns=node.name,
    ) as cri:  # fmt: skip
        pods = [cri.run_pod_sandbox(f"web-{i}", port_mappings=[(80, 18090 + i)]) for i in range(2)]
        ips = []
        for pod in pods:
            status, _ = cri.pod_sandbox_status(pod)
            assert status.state == cri.api.SANDBOX_READY
            ip = ipaddress.ip_address(status.network.ip)
            assert ip in SUBNET
            ips.append(ip)
            path = cri.pod_netns(pod)
            assert Path(path).exists()
            assert str(ip) in in_netns(path, "ip", "-br", "addr", "show", "eth0")
            assert "default via" in in_netns(path, "ip", "route")
        assert len(set(ips)) == 2
        assert len(set(links(node.name, "veth")) - set(veths_before)) == 2
        assert f"--to-destination {ips[1]}:80" in nat_rules(node.name)

        paths = [cri.pod_netns(pod) for pod in pods]
        for pod in pods:
            cri.stop_pod_sandbox(pod)
            cri.remove_pod_sandbox(pod)
        assert cri.list_pod_sandboxes() == []
        assert links(node.name, "veth") == veths_before
        assert not any(Path(p).exists() for p in paths)
        assert "--to-destination 10.99.0." not in nat_rules(node.name)
        pid = cri.proc.pid if cri.proc else None
    assert pid is not None and not Path(f"/proc/{pid}").exists()
    assert not (tmp_path / "containerd").exists()
