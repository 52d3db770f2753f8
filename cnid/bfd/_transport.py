"""BFD over UDP/IPv4 under trio: single hop (RFC 5881: port 3784, TTL 255
sent and required) and multihop (RFC 5883: port 4784, TTL 255 sent, a
configurable minimum on receipt). One listening socket per (kind, VRF),
reading each datagram's TTL (IP_RECVTTL) and destination address
(IP_PKTINFO); one sending socket per session, from a source port of its own
in 49152-65535 (RFC 5881 4)."""

from __future__ import annotations

import errno
import ipaddress
import random
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import cast

import msgspec
import trio

from ._packet import BfdError

__all__ = [
    "MULTIHOP_PORT",
    "SINGLE_HOP_PORT",
    "Datagram",
    "SocketFactory",
    "bind_sender",
    "open_listener",
    "receive",
]

SINGLE_HOP_PORT = 3784
MULTIHOP_PORT = 4784
SOURCE_PORTS = (49152, 65535)
TTL = 255

# linux/in.h, asm-generic/socket.h (Python 3.11's socket lacks some)
_IP_TTL = 2
_IP_PKTINFO = 8
_IP_RECVTTL = 12
_SO_BINDTODEVICE = 25
_PKTINFO = struct.Struct("=I4s4s")
_ANCBUF = socket.CMSG_SPACE(_PKTINFO.size) + socket.CMSG_SPACE(4)
_MAX_DATAGRAM = 512


class Datagram(msgspec.Struct, frozen=True):
    """A received datagram and what the kernel said about it."""

    data: bytes
    source: str
    source_port: int
    destination: str | None
    ttl: int | None
    ifindex: int | None


#: Makes the UDP sockets: the process's namespace by default; a test bed
#: running the daemon's services for a node namespace opens them there.
SocketFactory = Callable[[], Awaitable[trio.socket.SocketType]]


async def udp_socket() -> trio.socket.SocketType:
    return trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def _bind_device(sock: trio.socket.SocketType, vrf: str | None) -> None:
    if vrf:
        sock.setsockopt(socket.SOL_SOCKET, _SO_BINDTODEVICE, vrf.encode())


async def open_listener(
    port: int, vrf: str | None = None, new: SocketFactory = udp_socket
) -> trio.socket.SocketType:
    sock = await new()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
        _bind_device(sock, vrf)
        await sock.bind(("0.0.0.0", port))
    except OSError as exc:
        sock.close()
        raise BfdError(f"BFD: cannot listen on UDP {port} (vrf {vrf}): {exc}") from exc
    return sock


async def receive(sock: trio.socket.SocketType) -> Datagram:
    data, ancdata, _flags, address = await sock.recvmsg(_MAX_DATAGRAM, _ANCBUF)
    source = cast(tuple[str, int], address)
    ttl: int | None = None
    destination: str | None = None
    ifindex: int | None = None
    for level, kind, value in ancdata:
        if level != socket.IPPROTO_IP:
            continue
        if kind == _IP_TTL and len(value) >= 4:
            ttl = int.from_bytes(value[:4], sys.byteorder)
        elif kind == _IP_PKTINFO and len(value) >= _PKTINFO.size:
            ifindex, _spec, addr = _PKTINFO.unpack_from(value)
            destination = str(ipaddress.IPv4Address(addr))
    return Datagram(data, source[0], source[1], destination, ttl, ifindex)


async def bind_sender(
    local: str | None, vrf: str | None, rng: random.Random, new: SocketFactory = udp_socket
) -> trio.socket.SocketType:
    """A session's socket: TTL 255, from a free source port of 49152-65535."""
    sock = await new()
    try:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, TTL)
        _bind_device(sock, vrf)
        for _ in range(64):
            port = rng.randint(*SOURCE_PORTS)
            try:
                await sock.bind((local or "0.0.0.0", port))
                return sock
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise OSError(errno.EADDRINUSE, "no free source port in 49152-65535")
    except OSError as exc:
        sock.close()
        raise BfdError(f"BFD: cannot bind a session socket to {local} (vrf {vrf}): {exc}") from exc
