"""A VRF table as the operator sees it (``cnictl vrf routes``: what
``show ip route vrf NAME`` showed): every route of the table, ours or not,
with its protocol, next-hops and devices."""

from __future__ import annotations

import socket

import msgspec

from . import _netlink as nl
from ._names import ROUTE_PROTO, ROUTE_PROTO_EVPN
from ._netns import netlink_socket
from ._run import in_thread

RTPROT_KERNEL = 2
RTPROT_BOOT = 3
RTPROT_STATIC = 4

_PROTOCOLS = {
    RTPROT_KERNEL: "kernel",
    RTPROT_BOOT: "boot",
    RTPROT_STATIC: "static",
    ROUTE_PROTO: "cnid",
    ROUTE_PROTO_EVPN: "evpn",
}
_TYPES = {nl.RTN_UNICAST: "unicast", nl.RTN_UNREACHABLE: "unreachable", 2: "local", 3: "broadcast"}


class TableNexthop(msgspec.Struct, frozen=True):
    via: str
    dev: str
    onlink: bool = False


class TableRoute(msgspec.Struct, frozen=True):
    prefix: str
    type: str
    protocol: str
    nexthops: tuple[TableNexthop, ...]
    metric: int = 0


def _routes(table: int) -> list[TableRoute]:
    with nl.Netlink(netlink_socket(None)) as sock:
        names = {link.index: link.name for link in sock.links()}
        found = []
        for family in (socket.AF_INET, socket.AF_INET6):
            for r in sock.routes(family, table):
                dst = r.dst or ("0.0.0.0" if family == socket.AF_INET else "::")
                if r.nexthops:
                    hops = tuple(
                        TableNexthop(
                            h.gateway or "",
                            names.get(h.ifindex, ""),
                            bool(h.flags & nl.RTNH_F_ONLINK),
                        )
                        for h in r.nexthops
                    )
                elif r.gateway or r.oif:
                    hops = (
                        TableNexthop(
                            r.gateway or "",
                            names.get(r.oif or 0, ""),
                            bool(r.flags & nl.RTNH_F_ONLINK),
                        ),
                    )
                else:
                    hops = ()
                found.append(
                    TableRoute(
                        prefix=f"{dst}/{r.dst_len}",
                        type=_TYPES.get(r.type, str(r.type)),
                        protocol=_PROTOCOLS.get(r.proto, str(r.proto)),
                        nexthops=hops,
                        metric=r.priority or 0,
                    )
                )
    return found


async def table_routes(table: int) -> list[TableRoute]:
    return await in_thread(lambda: _routes(table))
