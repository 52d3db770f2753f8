"""CustomResourceDefinitions: loaded at start or POSTed, served at once,
several versions, namespaced scope, deletion."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import yaml

from testbed.kubeapi import KubeApi, load_crd_documents, open_kubeapi
from tests.kubeapi._helpers import HERE, WIDGETS, watching, widget

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
SCHEMA = {
    "openAPIV3Schema": {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
}


def gadget_crd() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.test.example.org"},
        "spec": {
            "group": "test.example.org",
            "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": copy.deepcopy(SCHEMA)},
                {
                    "name": "v1beta1",
                    "served": True,
                    "storage": False,
                    "schema": copy.deepcopy(SCHEMA),
                },
            ],
        },
    }


def gadget(name: str, version: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": f"test.example.org/{version}",
        "kind": "Gadget",
        "metadata": {"name": name},
        "spec": {"n": 1},
    }


async def test_posted_crd_is_established_and_served(client: httpx.AsyncClient) -> None:
    response = await client.post(CRDS, json=gadget_crd())
    assert response.status_code == 201, response.text
    crd = response.json()
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["spec"]["names"]["listKind"] == "GadgetList"
    assert crd["status"]["storedVersions"] == ["v1"]
    got = (await client.get(f"{CRDS}/gadgets.test.example.org")).json()
    assert got["metadata"]["generation"] == 1

    v1 = "/apis/test.example.org/v1/namespaces/default/gadgets"
    created = await client.post(v1, json=gadget("g1"))
    assert created.status_code == 201, created.text
    assert created.json()["metadata"]["namespace"] == "default"
    beta = await client.get("/apis/test.example.org/v1beta1/namespaces/default/gadgets/g1")
    assert beta.json()["apiVersion"] == "test.example.org/v1beta1"
    everywhere = (await client.get("/apis/test.example.org/v1/gadgets")).json()
    assert [i["metadata"]["name"] for i in everywhere["items"]] == ["g1"]
    missing_ns = await client.post(
        "/apis/test.example.org/v1/namespaces/nowhere/gadgets", json=gadget("g2")
    )
    assert missing_ns.status_code == 404


async def test_crd_name_must_be_plural_dot_group(client: httpx.AsyncClient) -> None:
    crd = gadget_crd()
    crd["metadata"]["name"] = "wrong.test.example.org"
    response = await client.post(CRDS, json=crd)
    assert response.status_code == 422
    assert response.json()["details"]["causes"][0]["field"] == "metadata.name"
    assert (await client.get("/apis/test.example.org/v1/gadgets")).status_code == 404


async def test_deleting_a_crd_deletes_its_resources(
    api: KubeApi, client: httpx.AsyncClient
) -> None:
    await client.post(WIDGETS, json=widget("w1"))
    async with watching(client, WIDGETS, resourceVersion=str(api.resource_version)) as watch:
        response = await client.delete(f"{CRDS}/widgets.test.example.org")
        assert response.status_code == 200
        await watch.wait_for(1)
        with trio.fail_after(5):
            await watch.ended.wait()
    assert watch.summary() == [("DELETED", "w1")]
    assert watch.error is None
    assert (await client.get(WIDGETS)).status_code == 404
    assert api.objects("test.example.org", "widgets") == []


def test_loader_takes_files_and_directories_and_skips_other_kinds() -> None:
    from_dir = load_crd_documents([HERE])
    assert [c["metadata"]["name"] for c in from_dir] == ["widgets.test.example.org"]
    from_file = load_crd_documents([HERE / "widgets-crd.yaml"])
    assert from_file == from_dir


async def test_a_broken_crd_file_stops_the_start(tmp_path: Path) -> None:
    crd = gadget_crd()
    crd["spec"]["scope"] = "Somewhere"
    path = tmp_path / "broken.yaml"

    path.write_text(yaml.safe_dump(crd))
    with pytest.raises(ValueError, match=r"gadgets\.test\.example\.org cannot be loaded"):
        async with open_kubeapi(crd_paths=[path]):
            pass  # pragma: no cover
