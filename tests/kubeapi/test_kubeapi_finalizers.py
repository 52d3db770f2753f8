"""Finalizers: DELETE marks, the last finalizer's removal deletes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.kubeapi._helpers import WIDGETS, watching, widget

Create = Callable[..., Any]
MERGE = {"Content-Type": "application/merge-patch+json"}


def held(name: str, *finalizers: str) -> dict[str, Any]:
    obj = widget(name)
    obj["metadata"]["finalizers"] = list(finalizers)
    return obj


async def test_delete_with_finalizers_marks_the_object(
    client: httpx.AsyncClient, create: Create
) -> None:
    created = await create(held("w1", "example.org/a"))
    response = await client.delete(f"{WIDGETS}/w1")
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "Widget"
    assert body["metadata"]["deletionTimestamp"].endswith("Z")
    assert body["metadata"]["deletionGracePeriodSeconds"] == 0
    assert body["metadata"]["finalizers"] == ["example.org/a"]
    # markAsDeleting bumps the generation of an object that has one
    assert body["metadata"]["generation"] == created["metadata"]["generation"] + 1
    assert int(body["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    still = await client.get(f"{WIDGETS}/w1")
    assert still.status_code == 200
    again = await client.delete(f"{WIDGETS}/w1")
    assert again.json()["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]


async def test_removing_the_last_finalizer_deletes(
    client: httpx.AsyncClient, create: Create
) -> None:
    await create(held("w1", "example.org/a", "example.org/b"))
    await client.delete(f"{WIDGETS}/w1")
    one_left = await client.patch(
        f"{WIDGETS}/w1", json={"metadata": {"finalizers": ["example.org/b"]}}, headers=MERGE
    )
    assert one_left.status_code == 200
    assert (await client.get(f"{WIDGETS}/w1")).status_code == 200
    current = (await client.get(f"{WIDGETS}/w1")).json()
    current["metadata"]["finalizers"] = []
    last = await client.put(f"{WIDGETS}/w1", json=current)
    assert last.status_code == 200
    assert (await client.get(f"{WIDGETS}/w1")).status_code == 404


async def test_no_new_finalizer_on_an_object_being_deleted(
    client: httpx.AsyncClient, create: Create
) -> None:
    await create(held("w1", "example.org/a"))
    await client.delete(f"{WIDGETS}/w1")
    patch = {"metadata": {"finalizers": ["example.org/a", "example.org/new"]}}
    response = await client.patch(f"{WIDGETS}/w1", json=patch, headers=MERGE)
    assert response.status_code == 422
    cause = response.json()["details"]["causes"][0]
    assert cause["field"] == "metadata.finalizers"
    assert cause["reason"] == "FieldValueForbidden"
    assert "no new finalizers can be added if the object is being deleted" in cause["message"]


async def test_watch_sees_modified_then_deleted(client: httpx.AsyncClient, create: Create) -> None:
    created = await create(held("w1", "example.org/a"))
    rv = created["metadata"]["resourceVersion"]
    async with watching(client, WIDGETS, resourceVersion=rv) as watch:
        await client.delete(f"{WIDGETS}/w1")
        marked = await watch.wait_for(1)
        await client.patch(f"{WIDGETS}/w1", json={"metadata": {"finalizers": None}}, headers=MERGE)
        events = await watch.wait_for(2)
    assert watch.summary() == [("MODIFIED", "w1"), ("DELETED", "w1")]
    assert marked[0]["object"]["metadata"]["deletionTimestamp"]
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(
        events[0]["object"]["metadata"]["resourceVersion"]
    )
