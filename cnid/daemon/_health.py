"""/livez, /readyz and /metrics on the seeds' port (24800), over h11.

h11 is already in the dependency tree (httpx's transport uses it); a few
dozen lines of it serve three GET endpoints without a web framework.
"""

from __future__ import annotations

import logging

import h11
import trio

from ..core import _sockets
from ..core._errors import ConfigError
from ..core._metrics import Metrics
from ..core._readiness import Readiness
from ..core._sockets import Admission, Guarded, accept_resiliently, waiting_for_peer

log = logging.getLogger("cnid.health")
_MAX_REQUEST = 16 * 1024
#: A request must arrive whole within this time.
_TIMEOUT = 10.0
#: Connections the port holds at a time (it is open to the network and
#: unauthenticated: probes and scrapes need a handful); when full, the one
#: that has waited longest for its request is closed.
MAX_CONNECTIONS = 32


class HealthServer:
    def __init__(self, readiness: Readiness, metrics: Metrics) -> None:
        self.readiness = readiness
        self.metrics = metrics

    def respond(self, target: str) -> tuple[int, str, bytes]:
        path = target.split("?", 1)[0]
        if path == "/livez":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/readyz":
            self.metrics.ready.set(1 if self.readiness.ready else 0)
            if self.readiness.ready:
                return 200, "text/plain; charset=utf-8", b"ok\n"
            body = "not ready\n" + "".join(f"{r}\n" for r in self.readiness.reasons())
            return 503, "text/plain; charset=utf-8", body.encode()
        if path == "/metrics":
            self.metrics.ready.set(1 if self.readiness.ready else 0)
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render()
        return 404, "text/plain; charset=utf-8", b"not found\n"

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_REQUEST)
        try:
            with trio.fail_after(_TIMEOUT):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        with waiting_for_peer():
                            data = await stream.receive_some(4096)
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Request):
                        break
                    return
            method = event.method.decode()
            if method not in ("GET", "HEAD"):
                status, ctype, body = 405, "text/plain; charset=utf-8", b"method not allowed\n"
            else:
                status, ctype, body = self.respond(event.target.decode("latin-1"))
            headers = [
                ("content-type", ctype),
                ("content-length", str(len(body))),
                ("connection", "close"),
            ]
            out = conn.send(h11.Response(status_code=status, headers=headers))
            if method != "HEAD":
                out = (out or b"") + (conn.send(h11.Data(data=body)) or b"")
            out = (out or b"") + (conn.send(h11.EndOfMessage()) or b"")
            with trio.fail_after(_sockets.SEND_TIMEOUT), waiting_for_peer():
                await stream.send_all(out)
        except (
            h11.RemoteProtocolError,
            h11.LocalProtocolError,
            trio.TooSlowError,
            trio.BrokenResourceError,
        ) as exc:
            log.debug("health client: %s", exc)
        finally:
            await stream.aclose()

    async def run(
        self,
        host: str,
        port: int,
        *,
        max_connections: int = MAX_CONNECTIONS,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            listeners = await trio.open_tcp_listeners(port, host=host or None)
        except OSError as exc:
            raise ConfigError(
                f"[readiness] cannot listen on {host or '*'}:{port}: {exc.strerror or exc}"
            ) from None
        bound = listeners[0].socket.getsockname()[1]
        log.info("health and metrics on %s:%d", host or "*", bound)
        admission = Admission(f"health port {bound}", max_connections)
        guarded = Guarded(admission, self._serve)
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, admission, guarded, nursery)
            task_status.started(bound)

    async def _accept_loop(
        self,
        listener: trio.SocketListener,
        admission: Admission,
        guarded: Guarded[trio.SocketStream],
        nursery: trio.Nursery,
    ) -> None:
        async with listener:
            while True:
                stream = await accept_resiliently(listener.accept, admission.name)
                slot = admission.admit()
                if slot is None:
                    await stream.aclose()
                    continue
                nursery.start_soon(guarded.run, slot, stream, _close_stream)


async def _close_stream(stream: trio.SocketStream) -> None:
    await stream.aclose()
