"""A small synchronous rtnetlink client: struct-level encoding, batched requests.

Why not pyroute2's ``IPRoute``: each call there costs about 0.5 ms (an
internal asyncio loop per request), and its message classes take about
0.13 ms to encode one message. Here one message is encoded in a few
microseconds and a whole step of a pod ADD (address, link up, routes) goes to
the kernel in one ``send`` (docs/dataplane.md has the numbers).

A ``Netlink`` object is a plain socket plus a sequence counter: it is NOT
thread-safe and is never shared. Each dataplane operation opens its own
sockets (about 10 us each) in the worker thread that runs it and closes them
when it is done.
"""

from __future__ import annotations

import errno as errno_mod
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from .._errors import KernelError

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


def alias_req(name: str, alias: str) -> Request:
    """Set the alias of the link ``name``. The kernel ignores IFLA_IFALIAS
    when it creates a link, so it is set by this message, sent in the same
    batch right after the creation."""
    body = ifinfo() + nla_str(IFLA_IFNAME, name) + nla_str(IFLA_IFALIAS, alias)
    return Request(RTM_NEWLINK, 0, body, f"alias of {name}")


# ---------------------------------------------------------------- decoding


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


# ---------------------------------------------------------------- socket


class NetlinkFailure(KernelError):
    """One request of a batch was refused by the kernel."""


class Netlink:
    """A NETLINK_ROUTE socket in the network namespace of the thread that
    created it (or of the given socket). Not thread-safe; never share."""

    def __init__(
        self, sock: socket.socket | None = None, *, strict: bool = False, bufsize: int = 0
    ) -> None:
        """``strict``: NETLINK_GET_STRICT_CHK, so that dumps are filtered in
        the kernel (a route dump by table and protocol, a neighbour dump by
        device, an FDB dump by bridge port) instead of returning everything.
        ``bufsize``: socket buffers for big batches (see ``batch_errors``)."""
        if sock is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self._sock = sock
        try:
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            if strict:
                sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
            if bufsize:
                self._set_buffers(bufsize)
            sock.bind((0, 0))
        except OSError:
            sock.close()
            raise
        self._seq = 0
        self.strict = strict
        self.sndbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)

    def _set_buffers(self, size: int) -> None:
        """SO_*BUFFORCE (CAP_NET_ADMIN) goes past net.core.[rw]mem_max;
        without the capability the plain options give what the limits allow."""
        for force, plain in (
            (SO_SNDBUFFORCE, socket.SO_SNDBUF),
            (SO_RCVBUFFORCE, socket.SO_RCVBUF),
        ):
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, force, size)
            except PermissionError:
                self._sock.setsockopt(socket.SOL_SOCKET, plain, size)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _frames(self, recv_flags: int = 0) -> Iterator[tuple[int, int, int, bytes]]:
        data = self._sock.recv(1 << 18, recv_flags)
        offset = 0
        while offset + _HDR.size <= len(data):
            length, mtype, flags, seq, _pid = _HDR.unpack_from(data, offset)
            if length < _HDR.size:
                return
            yield mtype, flags, seq, data[offset + _HDR.size : offset + length]
            offset += _align(length)

    def _send(self, requests: Iterable[Request], extra_flags: int) -> dict[int, Request]:
        """One send() of the requests, each with its own sequence number;
        the sequence numbers -> requests (``batch`` waits for one ACK each)."""
        sent: dict[int, Request] = {}
        chunks = []
        for req in requests:
            self._seq += 1
            sent[self._seq] = req
            size = _HDR.size + len(req.body)
            chunks.append(
                _HDR.pack(size, req.type, req.flags | NLM_F_REQUEST | extra_flags, self._seq, 0)
            )
            chunks.append(req.body + b"\0" * (_align(size) - size))
        self._sock.send(b"".join(chunks))
        return sent

    @staticmethod
    def _error(req: Request, body: bytes, flags: int) -> NetlinkFailure | None:
        (code,) = struct.unpack_from("=i", body)
        if code == 0:
            return None
        err = -code
        detail = ""
        if flags & NLM_F_ACK_TLVS:
            skip = 4 + (_HDR.size if flags & NLM_F_CAPPED else struct.unpack_from("=I", body, 4)[0])
            detail = attr_str(parse_attrs(body, _align(skip)), NLMSGERR_ATTR_MSG) or ""
        msg = f"{_MSG_NAMES.get(req.type, req.type)} {req.what}: {os.strerror(err)}"
        if detail:
            msg += f" ({detail})"
        return NetlinkFailure(msg, errno=err)

    def batch(self, requests: list[Request], ignore: tuple[int, ...] = ()) -> list[int]:
        """Send all requests at once, each with an ACK; wait for every ACK.

        Returns the errno of each request (0 = done). The first error not in
        ``ignore`` is raised after all ACKs are read (the kernel carries on
        with the following requests of the batch either way).
        """
        if not requests:
            return []
        sent = self._send(requests, NLM_F_ACK)
        first = min(sent)
        results = [-1] * len(sent)
        failure: NetlinkFailure | None = None
        pending = len(sent)
        while pending:
            for mtype, flags, seq, body in self._frames():
                if mtype != NLMSG_ERROR or seq not in sent:
                    continue
                error = self._error(sent[seq], body, flags)
                results[seq - first] = 0 if error is None else error.errno
                if error is not None and error.errno not in ignore and failure is None:
                    failure = error
                pending -= 1
        if failure is not None:
            raise failure
        return results

    def get(self, req: Request) -> bytes | None:
        """A single-object GET; None when the kernel says it does not exist."""
        (seq,) = self._send([req], 0)
        while True:
            for mtype, flags, rseq, body in self._frames():
                if rseq != seq:
                    continue
                if mtype == NLMSG_ERROR:
                    error = self._error(req, body, flags)
                    if error is None:
                        continue
                    if error.errno in (errno_mod.ENODEV, errno_mod.ENOENT, errno_mod.ESRCH):
                        return None
                    raise error
                return body

    def dump(self, req: Request, missing_ok: bool = False) -> list[bytes]:
        """All objects of a dump. ``missing_ok``: ENOENT/ENODEV (a strict
        route dump of a table that does not exist) is an empty answer."""
        (seq,) = self._send([req], NLM_F_DUMP)
        out: list[bytes] = []
        while True:
            for mtype, flags, rseq, body in self._frames():
                if rseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    # a dump that fails half-way reports the error in DONE's payload
                    if len(body) >= 4 and struct.unpack_from("=i", body)[0] < 0:
                        error = self._error(req, body[:4], 0)
                        if error is not None and not (
                            missing_ok and error.errno in (errno_mod.ENOENT, errno_mod.ENODEV)
                        ):
                            raise error
                    return out
                if mtype == NLMSG_ERROR:
                    error = self._error(req, body, flags)
                    if error is not None and not (
                        missing_ok and error.errno in (errno_mod.ENOENT, errno_mod.ENODEV)
                    ):
                        raise error
                    return out
                out.append(body)

    # ------------------------------------------------------------ bulk

    ERROR_ACK_TRUESIZE = 1280
    """What one error ACK (with its extended-ACK message) costs in the
    receive buffer's accounting (skb truesize, not the size of the
    payload): 832 bytes measured on 6.18 for a 68-byte error, rounded up
    for longer extended-ACK messages."""

    def _encode_chunk(self, requests: list[Request], start: int) -> tuple[int, bytes]:
        """Encode requests from ``start`` (no NLM_F_ACK) while they fit one
        send(): the bytes under SO_SNDBUF (the kernel refuses a bigger
        message with EMSGSIZE), and so few messages that even if each of them
        fails, all the error ACKs fit in SO_RCVBUF (an ACK that does not fit
        is dropped). Returns the end of the chunk and its bytes; the
        sequence numbers are ``self._seq`` + 1 onwards."""
        max_bytes = max(self.sndbuf - 4096, 16384)
        end = min(len(requests), start + max(self.rcvbuf // self.ERROR_ACK_TRUESIZE - 16, 8))
        parts = []
        seq = self._seq
        size = 0
        pack = _HDR.pack
        i = start
        while i < end:
            req = requests[i]
            length = _HDR.size + len(req.body)
            padded = (length + 3) & ~3
            if size + padded > max_bytes and i > start:
                break
            seq += 1
            parts.append(pack(length, req.type, req.flags | NLM_F_REQUEST, seq, 0))
            parts.append(req.body if length == padded else req.body + b"\0" * (padded - length))
            size += padded
            i += 1
        self._seq = seq
        return i, b"".join(parts)

    def batch_errors(self, requests: list[Request]) -> list[NetlinkFailure | None]:
        """Send many requests in as few send() calls as fit, and return the
        outcome of each (None = done); never raises for a refused request.

        The requests go without NLM_F_ACK: the kernel only answers the ones
        it refuses. Each chunk ends with an NLMSG_NOOP that asks for an ACK;
        the kernel handles a chunk's messages in order inside send(), so
        when that ACK is read every error of the chunk has been read too.
        10,000 routes cost one recv(), not 10,000. If the receive buffer
        overflowed anyway (ENOBUFS: errors were lost), the requests of the
        chunk without a known error are reported as of unknown outcome."""
        results: list[NetlinkFailure | None] = [None] * len(requests)
        start = 0
        while start < len(requests):
            first = self._seq + 1
            end, data = self._encode_chunk(requests, start)
            chunk = requests[start:end]
            errors, unknown = self._chunk_errors(chunk, first, data)
            for index, error in errors.items():
                results[start + index] = error
            for index in unknown:
                req = chunk[index]
                results[start + index] = NetlinkFailure(
                    f"{_MSG_NAMES.get(req.type, req.type)} {req.what}: outcome unknown"
                    " (receive buffer overrun)",
                    errno=errno_mod.ENOBUFS,
                )
            start = end
        return results

    def _chunk_errors(
        self, chunk: list[Request], first: int, data: bytes
    ) -> tuple[dict[int, NetlinkFailure], list[int]]:
        """Send one encoded chunk and a NOOP, read up to the NOOP's ACK.
        Returns index in the chunk -> error for the refused requests, and
        after an overrun the indexes whose answer may have been dropped."""
        errors: dict[int, NetlinkFailure] = {}
        answered: set[int] = set()
        waiting, noop = self._sync()
        self._sock.send(data + noop)
        overrun = False

        def read(frames: list[tuple[int, int, int, bytes]], sync: int) -> bool:
            done = False
            for mtype, flags, seq, body in frames:
                if mtype != NLMSG_ERROR:
                    continue
                if seq == sync:
                    done = True
                    continue
                index = seq - first
                if 0 <= index < len(chunk):
                    answered.add(index)
                    error = self._error(chunk[index], body, flags)
                    if error is not None:
                        errors[index] = error
            return done

        while True:
            try:
                frames = list(self._frames())
            except OSError as exc:
                if exc.errno != errno_mod.ENOBUFS:
                    raise
                # Some answers were dropped, the NOOP's ACK maybe too. Read
                # what is queued first (a NOOP sent into a full queue would
                # lose its ACK as well), then sync again.
                overrun = True
                while True:
                    try:
                        read(list(self._frames(socket.MSG_DONTWAIT)), -1)
                    except BlockingIOError:
                        break
                waiting, noop = self._sync()
                self._sock.send(noop)
                continue
            if read(frames, waiting):
                break
        unknown = [i for i in range(len(chunk)) if i not in answered] if overrun else []
        return errors, unknown

    def _send_raw(self, requests: list[Request]) -> bytes:
        """The requests encoded as they are (no ACK asked), numbered from
        ``self._seq`` + 1."""
        parts = []
        for req in requests:
            self._seq += 1
            size = _HDR.size + len(req.body)
            parts.append(_HDR.pack(size, req.type, req.flags | NLM_F_REQUEST, self._seq, 0))
            parts.append(req.body + b"\0" * (_align(size) - size))
        return b"".join(parts)

    def _sync(self) -> tuple[int, bytes]:
        self._seq += 1
        return self._seq, _HDR.pack(_HDR.size, NLMSG_NOOP, NLM_F_REQUEST | NLM_F_ACK, self._seq, 0)

    def get_many(self, requests: list[Request]) -> list[bytes | None]:
        """Several single-object GETs in one send(); None for each object
        the kernel says does not exist. Chunked so that the answers fit the
        receive buffer."""
        out: list[bytes | None] = [None] * len(requests)
        per_chunk = max(self.rcvbuf // 8192, 4)
        for start in range(0, len(requests), per_chunk):
            chunk = requests[start : start + per_chunk]
            first = self._seq + 1
            self._sock.send(self._send_raw(chunk))
            pending = len(chunk)
            while pending:
                for mtype, flags, seq, body in self._frames():
                    index = seq - first
                    if not 0 <= index < len(chunk):
                        continue
                    pending -= 1
                    if mtype == NLMSG_ERROR:
                        error = self._error(chunk[index], body, flags)
                        if error is None:
                            pending += 1  # an ACK, the answer is still to come
                            continue
                        if error.errno not in (errno_mod.ENODEV, errno_mod.ENOENT, errno_mod.ESRCH):
                            raise error
                        continue
                    out[start + index] = body
        return out

    # ------------------------------------------------------------ helpers

    def link_by_name(self, name: str) -> Link | None:
        body = self.get(Request(RTM_GETLINK, 0, ifinfo() + nla_str(IFLA_IFNAME, name), name))
        return None if body is None else decode_link(body)

    def link_by_index(self, index: int) -> Link | None:
        body = self.get(Request(RTM_GETLINK, 0, ifinfo(index), f"index {index}"))
        return None if body is None else decode_link(body)

    def links(self) -> list[Link]:
        return [decode_link(b) for b in self.dump(Request(RTM_GETLINK, 0, ifinfo(), "dump"))]

    def addrs(self, family: int = 0) -> list[Addr]:
        req = Request(RTM_GETADDR, 0, ifaddr(family, 0, 0), "dump")
        return [decode_addr(b) for b in self.dump(req)]

    def routes(self, family: int, table: int, proto: int = 0) -> list[Route]:
        """The routes of ``table`` (and of ``proto`` when not 0). On a strict
        socket the kernel filters; otherwise it sends every table and the
        filter is here."""
        if self.strict:
            body = rtmsg(family, table=0, proto=proto, rtype=0) + nla_u32(RTA_TABLE, table)
            req = Request(RTM_GETROUTE, 0, body, f"dump table {table}")
            raw = self.dump(req, missing_ok=True)
        else:
            body = rtmsg(family, table=0) + nla_u32(RTA_TABLE, table)
            raw = self.dump(Request(RTM_GETROUTE, 0, body, "dump"))
        routes = [decode_route(b) for b in raw]
        return [r for r in routes if r.table == table and (not proto or r.proto == proto)]

    def neighbours(self, family: int, index: int = 0) -> list[Neigh]:
        """Neighbour entries (AF_INET, AF_INET6) of one device (index) or all.
        A strict socket filters in the kernel (NDA_IFINDEX)."""
        body = ndmsg(family)
        if index and self.strict:
            body += nla_u32(NDA_IFINDEX, index)
        found = [decode_neigh(b) for b in self.dump(Request(RTM_GETNEIGH, 0, body, "dump"))]
        return [n for n in found if not index or n.ifindex == index]

    def fdb(self, port: int = 0) -> list[Neigh]:
        """AF_BRIDGE FDB entries: with ``port`` (strict socket) only those of
        that bridge port, the bridge's entries on it and the device's own
        (the VXLAN driver's table)."""
        body = ndmsg(AF_BRIDGE, port if self.strict else 0)
        found = [decode_neigh(b) for b in self.dump(Request(RTM_GETNEIGH, 0, body, "dump fdb"))]
        return [n for n in found if not port or n.ifindex == port]
