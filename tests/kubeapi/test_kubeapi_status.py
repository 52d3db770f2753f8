"""The status subresource: the main resource cannot write status, /status
writes nothing else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.kubeapi._helpers import WIDGETS, pod, widget

Create = Callable[..., Any]
MERGE = {"Content-Type": "application/merge-patch+json"}


async def test_create_drops_status(create: Create) -> None:
    obj = widget("w1")
    obj["status"] = {"phase": "Ready"}
    created = await create(obj)
    assert "status" not in created


async def test_main_resource_writes_keep_the_stored_status(
    client: httpx.AsyncClient, create: Create
) -> None:
    await create(widget("w1"))
    status = await client.patch(
        f"{WIDGETS}/w1/status", json={"status": {"phase": "A"}}, headers=MERGE
    )
    assert status.json()["status"] == {"phase": "A"}
    obj = status.json()
    obj["status"] = {"phase": "B"}
    obj["spec"]["size"] = 5
    put = (await client.put(f"{WIDGETS}/w1", json=obj)).json()
    assert (put["status"], put["spec"]["size"]) == ({"phase": "A"}, 5)
    patched = await client.patch(
        f"{WIDGETS}/w1", json={"status": {"phase": "C"}, "spec": {"size": 6}}, headers=MERGE
    )
    assert (patched.json()["status"], patched.json()["spec"]["size"]) == ({"phase": "A"}, 6)


async def test_status_writes_change_only_status(client: httpx.AsyncClient, create: Create) -> None:
    obj = await create(widget("w1"))
    obj["spec"]["size"] = 50
    obj["metadata"]["labels"] = {"sneaky": "yes"}
    obj["status"] = {
        "phase": "Ready",
        "nodes": {"k8s02": {"state": "Ready", "observedGeneration": 1}},
    }
    response = await client.put(f"{WIDGETS}/w1/status", json=obj)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"]["nodes"]["k8s02"]["state"] == "Ready"
    assert body["spec"]["size"] == 3
    assert "labels" not in body["metadata"]
    assert body["metadata"]["generation"] == 1


async def test_status_write_needs_the_current_resource_version(
    client: httpx.AsyncClient, create: Create
) -> None:
    obj = await create(widget("w1"))
    obj["status"] = {"phase": "Ready"}
    obj["metadata"]["resourceVersion"] = "1"
    response = await client.put(f"{WIDGETS}/w1/status", json=obj)
    assert response.status_code == 409


async def test_status_merge_patch_per_node_entries(
    client: httpx.AsyncClient, create: Create
) -> None:
    await create(widget("w1"))
    for node in ("k8s02", "k8s03"):
        patch = {"status": {"nodes": {node: {"state": "Ready", "observedGeneration": 1}}}}
        response = await client.patch(f"{WIDGETS}/w1/status", json=patch, headers=MERGE)
        assert response.status_code == 200
    nodes = (await client.get(f"{WIDGETS}/w1/status")).json()["status"]["nodes"]
    assert sorted(nodes) == ["k8s02", "k8s03"]


async def test_no_status_subresource_on_configmaps(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "c"}})
    response = await client.get("/api/v1/namespaces/default/configmaps/c/status")
    assert response.status_code == 404


async def test_pod_phase_is_written_through_status(client: httpx.AsyncClient) -> None:
    body = pod("p", node="k8s02")
    body["status"] = {"phase": "Running"}
    created = await client.post("/api/v1/namespaces/default/pods", json=body)
    assert created.json()["status"]["phase"] == "Pending"
    running = await client.patch(
        "/api/v1/namespaces/default/pods/p/status",
        json={"status": {"phase": "Running", "podIP": "10.1.0.5"}},
        headers=MERGE,
    )
    assert running.json()["status"]["phase"] == "Running"
