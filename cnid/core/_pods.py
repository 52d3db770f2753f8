"""A pod's records shared by every layer: the (container, interface) pair CNI
adds and deletes, the result it was given (kept in the journal), and who
holds an address of a block (IPAM's records, stored in IPBlock objects)."""

from __future__ import annotations

from typing import Literal

import msgspec


class Attachment(msgspec.Struct, frozen=True):
    """A (container, interface) pair: the unit CNI adds, checks and deletes."""

    container_id: str
    ifname: str


class ResultInterface(msgspec.Struct, frozen=True):
    name: str
    mac: str
    sandbox: str = ""
    mtu: int = 0


class ResultIP(msgspec.Struct, frozen=True):
    address: str  # CIDR form: "10.244.0.2/32"
    gateway: str
    interface: int


class ResultRoute(msgspec.Struct, frozen=True):
    dst: str
    gw: str = ""


class PodResult(msgspec.Struct, frozen=True):
    interfaces: tuple[ResultInterface, ...]
    ips: tuple[ResultIP, ...]
    routes: tuple[ResultRoute, ...] = ()


AllocationKind = Literal["gateway", "pod"]


class AllocationRecord(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """One address of a block: its gateway or a pod's interface."""

    kind: AllocationKind
    container_id: str = ""
    ifname: str = ""
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""
