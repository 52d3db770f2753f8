"""A pod interface's spec: every decision about it, made once.

``plan_pod`` is pure: from the domain, the attachment's ids, its address and
the node's MTU it decides the prefix length and gateway the pod gets, the
names and tags of its devices, the device its host end is enslaved to, the
routing table and the interface group. The CNI verbs plan, record what was
planned, and hand the one value to ``wire_pod`` and ``check_pod``, which only
carry it out.
"""

from __future__ import annotations

import ipaddress

import msgspec

from ..core._domains import Domain
from ._hostplan import host_group
from ._names import bridge_name, host_ifname, pod_alias, pod_mac, vrf_name


class PodSpec(msgspec.Struct, frozen=True):
    """What the kernel is told about one pod interface (``plan_pod``)."""

    container_id: str
    ifname: str
    """The interface's name inside the pod."""
    host_ifname: str
    """The node-side veth (``host_ifname``)."""
    alias: str
    """The host veth's tag (``pod_alias``): what makes it ours."""
    address: str
    prefixlen: int
    gateway: str
    mtu: int
    mac: str | None
    """The pod end's MAC (``pod_mac``); None: the kernel's."""
    routed: bool
    """l3vni: the host end is in the VRF, holds the gateway and a host route
    to the pod. l2vni: the host end is a port of the domain's bridge, which
    holds the anycast gateway."""
    master: str
    """The device the host end is enslaved to: the VRF (routed) or the bridge."""
    table: int
    """The domain's routing table (the host route of a routed pod)."""
    group: int
    """The interface group of the host end (host integration's nftables)."""

    @property
    def host_prefixlen(self) -> int:
        """32 or 128: the length of a host route in the pod's family."""
        return ipaddress.ip_address(self.address).max_prefixlen


def plan_pod(
    *,
    domain: Domain,
    container_id: str,
    ifname: str,
    address: str,
    block_gateway: str,
    mtu: int,
) -> PodSpec:
    """The spec of a pod interface with ``address`` in ``domain``.

    ``block_gateway`` is the node's gateway of the address's block (the
    lease's): a routed (l3vni) pod gets its host address behind it; an l2vni
    pod gets the domain's prefix behind the domain's anycast gateway."""
    att = domain.pod_attachment
    routed = att.type == "l3vni"
    host_len = ipaddress.ip_address(address).max_prefixlen
    return PodSpec(
        container_id=container_id,
        ifname=ifname,
        host_ifname=host_ifname(container_id, ifname),
        alias=pod_alias(container_id, ifname),
        address=address,
        prefixlen=host_len if routed else domain.prefixlen,
        gateway=block_gateway if routed else str(domain.anycast_gateway),
        mtu=mtu,
        mac=pod_mac(address),
        routed=routed,
        master=vrf_name(domain.vrf) if routed else bridge_name(att.vni),
        table=domain.table,
        group=host_group(domain.vrf),
    )
