"""The emulated API server in-process, as an httpx transport: no sockets and
no TLS, so a client's retries and a controller's timers run on trio's
virtual clock (``autojump_clock``) against the server's real semantics
(resourceVersions, 409 on a stale write, status subresources, finalizers,
selectors, watches with bookmarks, the project's CRDs and their schemas).

    async with open_inprocess_kubeapi(crd_paths=["kube/crds"]) as api:
        KubeClient(KubeConfig(server=api.url, token=api.token), transport=api.transport)

``api.down = True`` is an outage: every request fails to connect and every
open watch breaks, until it is False again.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from ._access import AppAccess
from ._app import App
from ._kubeapi import load_crd_documents
from ._requests import Request
from ._watch import WatchStream

_TOKEN = "in-process-admin"


class _WatchBody(httpx.AsyncByteStream):
    """A watch response's body: the chunks the watch's task sends."""

    def __init__(
        self, receive: trio.MemoryReceiveChannel[bytes | Exception], watch: WatchStream
    ) -> None:
        self._receive = receive
        self._watch = watch

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._receive:
            if isinstance(chunk, Exception):
                raise chunk
            yield chunk

    async def aclose(self) -> None:
        self._watch.abort()
        await self._receive.aclose()


class InProcessKubeApi(AppAccess, httpx.AsyncBaseTransport):
    """The transport (``api.transport`` is itself), the admin token, the
    stored objects and the faults a test injects."""

    url = "https://kubeapi.test"
    token = _TOKEN

    def __init__(self, app: App, nursery: trio.Nursery) -> None:
        self._app = app
        self._nursery = nursery
        self._down = False

    @property
    def down(self) -> bool:
        """An outage: requests fail to connect, open watches break."""
        return self._down

    @down.setter
    def down(self, value: bool) -> None:
        self._down = value
        if value:
            self.drop_watches()

    @property
    def transport(self) -> httpx.AsyncBaseTransport:
        return self

    @property
    def admin_transport(self) -> httpx.AsyncBaseTransport:
        """A transport that an outage does not reach (the test changes the
        cluster while its clients cannot see it)."""
        return _Backdoor(self)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.handle(request, outage=self.down)

    async def handle(self, request: httpx.Request, *, outage: bool) -> httpx.Response:
        await trio.lowlevel.checkpoint()
        if outage:
            raise httpx.ConnectError("connection refused (the API server is down)")
        target = request.url.raw_path.decode("ascii")
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer = self._app.handle(Request(request.method, target, headers, await request.aread()))
        if not isinstance(answer, WatchStream):
            return httpx.Response(
                answer.code,
                headers=[("Content-Type", answer.content_type), *answer.headers],
                content=answer.body,
            )
        send, receive = trio.open_memory_channel[bytes | Exception](math.inf)
        self._nursery.start_soon(self._stream, answer, send)
        return httpx.Response(
            200,
            headers=[("Content-Type", "application/json")],
            stream=_WatchBody(receive, answer),
        )

    async def _stream(
        self, watch: WatchStream, send: trio.MemorySendChannel[bytes | Exception]
    ) -> None:
        async with send:
            try:
                await watch.run(send.send)
                if watch.aborted:  # the connection dropped mid-stream
                    await send.send(httpx.ReadError("connection dropped"))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client hung up

    # -- what KubeApi offers too --------------------------------------------------

    def drop_watches(self) -> None:
        """Break every open watch mid-stream (the client sees a read error)."""
        for watch in list(self._app.watches):
            watch.abort()


class _Backdoor(httpx.AsyncBaseTransport):
    def __init__(self, api: InProcessKubeApi) -> None:
        self.api = api

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.api.handle(request, outage=False)


@asynccontextmanager
async def open_inprocess_kubeapi(
    crd_paths: Iterable[str | Path] = (), bookmark_interval: float = 1.0
) -> AsyncIterator[InProcessKubeApi]:
    """The emulated server as an in-process transport until the block ends."""
    app = App(admin_token=_TOKEN, bookmark_interval=bookmark_interval)
    for crd in load_crd_documents(crd_paths):
        app.load_crd(crd)
    async with trio.open_nursery() as nursery:
        try:
            yield InProcessKubeApi(app, nursery)
        finally:
            for watch in list(app.watches):
                watch.abort()
            nursery.cancel_scope.cancel()
