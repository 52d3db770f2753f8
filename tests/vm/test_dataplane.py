"""VRF domains and pods on a real VRF kernel (the VM tier).

node namespace (set_node_netns)          pod namespaces
vrf-42  (table 42)  <- cn... veths  ---  l3a 10.244.0.2/32, l3b 10.244.0.3/32
  br-4242 <- vx-4242 (l3vni)
vrf-200 (table 200)
  br-200 10.1.0.1/16 <- cn... veths ---  l2a 10.1.0.2/16, l2b 10.1.0.3/16
  br-200 <- vx-200 (l2vni); br-2200 <- vx-2200 (l3vni)
u0 192.168.100.1/24 (the underlay)
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator

import pytest

from cnid import dataplane as dp
from cnid.core import Domain, KernelError, VniAttachment
from testbed.netns import Netns, netns

L3 = Domain(
    name="blue", vrf=42, table=42, prefix="10.244.0.0", prefixlen=16, ipblocklen=24,
    attachments=(VniAttachment(type="l3vni", vni=4242),),
)  # fmt: skip
L2 = Domain(
    name="red", vrf=200, table=200, prefix="10.1.0.0", prefixlen=16, ipblocklen=24,
    attachments=(VniAttachment(type="l2vni", vni=200), VniAttachment(type="l3vni", vni=2200)),
)  # fmt: skip
UNDERLAY = dp.Underlay(ifname="u0", mtu=1500, address="192.168.100.1")


def links(node: Netns) -> str:
    """``ip -o link show`` without the operational state and carrier, which the
    kernel moves by itself (a bridge goes from UNKNOWN to UP once a port
    forwards: seen in CI between two reads)."""
    return re.sub(r" state \S+|,LOWER_UP", "", node.ip("-o", "link", "show"))


@pytest.fixture
def node() -> Iterator[Netns]:
    with netns("vmnode") as ns:
        ns.ip("link", "add", "u0", "type", "veth", "peer", "name", "u1")
        ns.ip("addr", "add", "192.168.100.1/24", "dev", "u0")
        ns.ip("link", "set", "u0", "up")
        dp.set_node_netns(ns.fd)
        try:
            yield ns
        finally:
            dp.set_node_netns(None)


def _links(node: Netns) -> str:
    return node.ip("-o", "-d", "link", "show")


def _ours(node: Netns) -> list[str]:
    return [line for line in _links(node).splitlines() if "alias cnid:" in line]


async def test_domains_pods_and_cleanup(node: Netns) -> None:
    l3 = await dp.ensure_domain(L3, UNDERLAY)
    l2 = await dp.ensure_domain(L2, UNDERLAY)
    assert (l3.vrf, l3.table, l3.bridge, l3.vxlan) == ("vrf-42", 42, "br-4242", "vx-4242")
    assert (l2.vrf, l2.bridge, l2.vxlan) == ("vrf-200", "br-200", "vx-200")
    assert l2.router_mac is not None and l2.router_mac != dp.bridge_mac(200)
    vx = node.ip("-d", "link", "show", "vx-200")
    for part in ("vxlan id 200", "local 192.168.100.1", "dstport 4789", "nolearning",
                 "mtu 1450", "master br-200"):  # fmt: skip
        assert part in vx, (part, vx)
    br = node.ip("-d", "addr", "show", "br-200")
    assert "master vrf-200" in br and "inet 10.1.0.1/16" in br and dp.bridge_mac(200) in br
    assert "vrf table 42" in node.ip("-d", "link", "show", "vrf-42")
    before = links(node)
    assert await dp.ensure_domain(L3, UNDERLAY) == l3
    assert await dp.ensure_domain(L2, UNDERLAY) == l2
    assert links(node) == before  # same devices, same indexes, flags, masters, MTUs

    node.ip("route", "add", "unreachable", "10.9.9.0/24", "table", "42", "proto", "static")
    with (netns("l3a") as l3a, netns("l3b") as l3b,
          netns("l2a") as l2a, netns("l2b") as l2b):  # fmt: skip
        pods = [
            (l3a, "p1", "10.244.0.2", 32, "10.244.0.1", L3),
            (l3b, "p2", "10.244.0.3", 32, "10.244.0.1", L3),
            (l2a, "p3", "10.1.0.2", 16, "10.1.0.1", L2),
            (l2b, "p4", "10.1.0.3", 16, "10.1.0.1", L2),
        ]
        specs = {}
        for ns, cid, addr, plen, gw, dom in pods:
            spec = dp.plan_pod(
                domain=dom, container_id=cid, ifname="eth0", address=addr,
                block_gateway="10.244.0.1", mtu=1400,
            )  # fmt: skip
            assert (spec.prefixlen, spec.gateway) == (plen, gw)
            specs[cid] = spec
            wiring = await dp.wire_pod(dp.checked_netns(ns.fd), spec)
            assert wiring.host_ifname == dp.host_ifname(cid, "eth0") and wiring.mtu == 1400
        assert "10.244.0.2 dev " + dp.host_ifname("p1", "eth0") in node.ip(
            "route", "show", "table", "42", "proto", "149"
        )
        l3a.run("ping", "-c1", "-W3", "10.244.0.3")
        l2a.run("ping", "-c1", "-W3", "10.1.0.3")
        node.run("ip", "vrf", "exec", "vrf-42", "ping", "-c1", "-W3", "10.244.0.2")
        node.run("ping", "-I", "vrf-200", "-c1", "-W3", "10.1.0.3")
        assert l3a.run("ping", "-c1", "-W1", "10.1.0.2", check=False).returncode != 0
        links_found = {(p.container_id, p.master) for p in await dp.list_pod_links()}
        assert links_found == {("p1", "vrf-42"), ("p2", "vrf-42"), ("p3", "br-200"),
                               ("p4", "br-200")}  # fmt: skip

        for ns, cid, *_ in pods:
            await dp.check_pod(dp.checked_netns(ns.fd), specs[cid])
        l3b.ip("addr", "del", "10.244.0.3/32", "dev", "eth0")
        with pytest.raises(dp.CheckFailed, match=r"10\.244\.0\.3"):
            await dp.check_pod(dp.checked_netns(l3b.fd), specs["p2"])

        for _, cid, addr, _, _, dom in pods:
            await dp.unwire_pod(container_id=cid, ifname="eth0", address=addr, domain=dom)
            await dp.unwire_pod(container_id=cid, ifname="eth0", address=addr, domain=dom)
        assert await dp.list_pod_links() == []
        assert "eth0" not in l3a.ip("link")
        routes42 = node.ip("route", "show", "table", "42")
        assert "10.244.0." not in routes42 and "10.9.9.0/24" in routes42

    await dp.remove_domain(L3)
    await dp.remove_domain(L2)
    await dp.remove_domain(L2)
    assert _ours(node) == []
    for table in ("42", "200"):
        assert node.ip("route", "show", "table", table, "proto", "149").strip() == ""
        assert node.ip("-6", "route", "show", "table", table, "proto", "149").strip() == ""
    assert "10.9.9.0/24" in node.ip("route", "show", "table", "42")


async def test_foreign_same_name_link_is_refused_untouched(node: Netns) -> None:
    node.ip("link", "add", "vrf-42", "type", "vrf", "table", "42")
    with pytest.raises(KernelError) as exc:
        await dp.ensure_domain(L3, UNDERLAY)
    assert exc.value.errno == errno.EEXIST
    shown = node.ip("-d", "link", "show", "vrf-42")
    assert "alias" not in shown and "state DOWN" in shown
    await dp.remove_domain(L3)
    assert "vrf-42" in node.ip("link", "show", "vrf-42")
    assert "br-4242" not in node.ip("link")
