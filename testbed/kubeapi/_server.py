"""HTTP for the App: h11 over trio's SSLStream on TCP, or over the bare
stream on a UNIX socket (no TLS: whoever can open the socket file gets to
the server, and still needs a token); keep-alive, chunked watch streams,
and the two ways a watch can end (cleanly, or by dropping the connection
mid-stream as a crashed server or a broken proxy would)."""

from __future__ import annotations

import functools
import logging
import os
import socket
import ssl
import uuid
from pathlib import Path

import h11
import trio

from ._app import App
from ._requests import Request, Response
from ._watch import WatchStream

log = logging.getLogger("testbed.kubeapi")

_MAX_HEADERS = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_HANDSHAKE_TIMEOUT = 10.0
_RECEIVE = 65536


class _Closed(Exception):
    """The peer went away or broke the protocol: drop the connection."""


async def open_unix_listener(path: Path) -> trio.SocketListener:
    """Listen on a UNIX stream socket at ``path``. A socket file nobody
    listens on (left by a killed server) is replaced; a live one, or any
    other file, is a ValueError."""
    if path.exists() or path.is_symlink():
        if not path.is_socket():
            raise ValueError(f"{path} exists and is not a socket")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            path.unlink()
        else:
            raise ValueError(f"{path}: another server listens there")
        finally:
            probe.close()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(os.fspath(path))
        sock.listen(socket.SOMAXCONN)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


class HttpServer:
    def __init__(self, app: App, context: ssl.SSLContext) -> None:
        self.app = app
        self.context = context
        self._connections: set[trio.abc.Stream] = set()

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        tls: bool = True,
        *,
        task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve HTTPS on ``listeners``, or plain HTTP with ``tls=False``."""
        await trio.serve_listeners(
            functools.partial(self._connection, tls=tls),
            listeners,
            handler_nursery=None,
            task_status=task_status,
        )

    async def _connection(self, raw: trio.SocketStream, *, tls: bool) -> None:
        stream: trio.abc.Stream = raw
        if tls:
            stream = trio.SSLStream(raw, self.context, server_side=True, https_compatible=True)
        self._connections.add(stream)
        polite = True
        try:
            if isinstance(stream, trio.SSLStream):
                with trio.move_on_after(_HANDSHAKE_TIMEOUT) as handshake:
                    await stream.do_handshake()
                if handshake.cancelled_caught:
                    polite = False
                    return
            polite = await self._http(stream)
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            polite = False
        finally:
            self._connections.discard(stream)
            if polite:
                with trio.move_on_after(1) as closing:
                    closing.shield = True
                    try:
                        await stream.aclose()
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
            await trio.aclose_forcefully(stream)

    async def _receive(self, stream: trio.abc.Stream) -> bytes:
        try:
            return bytes(await stream.receive_some(_RECEIVE))
        except trio.BrokenResourceError:
            return b""

    async def _http(self, stream: trio.abc.Stream) -> bool:
        """Serve requests until the connection ends; False when it must be dropped."""
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEADERS)
        while True:
            request = await self._read(conn, stream)
            if request is None:
                return True
            answer = self.app.handle(request)
            if isinstance(answer, WatchStream):
                if not await self._stream(conn, stream, answer):
                    return False
            else:
                await self._respond(conn, stream, answer)
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is not h11.DONE:
                return True
            conn.start_next_cycle()

    async def _read(self, conn: h11.Connection, stream: trio.abc.Stream) -> Request | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self._receive(stream))
            elif isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    raise _Closed("request body too large")
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                headers = {k.decode().lower(): v.decode("latin-1") for k, v in head.headers}
                return Request(
                    head.method.decode(), head.target.decode("latin-1"), headers, bytes(body)
                )
            else:  # ConnectionClosed, PAUSED
                return None

    def _headers(self, content_type: str, extra: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [
            ("Audit-Id", str(uuid.uuid4())),
            ("Cache-Control", "no-cache, private"),
            ("Content-Type", content_type),
            *extra,
        ]

    async def _respond(
        self, conn: h11.Connection, stream: trio.abc.Stream, response: Response
    ) -> None:
        headers = self._headers(response.content_type, response.headers)
        headers.append(("Content-Length", str(len(response.body))))
        data = conn.send(h11.Response(status_code=response.code, headers=headers))
        data += conn.send(h11.Data(data=response.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)

    async def _stream(
        self, conn: h11.Connection, stream: trio.abc.Stream, watch: WatchStream
    ) -> bool:
        headers = self._headers("application/json", [("Transfer-Encoding", "chunked")])
        try:
            await stream.send_all(conn.send(h11.Response(status_code=200, headers=headers)))
        except BaseException:
            watch.close()
            raise

        async def send(chunk: bytes) -> None:
            await stream.send_all(conn.send(h11.Data(data=chunk)) or b"")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_peer, conn, stream, watch)
            try:
                await watch.run(send)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                watch.aborted = True
            nursery.cancel_scope.cancel()
        if watch.aborted:
            return False
        await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        return True

    async def _watch_peer(
        self, conn: h11.Connection, stream: trio.abc.Stream, watch: WatchStream
    ) -> None:
        """A watch only writes; reading notices a client that hung up (EOF)
        so its stream does not linger until the timeout."""
        while True:
            data = await self._receive(stream)
            if not data:
                watch.abort()
                return
            conn.receive_data(data)  # a pipelined request: h11 keeps it for later

    def stop_watches(self) -> None:
        for watch in list(self.app.watches):
            watch.stop()

    def drop_watches(self) -> None:
        for watch in list(self.app.watches):
            watch.abort()
