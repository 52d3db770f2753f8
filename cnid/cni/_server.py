"""The CNI socket: one connection per plugin invocation, one frame each way."""

from __future__ import annotations

import logging
import os
import time

import trio

from ..core._errors import ProtocolError
from ..core._metrics import Metrics
from ..core._protocol import (
    MAX_STDIN,
    PROTOCOL_VERSION,
    CniResponse,
    decode_cni_request,
    frame,
    printable,
)
from ..core._sockets import READ_TIMEOUT, read_frame, send_all
from ._invocation import COMMANDS, parse_invocation, peek_version
from ._results import encode, render_error
from ._service import CniService, error_from
from ._versions import LATEST

log = logging.getLogger("cnid.cni")

#: The largest CNI request frame: the plugin's stdin limit plus room for the
#: environment. A larger one is refused before its payload is read.
MAX_REQUEST = MAX_STDIN + 256 * 1024


class CniServer:
    def __init__(self, service: CniService, metrics: Metrics) -> None:
        self.service = service
        self.metrics = metrics

    async def handle_connection(self, conn: trio.socket.SocketType) -> None:
        fds: list[int] = []
        start = time.perf_counter()
        command = "unknown"
        version = LATEST
        try:
            try:
                with trio.fail_after(READ_TIMEOUT):
                    payload, fds = await read_frame(conn, MAX_REQUEST)
            except trio.TooSlowError:
                raise ProtocolError(f"no complete request within {READ_TIMEOUT:.0f}s") from None
            request = decode_cni_request(payload)
            del payload
            version = peek_version(request.stdin)
            command = request.env.get("CNI_COMMAND", "unknown") or "unknown"
            if request.has_netns != bool(fds) or len(fds) > 1:
                raise ProtocolError(
                    f"request announces has_netns={request.has_netns} but carried {len(fds)} fd(s)"
                )
            inv = parse_invocation(request.env, request.stdin, bool(fds))
            command = inv.command
            result = await self.service.handle(inv, fds[0] if fds else None)
            response = CniResponse(PROTOCOL_VERSION, 0, encode(result) if result else b"")
            outcome = "ok"
        except Exception as exc:  # the boundary: everything becomes a CNI error
            err = error_from(exc)
            if isinstance(err, ProtocolError):
                self.metrics.protocol_errors.labels(socket="cni").inc()
            log.warning(
                "%s failed: code %d: %s %s",
                printable(command),
                err.code,
                printable(err.msg),
                printable(err.details),
            )
            response = CniResponse(PROTOCOL_VERSION, 1, encode(render_error(err, version)))
            outcome = str(int(err.code))
        finally:
            for fd in fds:
                os.close(fd)
        label = command if command in COMMANDS else "unknown"
        self.metrics.requests.labels(command=label, result=outcome).inc()
        self.metrics.latency.labels(command=label).observe(time.perf_counter() - start)
        await send_all(conn, frame(response))
