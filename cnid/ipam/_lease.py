"""What the pool hands out: Owner, Lease, BlockUsage."""

from __future__ import annotations

import ipaddress

import msgspec

from ._block import IPAddress, IPNetwork


class Owner(msgspec.Struct, frozen=True):
    """Who holds an address. ``(container_id, ifname)`` is the key within a
    VRF; the pod fields are informational (``kubectl get ipblocks -o yaml``,
    cnictl)."""

    container_id: str
    ifname: str
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""


class Lease(msgspec.Struct, frozen=True):
    """One pod address, recorded in the store."""

    address: str
    block: str
    block_name: str
    gateway: str
    vrf: int
    owner: Owner

    @property
    def ip(self) -> IPAddress:
        return ipaddress.ip_address(self.address)

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(self.block)


class BlockUsage(msgspec.Struct, frozen=True):
    """One line of ``kubectl get ipblocks``: ALLOCATED counts the gateway."""

    name: str
    cidr: str
    node: str
    vrf: int
    allocated: int
    capacity: int
