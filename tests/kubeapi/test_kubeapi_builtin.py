"""Built-in resources: URL layout, list shape, namespaces, the health and
version endpoints."""

from __future__ import annotations

import base64

import httpx

from testbed.kubeapi import KubeApi
from tests.kubeapi._helpers import make_client, pod


async def test_health_and_version_need_no_token(api: KubeApi) -> None:
    async with make_client(api) as anonymous:
        for path in ("/livez", "/readyz"):
            response = await anonymous.get(path)
            assert (response.status_code, response.text) == (200, "ok")
        version = (await anonymous.get("/version")).json()
        assert (version["major"], version["minor"]) == ("1", "31")


async def test_default_namespaces_exist(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/namespaces")
    assert response.status_code == 200
    body = response.json()
    assert (body["kind"], body["apiVersion"]) == ("NamespaceList", "v1")
    names = [item["metadata"]["name"] for item in body["items"]]
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
    default = body["items"][0]
    assert default["status"] == {"phase": "Active"}
    assert default["spec"] == {"finalizers": ["kubernetes"]}


async def test_typed_list_items_carry_no_kind_but_get_does(client: httpx.AsyncClient) -> None:
    """Like the real server: typed lists' items have no kind/apiVersion."""
    body = (await client.get("/api/v1/namespaces")).json()
    assert "kind" not in body["items"][0] and "apiVersion" not in body["items"][0]
    one = (await client.get("/api/v1/namespaces/default")).json()
    assert (one["kind"], one["apiVersion"]) == ("Namespace", "v1")


async def test_list_resource_version_is_the_current_one(
    api: KubeApi, client: httpx.AsyncClient
) -> None:
    await client.post("/api/v1/namespaces", json={"metadata": {"name": "extra"}})
    body = (await client.get("/api/v1/nodes")).json()
    assert body == {
        "kind": "NodeList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": str(api.resource_version)},
        "items": [],
    }


async def test_nodes_are_cluster_scoped_and_keep_status_on_create(
    client: httpx.AsyncClient,
) -> None:
    node = {"metadata": {"name": "k8s02"}, "status": {"addresses": [{"type": "InternalIP"}]}}
    created = await client.post("/api/v1/nodes", json=node)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == node["status"]
    assert (await client.get("/api/v1/nodes/k8s02")).status_code == 200
    assert (await client.get("/api/v1/namespaces/default/nodes/k8s02")).status_code == 404


async def test_pod_in_a_missing_namespace_is_not_found(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/namespaces/nowhere/pods", json=pod("p", "nowhere"))
    assert response.status_code == 404
    assert response.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'namespaces "nowhere" not found',
        "reason": "NotFound",
        "details": {"name": "nowhere", "kind": "namespaces"},
        "code": 404,
    }


async def test_pods_namespaced_urls_and_cross_namespace_list(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/namespaces", json={"metadata": {"name": "other"}})
    for name, namespace in (("a", "default"), ("b", "other")):
        response = await client.post(
            f"/api/v1/namespaces/{namespace}/pods", json=pod(name, namespace)
        )
        assert response.status_code == 201, response.text
        assert response.json()["status"]["phase"] == "Pending"
    got = (await client.get("/api/v1/namespaces/other/pods/b")).json()
    assert (got["kind"], got["metadata"]["namespace"]) == ("Pod", "other")
    assert (await client.get("/api/v1/namespaces/default/pods/b")).status_code == 404
    everywhere = (await client.get("/api/v1/pods")).json()
    assert everywhere["kind"] == "PodList"
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]] == [
        ("default", "a"),
        ("other", "b"),
    ]
    in_default = (await client.get("/api/v1/namespaces/default/pods")).json()
    assert [i["metadata"]["name"] for i in in_default["items"]] == ["a"]


async def test_pod_without_containers_is_invalid(client: httpx.AsyncClient) -> None:
    body = pod("p")
    body["spec"] = {}
    response = await client.post("/api/v1/namespaces/default/pods", json=body)
    assert response.status_code == 422
    assert response.json()["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}
    ]


async def test_secret_string_data_becomes_base64_data(client: httpx.AsyncClient) -> None:
    secret = {"metadata": {"name": "bgp"}, "stringData": {"password": "s3cret"}}
    response = await client.post("/api/v1/namespaces/default/secrets", json=secret)
    assert response.status_code == 201, response.text
    stored = (await client.get("/api/v1/namespaces/default/secrets/bgp")).json()
    assert "stringData" not in stored
    assert stored["type"] == "Opaque"
    assert base64.b64decode(stored["data"]["password"]) == b"s3cret"


async def test_configmap_crud(client: httpx.AsyncClient) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    cm = {"metadata": {"name": "server-config"}, "data": {"server.ini": "[default]\n"}}
    assert (await client.post(path, json=cm)).status_code == 201
    current = (await client.get(f"{path}/server-config")).json()
    current["data"]["extra"] = "1"
    updated = await client.put(f"{path}/server-config", json=current)
    assert updated.status_code == 200
    assert updated.json()["data"] == {"server.ini": "[default]\n", "extra": "1"}
    deleted = await client.delete(f"{path}/server-config")
    assert deleted.status_code == 200
    assert deleted.json()["status"] == "Success"


async def test_deleting_a_namespace_deletes_what_is_in_it(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/namespaces", json={"metadata": {"name": "gone"}})
    await client.post("/api/v1/namespaces/gone/pods", json=pod("p", "gone"))
    response = await client.delete("/api/v1/namespaces/gone")
    assert response.status_code == 200
    assert response.json()["kind"] == "Namespace"  # namespaces answer with the object
    assert (await client.get("/api/v1/namespaces/gone/pods/p")).status_code == 404
    assert (await client.get("/api/v1/namespaces/gone")).status_code == 404


async def test_unknown_resource_and_method(client: httpx.AsyncClient) -> None:
    missing = await client.get("/apis/nothing.example.org/v1/things")
    assert missing.status_code == 404
    assert missing.json()["message"] == "the server could not find the requested resource"
    named_post = await client.post("/api/v1/nodes/k8s01", json={"metadata": {"name": "k8s01"}})
    assert named_post.status_code == 405
    assert named_post.json()["reason"] == "MethodNotAllowed"


async def test_discovery_lists_the_served_resources(client: httpx.AsyncClient) -> None:
    core = (await client.get("/api/v1")).json()
    names = {r["name"] for r in core["resources"]}
    assert {"pods", "pods/status", "nodes", "namespaces", "secrets", "configmaps"} <= names
    groups = (await client.get("/apis")).json()
    assert "test.example.org" in {g["name"] for g in groups["groups"]}
    widgets = (await client.get("/apis/test.example.org/v1alpha1")).json()
    assert [r["name"] for r in widgets["resources"]] == ["widgets", "widgets/status"]
