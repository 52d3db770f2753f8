"""UNIX stream sockets that carry our frames, with file descriptors.

The only I/O boundary of the wire protocol: everything above works on
decoded messages.
"""

from __future__ import annotations

import array
import errno
import logging
import os
import socket as stdsocket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from ._errors import ConfigError, ProtocolError
from ._protocol import HEADER, payload_length

log = logging.getLogger("cnid.sockets")

#: A request frame must arrive whole within this time after connecting.
READ_TIMEOUT = 10.0
_MAX_FDS = 4
_ANCBUF = stdsocket.CMSG_SPACE(_MAX_FDS * array.array("i").itemsize)

Handler = Callable[[trio.socket.SocketType], Awaitable[None]]


async def read_frame(sock: trio.socket.SocketType) -> tuple[bytes, list[int]]:
    """Read one whole frame; return its payload and the descriptors that came
    with it (the caller owns and must close them). A truncated or oversize
    frame raises ProtocolError after closing any descriptor received."""
    buf = bytearray()
    fds: list[int] = []
    want = HEADER.size
    try:
        while len(buf) < want:
            data, ancdata, flags, _ = await sock.recvmsg(min(65536, want - len(buf)), _ANCBUF)
            for level, kind, cdata in ancdata:
                if level == stdsocket.SOL_SOCKET and kind == stdsocket.SCM_RIGHTS:
                    usable = len(cdata) - len(cdata) % array.array("i").itemsize
                    fds.extend(array.array("i", cdata[:usable]))
            if flags & stdsocket.MSG_CTRUNC:
                raise ProtocolError("too many file descriptors in one frame")
            if not data:
                raise ProtocolError(
                    f"connection closed after {len(buf)} of {want} bytes (truncated frame)"
                )
            buf += data
            if want == HEADER.size and len(buf) >= HEADER.size:
                want = HEADER.size + payload_length(bytes(buf[: HEADER.size]))
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return bytes(buf[HEADER.size :]), fds


async def send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = await sock.send(view)
        view = view[sent:]


def _claim_path(path: Path) -> None:
    """Remove a stale socket file; refuse to steal one a live daemon serves."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"{path} exists and is not a socket")
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
        path.unlink(missing_ok=True)
    else:
        raise ConfigError(f"another daemon is serving {path}")
    finally:
        probe.close()


async def serve_unix(
    path: str,
    handler: Handler,
    *,
    mode: int = 0o600,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on ``path`` and run ``handler`` for every connection, each in
    its own task. Ready (``task_status.started``) once the socket accepts."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    _claim_path(p)
    listener = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        await listener.bind(path)
        os.chmod(path, mode)
        listener.listen(512)
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                conn, _ = await listener.accept()
                nursery.start_soon(_serve_one, handler, conn)
    finally:
        listener.close()
        try:
            if p.is_socket():
                p.unlink()
        except OSError:
            pass


async def _serve_one(handler: Handler, conn: trio.socket.SocketType) -> None:
    with conn:
        try:
            await handler(conn)
        except (BrokenPipeError, ConnectionResetError) as exc:
            log.info("client went away: %s", exc)
