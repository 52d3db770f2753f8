"""Dataplane parts that need no VRF, in namespaces the tests create."""

from __future__ import annotations

import errno
import os
import socket
import tempfile
import threading
from collections.abc import Iterator

import pytest
import trio

from cnid import dataplane as dp
from cnid.core import Domain, KernelError, UnknownContainer, VniAttachment
from cnid.dataplane import _netlink as nl
from cnid.dataplane import _netns
from testbed.netns import Netns, netns


@pytest.fixture
def node() -> Iterator[Netns]:
    """A namespace playing the node; the dataplane's node side runs in it."""
    with netns("dpnode") as ns:
        dp.set_node_netns(ns.fd)
        try:
            yield ns
        finally:
            dp.set_node_netns(None)


def _ns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def test_host_ifname_is_deterministic_and_short() -> None:
    a = dp.host_ifname("0123456789abcdef" * 4, "eth0")
    assert a == dp.host_ifname("0123456789abcdef" * 4, "eth0")
    assert len(a) <= 15 and a.startswith("cn")
    assert a != dp.host_ifname("0123456789abcdef" * 4, "eth1")
    assert a != dp.host_ifname("x", "eth0")


def test_is_netns_fd() -> None:
    with netns("dpfd") as ns:
        assert dp.is_netns_fd(ns.fd)
    uts = os.open("/proc/self/ns/uts", os.O_RDONLY)
    try:
        assert not dp.is_netns_fd(uts)  # nsfs, but not a network namespace
    finally:
        os.close(uts)
    with tempfile.TemporaryFile() as f:
        assert not dp.is_netns_fd(f.fileno())
    assert not dp.is_netns_fd(987654)  # not open


def test_socket_opened_inside_lives_there_and_thread_comes_back() -> None:
    with netns("dpin") as ns:
        ns.ip("link", "add", "probe0", "type", "veth", "peer", "name", "probe1")
        before = _ns_inode()
        with nl.Netlink(_netns.netlink_socket(dp.checked_netns(ns.fd))) as sock:
            assert _ns_inode() == before
            names = {link.name for link in sock.links()}
        assert {"lo", "probe0", "probe1"} <= names
        with nl.Netlink(_netns.netlink_socket(None)) as sock:
            assert "probe0" not in {link.name for link in sock.links()}

        seen: list[int] = []

        def inside_then_fail() -> None:
            with _netns.inside(dp.checked_netns(ns.fd)):
                seen.append(_ns_inode())
                raise RuntimeError("boom")

        with pytest.raises(RuntimeError):
            inside_then_fail()
        assert seen == [os.fstat(ns.fd).st_ino]
        assert _ns_inode() == before


def test_inside_refuses_what_is_not_a_netns() -> None:
    with tempfile.TemporaryFile() as f:
        with pytest.raises(UnknownContainer):
            dp.checked_netns(f.fileno())
        with pytest.raises(UnknownContainer):  # setns: EINVAL
            _netns.netlink_socket(_netns.NetnsFd(f.fileno()))
    with pytest.raises(UnknownContainer):
        dp.set_node_netns(987654)  # not open


def test_sysctl_write_lands_in_the_namespace() -> None:
    with netns("dpsys") as ns:
        root = _netns.read_sysctl(None, "net/ipv4/conf/lo/accept_local")
        new = "0" if root == "1" else "1"
        _netns.write_sysctl(dp.checked_netns(ns.fd), "net/ipv4/conf/lo/accept_local", new)
        assert ns.run("cat", "/proc/sys/net/ipv4/conf/lo/accept_local").stdout.strip() == new
        assert _netns.read_sysctl(None, "net/ipv4/conf/lo/accept_local") == root
        with pytest.raises(KernelError) as exc:
            _netns.write_sysctl(dp.checked_netns(ns.fd), "net/ipv4/conf/nosuchif/forwarding", "1")
        assert exc.value.errno == errno.ENOENT


async def test_discover_underlay(node: Netns) -> None:
    with pytest.raises(KernelError):
        await dp.discover_underlay()
    node.ip("link", "add", "up0", "mtu", "9000", "type", "veth", "peer", "name", "up1")
    node.ip("addr", "add", "192.168.77.2/24", "dev", "up0")
    node.ip("addr", "add", "192.168.78.2/24", "dev", "up1")
    node.ip("link", "set", "up0", "up")
    node.ip("link", "set", "up1", "up")
    node.ip("route", "add", "default", "via", "192.168.77.1")
    assert await dp.discover_underlay() == dp.Underlay("up0", 9000, "192.168.77.2")
    assert await dp.discover_underlay(host_if="up1") == dp.Underlay("up1", 1500, "192.168.78.2")
    got = await dp.discover_underlay(ipaddr="192.168.78.2")
    assert got == dp.Underlay("up1", 1500, "192.168.78.2")
    with pytest.raises(KernelError):
        await dp.discover_underlay(host_if="nosuch0")


L2 = Domain(
    name="l2",
    vrf=200,
    table=200,
    prefix="10.1.0.0",
    prefixlen=16,
    ipblocklen=24,
    attachments=(VniAttachment(type="l2vni", vni=200),),
)


def _l2_bridge(node: Netns) -> None:
    """The l2vni pod attachment without a VRF: a bridge carrying our alias,
    as ensure_domain would enslave it to the VRF (the VM tier does that)."""
    node.ip("link", "add", "br-200", "type", "bridge")
    node.ip("link", "set", "br-200", "alias", "cnid:br:200", "up")
    node.ip("addr", "add", "10.1.0.1/16", "dev", "br-200")


def _spec(container_id: str, address: str, ifname: str = "eth0") -> dp.PodSpec:
    return dp.plan_pod(
        domain=L2,
        container_id=container_id,
        ifname=ifname,
        address=address,
        block_gateway="10.1.0.1",
        mtu=1400,
    )


async def test_l2_pod_wiring_without_vrf(node: Netns) -> None:
    _l2_bridge(node)
    with netns("dppod") as pod1, netns("dppod") as pod2:
        async with trio.open_nursery() as nursery:
            for i, pod in ((1, pod1), (2, pod2)):
                nursery.start_soon(
                    lambda i=i, pod=pod: dp.wire_pod(
                        dp.checked_netns(pod.fd), _spec(f"c{i}", f"10.1.0.{10 + i}", "eth0")
                    )
                )
        assert "10.1.0.11/16" in pod1.ip("-4", "addr", "show", "eth0")
        # the gratuitous ARP (arp_notify) taught the bridge the pod's MAC before any traffic
        # (sent from linkwatch, which may defer the carrier event by up to 1 s: poll)
        mac = pod1.run("cat", "/sys/class/net/eth0/address").stdout.strip()
        fdb = ""
        with trio.move_on_after(5):
            while mac not in (fdb := node.run("bridge", "fdb", "show", "br", "br-200").stdout):
                await trio.sleep(0.05)
        assert mac in fdb
        assert pod1.run("cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify").stdout.strip() == "1"
        assert "default via 10.1.0.1" in pod1.ip("route")
        assert "mtu 1400" in pod1.ip("link", "show", "eth0")
        pod1.run("ping", "-c1", "-W2", "10.1.0.12")
        node.run("ping", "-c1", "-W2", "10.1.0.11")
        await dp.check_pod(dp.checked_netns(pod1.fd), _spec("c1", "10.1.0.11", "eth0"))
        found = {(p.container_id, p.ifname, p.master) for p in await dp.list_pod_links()}
        assert found == {("c1", "eth0", "br-200"), ("c2", "eth0", "br-200")}

        # ifname taken in the pod: EEXIST, the existing interface untouched
        with pytest.raises(KernelError) as exc:
            await dp.wire_pod(dp.checked_netns(pod1.fd), _spec("c9", "10.1.0.19", "eth0"))
        assert exc.value.errno == errno.EEXIST
        assert "10.1.0.11/16" in pod1.ip("-4", "addr", "show", "eth0")
        # a failure half-way is rolled back: the address is taken by pod1's eth0... in
        # another namespace it is not, so provoke one: the address of pod2's lo.
        pod2.ip("addr", "add", "10.1.0.99/32", "dev", "lo")
        with pytest.raises(KernelError):
            await dp.wire_pod(dp.checked_netns(pod2.fd), _spec("c3", "10.1.0.99", "eth1"))
        assert "eth1" not in pod2.ip("link")
        assert dp.host_ifname("c3", "eth1") not in node.ip("link")

        pod1.ip("addr", "flush", "dev", "eth0")
        with pytest.raises(dp.CheckFailed):
            await dp.check_pod(dp.checked_netns(pod1.fd), _spec("c1", "10.1.0.11", "eth0"))
        for i in (1, 2):
            for _ in range(2):  # idempotent
                await dp.unwire_pod(container_id=f"c{i}", ifname="eth0", address=None, domain=L2)
        assert await dp.list_pod_links() == []
        assert "eth0" not in pod1.ip("link")


async def test_a_pod_mac_follows_its_ipv4_address(node: Netns) -> None:
    """The same address given to another pod comes with the same MAC (the
    peers' ARP caches stay right); an IPv6 pod keeps the kernel's MAC."""
    _l2_bridge(node)
    macs = []
    for i in (1, 2):  # a pod, then its successor at the same address
        with netns("dpmac") as pod:
            wiring = await dp.wire_pod(
                dp.checked_netns(pod.fd), _spec(f"m{i}", "10.1.0.42", "eth0")
            )
            macs.append(pod.run("cat", "/sys/class/net/eth0/address").stdout.strip())
            assert wiring.pod_mac == macs[-1]
            await dp.unwire_pod(container_id=f"m{i}", ifname="eth0", address=None, domain=L2)
    assert macs == ["0a:58:0a:01:00:2a"] * 2
    assert dp.pod_mac("10.244.3.7") == "0a:58:0a:f4:03:07"
    assert dp.pod_mac("fd00::5") is None


async def test_unwire_leaves_foreign_link_alone(node: Netns) -> None:
    name = dp.host_ifname("cx", "eth0")
    node.ip("link", "add", name, "type", "veth", "peer", "name", "other0")
    await dp.unwire_pod(container_id="cx", ifname="eth0", address=None, domain=None)
    assert name in node.ip("link")


async def test_a_non_netns_fd_is_refused_where_it_enters(node: Netns) -> None:
    """checked_netns is the one check; past it, setns itself refuses a
    descriptor that is no namespace, before anything is created."""
    _l2_bridge(node)
    sock = socket.socket()
    try:
        with pytest.raises(UnknownContainer):
            dp.checked_netns(sock.fileno())
        with pytest.raises(UnknownContainer):
            await dp.wire_pod(dp.NetnsFd(sock.fileno()), _spec("c1", "10.1.0.11"))
        assert dp.host_ifname("c1", "eth0") not in node.ip("link")
    finally:
        sock.close()


async def test_concurrent_wiring_runs_in_several_threads(node: Netns) -> None:
    _l2_bridge(node)
    threads: set[int] = set()
    real = _netns.netlink_socket

    def spy(fd: int | None) -> socket.socket:
        threads.add(threading.get_ident())
        return real(fd)

    pods = [Netns("dpcc") for _ in range(6)]
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr("cnid.dataplane._pod.netlink_socket", spy)
        async with trio.open_nursery() as nursery:
            for i, pod in enumerate(pods):
                nursery.start_soon(
                    lambda i=i, pod=pod: dp.wire_pod(
                        dp.checked_netns(pod.fd), _spec(f"cc{i}", f"10.1.1.{i + 1}", "eth0")
                    )
                )
        assert len(threads) > 1
        assert len(await dp.list_pod_links()) == 6
    finally:
        mp.undo()
        for pod in pods:
            pod.close()
