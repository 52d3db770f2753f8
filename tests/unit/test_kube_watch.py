"""Watch streams: the parser on recorded streams split anywhere, and
KubeClient.watch's request, ERROR events, breaks and inactivity."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from cnid.kube import (
    IP_BLOCKS,
    NODES,
    PODS,
    ApiUnavailable,
    Gone,
    KubeClient,
    KubeConfig,
    Node,
    ServerError,
    WatchEvent,
    WatchStreamParser,
)


class ChannelStream(httpx.AsyncByteStream):
    """A response body fed by the test: bytes are chunks, an exception is
    raised where it comes, the channel's end is the body's end."""

    def __init__(self, receive: trio.MemoryReceiveChannel[bytes | Exception]) -> None:
        self.receive = receive

    def __aiter__(self) -> ChannelStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            item = await self.receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None
        if isinstance(item, Exception):
            raise item
        return item

    async def aclose(self) -> None:
        await self.receive.aclose()


def node(name: str, rv: str, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "resourceVersion": rv},
        **extra,
    }


def line(etype: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": etype, "object": obj}).encode() + b"\n"


BOOKMARK = {"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": "12"}}
RECORDED = (
    line("ADDED", node("a", "10"))
    + line(
        "MODIFIED",
        node("a", "11", status={"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}),
    )
    + line("BOOKMARK", BOOKMARK)
    + line("DELETED", node("a", "13"))
)
EXPIRED = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "too old resource version: 5 (10)",
    "reason": "Expired",
    "code": 410,
}


def summary(events: list[WatchEvent[Node]]) -> list[tuple[str, str, str]]:
    return [
        (e.type, e.object.metadata.name if e.object else "-", e.resource_version) for e in events
    ]


EXPECTED = [
    ("ADDED", "a", "10"),
    ("MODIFIED", "a", "11"),
    ("BOOKMARK", "-", "12"),
    ("DELETED", "a", "13"),
]


def test_parser_whole_stream() -> None:
    parser = WatchStreamParser(Node)
    events = parser.feed(RECORDED)
    parser.end()
    assert summary(events) == EXPECTED
    assert events[1].object is not None
    assert events[1].object.status.addresses[0].address == "10.0.0.1"
    assert events[1].raw == node(
        "a", "11", status={"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}
    )
    assert events[2].raw == BOOKMARK


def test_parser_any_split() -> None:
    """Chunk boundaries fall anywhere: inside a line, at its newline, in a
    multi-byte character."""
    stream = RECORDED.replace(b'"a"', '"ä"'.encode())
    expected = [(t, "ä" if n == "a" else n, rv) for t, n, rv in EXPECTED]
    for cut in range(len(stream) + 1):
        parser = WatchStreamParser(Node)
        events = parser.feed(stream[:cut]) + parser.feed(stream[cut:])
        parser.end()
        assert summary(events) == expected, cut
    parser = WatchStreamParser(Node)
    events = [e for i in range(len(stream)) for e in parser.feed(stream[i : i + 1])]
    assert summary(events) == expected


def test_parser_partial_line_waits() -> None:
    parser = WatchStreamParser(Node)
    first, second = line("ADDED", node("a", "1")), line("ADDED", node("b", "2"))
    assert summary(parser.feed(first + second[:10])) == [("ADDED", "a", "1")]
    assert parser.feed(b"") == []
    assert summary(parser.feed(second[10:] + b"\n\n")) == [("ADDED", "b", "2")]
    parser.end()
    parser.feed(first[:-5])
    with pytest.raises(ApiUnavailable, match="cut inside an event"):
        parser.end()


def test_parser_undecodable_object_and_garbage() -> None:
    parser = WatchStreamParser(Node)
    bad = node("x", "4", status={"addresses": "not a list"})
    (event,) = parser.feed(line("MODIFIED", bad))
    assert event.object is None
    assert "status.addresses" in event.error
    assert (event.name, event.namespace, event.resource_version) == ("x", "", "4")
    assert event.raw == bad
    with pytest.raises(ApiUnavailable, match="malformed watch event"):
        parser.feed(b"{not json\n")
    with pytest.raises(ApiUnavailable, match="unknown watch event type"):
        parser.feed(line("RENAMED", node("x", "5")))


def test_parser_error_event() -> None:
    parser = WatchStreamParser(Node)
    events = parser.feed(line("ADDED", node("a", "1")) + line("ERROR", EXPIRED))
    assert [e.type for e in events] == ["ADDED", "ERROR"]
    assert events[1].raw == EXPIRED


# -- KubeClient.watch ------------------------------------------------------------


class WatchServer:
    """Answers every request with a streaming body the test feeds."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.send, receive = trio.open_memory_channel[bytes | Exception](math.inf)
        self.receive = receive
        self.open_error: httpx.Response | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.open_error is not None:
            return self.open_error
        return httpx.Response(
            200,
            headers={"content-type": "application/json"},
            stream=ChannelStream(self.receive),
        )

    def client(self) -> KubeClient:
        return KubeClient(
            KubeConfig(server="https://k8s.test"),
            retry_deadline=0,
            transport=httpx.MockTransport(self),
        )


async def test_watch_request_and_events() -> None:
    server = WatchServer()
    server.send.send_nowait(RECORDED[:50])
    server.send.send_nowait(RECORDED[50:])
    server.send.close()
    async with (
        server.client() as c,
        c.watch(
            PODS,
            resource_version="9",
            namespace="ns1",
            field_selector="spec.nodeName=n1",
            timeout_seconds=300,
        ) as events,
    ):
        got = [e async for e in events]
    assert [(e.type, e.resource_version) for e in got] == [
        ("ADDED", "10"),
        ("MODIFIED", "11"),
        ("BOOKMARK", "12"),
        ("DELETED", "13"),
    ]
    req = server.requests[0]
    assert req.url.path == "/api/v1/namespaces/ns1/pods"
    assert dict(req.url.params) == {
        "watch": "1",
        "allowWatchBookmarks": "true",
        "resourceVersion": "9",
        "timeoutSeconds": "300",
        "fieldSelector": "spec.nodeName=n1",
    }


async def test_watch_error_event_raises_gone_after_earlier_events() -> None:
    server = WatchServer()
    server.send.send_nowait(line("ADDED", node("a", "10")) + line("ERROR", EXPIRED))
    seen: list[str] = []
    async with server.client() as c, c.watch(NODES, resource_version="5") as events:
        with pytest.raises(Gone, match="too old resource version") as info:
            async for e in events:
                seen.append(e.resource_version)
    assert seen == ["10"]
    assert info.value.status == 410
    assert info.value.reason == "Expired"
    assert info.value.url.startswith("https://k8s.test/api/v1/nodes?")


async def test_watch_other_error_event() -> None:
    server = WatchServer()
    status = {"kind": "Status", "code": 500, "reason": "InternalError", "message": "etcd down"}
    server.send.send_nowait(line("ERROR", status))
    async with server.client() as c, c.watch(NODES, resource_version="5") as events:
        with pytest.raises(ServerError, match="etcd down"):
            await events.__anext__()


async def test_watch_open_gone() -> None:
    server = WatchServer()
    server.open_error = httpx.Response(410, json=EXPIRED)
    async with server.client() as c:
        with pytest.raises(Gone):
            async with c.watch(IP_BLOCKS, resource_version="5"):
                raise AssertionError("not opened")


async def test_watch_dropped_connection() -> None:
    server = WatchServer()
    server.send.send_nowait(line("ADDED", node("a", "10")))
    server.send.send_nowait(httpx.ReadError("connection reset by peer"))
    async with server.client() as c, c.watch(NODES, resource_version="5") as events:
        assert (await events.__anext__()).resource_version == "10"
        with pytest.raises(ApiUnavailable, match="connection reset by peer"):
            await events.__anext__()
        # A broken stream stays broken.
        with pytest.raises(StopAsyncIteration):
            await events.__anext__()


async def test_watch_cut_mid_event() -> None:
    server = WatchServer()
    server.send.send_nowait(line("ADDED", node("a", "10"))[:-20])
    server.send.close()
    async with server.client() as c, c.watch(NODES, resource_version="5") as events:
        with pytest.raises(ApiUnavailable, match="cut inside an event") as info:
            await events.__anext__()
    assert info.value.url.startswith("https://k8s.test/api/v1/nodes?watch=1")


async def test_watch_inactivity(autojump_clock: trio.testing.MockClock) -> None:
    server = WatchServer()
    start = trio.current_time()
    async with (
        server.client() as c,
        c.watch(NODES, resource_version="5", inactivity_timeout=7) as events,
    ):
        with pytest.raises(ApiUnavailable, match="silent for 7 s"):
            await events.__anext__()
    assert trio.current_time() - start == pytest.approx(7)


async def test_watch_bookmarks_keep_it_alive(autojump_clock: trio.testing.MockClock) -> None:
    """Any bytes reset the inactivity timer, bookmarks included."""
    server = WatchServer()

    async def feed() -> None:
        for i in range(5):
            await trio.sleep(4)
            bm = {"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": str(20 + i)}}
            await server.send.send(line("BOOKMARK", bm))
        server.send.close()

    start = trio.current_time()
    async with server.client() as c, trio.open_nursery() as nursery:
        nursery.start_soon(feed)
        async with c.watch(NODES, resource_version="5", inactivity_timeout=5) as events:
            got = [e.resource_version async for e in events]
    assert got == ["20", "21", "22", "23", "24"]
    assert trio.current_time() - start == pytest.approx(20)


# -- over a real connection --------------------------------------------------------


async def serve_chunks(
    script: list[bytes], *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """An HTTP/1.1 server on loopback answering every request with a chunked
    body made of ``script``, then holding the connection open."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(4096)
        await stream.send_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        for chunk in script:
            await stream.send_all(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await trio.sleep_forever()

    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


@pytest.mark.parametrize("how", ["error", "silence", "early-exit"])
async def test_watch_over_http(how: str) -> None:
    """httpx's real transport under trio: the stream is parsed, and leaving
    it early (an ERROR, the inactivity timer, the caller breaking out)
    closes the connection without leaking anything (an unclosed generator
    or socket would fail the test: warnings are errors)."""
    first = line("ADDED", node("a", "10"))
    script = {
        "error": [first[:30], first[30:] + line("ERROR", EXPIRED)],
        "silence": [first],
        "early-exit": [first, line("ADDED", node("b", "11"))],
    }[how]
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_chunks, script)
        cfg = KubeConfig(server=f"http://127.0.0.1:{port}")
        async with KubeClient(cfg, retry_deadline=0) as c:
            async with c.watch(NODES, resource_version="5", inactivity_timeout=0.5) as events:
                assert (await events.__anext__()).resource_version == "10"
                if how == "error":
                    with pytest.raises(Gone):
                        await events.__anext__()
                elif how == "silence":
                    with pytest.raises(ApiUnavailable, match="silent"):
                        await events.__anext__()
            # The connection pool is usable afterwards.
            if how == "early-exit":
                async with c.watch(NODES, resource_version="5") as events:
                    assert (await events.__anext__()).resource_version == "10"
        nursery.cancel_scope.cancel()
