"""A restart with ``state_path=``: objects (POSTed CRDs and their
resources too), uids, resourceVersions, tokens, CA and the request log
survive; resourceVersions never repeat; watches from before the restart
get 410 Expired, as after an etcd compaction."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from testbed.kubeapi import KubeApi, load_crd_documents, open_kubeapi
from tests.kubeapi._helpers import RBAC, WIDGETS, WIDGETS_CRD, make_client, pod, watching, widget

USER = "system:serviceaccount:test:reader"
GADGETS = "/apis/gadgets.example.org/v1/gadgets"
WIDGETS_CRD_NAME = "widgets.test.example.org"


def gadget_crd() -> dict[str, Any]:
    """A second CRD, POSTed at run time rather than loaded from a file."""
    (crd,) = load_crd_documents([WIDGETS_CRD])
    crd["metadata"]["name"] = "gadgets.gadgets.example.org"
    crd["spec"]["group"] = "gadgets.example.org"
    crd["spec"]["names"] = {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"}
    crd["spec"]["versions"][0]["name"] = "v1"
    return crd


def gadget(name: str) -> dict[str, Any]:
    body = widget(name)
    body["apiVersion"] = "gadgets.example.org/v1"
    body["kind"] = "Gadget"
    return body


def everything(api: KubeApi) -> dict[str, list[dict[str, Any]]]:
    return {
        "namespaces": api.objects("", "namespaces"),
        "pods": api.objects("", "pods"),
        "crds": api.objects("apiextensions.k8s.io", "customresourcedefinitions"),
        "widgets": api.objects("test.example.org", "widgets"),
        "gadgets": api.objects("gadgets.example.org", "gadgets"),
    }


async def test_restart_keeps_objects_counter_credentials_and_log(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    directory = tmp_path / "api"
    options: dict[str, Any] = {
        "crd_paths": [WIDGETS_CRD],
        "rbac_path": RBAC,
        "rbac_user": USER,
        "directory": directory,
        "state_path": state,
    }
    async with open_kubeapi(**options) as api:
        async with make_client(api, api.token) as client:
            crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
            assert (await client.post(crds, json=gadget_crd())).status_code == 201
            for path, obj in [(WIDGETS, widget("w1")), (GADGETS, gadget("g1"))]:
                assert (await client.post(path, json=obj)).status_code == 201, obj
            assert (await client.post("/api/v1/namespaces/default/pods", json=pod("p1"))).is_success
            assert (await client.delete("/api/v1/namespaces/kube-public")).is_success
        api.add_token("extra-token", "someone")
        before = everything(api)
        last_rv = api.resource_version
        log_before = list(api.requests)
        first_ca = Path(api.ca_file).read_bytes()
        tokens = (api.token, api.sa_token)
        assert not state.exists()  # written at shutdown only
    assert [p.name for p in tmp_path.iterdir() if p.name != "api"] == ["state.json"]
    assert state.stat().st_mode & 0o777 == 0o600  # it holds a CA key and tokens
    saved = json.loads(state.read_text())
    assert saved["resource_version"] == last_rv

    async with open_kubeapi(**options) as api:
        assert everything(api) == before  # uids, resourceVersions, deletions included
        assert {p["metadata"]["name"] for p in before["namespaces"]} == {
            "default", "kube-system", "kube-node-lease",
        }  # fmt: skip
        assert api.resource_version > last_rv
        assert (api.token, api.sa_token) == tokens
        assert (directory / "token").read_text() == tokens[0]
        assert Path(api.ca_file).read_bytes() == first_ca
        assert api.requests == log_before
        # a client of the first run (its CA, its token) works unchanged
        context = ssl.create_default_context(cadata=first_ca.decode())
        async with httpx.AsyncClient(
            base_url=api.url, verify=context, headers={"Authorization": f"Bearer {tokens[0]}"}
        ) as old_client:
            listed = (await old_client.get(GADGETS)).json()
            assert [g["metadata"]["name"] for g in listed["items"]] == ["g1"]
            created = await old_client.post(GADGETS, json=gadget("g2"))
            assert created.status_code == 201
            assert int(created.json()["metadata"]["resourceVersion"]) > last_rv
        async with make_client(api, "extra-token") as extra:
            assert (await extra.get(f"{WIDGETS}/w1")).status_code == 200
            assert (await extra.delete(f"{WIDGETS}/w1")).status_code == 403  # RBAC still applies
        assert len(api.requests) == len(log_before) + 4
        assert api.requests[: len(log_before)] == log_before
        rv_at_exit = api.resource_version

    async with open_kubeapi(**options) as api:  # a second restart keeps counting
        assert [g["metadata"]["name"] for g in api.objects("gadgets.example.org", "gadgets")] == [
            "g1", "g2",
        ]  # fmt: skip
        assert api.resource_version > rv_at_exit
        assert len(api.requests) == len(log_before) + 4


async def test_watch_from_before_a_restart_is_expired(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    async with open_kubeapi(crd_paths=[WIDGETS_CRD], state_path=state) as api:
        async with make_client(api, api.token) as client:
            w1 = (await client.post(WIDGETS, json=widget("w1"))).json()
            old_rv = (await client.get(WIDGETS)).json()["metadata"]["resourceVersion"]
            assert old_rv == w1["metadata"]["resourceVersion"]
    async with open_kubeapi(crd_paths=[WIDGETS_CRD], state_path=state) as api:
        async with make_client(api, api.token) as client:
            for since in (old_rv, "1"):
                async with watching(client, WIDGETS, resourceVersion=since) as watch:
                    (event,) = await watch.wait_for(1)
                assert event["type"] == "ERROR"
                assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")
            exact = await client.get(
                WIDGETS, params={"resourceVersion": old_rv, "resourceVersionMatch": "Exact"}
            )
            assert exact.status_code == 410
            # what a client does next: relist, then watch from the list's version
            listed = (await client.get(WIDGETS)).json()
            assert [w["metadata"]["uid"] for w in listed["items"]] == [w1["metadata"]["uid"]]
            new_rv = listed["metadata"]["resourceVersion"]
            assert int(new_rv) > int(old_rv)
            async with watching(client, WIDGETS, resourceVersion=new_rv) as watch:
                created = (await client.post(WIDGETS, json=widget("w2"))).json()
                (event,) = await watch.wait_for(1)
            assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "w2")
            assert int(created["metadata"]["resourceVersion"]) > int(new_rv)


async def test_state_file_crds_win_over_crd_files(tmp_path: Path) -> None:
    """A CRD the state holds is not loaded again from crd_paths (no
    AlreadyExists, no new uid); one the state lacks is."""
    state = tmp_path / "state.json"
    async with open_kubeapi(crd_paths=[WIDGETS_CRD], state_path=state) as api:
        crd = api.get_object("apiextensions.k8s.io", "customresourcedefinitions", WIDGETS_CRD_NAME)
        assert crd is not None
    crd_file = tmp_path / "gadgets.yaml"
    crd_file.write_text(yaml.safe_dump(gadget_crd()))
    async with open_kubeapi(crd_paths=[WIDGETS_CRD, crd_file], state_path=state) as api:
        again = api.get_object(
            "apiextensions.k8s.io", "customresourcedefinitions", WIDGETS_CRD_NAME
        )
        assert again == crd
        async with make_client(api, api.token) as client:
            assert (await client.post(GADGETS, json=gadget("g1"))).status_code == 201


async def test_missing_state_file_starts_fresh_and_is_written(tmp_path: Path) -> None:
    state = tmp_path / "sub" / "state.json"
    state.parent.mkdir()
    async with open_kubeapi(state_path=state) as api:
        assert api.resource_version == 4  # the four default namespaces
    assert json.loads(state.read_text())["resource_version"] == 4
    assert [p.name for p in state.parent.iterdir()] == ["state.json"]  # no temporary left


async def test_broken_state_file_is_refused_and_kept(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid"):
        async with open_kubeapi(state_path=state):
            pass
    assert state.read_text() == "{not json"
