"""plan_pod: every decision about a pod interface, made once (pure)."""

from __future__ import annotations

from cnid.core import Domain, VniAttachment
from cnid.dataplane import PodSpec, host_ifname, plan_pod, pod_mac, vrf_name, vrf_number

L3 = Domain(
    name="tenant-a",
    vrf=42,
    table=1042,
    prefix="10.244.0.0",
    prefixlen=16,
    ipblocklen=26,
    attachments=(VniAttachment(type="l3vni", vni=5042),),
)
L2 = Domain(
    name="tenant-b",
    vrf=200,
    table=1200,
    prefix="10.1.0.0",
    prefixlen=16,
    ipblocklen=24,
    # an l3vni too: pods still go to the l2vni's bridge
    attachments=(VniAttachment(type="l3vni", vni=5200), VniAttachment(type="l2vni", vni=7200)),
)
L3V6 = Domain(
    name="tenant-c",
    vrf=70000,
    table=70000,
    prefix="fd00:44::",
    prefixlen=64,
    ipblocklen=112,
    attachments=(VniAttachment(type="l3vni", vni=70000),),
)


def test_a_routed_pod_gets_a_host_address_behind_its_blocks_gateway() -> None:
    spec = plan_pod(
        domain=L3,
        container_id="c1",
        ifname="eth0",
        address="10.244.0.7",
        block_gateway="10.244.0.1",
        mtu=1450,
    )
    assert spec == PodSpec(
        container_id="c1",
        ifname="eth0",
        host_ifname=host_ifname("c1", "eth0"),
        alias="cnid:pod:c1:eth0",
        address="10.244.0.7",
        prefixlen=32,
        gateway="10.244.0.1",
        mtu=1450,
        mac="0a:58:0a:f4:00:07",
        routed=True,
        master="vrf-42",
        table=1042,
        group=0x0C1D0000 | 42,
    )
    assert spec.host_prefixlen == 32


def test_an_l2_pod_gets_the_domain_prefix_behind_the_anycast_gateway() -> None:
    spec = plan_pod(
        domain=L2,
        container_id="c2",
        ifname="net1",
        address="10.1.3.9",
        block_gateway="10.1.3.1",  # the block's: not the pod's gateway on an l2vni
        mtu=1400,
    )
    assert (spec.prefixlen, spec.gateway) == (16, "10.1.0.1")
    assert not spec.routed
    assert spec.master == "br-7200"
    assert (spec.table, spec.group) == (1200, 0x0C1D0000 | 200)
    assert spec.host_ifname == host_ifname("c2", "net1") and spec.mac == pod_mac("10.1.3.9")


def test_an_ipv6_pod_has_128_bit_host_routes_and_the_kernels_mac() -> None:
    spec = plan_pod(
        domain=L3V6,
        container_id="c3",
        ifname="eth0",
        address="fd00:44::5",
        block_gateway="fd00:44::1",
        mtu=1450,
    )
    assert (spec.prefixlen, spec.host_prefixlen, spec.gateway) == (128, 128, "fd00:44::1")
    assert spec.mac is None
    # a VRF id beyond 16 bits has no interface group of its own
    assert spec.group == 0 and spec.master == "vrf-70000"


def test_vrf_device_names_are_spelled_once_and_read_back() -> None:
    assert vrf_name(42) == "vrf-42"
    assert vrf_number(vrf_name(70000)) == 70000
    for other in ("vrf-", "vrf-x1", "br-42", "42", "xvrf-42"):
        assert vrf_number(other) is None, other
