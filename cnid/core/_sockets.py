"""UNIX stream sockets that carry our frames, with file descriptors.

The only I/O boundary of the wire protocol: everything above works on
decoded messages. Every server loop here survives running out of
resources: accept() failing with EMFILE, ENFILE, ENOBUFS or ENOMEM is
logged once per burst and retried after a pause (as ``trio.serve_listeners``
does), the number of connections each listener holds is capped (the
oldest idle one is closed first when full), every read and write has a
deadline, and large frames in flight are few at a time.
"""

from __future__ import annotations

import array
import contextvars
import errno
import logging
import os
import resource
import socket as stdsocket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Generic, TypeVar

import trio

from ._errors import CnidError, ConfigError, ProtocolError
from ._protocol import HEADER, MAX_FRAME, payload_length, printable

log = logging.getLogger("cnid.sockets")

#: A request frame must arrive whole within this time after connecting.
READ_TIMEOUT = 10.0
#: The peer must take an answer frame within this time.
SEND_TIMEOUT = 10.0
#: Connections one UNIX listener holds at a time.
MAX_CONNECTIONS = 128
#: A frame larger than this takes one of LARGE_FRAME_SLOTS before its
#: payload is read: memory for payloads in flight stays under
#: LARGE_FRAME_SLOTS * MAX_FRAME however many peers send at once.
LARGE_FRAME = 256 * 1024
LARGE_FRAME_SLOTS = 4
#: errno values of accept() that say "out of a resource": retried after a pause.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: errno values of accept() about the one connection: skipped.
_ACCEPT_SKIP_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR})
ACCEPT_BACKOFF = 0.1

_MAX_FDS = 4
_ANCBUF = stdsocket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)

Handler = Callable[[trio.socket.SocketType], Awaitable[None]]
C = TypeVar("C")

_large_frames: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("large_frames")


def large_frame_limiter() -> trio.CapacityLimiter:
    """The slots for large frames of this trio run (one set per process)."""
    try:
        return _large_frames.get()
    except LookupError:
        limiter = trio.CapacityLimiter(LARGE_FRAME_SLOTS)
        _large_frames.set(limiter)
        return limiter


class _Slot:
    """One held connection: cancelled when the listener is full and this is
    the oldest of those waiting for their peer."""

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.since = time.monotonic()
        self.idle = True
        self.evicted = False


_slot: contextvars.ContextVar[_Slot | None] = contextvars.ContextVar("cnid_slot", default=None)


class _Waiting:
    """Marks the current connection idle (waiting for its peer) while open."""

    def __enter__(self) -> None:
        slot = _slot.get()
        if slot is not None:
            slot.idle = True
            slot.since = time.monotonic()

    def __exit__(self, *exc: object) -> None:
        slot = _slot.get()
        if slot is not None:
            slot.idle = False


def waiting_for_peer() -> _Waiting:
    return _Waiting()


class Admission:
    """The connections a listener holds, at most ``limit``: when full, the
    one that has waited longest for its peer is closed to make room; when
    every one is busy working, the newcomer is turned away."""

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.slots: set[_Slot] = set()
        self.evicted = 0
        self.refused = 0

    def admit(self) -> _Slot | None:
        if len(self.slots) >= self.limit:
            idle = [s for s in self.slots if s.idle and not s.evicted]
            if not idle:
                self.refused += 1
                log.warning("%s: %d connections, all busy: one refused", self.name, self.limit)
                return None
            oldest = min(idle, key=lambda s: s.since)
            oldest.evicted = True
            oldest.scope.cancel()
            self.evicted += 1
            log.info("%s: %d connections: the oldest idle one closed", self.name, self.limit)
        slot = _Slot()
        self.slots.add(slot)
        return slot


async def accept_resiliently(accept: Callable[[], Awaitable[C]], name: str) -> C:
    """``accept()`` until a connection comes; out of descriptors or memory
    is logged once per burst and waited out, never raised."""
    failures = 0
    while True:
        try:
            conn = await accept()
        except OSError as exc:
            if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                if failures == 0:
                    log.error(
                        "%s: accept: %s; pausing new connections", name, os.strerror(exc.errno)
                    )
                failures += 1
                await trio.sleep(ACCEPT_BACKOFF)
                continue
            if exc.errno in _ACCEPT_SKIP_ERRNOS:
                continue
            raise
        if failures:
            log.warning("%s: accepting again after %d failed attempts", name, failures)
        return conn


class Guarded(Generic[C]):
    """Runs one connection's handler inside its slot; nothing a connection
    does (or suffers) ends the listener."""

    def __init__(self, admission: Admission, handler: Callable[[C], Awaitable[None]]) -> None:
        self.admission = admission
        self.handler = handler

    async def run(self, slot: _Slot, conn: C, close: Callable[[C], Awaitable[None]]) -> None:
        token = _slot.set(slot)
        try:
            with slot.scope:
                await self.handler(conn)
        except (CnidError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            msg = exc.msg if isinstance(exc, CnidError) else str(exc) or type(exc).__name__
            log.info("%s: connection ended: %s", self.admission.name, printable(msg))
        except Exception:
            log.exception("%s: connection handler failed", self.admission.name)
        finally:
            _slot.reset(token)
            self.admission.slots.discard(slot)
            with trio.CancelScope(shield=True):
                await close(conn)


async def read_frame(
    sock: trio.socket.SocketType, max_payload: int = MAX_FRAME
) -> tuple[bytes, list[int]]:
    """Read one whole frame; return its payload and the descriptors that came
    with it (the caller owns and must close them). A truncated or oversize
    frame raises ProtocolError after closing any descriptor received. A
    large payload waits for a large-frame slot before it is read."""
    header = bytearray()
    fds: list[int] = []
    try:
        with waiting_for_peer():
            while len(header) < HEADER.size:
                data, ancdata, flags, _ = await sock.recvmsg(HEADER.size - len(header), _ANCBUF)
                for level, kind, cdata in ancdata:
                    if level == stdsocket.SOL_SOCKET and kind == stdsocket.SCM_RIGHTS:
                        usable = len(cdata) - len(cdata) % array.array("i").itemsize
                        fds.extend(array.array("i", cdata[:usable]))
                if flags & stdsocket.MSG_CTRUNC:
                    raise ProtocolError("too many file descriptors in one frame")
                if not data:
                    raise ProtocolError(
                        f"connection closed after {len(header)} of {HEADER.size} bytes"
                        " (truncated frame)"
                    )
                header += data
            length = payload_length(bytes(header))
            if length > max_payload:
                raise ProtocolError(f"frame of {length} bytes exceeds this socket's {max_payload}")
            if length <= LARGE_FRAME:
                return await _read_payload(sock, length), fds
            async with large_frame_limiter():
                return await _read_payload(sock, length), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


async def _read_payload(sock: trio.socket.SocketType, length: int) -> bytes:
    body = bytearray(length)
    view = memoryview(body)
    got = 0
    while got < length:
        n = await sock.recv_into(view[got:], min(65536, length - got))
        if not n:
            raise ProtocolError(
                f"connection closed after {HEADER.size + got} of {HEADER.size + length} bytes"
                " (truncated frame)"
            )
        got += n
    view.release()
    return bytes(body)


async def send_all(sock: trio.socket.SocketType, data: bytes, timeout: float | None = None) -> None:
    """Send all of ``data``; trio.TooSlowError when the peer does not take
    it within ``timeout`` (default SEND_TIMEOUT)."""
    view = memoryview(data)
    with trio.fail_after(SEND_TIMEOUT if timeout is None else timeout), waiting_for_peer():
        while view:
            sent = await sock.send(view)
            view = view[sent:]


def claim_path(path: Path) -> None:
    """Remove a stale socket file; refuse to steal one a live daemon serves."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} exists and is not a socket")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise ConfigError(f"{path}: {exc.strerror}") from None
        path.unlink(missing_ok=True)
    else:
        raise ConfigError(f"another daemon is serving {path}")
    finally:
        probe.close()


async def _close_socket(conn: trio.socket.SocketType) -> None:
    conn.close()


async def serve_unix(
    path: str,
    handler: Handler,
    *,
    mode: int = 0o600,
    max_connections: int = MAX_CONNECTIONS,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``path`` and run ``handler`` for every connection, each in
    its own task, at most ``max_connections`` at a time. Ready
    (``task_status.started``) once the socket accepts."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {p.parent}: {exc.strerror}") from None
    claim_path(p)
    listener = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    admission = Admission(path, max_connections)
    guarded = Guarded(admission, handler)
    try:
        try:
            await listener.bind(path)
            os.chmod(path, mode)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {path}: {exc.strerror}") from None
        listener.listen(512)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                conn, _ = await accept_resiliently(listener.accept, path)
                slot = admission.admit()
                if slot is None:
                    conn.close()
                    continue
                nursery.start_soon(guarded.run, slot, conn, _close_socket)
    finally:
        listener.close()
        try:
            if p.is_socket():
                p.unlink()
        except OSError:
            pass


def raise_nofile_limit() -> int:
    """Raise this process's RLIMIT_NOFILE soft limit to the hard limit (the
    daemon holds a descriptor per connection, namespace and netlink
    socket); return the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, target, exc)
            return soft
        return target
    return soft
