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

The message layout and its encoding are in ``_nlmsg``, the decoding of
answers in ``_nlparse``; both are re-exported here, so users write
``nl.Request``, ``nl.IFLA_MTU``, ``nl.decode_route`` next to ``nl.Netlink``.
"""

from __future__ import annotations

import errno as errno_mod
import itertools
import os
import socket
import struct
from collections.abc import Iterable, Iterator

from ..core._errors import KernelError
from ._nlmsg import *  # noqa: F403 (re-exported: the message layout)
from ._nlmsg import (
    _HDR,
    _MSG_NAMES,
    AF_BRIDGE,
    IFLA_IFNAME,
    NDA_IFINDEX,
    NETLINK_CAP_ACK,
    NETLINK_EXT_ACK,
    NETLINK_GET_STRICT_CHK,
    NLM_F_ACK,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSG_NOOP,
    NLMSGERR_ATTR_MSG,
    RTA_TABLE,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETNEIGH,
    RTM_GETROUTE,
    SO_RCVBUFFORCE,
    SO_SNDBUFFORCE,
    SOL_NETLINK,
    Request,
    _align,
    ifaddr,
    ifinfo,
    ndmsg,
    nla_str,
    nla_u32,
    rtmsg,
)
from ._nlparse import *  # noqa: F403 (re-exported: the decoders)
from ._nlparse import (
    Addr,
    Link,
    Neigh,
    Route,
    attr_str,
    decode_addr,
    decode_link,
    decode_neigh,
    decode_route,
    parse_attrs,
)


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
        parts: list[bytes] = []
        append = parts.append
        first = seq = self._seq
        size = 0
        pack = _HDR.pack
        head = _HDR.size
        for mtype, flags, body, _ in itertools.islice(requests, start, end):
            length = head + len(body)
            padded = (length + 3) & ~3
            size += padded
            if size > max_bytes and seq > first:
                break
            seq += 1
            append(pack(length, mtype, flags | NLM_F_REQUEST, seq, 0))
            append(body if length == padded else body + b"\0" * (padded - length))
        self._seq = seq
        return start + seq - first, b"".join(parts)

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

    def get_many(
        self, requests: list[Request], refused_missing: bool = False
    ) -> list[bytes | None]:
        """Several single-object GETs in one send(); None for each object
        the kernel says does not exist (``refused_missing``: for each GET the
        kernel refuses, whatever the reason). Chunked so that the answers fit
        the receive buffer."""
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
                        missing = (errno_mod.ENODEV, errno_mod.ENOENT, errno_mod.ESRCH)
                        if error.errno not in missing and not refused_missing:
                            raise error
                        continue
                    out[start + index] = body
        return out

    def neighbours_get(self, requests: list[Request]) -> list[Neigh | None]:
        """Neighbour or FDB entries looked up one by one (RTM_GETNEIGH, in
        one send()): None for each the kernel does not hold, or refuses to
        look up (an FDB GET of a port without a bridge)."""
        bodies = self.get_many(requests, refused_missing=True)
        return [None if body is None else decode_neigh(body) for body in bodies]

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
