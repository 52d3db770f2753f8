"""PATCH: JSON merge patch, JSON patch, and the media types a custom
resource refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.kubeapi._helpers import WIDGETS, widget

Create = Callable[..., Any]
MERGE = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


async def test_merge_patch_sets_and_removes(client: httpx.AsyncClient, create: Create) -> None:
    await create(widget("w1", name="abc", tags=["x"]))
    patch = {"spec": {"size": 9, "name": None}, "metadata": {"labels": {"a": "b"}}}
    response = await client.patch(f"{WIDGETS}/w1", json=patch, headers=MERGE)
    assert response.status_code == 200, response.text
    spec = response.json()["spec"]
    assert spec["size"] == 9 and "name" not in spec and spec["tags"] == ["x"]
    assert response.json()["metadata"]["labels"] == {"a": "b"}
    assert response.json()["metadata"]["generation"] == 2


async def test_merge_patch_resource_version_is_a_precondition(
    client: httpx.AsyncClient, create: Create
) -> None:
    obj = await create(widget("w1"))
    stale = {"metadata": {"resourceVersion": "1"}, "spec": {"size": 5}}
    response = await client.patch(f"{WIDGETS}/w1", json=stale, headers=MERGE)
    assert response.status_code == 409
    assert response.json()["reason"] == "Conflict"
    current = {
        "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
        "spec": {"size": 5},
    }
    assert (await client.patch(f"{WIDGETS}/w1", json=current, headers=MERGE)).status_code == 200


async def test_json_patch_operations(client: httpx.AsyncClient, create: Create) -> None:
    await create(widget("w1", tags=["a"]))
    ops = [
        {"op": "test", "path": "/spec/size", "value": 3},
        {"op": "replace", "path": "/spec/size", "value": 4},
        {"op": "add", "path": "/spec/tags/-", "value": "b"},
        {"op": "add", "path": "/metadata/labels", "value": {"k/x": "v"}},
        {"op": "remove", "path": "/spec/tags/0"},
    ]
    response = await client.patch(f"{WIDGETS}/w1", json=ops, headers=JSON_PATCH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["spec"]["size"] == 4 and body["spec"]["tags"] == ["b"]
    assert body["metadata"]["labels"] == {"k/x": "v"}


async def test_failed_json_patch_test_is_invalid(client: httpx.AsyncClient, create: Create) -> None:
    await create(widget("w1"))
    ops = [{"op": "test", "path": "/spec/size", "value": 99}]
    response = await client.patch(f"{WIDGETS}/w1", json=ops, headers=JSON_PATCH)
    assert response.status_code == 422
    assert response.json()["reason"] == "Invalid"


async def test_strategic_merge_on_a_custom_resource_is_unsupported(
    client: httpx.AsyncClient, create: Create
) -> None:
    await create(widget("w1"))
    response = await client.patch(
        f"{WIDGETS}/w1",
        json={"spec": {"size": 5}},
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert response.status_code == 415
    body = response.json()
    assert body["reason"] == "UnsupportedMediaType"
    assert body["message"].startswith("the body of the request was in an unknown format")
    other = await client.patch(
        f"{WIDGETS}/w1", content=b"{}", headers={"Content-Type": "text/plain"}
    )
    assert other.status_code == 415


async def test_patch_of_a_missing_object_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.patch(f"{WIDGETS}/nope", json={"spec": {}}, headers=MERGE)
    assert response.status_code == 404


async def test_patched_object_is_validated(client: httpx.AsyncClient, create: Create) -> None:
    await create(widget("w1"))
    response = await client.patch(f"{WIDGETS}/w1", json={"spec": {"size": 0}}, headers=MERGE)
    assert response.status_code == 422
    assert response.json()["details"]["causes"][0]["field"] == "spec.size"


async def test_strategic_merge_on_a_builtin_merges_maps(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/nodes", json={"metadata": {"name": "n1", "labels": {"a": "1"}}})
    response = await client.patch(
        "/api/v1/nodes/n1",
        json={"metadata": {"labels": {"b": "2"}}},
        headers={"Content-Type": "application/strategic-merge-patch+json"},
    )
    assert response.status_code == 200
    assert response.json()["metadata"]["labels"] == {"a": "1", "b": "2"}
