"""Label and field selectors on lists and watches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.kubeapi._helpers import WIDGETS, pod, watching, widget

Create = Callable[..., Any]
MERGE = {"Content-Type": "application/merge-patch+json"}


async def _labelled(create: Create) -> None:
    for name, labels in (
        ("a", {"tier": "web", "env": "prod"}),
        ("b", {"tier": "db", "env": "prod", "version": "3"}),
        ("c", {"tier": "web"}),
        ("d", {}),
    ):
        obj = widget(name)
        obj["metadata"]["labels"] = labels
        await create(obj)


@pytest.mark.parametrize(
    ("selector", "names"),
    [
        ("tier=web", ["a", "c"]),
        ("tier==web", ["a", "c"]),
        ("tier!=web", ["b", "d"]),
        ("tier in (web, db)", ["a", "b", "c"]),
        ("tier notin (web)", ["b", "d"]),
        ("env", ["a", "b"]),
        ("!env", ["c", "d"]),
        ("tier=web,env=prod", ["a"]),
        ("version>2", ["b"]),
        ("", ["a", "b", "c", "d"]),
    ],
)
async def test_label_selectors_on_list(
    client: httpx.AsyncClient, create: Create, selector: str, names: list[str]
) -> None:
    await _labelled(create)
    response = await client.get(WIDGETS, params={"labelSelector": selector})
    assert response.status_code == 200, response.text
    assert [i["metadata"]["name"] for i in response.json()["items"]] == names


async def test_bad_label_selector_is_a_bad_request(client: httpx.AsyncClient) -> None:
    for selector in ("tier in web", "tier=(x", "Bad Key=1"):
        response = await client.get(WIDGETS, params={"labelSelector": selector})
        assert response.status_code == 400, selector
        assert response.json()["reason"] == "BadRequest"


async def test_field_selectors_on_custom_resources(
    client: httpx.AsyncClient, create: Create
) -> None:
    await create(widget("a", color="red"))
    await create(widget("b"))
    by_name = await client.get(WIDGETS, params={"fieldSelector": "metadata.name=b"})
    assert [i["metadata"]["name"] for i in by_name.json()["items"]] == ["b"]
    by_color = await client.get(WIDGETS, params={"fieldSelector": "spec.color!=red"})
    assert [i["metadata"]["name"] for i in by_color.json()["items"]] == ["b"]
    unknown = await client.get(WIDGETS, params={"fieldSelector": "spec.size=3"})
    assert unknown.status_code == 400
    assert unknown.json()["message"] == (
        '"spec.size" is not a known field selector: only "metadata.name", "metadata.namespace",'
        ' "spec.color"'
    )


async def test_pod_field_selectors(client: httpx.AsyncClient) -> None:
    for name, node in (("p1", "k8s02"), ("p2", "k8s03"), ("p3", "k8s02")):
        await client.post("/api/v1/namespaces/default/pods", json=pod(name, node=node))
    await client.patch(
        "/api/v1/namespaces/default/pods/p3/status",
        json={"status": {"phase": "Running"}},
        headers=MERGE,
    )

    async def names(selector: str) -> list[str]:
        response = await client.get("/api/v1/pods", params={"fieldSelector": selector})
        assert response.status_code == 200, response.text
        return [i["metadata"]["name"] for i in response.json()["items"]]

    assert await names("spec.nodeName=k8s02") == ["p1", "p3"]
    assert await names("spec.nodeName=k8s02,status.phase!=Running") == ["p1"]
    assert await names("status.phase==Running") == ["p3"]
    assert await names("metadata.namespace=default,metadata.name=p2") == ["p2"]
    unsupported = await client.get("/api/v1/pods", params={"fieldSelector": "spec.hostname=x"})
    assert unsupported.status_code == 400
    assert unsupported.json()["message"] == "field label not supported: spec.hostname"


async def test_watch_with_a_selector_adds_and_deletes_on_label_changes(
    client: httpx.AsyncClient, create: Create
) -> None:
    created = await create(widget("w1"))
    rv = created["metadata"]["resourceVersion"]
    path = f"{WIDGETS}/w1"
    await client.patch(path, json={"metadata": {"labels": {"sel": "yes"}}}, headers=MERGE)
    await client.patch(path, json={"spec": {"size": 4}}, headers=MERGE)
    await client.patch(path, json={"metadata": {"labels": {"sel": "no"}}}, headers=MERGE)
    await client.patch(path, json={"spec": {"size": 5}}, headers=MERGE)
    async with watching(client, WIDGETS, resourceVersion=rv, labelSelector="sel=yes") as watch:
        events = await watch.wait_for(3)
        sentinel = widget("sentinel")
        sentinel["metadata"]["labels"] = {"sel": "yes"}
        await create(sentinel)
        await watch.wait_for(4)
    assert watch.summary() == [
        ("ADDED", "w1"),
        ("MODIFIED", "w1"),
        ("DELETED", "w1"),
        ("ADDED", "sentinel"),
    ]
    assert events[1]["object"]["spec"]["size"] == 4
    # the DELETED one carries the last matching state, at the change's resourceVersion
    assert events[2]["object"]["metadata"]["labels"] == {"sel": "yes"}
    assert int(events[2]["object"]["metadata"]["resourceVersion"]) > int(
        events[1]["object"]["metadata"]["resourceVersion"]
    )


async def test_watch_with_a_field_selector(client: httpx.AsyncClient) -> None:
    pods = "/api/v1/namespaces/default/pods"
    await client.post(pods, json=pod("mine", node="k8s02"))
    await client.post(pods, json=pod("other", node="k8s03"))
    async with watching(client, "/api/v1/pods", fieldSelector="spec.nodeName=k8s02") as watch:
        await watch.wait_for(1)
        await client.post(pods, json=pod("other2", node="k8s03"))
        await client.post(pods, json=pod("sentinel", node="k8s02"))
        await watch.wait_for(2)
    assert watch.summary() == [("ADDED", "mine"), ("ADDED", "sentinel")]
