"""create, get, list, update, delete of a custom resource, with the
preconditions and Status errors of the real server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from testbed.kubeapi import KubeApi
from tests.kubeapi._helpers import WIDGETS, widget

Create = Callable[..., Any]


async def test_create_sets_server_fields(api: KubeApi, create: Create) -> None:
    obj = await create(widget("w1"))
    meta = obj["metadata"]
    assert meta["generation"] == 1
    assert meta["resourceVersion"] == str(api.resource_version)
    assert len(meta["uid"]) == 36
    assert meta["creationTimestamp"].endswith("Z")
    assert (obj["kind"], obj["apiVersion"]) == ("Widget", "test.example.org/v1alpha1")


async def test_create_twice_is_already_exists(client: httpx.AsyncClient, create: Create) -> None:
    await create(widget("w1"))
    response = await client.post(WIDGETS, json=widget("w1"))
    assert response.status_code == 409
    assert response.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'widgets.test.example.org "w1" already exists',
        "reason": "AlreadyExists",
        "details": {"name": "w1", "group": "test.example.org", "kind": "widgets"},
        "code": 409,
    }


async def test_create_with_a_resource_version_is_a_bad_request(
    client: httpx.AsyncClient,
) -> None:
    obj = widget("w1")
    obj["metadata"]["resourceVersion"] = "5"
    response = await client.post(WIDGETS, json=obj)
    assert response.status_code == 400
    assert (
        response.json()["message"] == "resourceVersion should not be set on objects to be created"
    )


async def test_get_missing_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.get(f"{WIDGETS}/nope")
    assert response.status_code == 404
    body = response.json()
    assert (body["reason"], body["message"]) == (
        "NotFound",
        'widgets.test.example.org "nope" not found',
    )
    assert body["details"] == {"name": "nope", "group": "test.example.org", "kind": "widgets"}


async def test_list_items_carry_kind_and_api_version(
    client: httpx.AsyncClient, create: Create
) -> None:
    await create(widget("b"))
    await create(widget("a"))
    body = (await client.get(WIDGETS)).json()
    assert (body["kind"], body["apiVersion"]) == ("WidgetList", "test.example.org/v1alpha1")
    assert [i["metadata"]["name"] for i in body["items"]] == ["a", "b"]
    assert all(i["kind"] == "Widget" for i in body["items"])


async def test_list_pages_with_limit_and_continue(
    client: httpx.AsyncClient, create: Create
) -> None:
    for name in ("a", "b", "c"):
        await create(widget(name))
    first = (await client.get(WIDGETS, params={"limit": "2"})).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["a", "b"]
    assert first["metadata"]["remainingItemCount"] == 1
    rest = await client.get(
        WIDGETS, params={"limit": "2", "continue": first["metadata"]["continue"]}
    )
    assert [i["metadata"]["name"] for i in rest.json()["items"]] == ["c"]
    assert "continue" not in rest.json()["metadata"]


async def test_update_needs_the_current_resource_version(
    client: httpx.AsyncClient, create: Create
) -> None:
    obj = await create(widget("w1"))
    stale = dict(obj, metadata={**obj["metadata"], "resourceVersion": "1"})
    conflict = await client.put(f"{WIDGETS}/w1", json=stale)
    assert conflict.status_code == 409
    assert conflict.json()["reason"] == "Conflict"
    assert conflict.json()["message"] == (
        'Operation cannot be fulfilled on widgets.test.example.org "w1": the object has been'
        " modified; please apply your changes to the latest version and try again"
    )
    obj["spec"]["size"] = 4
    updated = await client.put(f"{WIDGETS}/w1", json=obj)
    assert updated.status_code == 200
    assert int(updated.json()["metadata"]["resourceVersion"]) > int(
        obj["metadata"]["resourceVersion"]
    )


async def test_custom_resource_put_without_resource_version_is_invalid(
    client: httpx.AsyncClient, create: Create
) -> None:
    obj = await create(widget("w1"))
    del obj["metadata"]["resourceVersion"]
    response = await client.put(f"{WIDGETS}/w1", json=obj)
    assert response.status_code == 422
    assert response.json()["message"] == (
        'Widget.test.example.org "w1" is invalid: metadata.resourceVersion: Invalid value: 0x0:'
        " must be specified for an update"
    )


async def test_builtin_put_without_resource_version_is_unconditional(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/api/v1/nodes", json={"metadata": {"name": "n1"}})
    response = await client.put(
        "/api/v1/nodes/n1", json={"metadata": {"name": "n1", "labels": {"a": "b"}}}
    )
    assert response.status_code == 200
    assert response.json()["metadata"]["labels"] == {"a": "b"}


async def test_generation_counts_spec_changes_only(
    client: httpx.AsyncClient, create: Create
) -> None:
    obj = await create(widget("w1"))
    obj["metadata"]["labels"] = {"team": "net"}
    obj = (await client.put(f"{WIDGETS}/w1", json=obj)).json()
    assert obj["metadata"]["generation"] == 1
    obj["spec"]["size"] = 7
    obj = (await client.put(f"{WIDGETS}/w1", json=obj)).json()
    assert obj["metadata"]["generation"] == 2
    status = await client.patch(
        f"{WIDGETS}/w1/status",
        json={"status": {"phase": "Ready"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert status.json()["metadata"]["generation"] == 2


async def test_unchanged_update_writes_nothing(
    api: KubeApi, client: httpx.AsyncClient, create: Create
) -> None:
    obj = await create(widget("w1"))
    before = api.resource_version
    same = await client.put(f"{WIDGETS}/w1", json=obj)
    assert same.status_code == 200
    assert same.json()["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    assert api.resource_version == before


async def test_body_and_url_must_agree(client: httpx.AsyncClient, create: Create) -> None:
    obj = await create(widget("w1"))
    renamed = dict(obj, metadata={**obj["metadata"], "name": "w2"})
    response = await client.put(f"{WIDGETS}/w1", json=renamed)
    assert response.status_code == 400
    assert response.json()["message"] == (
        "the name of the object (w2) does not match the name on the URL (w1)"
    )
    wrong_kind = dict(widget("w3"), kind="Gadget")
    assert (await client.post(WIDGETS, json=wrong_kind)).status_code == 400
    no_kind = widget("w4")
    del no_kind["kind"]
    assert (await client.post(WIDGETS, json=no_kind)).json()["reason"] == "BadRequest"


async def test_names_and_finalizers_are_checked(client: httpx.AsyncClient) -> None:
    bad_name = await client.post(WIDGETS, json=widget("Not_A_Name"))
    assert bad_name.status_code == 422
    assert bad_name.json()["details"]["causes"][0]["field"] == "metadata.name"
    too_long = await client.post(WIDGETS, json=widget("a" * 254))
    assert too_long.status_code == 422
    assert "must be no more than 253 characters" in too_long.json()["message"]
    obj = widget("w1")
    obj["metadata"]["finalizers"] = ["example.org/ok", "not a finalizer"]
    bad_finalizer = await client.post(WIDGETS, json=obj)
    assert bad_finalizer.status_code == 422
    assert bad_finalizer.json()["details"]["causes"][0]["field"] == "metadata.finalizers[1]"


async def test_generate_name(client: httpx.AsyncClient) -> None:
    obj = widget("")
    obj["metadata"] = {"generateName": "wid-"}
    created = await client.post(WIDGETS, json=obj)
    assert created.status_code == 201
    name = created.json()["metadata"]["name"]
    assert name.startswith("wid-") and len(name) == len("wid-") + 5


async def test_delete_answers_a_success_status(client: httpx.AsyncClient, create: Create) -> None:
    obj = await create(widget("w1"))
    response = await client.delete(f"{WIDGETS}/w1")
    assert response.status_code == 200
    assert response.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": "w1",
            "group": "test.example.org",
            "kind": "widgets",
            "uid": obj["metadata"]["uid"],
        },
    }
    assert (await client.get(f"{WIDGETS}/w1")).status_code == 404
    assert (await client.delete(f"{WIDGETS}/w1")).status_code == 404


async def test_delete_preconditions(client: httpx.AsyncClient, create: Create) -> None:
    obj = await create(widget("w1"))
    wrong_uid = {"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}}
    response = await client.request("DELETE", f"{WIDGETS}/w1", json=wrong_uid)
    assert response.status_code == 409
    assert "Precondition failed: UID in precondition" in response.json()["message"]
    wrong_rv = {"preconditions": {"resourceVersion": "1"}}
    response = await client.request("DELETE", f"{WIDGETS}/w1", json=wrong_rv)
    assert response.status_code == 409
    assert "Precondition failed: ResourceVersion in precondition: 1" in response.json()["message"]
    right = {
        "preconditions": {
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
        }
    }
    assert (await client.request("DELETE", f"{WIDGETS}/w1", json=right)).status_code == 200


async def test_dry_run_stores_nothing(api: KubeApi, client: httpx.AsyncClient) -> None:
    response = await client.post(WIDGETS, json=widget("w1"), params={"dryRun": "All"})
    assert response.status_code == 201
    assert api.objects("test.example.org", "widgets") == []


async def test_delete_collection_by_label(client: httpx.AsyncClient, create: Create) -> None:
    for name, team in (("a", "x"), ("b", "y"), ("c", "x")):
        obj = widget(name)
        obj["metadata"]["labels"] = {"team": team}
        await create(obj)
    response = await client.delete(WIDGETS, params={"labelSelector": "team=x"})
    assert response.status_code == 200
    assert [i["metadata"]["name"] for i in response.json()["items"]] == ["a", "c"]
    left = (await client.get(WIDGETS)).json()["items"]
    assert [i["metadata"]["name"] for i in left] == ["b"]
