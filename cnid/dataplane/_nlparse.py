"""rtnetlink messages decoded: attributes, and the links, addresses,
routes (RTA_VIA, RTA_MULTIPATH) and neighbour and FDB entries of dumps. Pure."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

from ._nlmsg import (
    _IFADDR,
    _IFINFO,
    _NDMSG,
    _NLA,
    _RTMSG,
    _RTNH,
    _U32,
    AF_BRIDGE,
    IFA_ADDRESS,
    IFA_LOCAL,
    IFF_UP,
    IFLA_ADDRESS,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MASTER,
    IFLA_MTU,
    NDA_DST,
    NDA_LLADDR,
    NDA_MASTER,
    NDA_PROTOCOL,
    RTA_DST,
    RTA_GATEWAY,
    RTA_MULTIPATH,
    RTA_OIF,
    RTA_PRIORITY,
    RTA_TABLE,
    RTA_VIA,
    _align,
)


def parse_attrs(data: bytes | memoryview, offset: int = 0) -> dict[int, bytes]:
    """Attributes from ``offset`` to the end; nested flags are masked off;
    on duplicates the last one wins. (Hot in big dumps: slices of bytes,
    no memoryview, locals only.)"""
    if not isinstance(data, bytes):
        data = bytes(data)
    out: dict[int, bytes] = {}
    end = len(data) - 4
    unpack = _NLA.unpack_from
    while offset <= end:
        size, kind = unpack(data, offset)
        if size < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4 : offset + size]
        offset += (size + 3) & ~3
    return out


def attr_str(attrs: dict[int, bytes], kind: int) -> str | None:
    raw = attrs.get(kind)
    return None if raw is None else raw.split(b"\0", 1)[0].decode(errors="replace")


def attr_u32(attrs: dict[int, bytes], kind: int) -> int | None:
    raw = attrs.get(kind)
    return None if raw is None or len(raw) < 4 else int(struct.unpack_from("=I", raw)[0])


@dataclass(frozen=True, slots=True)
class Link:
    index: int
    flags: int
    name: str
    alias: str | None
    master: int | None
    mtu: int | None
    mac: str | None
    kind: str | None
    attrs: dict[int, bytes] = field(repr=False)

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)


@dataclass(frozen=True, slots=True)
class Addr:
    family: int
    prefixlen: int
    flags: int
    index: int
    address: str | None
    local: str | None


class Nexthop(NamedTuple):
    """One path of a multipath route; ``gateway`` from RTA_GATEWAY or RTA_VIA."""

    ifindex: int
    flags: int
    gateway: str | None


class Route(NamedTuple):
    """A route as dumped. (Named tuples, like Neigh: a dump of 10,000
    routes builds 10,000 of them, and a frozen dataclass costs twice as
    much to build.)"""

    family: int
    dst_len: int
    table: int
    proto: int
    scope: int
    type: int
    dst: str | None
    gateway: str | None
    """RTA_GATEWAY, or RTA_VIA (then of the other family: "via inet6")."""
    oif: int | None
    flags: int = 0
    priority: int | None = None
    nexthops: tuple[Nexthop, ...] = ()
    """The paths of RTA_MULTIPATH (empty for a single-path route)."""


class Neigh(NamedTuple):
    """A neighbour entry (AF_INET/AF_INET6) or an FDB entry (AF_BRIDGE).

    For FDB entries ``dst`` is the VXLAN remote (NDA_DST) and ``master`` is
    set on the bridge's own entries (NDA_MASTER); the VXLAN driver's entries
    carry NTF_SELF and no master."""

    family: int
    ifindex: int
    state: int
    flags: int
    dst: str | None
    lladdr: str | None
    master: int | None
    protocol: int | None


def _ip(family: int, raw: bytes | None) -> str | None:
    if raw is None:
        return None
    return socket.inet_ntop(family, raw)


def decode_link(body: bytes) -> Link:
    _family, _type, index, flags, _change = _IFINFO.unpack_from(body)
    attrs = parse_attrs(body, _IFINFO.size)
    kind = None
    if IFLA_LINKINFO in attrs:
        kind = attr_str(parse_attrs(attrs[IFLA_LINKINFO]), IFLA_INFO_KIND)
    mac = attrs.get(IFLA_ADDRESS)
    return Link(
        index=index,
        flags=flags,
        name=attr_str(attrs, IFLA_IFNAME) or "",
        alias=attr_str(attrs, IFLA_IFALIAS),
        master=attr_u32(attrs, IFLA_MASTER),
        mtu=attr_u32(attrs, IFLA_MTU),
        mac=":".join(f"{b:02x}" for b in mac) if mac is not None and len(mac) == 6 else None,
        kind=kind,
        attrs=attrs,
    )


def decode_addr(body: bytes) -> Addr:
    family, prefixlen, flags, _scope, index = _IFADDR.unpack_from(body)
    attrs = parse_attrs(body, _IFADDR.size)
    return Addr(
        family=family,
        prefixlen=prefixlen,
        flags=flags,
        index=index,
        address=_ip(family, attrs.get(IFA_ADDRESS)),
        local=_ip(family, attrs.get(IFA_LOCAL)),
    )


def _any_ip(raw: bytes) -> str | None:
    """An address whose family is told by its length (FDB NDA_DST)."""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return None


def _gateway(family: int, attrs: dict[int, bytes]) -> str | None:
    gw = attrs.get(RTA_GATEWAY)
    if gw is not None:
        return _ip(family, gw)
    via = attrs.get(RTA_VIA)
    if via is not None and len(via) > 2:
        return _any_ip(via[2:])
    return None


def decode_nexthops(family: int, raw: bytes) -> tuple[Nexthop, ...]:
    """The paths of an RTA_MULTIPATH attribute."""
    out = []
    offset = 0
    while offset + _RTNH.size <= len(raw):
        length, flags, _hops, index = _RTNH.unpack_from(raw, offset)
        if length < _RTNH.size:
            break
        attrs = parse_attrs(raw[offset + _RTNH.size : offset + length])
        out.append(Nexthop(index, flags, _gateway(family, attrs)))
        offset += _align(length)
    return tuple(out)


def _u32(raw: bytes | None) -> int | None:
    return None if raw is None or len(raw) < 4 else int(_U32.unpack_from(raw)[0])


def decode_route(body: bytes) -> Route:
    family, dst_len, _src_len, _tos, table, proto, scope, rtype, flags = _RTMSG.unpack_from(body)
    attrs = parse_attrs(body, _RTMSG.size)
    get = attrs.get
    multipath = get(RTA_MULTIPATH)
    dst = get(RTA_DST)
    gateway = get(RTA_GATEWAY)
    return Route(
        family,
        dst_len,
        _u32(get(RTA_TABLE)) or table,
        proto,
        scope,
        rtype,
        None if dst is None else socket.inet_ntop(family, dst),
        socket.inet_ntop(family, gateway) if gateway is not None else _gateway(family, attrs),
        _u32(get(RTA_OIF)),
        flags,
        _u32(get(RTA_PRIORITY)),
        decode_nexthops(family, multipath) if multipath is not None else (),
    )


def decode_neigh(body: bytes) -> Neigh:
    family, index, state, flags, _type = _NDMSG.unpack_from(body)
    attrs = parse_attrs(body, _NDMSG.size)
    dst = attrs.get(NDA_DST)
    lladdr = attrs.get(NDA_LLADDR)
    proto = attrs.get(NDA_PROTOCOL)
    master = attrs.get(NDA_MASTER)
    if dst is not None:
        if family == AF_BRIDGE:
            family_of_dst = socket.AF_INET if len(dst) == 4 else socket.AF_INET6
        else:
            family_of_dst = family
        try:
            dst_str: str | None = socket.inet_ntop(family_of_dst, dst)
        except ValueError:
            dst_str = None
    else:
        dst_str = None
    return Neigh(
        family,
        index,
        state,
        flags,
        dst_str,
        lladdr.hex(":") if lladdr else None,
        _U32.unpack(master)[0] if master is not None and len(master) == 4 else None,
        proto[0] if proto else None,
    )
