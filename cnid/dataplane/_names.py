"""Names, tags and constants of the kernel objects cnid owns."""

from __future__ import annotations

import hashlib
import ipaddress

ROUTE_PROTO = 149
"""rtm_protocol of the routes cnid adds for its pods and domains ("cnid");
routes of any protocol but this one and ROUTE_PROTO_EVPN are never touched."""

ROUTE_PROTO_EVPN = 150
"""rtm_protocol of the routes cnid learns from EVPN (type-5 prefixes and
remote hosts in a VRF table) and the NDA_PROTOCOL of its EVPN neighbour
entries. Apart from the pod routes (149) so that each owner finds exactly its
own at start-up, and a domain's removal deletes both."""

ROUTE_PROTO_UNDERLAY = 151
"""rtm_protocol of the routes cnid learns from the routed underlay (the
other nodes' VTEPs, main table, IPv4 unicast from the leaves). Its own
number for the same reason as ROUTE_PROTO_EVPN: each owner adopts exactly
its own routes at start-up and never touches another's."""

LINK_ALIAS_PREFIX = "cnid:"
"""IFLA_IFALIAS prefix of every link cnid creates."""

POD_ALIAS_PREFIX = f"{LINK_ALIAS_PREFIX}pod:"

_VRF_PREFIX = "vrf-"


def host_ifname(container_id: str, ifname: str) -> str:
    """The node-side veth name of a pod interface: deterministic, 15 chars."""
    return "cn" + hashlib.sha256(f"{container_id}/{ifname}".encode()).hexdigest()[:13]


def pod_alias(container_id: str, ifname: str) -> str:
    return f"{POD_ALIAS_PREFIX}{container_id}:{ifname}"


def vrf_name(vrf: int) -> str:
    """The VRF device of a domain ("vrf-42"): the one spelling."""
    return f"{_VRF_PREFIX}{vrf}"


def vrf_number(name: str) -> int | None:
    """The VRF id of a device named by vrf_name; None for any other name."""
    number = name.removeprefix(_VRF_PREFIX)
    return int(number) if number != name and number.isdigit() else None


def vrf_alias(domain: str) -> str:
    return f"{LINK_ALIAS_PREFIX}vrf:{domain}"


def bridge_name(vni: int) -> str:
    return f"br-{vni}"


def bridge_alias(vni: int) -> str:
    return f"{LINK_ALIAS_PREFIX}br:{vni}"


def vxlan_name(vni: int) -> str:
    return f"vx-{vni}"


def vxlan_alias(vni: int) -> str:
    return f"{LINK_ALIAS_PREFIX}vx:{vni}"


def pod_mac(address: str) -> str | None:
    """The MAC of a pod's interface, derived from its IPv4 address as
    OVN-Kubernetes does (0a:58 then the four bytes; locally administered
    unicast, distinct from bridge_mac's 02:cd), so that an address given
    again to a new pod comes with the same MAC: the ARP caches of the pods
    that talked to the old one stay right. Without that, a peer across an
    l2vni sent to the old MAC for ~8 s more (until its neighbour entry
    went stale, delayed, probed and failed: the lab's convergence bench).
    An IPv6 address gives None (the kernel's random MAC): 32 bits of it
    are not unique in a domain."""
    try:
        packed = ipaddress.IPv4Address(address).packed
    except ValueError:
        return None
    return "0a:58:" + ":".join(f"{b:02x}" for b in packed)


def bridge_mac(vni: int) -> str:
    """The fixed MAC of an l2vni bridge (the anycast gateway MAC): the same
    on every node. Locally administered unicast, 02:cd:00 then the 24-bit vni."""
    return "02:cd:00:{:02x}:{:02x}:{:02x}".format(*vni.to_bytes(3, "big"))
