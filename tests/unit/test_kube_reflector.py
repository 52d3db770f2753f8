"""Reflector: list then watch, relist on Gone without spurious events,
reconnects, undecodable objects, listeners and wait_changed."""

from __future__ import annotations

import functools
import json
import logging
import math
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
import trio.testing

import cnid.kube._reflector as _reflector
from cnid.kube import (
    NODES,
    PODS,
    SECRETS,
    KubeClient,
    KubeConfig,
    Node,
    Reflector,
    ResourceType,
    VerbNotAllowed,
    WatchEvent,
)

Feed = trio.MemorySendChannel[bytes | Exception]


class ChannelStream(httpx.AsyncByteStream):
    """A response body fed by the test (see test_kube_watch.py)."""

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


class FakeApi:
    """One collection's list and watch. ``objects`` is the server's state
    (raw objects by name) and ``rv`` its resourceVersion, both set by the
    test; each watch request opens a feed the test gets from ``opened``."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = "1"
        self.lists = 0
        self.watch_params: list[dict[str, str]] = []
        self.list_failures: list[httpx.Response | Exception] = []
        self.watch_failures: list[httpx.Response | Exception] = []
        self._opened, self.opened = trio.open_memory_channel[Feed](math.inf)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch") == "1":
            self.watch_params.append(dict(request.url.params))
            failures = self.watch_failures
        else:
            self.lists += 1
            failures = self.list_failures
        if failures:
            failure = failures.pop(0)
            if isinstance(failure, Exception):
                raise failure
            return failure
        if request.url.params.get("watch") != "1":
            body = {"metadata": {"resourceVersion": self.rv}, "items": list(self.objects.values())}
            return httpx.Response(200, json=body)
        send, receive = trio.open_memory_channel[bytes | Exception](math.inf)
        self._opened.send_nowait(send)
        return httpx.Response(200, stream=ChannelStream(receive))

    def put(self, obj: dict[str, Any]) -> None:
        self.objects[obj["metadata"]["name"]] = obj


def node(name: str, rv: str, address: Any = "10.0.0.1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "resourceVersion": rv},
        "status": {"addresses": [{"type": "InternalIP", "address": address}]},
    }


def bad_node(name: str, rv: str) -> dict[str, Any]:
    obj = node(name, rv)
    obj["status"]["addresses"] = "not a list"
    return obj


def line(etype: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": etype, "object": obj}).encode() + b"\n"


def bookmark(rv: str) -> bytes:
    return line(
        "BOOKMARK", {"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}
    )


EXPIRED = {
    "kind": "Status",
    "code": 410,
    "reason": "Expired",
    "message": "too old resource version",
}


class Events:
    """A listener recording (type, name, resourceVersion)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, event: WatchEvent[Any]) -> None:
        assert event.object is not None
        self.seen.append((event.type, event.object.metadata.name, event.resource_version))

    def take(self) -> list[tuple[str, str, str]]:
        out, self.seen = self.seen, []
        return out


@asynccontextmanager
async def running(
    api: FakeApi, rt: ResourceType[Any] = NODES, **kwargs: Any
) -> AsyncIterator[tuple[Reflector[Any], Events]]:
    transport = httpx.MockTransport(api)
    async with (
        KubeClient(
            KubeConfig(server="https://k8s.test"), retry_deadline=0, transport=transport
        ) as c,
        trio.open_nursery() as nursery,
    ):
        reflector = Reflector(c, rt, name="test", **kwargs)
        events = Events()
        reflector.add_listener(events)
        await nursery.start(reflector.run)
        yield reflector, events
        nursery.cancel_scope.cancel()


async def settle() -> None:
    """Until the reflector waits for the next bytes."""
    await trio.testing.wait_all_tasks_blocked()


async def test_list_then_watch() -> None:
    api = FakeApi()
    api.put(node("a", "5"))
    api.put(node("b", "6"))
    api.rv = "7"
    async with running(api) as (r, events):
        await r.synced.wait()
        assert set(r.items) == {"a", "b"}
        assert isinstance(r.items["a"], Node)
        assert sorted(events.take()) == [("ADDED", "a", "5"), ("ADDED", "b", "6")]
        assert r.connected and r.version == 2
        feed = await api.opened.receive()
        params = api.watch_params[0]
        assert params["resourceVersion"] == "7"
        assert params["allowWatchBookmarks"] == "true"
        assert 300 <= int(params["timeoutSeconds"]) <= 600
        feed.send_nowait(
            line("MODIFIED", node("a", "8", "10.0.0.9"))
            + line("ADDED", node("c", "9"))
            + bookmark("10")
            + line("DELETED", node("b", "11"))
            + line("MODIFIED", node("a", "8", "10.0.0.9"))  # a repeat: nothing new
        )
        await settle()
        assert events.take() == [
            ("MODIFIED", "a", "8"),
            ("ADDED", "c", "9"),
            ("DELETED", "b", "11"),
        ]
        assert set(r.items) == {"a", "c"}
        assert r.items["a"].status.addresses[0].address == "10.0.0.9"
        assert r.version == 5
        assert api.lists == 1


async def test_relist_on_gone_reports_only_differences(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi()
    for obj in (node("a", "5"), node("b", "6"), node("e", "7")):
        api.put(obj)
    api.rv = "7"
    async with running(api) as (r, events):
        feed = await api.opened.receive()
        feed.send_nowait(line("MODIFIED", node("b", "8")))
        await settle()
        assert len(events.take()) == 4
        # Meanwhile, unseen by this watch: c added, e deleted.
        api.put(node("b", "8"))
        api.put(node("c", "9"))
        del api.objects["e"]
        api.rv = "9"
        with caplog.at_level(logging.WARNING, logger="cnid.kube"):
            feed.send_nowait(line("ERROR", EXPIRED))
            feed = await api.opened.receive()
            await settle()
        assert api.lists == 2
        assert sorted(events.take()) == [("ADDED", "c", "9"), ("DELETED", "e", "7")]
        assert set(r.items) == {"a", "b", "c"}
        assert api.watch_params[-1]["resourceVersion"] == "9"
        # Quietly: an expired resourceVersion is routine.
        assert r.connected and r.last_error == ""
        assert caplog.records == []


async def test_reconnect_after_dropped_stream(
    mock_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApi()
    api.put(node("a", "5"))
    api.rv = "5"
    caplog.set_level(logging.INFO, logger="cnid.kube")
    async with running(api) as (r, events):
        feed = await api.opened.receive()
        feed.send_nowait(line("MODIFIED", node("a", "11")))
        feed.send_nowait(httpx.ReadError("connection reset by peer"))
        # The re-watches fail the same way a few times: logged once.
        api.watch_failures = [httpx.ConnectError("refused")] * 3
        await settle()
        assert not r.connected
        assert "connection reset by peer" in r.last_error
        for _ in range(3):
            mock_clock.jump(60)
            await settle()
        assert not r.connected and "refused" in r.last_error
        mock_clock.jump(60)
        feed = await api.opened.receive()
        await settle()
        assert r.connected and r.last_error == ""
        # Resumed from the last version seen, without listing again.
        assert [p["resourceVersion"] for p in api.watch_params] == ["5", "11", "11", "11", "11"]
        assert api.lists == 1
        feed.send_nowait(line("ADDED", node("b", "12")))
        await settle()
        assert events.take() == [("ADDED", "a", "5"), ("MODIFIED", "a", "11"), ("ADDED", "b", "12")]
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Reflector(test: nodes)" in warnings[0]
    assert "GET https://k8s.test/api/v1/nodes?" in warnings[0]
    assert [rec.getMessage() for rec in caplog.records if rec.levelno == logging.INFO] == [
        "Reflector(test: nodes): connected again"
    ]


async def test_initial_list_failure(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi()
    api.put(node("a", "5"))
    api.list_failures = [
        httpx.Response(403, json={"kind": "Status", "code": 403, "reason": "Forbidden"}),
        httpx.ConnectError("refused"),
    ]
    async with running(api) as (r, _):
        with trio.move_on_after(0.1):
            await r.synced.wait()
        assert not r.synced.is_set() and not r.connected
        assert "403 Forbidden" in r.last_error
        with trio.fail_after(5):
            await r.synced.wait()
        assert api.lists == 3
        assert set(r.items) == {"a"}


async def test_inactivity_reconnects(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    api = FakeApi()
    api.rv = "3"
    async with running(api, inactivity_timeout=10.0) as (r, _):
        await api.opened.receive()
        start = trio.current_time()
        await api.opened.receive()  # the second watch
        waited = trio.current_time() - start
        # The silence, then the first backoff step (0.2 s).
        assert waited == pytest.approx(10.2)
        assert [p["resourceVersion"] for p in api.watch_params] == ["3", "3"]
        assert api.lists == 1
        assert r.connected
    assert "watch silent for 10 s" in caplog.text


async def test_repeated_gone_backs_off(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that answers Gone to every watch gets relists, not a
    tight loop of them. The backoff's jitter is seeded: full jitter may draw
    any delay below its cap, so an unseeded run could see a short last gap."""
    monkeypatch.setattr(
        _reflector, "Backoff", functools.partial(_reflector.Backoff, rng=random.Random(12))
    )
    api = FakeApi()
    api.watch_failures = [httpx.Response(410, json=EXPIRED)] * 1000
    start = trio.current_time()
    list_times: list[float] = []
    real_call = api.__call__

    def counting(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch") != "1":
            list_times.append(trio.current_time() - start)
            assert len(list_times) < 50, "relisting in a tight loop"
        return real_call(request)

    transport = httpx.MockTransport(counting)
    async with (
        KubeClient(
            KubeConfig(server="https://k8s.test"), retry_deadline=0, transport=transport
        ) as c,
        trio.open_nursery() as nursery,
    ):
        reflector = Reflector(c, NODES, name="test")
        await nursery.start(reflector.run)
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    # The first relist at once, the next ones after growing delays.
    assert list_times[:2] == [0.0, 0.0]
    assert 4 <= len(list_times) <= 15
    assert list_times[-1] - list_times[-2] >= 3.2


async def test_watch_end_rewatches(autojump_clock: trio.testing.MockClock) -> None:
    """The server ends a watch (timeoutSeconds): watch again from the last
    version, at once when the watch delivered something, after a backoff
    when it did not."""
    api = FakeApi()
    api.rv = "3"
    async with running(api) as (r, _):
        feed = await api.opened.receive()
        feed.send_nowait(bookmark("20"))
        await settle()
        start = trio.current_time()
        feed.close()
        feed = await api.opened.receive()
        assert trio.current_time() == start
        feed.close()
        await api.opened.receive()
        assert trio.current_time() - start >= 0.2
        assert [p["resourceVersion"] for p in api.watch_params] == ["3", "20", "20"]
        assert api.lists == 1
        assert r.connected


async def test_undecodable_objects(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi()
    api.put(node("a", "5"))
    api.put(bad_node("x", "6"))
    api.rv = "6"
    caplog.set_level(logging.WARNING, logger="cnid.kube")
    async with running(api) as (r, events):
        feed = await api.opened.receive()
        await settle()
        assert set(r.items) == {"a"}
        assert set(r.invalid) == {"x"} and "status.addresses" in r.invalid["x"]
        assert events.take() == [("ADDED", "a", "5")]
        # Still bad: not logged again.
        feed.send_nowait(line("MODIFIED", bad_node("x", "7")))
        # a goes bad: its last good version stays, flagged.
        feed.send_nowait(line("MODIFIED", bad_node("a", "8")))
        await settle()
        assert r.items["a"].metadata.resource_version == "5"
        assert set(r.invalid) == {"x", "a"}
        assert events.take() == []
        # Fixed, and the other one deleted.
        feed.send_nowait(line("MODIFIED", node("a", "9")) + line("DELETED", bad_node("x", "10")))
        await settle()
        assert r.invalid == {}
        assert r.items["a"].metadata.resource_version == "9"
        assert events.take() == [("MODIFIED", "a", "9")]
    logged = [rec.getMessage() for rec in caplog.records]
    assert len(logged) == 2
    assert "Node x does not decode" in logged[0]
    assert "Node a does not decode" in logged[1]


async def test_listeners_and_wait_changed(caplog: pytest.LogCaptureFixture) -> None:
    api = FakeApi()
    api.rv = "1"
    async with running(api) as (r, events):
        await r.synced.wait()
        feed = await api.opened.receive()
        seen = r.version
        assert seen == 0

        def broken(event: WatchEvent[Any]) -> None:
            raise RuntimeError("listener bug")

        r.add_listener(broken)
        after: list[tuple[str, str, str]] = []
        r.add_listener(lambda e: after.append((e.type, e.name, e.resource_version)))
        got: list[int] = []

        async def waiter() -> None:
            got.append(await r.wait_changed(seen))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await settle()
            assert got == []  # nothing changed yet
            feed.send_nowait(bookmark("4"))  # not a change
            await settle()
            assert got == []
            feed.send_nowait(line("ADDED", node("a", "5")))
        assert got == [1]
        assert events.take() == [("ADDED", "a", "5")]
        assert after == [("ADDED", "a", "5")]  # called despite the broken one
        assert "a" in r.items
        assert await r.wait_changed(0) == 1  # already changed: returns at once
    assert any("listener" in rec.getMessage() for rec in caplog.records)


async def test_namespaced_keys() -> None:
    api = FakeApi()
    pod = {"metadata": {"name": "web", "namespace": "ns1", "resourceVersion": "4"}}
    api.put(pod)
    api.rv = "4"
    async with running(api, PODS, field_selector="spec.nodeName=n1") as (r, _):
        feed = await api.opened.receive()
        feed.send_nowait(
            line("DELETED", {**pod, "metadata": {**pod["metadata"], "resourceVersion": "5"}})
        )
        feed.send_nowait(
            line("ADDED", {"metadata": {"name": "web", "namespace": "ns2", "resourceVersion": "6"}})
        )
        await settle()
        assert set(r.items) == {"ns2/web"}
        assert api.watch_params[0]["fieldSelector"] == "spec.nodeName=n1"


async def test_undeclared_verbs() -> None:
    async with KubeClient(KubeConfig(server="https://k8s.test")) as c:
        with pytest.raises(VerbNotAllowed, match="list on secrets"):
            Reflector(c, SECRETS, name="secrets")
