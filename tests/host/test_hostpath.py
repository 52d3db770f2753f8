"""Host integration's kernel side on the host kernel (no VRF device needed):
policy rules, leak routes, our nftables table and the conntrack flush, in a
namespace of the test's own (``set_node_netns``)."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Iterator

import pytest

from cnid.dataplane import (
    FR_ACT_UNREACHABLE,
    FibRule,
    HostDomain,
    HostSettings,
    HostState,
    NodePorts,
    apply_host,
    apply_rules,
    apply_table,
    dump_rules,
    flush_conntrack,
    list_table,
    plan,
    set_node_netns,
)
from testbed.netns import Netns, netns

SETTINGS = HostSettings()
V42 = HostDomain("vrf-42", 42, 42, "10.244.0.0/16", ("10.244.0.0/26",))
V300 = HostDomain("vrf-300", 300, 10300, "10.244.0.0/16", ("10.244.0.0/26", "10.244.0.64/26"))


@pytest.fixture
def node() -> Iterator[Netns]:
    with netns("hostpath") as ns:
        set_node_netns(ns.fd)
        try:
            yield ns
        finally:
            set_node_netns(None)


def nft_list(ns: Netns, *flags: str) -> str:
    return ns.run("nft", *flags, "list", "table", "inet", "cnid").stdout


async def test_rules_are_ours_by_protocol_and_changed_make_before_break(node: Netns) -> None:
    node.ip("rule", "add", "pref", "2000", "to", "192.0.2.0/24", "lookup", "7", "proto", "static")
    a = FibRule(socket.AF_INET, 2000, table=42, dst="10.244.0.0/26", iifname="lo")
    b = FibRule(socket.AF_INET, 1500, table=42, fwmark=0x2A0000, fwmask=0xFFFF0000)
    c = FibRule(socket.AF_INET, 10002, action=FR_ACT_UNREACHABLE, src="10.244.0.0/16")
    added, gone = await apply_rules([a, b, c])
    assert (len(added), gone) == (3, [])
    assert set(await dump_rules()) == {a, b, c}
    assert await apply_rules([a, b, c]) == ([], [])
    text = node.ip("rule", "show")
    assert "2000:\tfrom all to 10.244.0.0/26 iif lo lookup 42 proto 149" in text, text
    assert "1500:\tfrom all fwmark 0x2a0000/0xffff0000 lookup 42 proto 149" in text, text
    assert "10002:\tfrom 10.244.0.0/16 unreachable proto 149" in text, text
    moved = a._replace(priority=2001)
    added, gone = await apply_rules([moved, b])
    assert added == [moved] and set(gone) == {a, c}
    await apply_rules([])
    text = node.ip("rule", "show")
    assert "proto 149" not in text
    assert "192.0.2.0/24 lookup 7 proto static" in text  # not ours: untouched


async def test_a_plan_is_applied_adopted_repaired_and_withdrawn(node: Netns) -> None:
    state = HostState()
    two = plan([V42, V300], [], SETTINGS)
    assert await apply_host(two, state, SETTINGS.mark_mask)
    table = nft_list(node, "-a")
    for chain in ("zone-42", "mark-300", "reply-300", "into-42", "snat-300", "nat-postrouting"):
        assert f"chain {chain} " in table, table
    routes = node.ip("route", "show", "table", "10300")
    assert "unreachable 10.244.0.0/16 proto 149 metric 4278198271" in routes, routes
    assert "throw 10.96.0.0/12 proto 149 metric 4278198271" in routes, routes
    assert "throw default proto 149 metric 4278198271" in routes, routes
    rules = node.ip("rule", "show")
    assert "2001:\tfrom all to 10.244.0.64/26 iif lo lookup 10300 proto 149" in rules, rules
    # A restarted daemon (a fresh state) adopts the table: nothing rewritten.
    assert not await apply_host(two, HostState(), SETTINGS.mark_mask)
    assert nft_list(node, "-a") == table
    assert node.ip("route", "show", "table", "10300") == routes
    # Someone edits our table: the next reconcile puts it back.
    node.run("nft", "add", "rule", "inet", "cnid", "zone-42", "accept")
    assert await apply_host(two, state, SETTINGS.mark_mask)
    assert "accept" not in nft_list(node).split("chain zone-42", 1)[1].split("}", 1)[0]
    # Someone else's table and routes are never touched.
    node.run("nft", "add", "table", "ip", "theirs")
    node.ip("route", "add", "throw", "10.96.0.0/12", "table", "10300", "metric", "5")
    one = plan([V42], [], SETTINGS)
    assert await apply_host(one, state, SETTINGS.mark_mask)
    table = nft_list(node)
    assert "300" not in table and "zone-42" in table
    assert "theirs" in node.run("nft", "list", "tables").stdout
    assert node.ip("route", "show", "table", "10300").strip() == "throw 10.96.0.0/12 metric 5"
    assert "10300" not in node.ip("rule", "show")
    # Egress off: no default leak, the service CIDR still leaves the VRF.
    quiet = HostSettings(masquerade=False)
    await apply_host(plan([V42], [], quiet), state, quiet.mark_mask)
    routes = node.ip("route", "show", "table", "42")
    assert "throw default" not in routes and "throw 10.96.0.0/12" in routes
    assert "masquerade" not in nft_list(node)


async def test_a_removed_domain_takes_its_connections_along(node: Netns) -> None:
    state = HostState()
    await apply_host(plan([V42, V300], [], SETTINGS), state, SETTINGS.mark_mask)
    node.run("nft", "add", "table", "inet", "t")
    node.run("nft", "add", "chain", "inet", "t", "o", "{ type filter hook output priority 0; }")
    node.run("nft", "add", "rule", "inet", "t", "o", "ip", "daddr", "127.0.0.2",
             "ct", "mark", "set", "0x012c0000")  # fmt: skip
    node.run("nft", "add", "rule", "inet", "t", "o", "ip", "daddr", "127.0.0.3",
             "ct", "mark", "set", "0x002a0000")  # fmt: skip
    for dst in ("127.0.0.2", "127.0.0.3"):
        node.run("ping", "-c1", "-W1", dst, check=False)
    before = node.run("cat", "/proc/net/nf_conntrack", check=False).stdout
    if "mark=19660800" not in before:
        pytest.skip("no /proc/net/nf_conntrack view of the marks")
    assert await apply_host(plan([V42], [], SETTINGS), state, SETTINGS.mark_mask)
    after = node.run("cat", "/proc/net/nf_conntrack").stdout
    assert "mark=19660800" not in after  # vrf-300's connections: flushed
    assert "mark=2752512" in after  # vrf-42's: kept
    await flush_conntrack(0x002A0000, SETTINGS.mark_mask)
    assert "mark=2752512" not in node.run("cat", "/proc/net/nf_conntrack").stdout


async def test_no_table_before_the_first_plan(node: Netns) -> None:
    assert await list_table() is None
    await apply_host(plan([], [], SETTINGS), HostState(), SETTINGS.mark_mask)
    listing = await list_table()
    assert listing is not None and "chain" not in listing


async def test_hundreds_of_domains_in_one_plan(node: Netns) -> None:
    """Rules and routes go in chunks whose ACKs fit the receive buffer."""
    many = [
        HostDomain(
            f"d{i}",
            100 + i,
            1000 + i,
            f"10.{i >> 8}.{i & 255}.0/24",
            (f"10.{i >> 8}.{i & 255}.0/26",),
        )
        for i in range(300)
    ]
    state = HostState()
    p = plan(many, [], SETTINGS)
    assert await apply_host(p, state, SETTINGS.mark_mask)
    assert len(await dump_rules()) == len(p.rules) == 1500
    assert not await apply_host(p, state, SETTINGS.mark_mask)
    await apply_host(plan([], [], SETTINGS), state, SETTINGS.mark_mask)
    assert await dump_rules() == []
    assert node.ip("route", "show", "table", "1299") == ""


LISTEN = r"""
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    while True:
        c, peer = s.accept(); c.sendall(f"{port} {peer[0]}\n".encode()); c.close()
ports = [int(p) for p in sys.argv[1:]]
for p in ports[1:]:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
serve(ports[0])
"""
CONNECT = r"""
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print(s.recv(100).decode().strip())
except OSError as exc:
    print(f"FAIL {exc}")
"""


def _ask(ns: Netns, host: str, port: int, timeout: float = 10.0) -> str:
    """The listener's answer, or FAIL and why. An answer may take seconds
    on a loaded machine; a probe meant to be dropped passes ``timeout=1``."""
    return ns.run(
        sys.executable, "-I", "-S", "-c", CONNECT, host, str(port), str(timeout)
    ).stdout.strip()


def _wait_listening(ns: Netns, port: int) -> None:
    for _ in range(100):
        if f":{port} " in ns.run("ss", "-Hltn").stdout:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


async def test_tenants_reach_only_what_the_node_allows_them(node: Netns) -> None:
    """The tenant-to-node policy on the host kernel: without a VRF device the
    pod's packets arrive on its veth, whose domain group sends them through
    the same chain as the VRF device's name would."""
    with netns("hostpod") as pod:
        node.ip("link", "add", "pv0", "group", str(0x0C1D002A), "type", "veth",
                "peer", "name", "eth0", "netns", pod.name)  # fmt: skip
        node.ip("addr", "add", "10.244.0.1/26", "dev", "pv0")
        node.ip("link", "set", "pv0", "up")
        pod.ip("addr", "add", "10.244.0.2/26", "dev", "eth0")
        pod.ip("link", "set", "eth0", "up")
        pod.ip("route", "add", "default", "via", "10.244.0.1")
        servers = [
            node.spawn(sys.executable, "-I", "-S", "-c", LISTEN, "7000", "5353", "6443"),
            pod.spawn(sys.executable, "-I", "-S", "-c", LISTEN, "8080"),
        ]
        try:
            # kube-proxy's part: a ClusterIP whose endpoint is the node itself
            node.run("nft", "add", "table", "ip", "kp")
            node.run("nft", "add", "chain", "ip", "kp", "pre",
                     "{ type nat hook prerouting priority dstnat; }")  # fmt: skip
            node.run("nft", "add", "rule", "ip", "kp", "pre", "ip", "daddr", "10.96.0.1",
                     "tcp", "dport", "443", "dnat", "to", "10.244.0.1:6443")  # fmt: skip
            for port in (7000, 5353, 6443):
                _wait_listening(node, port)
            _wait_listening(pod, 8080)
            # before any plan: the node's listeners answer the pod
            assert _ask(pod, "10.244.0.1", 7000) == "7000 10.244.0.2"
            settings = HostSettings(node_allow=(NodePorts("tcp", 5353, 5353),))
            await apply_table(plan([V42], [], settings).nft)
            assert _ask(pod, "10.244.0.1", 7000, timeout=1).startswith("FAIL")  # dropped: a timeout
            assert _ask(pod, "10.244.0.1", 5353) == "5353 10.244.0.2"  # node_allow
            assert _ask(pod, "10.96.0.1", 443) == "6443 10.244.0.2"  # DNATed to the node
            assert pod.run("ping", "-c1", "-W2", "10.244.0.1", check=False).returncode == 0
            # a probe: the node opens the connection, the pod's answers come back
            assert _ask(node, "10.244.0.2", 8080) == "8080 10.244.0.1"
            # a device outside every domain is not concerned
            node.ip("link", "set", "pv0", "group", "default")
            assert _ask(pod, "10.244.0.1", 7000) == "7000 10.244.0.2"
            node.ip("link", "set", "pv0", "group", str(0x0C1D002A))
            assert _ask(pod, "10.244.0.1", 7000, timeout=1).startswith("FAIL")
            # node_protect = no
            await apply_table(plan([V42], [], HostSettings(node_protect=False)).nft)
            assert _ask(pod, "10.244.0.1", 7000) == "7000 10.244.0.2"
        finally:
            for proc in servers:
                proc.kill()
                proc.wait()
