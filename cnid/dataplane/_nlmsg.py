"""rtnetlink messages: the kernel's constants and struct layouts, and the
encoding of requests (attributes, headers, ``Request``). Pure."""

from __future__ import annotations

import struct
from typing import NamedTuple

# netlink header and flags
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_CAPPED = 0x100
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GET_STRICT_CHK = 12
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
NLA_F_NESTED = 0x8000

# rtnetlink message types
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30

# link attributes
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_GROUP = 27
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
IFLA_VRF_TABLE = 1
IFLA_VXLAN_ID = 1
IFLA_VXLAN_GROUP = 2
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_LEARNING = 7
IFLA_VXLAN_PORT = 15
IFLA_VXLAN_GROUP6 = 16
IFLA_VXLAN_LOCAL6 = 17
IFF_UP = 0x1

# address attributes
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_F_SECONDARY = 0x01
IFA_F_NODAD = 0x02

# route attributes and values
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_MULTIPATH = 9
RTA_TABLE = 15
RTA_VIA = 18
RTNH_F_ONLINK = 0x4
RTN_UNICAST = 1
RTN_UNREACHABLE = 7
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_TABLE_MAIN = 254
RT_TABLE_UNSPEC = 0

# neighbour (and bridge FDB) attributes and values
AF_BRIDGE = 7
NDA_DST = 1
NDA_LLADDR = 2
NDA_IFINDEX = 8
NDA_MASTER = 9
NDA_PROTOCOL = 12
NTF_SELF = 0x02
NTF_MASTER = 0x04
NTF_EXT_LEARNED = 0x10
NUD_REACHABLE = 0x02
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80

_HDR = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_RTMSG = struct.Struct("=BBBBBBBBI")
_NDMSG = struct.Struct("=BxxxiHBB")
_RTNH = struct.Struct("=HBBi")
_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_MSG_NAMES = {
    RTM_NEWLINK: "RTM_NEWLINK",
    RTM_DELLINK: "RTM_DELLINK",
    RTM_GETLINK: "RTM_GETLINK",
    RTM_NEWADDR: "RTM_NEWADDR",
    RTM_DELADDR: "RTM_DELADDR",
    RTM_GETADDR: "RTM_GETADDR",
    RTM_NEWROUTE: "RTM_NEWROUTE",
    RTM_DELROUTE: "RTM_DELROUTE",
    RTM_GETROUTE: "RTM_GETROUTE",
    RTM_NEWNEIGH: "RTM_NEWNEIGH",
    RTM_DELNEIGH: "RTM_DELNEIGH",
    RTM_GETNEIGH: "RTM_GETNEIGH",
}


def _align(n: int) -> int:
    return (n + 3) & ~3


# ---------------------------------------------------------------- encoding


def nla(kind: int, payload: bytes) -> bytes:
    size = _NLA.size + len(payload)
    return _NLA.pack(size, kind) + payload + b"\0" * (_align(size) - size)


def nla_nested(kind: int, *children: bytes) -> bytes:
    return nla(kind | NLA_F_NESTED, b"".join(children))


def nla_str(kind: int, value: str) -> bytes:
    return nla(kind, value.encode() + b"\0")


def nla_u32(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack("=I", value))


def nla_u8(kind: int, value: int) -> bytes:
    return nla(kind, bytes((value,)))


def nla_be16(kind: int, value: int) -> bytes:
    return nla(kind, struct.pack(">H", value))


class Request(NamedTuple):
    """One message to send; ``what`` names it in error messages. A named
    tuple: under half a frozen dataclass's construction cost, which shows
    at 20,000 messages a batch."""

    type: int
    flags: int
    body: bytes
    what: str


def ifinfo(index: int = 0, flags: int = 0, change: int = 0, family: int = 0) -> bytes:
    return _IFINFO.pack(family, 0, index, flags, change)


def ifaddr(family: int, prefixlen: int, index: int, flags: int = 0, scope: int = 0) -> bytes:
    return _IFADDR.pack(family, prefixlen, flags, scope, index)


def rtmsg(
    family: int,
    dst_len: int = 0,
    table: int = RT_TABLE_MAIN,
    proto: int = 0,
    scope: int = RT_SCOPE_UNIVERSE,
    rtype: int = RTN_UNICAST,
    flags: int = 0,
) -> bytes:
    return _RTMSG.pack(
        family, dst_len, 0, 0, table if table < 256 else 0, proto, scope, rtype, flags
    )


def ndmsg(family: int, index: int = 0, state: int = 0, flags: int = 0, ntype: int = 0) -> bytes:
    """struct ndmsg: neighbours (AF_INET, AF_INET6) and FDB entries (AF_BRIDGE)."""
    return _NDMSG.pack(family, index, state, flags, ntype)


def nla_via(family: int, raw: bytes) -> bytes:
    """RTA_VIA (struct rtvia): a gateway of another family than the route's,
    e.g. an IPv4 route via an IPv6 next hop (kernel >= 5.2)."""
    return nla(RTA_VIA, struct.pack("=H", family) + raw)


def rtnexthop(index: int, flags: int, attrs: bytes, hops: int = 0) -> bytes:
    """One struct rtnexthop of RTA_MULTIPATH with its attributes (gateway).
    ``hops`` is the weight minus one."""
    return _RTNH.pack(_RTNH.size + len(attrs), flags, hops, index) + attrs


def up_req(
    index: int, name: str, *, mtu: int | None = None, master: int | None = None, group: int = 0
) -> Request:
    """Set the link ``index`` up, with an MTU, a master device and an
    interface group when given."""
    body = ifinfo(index, IFF_UP, IFF_UP)
    if mtu is not None:
        body += nla_u32(IFLA_MTU, mtu)
    if master is not None:
        body += nla_u32(IFLA_MASTER, master)
    if group:
        body += nla_u32(IFLA_GROUP, group)
    return Request(RTM_NEWLINK, 0, body, name)


def alias_req(name: str, alias: str) -> Request:
    """Set the alias of the link ``name``. The kernel ignores IFLA_IFALIAS
    when it creates a link, so it is set by this message, sent in the same
    batch right after the creation."""
    body = ifinfo() + nla_str(IFLA_IFNAME, name) + nla_str(IFLA_IFALIAS, alias)
    return Request(RTM_NEWLINK, 0, body, f"alias of {name}")
