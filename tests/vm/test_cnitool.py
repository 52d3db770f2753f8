"""cnid behind the reference CNI client: ``cnitool`` runs the chain cnid-plugin -> portmap ->
bandwidth (Debian's reference plugins) in the node's namespace, as a runtime would.

The conflist says cniVersion 1.0.0: Debian's cnitool (libcni 1.1.2) and reference plugins
implement the spec up to 1.0.0 and refuse a 1.1.0 configuration or result.

Needs the ``cnid_node`` fixture: a running, ready daemon; ``.netns`` is the node's namespace
(the plugin's host side), ``.socket`` the CNI socket handed to the plugin as CNID_SOCKET.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.cnitool import CHAIN_CONFLIST, OUR_PLUGIN, POD_NET, CniTool, nat_rules, plugin_dir
from testbed.netns import Netns

PORTS = {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}
BANDWIDTH = {
    "bandwidth": {
        "ingressRate": 1_000_000, "ingressBurst": 100_000,
        "egressRate": 2_000_000, "egressBurst": 200_000,
    }
}  # fmt: skip


def ip_json(ns: str, *args: str) -> Any:
    out = subprocess.run(["ip", "-n", ns, "-j", "-d", *args], capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else []


def links(ns: str, kind: str | None = None) -> dict[int, str]:
    return {
        link["ifindex"]: link["ifname"]
        for link in ip_json(ns, "link", "show")
        if kind is None or link.get("linkinfo", {}).get("info_kind") == kind
    }


def qdiscs(ns: str, dev: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "tc", "-j", "qdisc", "show", "dev", dev],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return list(json.loads(out))


@pytest.fixture
def tool(cnid_node: Any, tmp_path: Path) -> Iterator[CniTool]:
    assert OUR_PLUGIN.is_file(), "build the plugin first (just build)"
    with CniTool(
        CHAIN_CONFLIST, plugin_dir(tmp_path / "bin"), netns=cnid_node.netns,
        env={"CNID_SOCKET": cnid_node.socket},
    ) as t:  # fmt: skip
        yield t


@pytest.fixture
def pod() -> Iterator[Netns]:
    ns = Netns("cnitool-pod")
    try:
        yield ns
    finally:
        ns.close()


def pod_args(name: str) -> dict[str, str]:
    return {
        "IgnoreUnknown": "1", "K8S_POD_NAMESPACE": "default", "K8S_POD_NAME": name,
        "K8S_POD_INFRA_CONTAINER_ID": f"infra-{name}", "K8S_POD_UID": f"uid-{name}",
    }  # fmt: skip


def test_add_check_del_through_portmap_and_bandwidth(
    cnid_node: Any, tool: CniTool, pod: Netns
) -> None:
    node = cnid_node.netns
    path = f"/run/netns/{pod.name}"
    args = pod_args("web-0")
    veths_before = links(node, "veth")

    result = tool.add(path, cni_args=args, cap_args={**PORTS, **BANDWIDTH}).check().json

    # cnid's result came through portmap and bandwidth intact
    assert result["cniVersion"] == "1.0.0"
    ip = result["ips"][0]
    address = ipaddress.ip_interface(ip["address"])
    assert address.ip in POD_NET
    pod_if = result["interfaces"][ip["interface"]]
    assert pod_if["name"] == "eth0" and pod_if["sandbox"] == path
    eth0 = ip_json(pod.name, "addr", "show", "eth0")[0]
    assert eth0["address"] == pod_if["mac"]
    assert str(address.ip) in {a["local"] for a in eth0["addr_info"]}
    assert any(r["dst"] == "default" for r in ip_json(pod.name, "route", "show"))
    host_veths = {i: n for i, n in links(node, "veth").items() if i not in veths_before}
    assert len(host_veths) == 1, host_veths
    host_veth = next(iter(host_veths.values()))
    assert host_veth in {i["name"] for i in result["interfaces"] if not i.get("sandbox")}

    # portmap: a DNAT to the pod; bandwidth: tbf on the host veth (ingress) and on an ifb
    assert f"--dport 18080 -j DNAT --to-destination {address.ip}:80" in nat_rules(node)
    assert any(q["kind"] == "tbf" for q in qdiscs(node, host_veth))
    ifbs = [n for n in links(node).values() if n.startswith("bwp")]
    assert len(ifbs) == 1 and any(q["kind"] == "tbf" for q in qdiscs(node, ifbs[0]))
    assert ifbs[0] in {i["name"] for i in result["interfaces"]}

    # the reference portmap's CHECK fails for IPv4-only pods when ip6tables exists
    # (containernetworking/plugins#819): CHECK the chain without the port mappings
    tool.check(path, cni_args=args, cap_args=BANDWIDTH).check()

    tool.delete(path, cni_args=args, cap_args={**PORTS, **BANDWIDTH}).check()
    assert links(node, "veth") == veths_before
    assert "18080" not in nat_rules(node)
    assert not [n for n in links(node).values() if n.startswith("bwp")]
    assert "eth0" not in links(pod.name).values()
    assert tool.cached_results() == []
    tool.delete(path, cni_args=args).check()  # a second DEL succeeds


def test_check_fails_when_the_pod_lost_its_address(
    cnid_node: Any, tool: CniTool, pod: Netns
) -> None:
    path = f"/run/netns/{pod.name}"
    args = pod_args("web-1")
    # Debian's bandwidth plugin panics on a CHECK without bandwidth arguments: give them
    result = tool.add(path, cni_args=args, cap_args=BANDWIDTH).check().json
    try:
        tool.check(path, cni_args=args, cap_args=BANDWIDTH).check()
        pod.ip("addr", "del", result["ips"][0]["address"], "dev", "eth0")
        broken = tool.check(path, cni_args=args, cap_args=BANDWIDTH)
        assert broken.rc != 0, broken.stdout
    finally:
        tool.delete(path, cni_args=args).check()


def test_two_pods_get_distinct_addresses_and_del_releases_them(
    cnid_node: Any, tool: CniTool
) -> None:
    pods = [Netns("cnitool-pod"), Netns("cnitool-pod")]
    added: list[Netns] = []
    try:
        addresses = []
        for i, ns in enumerate(pods):
            res = tool.add(f"/run/netns/{ns.name}", cni_args=pod_args(f"p{i}")).check().json
            added.append(ns)
            addresses.append(ipaddress.ip_interface(res["ips"][0]["address"]).ip)
        assert len(set(addresses)) == 2 and all(a in POD_NET for a in addresses)
        # the pods reach each other through the node
        ping = pods[0].run("ping", "-c", "1", "-W", "2", str(addresses[1]), check=False)
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        for i, ns in enumerate(added):
            tool.delete(f"/run/netns/{ns.name}", cni_args=pod_args(f"p{i}")).check()
        for ns in pods:
            ns.close()
