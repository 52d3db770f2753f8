"""The node's underlay: the interface of the default route and its address."""

from __future__ import annotations

import errno
import ipaddress
import socket

import msgspec

from ..core._errors import KernelError
from . import _netlink as nl
from ._netns import netlink_socket
from ._run import in_thread


class Underlay(msgspec.Struct, frozen=True):
    ifname: str
    mtu: int
    address: str


def _primary_address(addrs: list[nl.Addr], index: int) -> str | None:
    for family in (socket.AF_INET, socket.AF_INET6):
        for a in addrs:
            if a.index != index or a.family != family or a.flags & nl.IFA_F_SECONDARY:
                continue
            ip = a.local or a.address
            if ip is None or ipaddress.ip_address(ip).is_link_local:
                continue
            return ip
    return None


def _discover(host_if: str, ipaddr: str) -> Underlay:
    with nl.Netlink(netlink_socket(None)) as sock:
        links = {link.index: link for link in sock.links()}
        addrs = sock.addrs()
        link: nl.Link | None = None
        if host_if:
            link = next((x for x in links.values() if x.name == host_if), None)
            if link is None:
                raise KernelError(f"underlay interface {host_if} not found", errno=errno.ENODEV)
        elif ipaddr:
            want = ipaddress.ip_address(ipaddr)
            for a in addrs:
                ip = a.local or a.address
                if ip is not None and ipaddress.ip_address(ip) == want:
                    link = links.get(a.index)
                    break
            if link is None:
                raise KernelError(f"no interface holds {ipaddr}", errno=errno.EADDRNOTAVAIL)
        else:
            for family in (socket.AF_INET, socket.AF_INET6):
                for r in sock.routes(family, nl.RT_TABLE_MAIN):
                    if r.dst_len == 0 and r.type == nl.RTN_UNICAST and r.oif in links:
                        link = links[r.oif]
                        break
                if link is not None:
                    break
            if link is None:
                raise KernelError(
                    "no default route: cannot find the underlay", errno=errno.ENETUNREACH
                )
        address = ipaddr or _primary_address(addrs, link.index)
        if not address:
            raise KernelError(f"underlay {link.name} has no address", errno=errno.EADDRNOTAVAIL)
        return Underlay(ifname=link.name, mtu=link.mtu or 1500, address=address)


async def discover_underlay(host_if: str = "", ipaddr: str = "") -> Underlay:
    """Explicit values win; else the interface of the default route and its
    primary address. KernelError when there is none."""
    return await in_thread(lambda: _discover(host_if, ipaddr))
