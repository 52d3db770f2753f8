"""Watches: replay, synthetic ADDED, 410 after compaction, bookmarks,
timeouts, and connections that end badly."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import trio

from testbed.kubeapi import KubeApi, open_kubeapi
from tests.kubeapi._helpers import WIDGETS, WIDGETS_CRD, lines, make_client, pod, watching, widget

Create = Callable[..., Any]
MERGE = {"Content-Type": "application/merge-patch+json"}


async def test_watch_from_zero_is_synthetic_added_then_live(
    client: httpx.AsyncClient, create: Create
) -> None:
    await create(widget("w1"))
    async with watching(client, WIDGETS, resourceVersion="0") as watch:
        assert watch.response.headers["content-type"] == "application/json"
        assert watch.response.headers["transfer-encoding"] == "chunked"
        [first] = await watch.wait_for(1)
        assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "w1")
        assert first["object"]["kind"] == "Widget"
        await create(widget("w2"))
        await client.patch(f"{WIDGETS}/w2", json={"spec": {"size": 8}}, headers=MERGE)
        await client.delete(f"{WIDGETS}/w2")
        events = await watch.wait_for(4)
    assert watch.summary() == [
        ("ADDED", "w1"),
        ("ADDED", "w2"),
        ("MODIFIED", "w2"),
        ("DELETED", "w2"),
    ]
    assert events[2]["object"]["spec"]["size"] == 8


async def test_watch_without_resource_version_starts_with_current_state(
    client: httpx.AsyncClient, create: Create
) -> None:
    await create(widget("w1"))
    async with watching(client, WIDGETS) as watch:
        await watch.wait_for(1)
        await create(widget("sentinel"))
        await watch.wait_for(2)
    assert watch.summary() == [("ADDED", "w1"), ("ADDED", "sentinel")]


async def test_watch_replays_history_after_a_resource_version(
    client: httpx.AsyncClient, create: Create
) -> None:
    first = await create(widget("a"))
    await create(widget("b"))
    await client.patch(f"{WIDGETS}/a", json={"spec": {"size": 5}}, headers=MERGE)
    await client.delete(f"{WIDGETS}/b")
    since = first["metadata"]["resourceVersion"]
    async with watching(client, WIDGETS, resourceVersion=since) as watch:
        events = await watch.wait_for(3)
        await create(widget("sentinel"))
        await watch.wait_for(4)
    assert watch.summary() == [
        ("ADDED", "b"),
        ("MODIFIED", "a"),
        ("DELETED", "b"),
        ("ADDED", "sentinel"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(since)


async def test_watch_from_a_compacted_version_gets_410_expired(
    api: KubeApi, client: httpx.AsyncClient, create: Create
) -> None:
    old = (await create(widget("a")))["metadata"]["resourceVersion"]
    await client.patch(f"{WIDGETS}/a", json={"spec": {"size": 5}}, headers=MERGE)
    api.compact()
    with trio.fail_after(5):
        response = await client.get(WIDGETS, params={"watch": "1", "resourceVersion": old})
    assert response.status_code == 200
    [event] = lines(response.text)
    assert event == {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {old} ({api.resource_version})",
            "reason": "Expired",
            "code": 410,
        },
    }
    exact = await client.get(
        WIDGETS, params={"resourceVersion": old, "resourceVersionMatch": "Exact"}
    )
    assert (exact.status_code, exact.json()["reason"]) == (410, "Expired")
    async with watching(client, WIDGETS, resourceVersion=str(api.resource_version)) as watch:
        await create(widget("sentinel"))
        await watch.wait_for(1)
    assert watch.summary() == [("ADDED", "sentinel")]


async def test_bookmarks_when_asked(
    api: KubeApi, client: httpx.AsyncClient, create: Create
) -> None:
    await create(widget("a"))
    now = str(api.resource_version)
    async with watching(client, WIDGETS, resourceVersion=now, allowWatchBookmarks="true") as watch:
        bookmarks = await watch.wait_for(2)  # the fixture's interval is 0.2 s
    assert bookmarks[0] == {
        "type": "BOOKMARK",
        "object": {
            "kind": "Widget",
            "apiVersion": "test.example.org/v1alpha1",
            "metadata": {"resourceVersion": now},
        },
    }


async def test_no_bookmarks_unless_asked(
    api: KubeApi, client: httpx.AsyncClient, create: Create
) -> None:
    async with watching(client, WIDGETS, resourceVersion=str(api.resource_version)) as watch:
        await trio.sleep(0.5)
        await create(widget("sentinel"))
        await watch.wait_for(1)
    assert watch.summary() == [("ADDED", "sentinel")]


async def test_bookmark_follows_the_events_before_it(
    client: httpx.AsyncClient, create: Create
) -> None:
    start = (await create(widget("a")))["metadata"]["resourceVersion"]
    async with watching(client, WIDGETS, resourceVersion=start, allowWatchBookmarks="1") as watch:
        await create(widget("b"))
        events = await watch.wait_for(2)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) >= int(
        events[0]["object"]["metadata"]["resourceVersion"]
    )


async def test_timeout_seconds_ends_the_stream(client: httpx.AsyncClient) -> None:
    start = trio.current_time()
    with trio.fail_after(5):
        response = await client.get(WIDGETS, params={"watch": "1", "timeoutSeconds": "1"})
    assert response.status_code == 200
    assert 0.9 <= trio.current_time() - start < 3


async def test_drop_watches_breaks_the_connection(
    api: KubeApi, client: httpx.AsyncClient, create: Create
) -> None:
    await create(widget("a"))
    async with watching(client, WIDGETS) as watch:
        await watch.wait_for(1)
        api.drop_watches()
        with trio.fail_after(5):
            await watch.ended.wait()
    assert isinstance(watch.error, httpx.RemoteProtocolError | httpx.ReadError), watch.error
    with trio.fail_after(5):
        while api.open_watches:
            await trio.sleep(0.01)
    assert (await client.get(WIDGETS)).status_code == 200


async def test_client_hanging_up_releases_the_watch(
    api: KubeApi, client: httpx.AsyncClient
) -> None:
    async with watching(client, WIDGETS):
        with trio.fail_after(5):
            while not api.open_watches:
                await trio.sleep(0.01)
    with trio.fail_after(5):
        while api.open_watches:
            await trio.sleep(0.01)


async def test_namespaced_watch_sees_its_namespace_only(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/namespaces", json={"metadata": {"name": "other"}})
    await client.post("/api/v1/namespaces/default/pods", json=pod("here"))
    await client.post("/api/v1/namespaces/other/pods", json=pod("there", "other"))
    async with watching(client, "/api/v1/namespaces/default/pods") as watch:
        await watch.wait_for(1)
        await client.post("/api/v1/namespaces/other/pods", json=pod("there2", "other"))
        await client.post("/api/v1/namespaces/default/pods", json=pod("sentinel"))
        await watch.wait_for(2)
    assert watch.summary() == [("ADDED", "here"), ("ADDED", "sentinel")]


async def test_invalid_resource_version_is_a_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.get(WIDGETS, params={"watch": "1", "resourceVersion": "abc"})
    assert (response.status_code, response.json()["reason"]) == (400, "BadRequest")


async def test_server_exit_ends_open_watches_cleanly() -> None:
    received: list[str] = []
    finished = trio.Event()

    async def reader(api: KubeApi, *, task_status: trio.TaskStatus[None]) -> None:
        async with make_client(api, api.token) as client:
            async with client.stream("GET", WIDGETS, params={"watch": "1"}) as r:
                task_status.started()
                async for line in r.aiter_lines():
                    received.append(line)
        finished.set()

    async with trio.open_nursery() as nursery:
        async with open_kubeapi(crd_paths=[WIDGETS_CRD]) as api:
            await nursery.start(reader, api)
            async with make_client(api, api.token) as client:
                await client.post(WIDGETS, json=widget("w1"))
            with trio.fail_after(5):
                while not received:
                    await trio.sleep(0.01)
        with trio.fail_after(5):
            await finished.wait()
    assert json.loads(received[0])["type"] == "ADDED"
