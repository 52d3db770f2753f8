"""cnid behind a real CRI runtime: Debian's containerd (CRI plugin, runc) runs pod sandboxes
whose network comes from the chain cnid-plugin -> portmap -> bandwidth, in the node's namespace.

containerd calls ADD at RunPodSandbox, DEL at StopPodSandbox (netns and cached result) and DEL
again at RemovePodSandbox (empty CNI_NETNS, no prevResult); it never calls CHECK.
The conflist says cniVersion 1.0.0: containerd 1.6 (libcni 1.1) implements no later spec.

Needs the ``cnid_node`` fixture (``.netns``, ``.socket``): see tests/vm/test_cnitool.py.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.cnitool import CHAIN_CONFLIST, OUR_PLUGIN, POD_NET, nat_rules, plugin_dir
from testbed.cri import Containerd


def veths(ns: str) -> dict[int, str]:
    out = subprocess.run(
        ["ip", "-n", ns, "-j", "-d", "link", "show", "type", "veth"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {link["ifindex"]: link["ifname"] for link in json.loads(out or "[]")}


def in_pod(path: str, *cmd: str) -> Any:
    out = subprocess.run(
        ["nsenter", f"--net={path}", *cmd], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out) if "-j" in cmd else out


@pytest.fixture
def cri(cnid_node: Any, tmp_path: Path) -> Iterator[Containerd]:
    assert OUR_PLUGIN.is_file(), "build the plugin first (just build)"
    with Containerd(
        tmp_path / "containerd", conflist=CHAIN_CONFLIST, cni_bin_dir=plugin_dir(tmp_path / "bin"),
        netns=cnid_node.netns, env={"CNID_SOCKET": cnid_node.socket},
    ) as runtime:  # fmt: skip
        yield runtime


def test_two_pod_sandboxes_get_cnid_networking(cnid_node: Any, cri: Containerd) -> None:
    node = cnid_node.netns
    before = veths(node)
    pods = [
        cri.run_pod_sandbox(f"web-{i}", uid=f"uid-web-{i}", port_mappings=[(80, 18090 + i)])
        for i in range(2)
    ]
    ips = []
    peers = []
    for pod in pods:
        status, _ = cri.pod_sandbox_status(pod)
        assert status.state == cri.api.SANDBOX_READY
        ip = ipaddress.ip_address(status.network.ip)
        assert ip in POD_NET
        ips.append(ip)
        path = cri.pod_netns(pod)
        eth0 = in_pod(path, "ip", "-j", "-d", "addr", "show", "eth0")[0]
        assert str(ip) in {a["local"] for a in eth0["addr_info"]}
        assert eth0["linkinfo"]["info_kind"] == "veth"
        peers.append(eth0["link_index"])  # the host end's ifindex in the node namespace
        routes = in_pod(path, "ip", "-j", "route", "show")
        assert any(r["dst"] == "default" for r in routes), routes
    assert len(set(ips)) == 2
    assert set(peers) <= set(veths(node)), (peers, veths(node))
    assert len(set(veths(node)) - set(before)) == 2
    for i, ip in enumerate(ips):
        assert f"--dport {18090 + i} -j DNAT --to-destination {ip}:80" in nat_rules(node)

    paths = [cri.pod_netns(pod) for pod in pods]
    cri.stop_pod_sandbox(pods[0])
    assert peers[0] not in veths(node)  # DEL at stop removed the host end
    assert peers[1] in veths(node)
    for pod in pods:
        cri.stop_pod_sandbox(pod)  # stopping twice is fine
        cri.remove_pod_sandbox(pod)  # DEL again, without a netns
    assert cri.list_pod_sandboxes() == []
    assert veths(node) == before
    assert not any(Path(p).exists() for p in paths)
    rules = nat_rules(node)
    assert not any(f"--to-destination {ip}:80" in rules for ip in ips)


def test_repeated_pod_churn_leaves_nothing_behind(cnid_node: Any, cri: Containerd) -> None:
    """Create and remove one pod name five times: every cycle gets an address and leaves
    the node namespace's veths as they were."""
    node = cnid_node.netns
    before = veths(node)
    seen: set[str] = set()
    for i in range(5):
        pod = cri.run_pod_sandbox("churn", uid=f"uid-churn-{i}")
        status, _ = cri.pod_sandbox_status(pod)
        seen.add(status.network.ip)
        cri.stop_pod_sandbox(pod)
        cri.remove_pod_sandbox(pod)
        assert veths(node) == before
    assert seen and all(ipaddress.ip_address(ip) in POD_NET for ip in seen)
