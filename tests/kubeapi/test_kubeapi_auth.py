"""Authentication (bearer tokens), RBAC from ClusterRoles, and the request
records RBAC-coverage checks read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from testbed.kubeapi import KubeApi, RequestRecord, open_kubeapi
from tests.kubeapi._helpers import RBAC, WIDGETS, WIDGETS_CRD, make_client, watching, widget

USER = "system:serviceaccount:test:reader"
MERGE = {"Content-Type": "application/merge-patch+json"}


async def test_no_or_unknown_token_is_unauthorized(api: KubeApi) -> None:
    for token in (None, "not-a-token"):
        async with make_client(api, token) as client:
            response = await client.get(WIDGETS)
        assert response.status_code == 401
        assert response.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Unauthorized",
            "reason": "Unauthorized",
            "code": 401,
        }


async def test_without_rbac_every_known_user_may_do_anything(api: KubeApi) -> None:
    api.add_token("t0k3n", "someone")
    async with make_client(api, "t0k3n") as client:
        assert (await client.post(WIDGETS, json=widget("w1"))).status_code == 201


@pytest.fixture
async def rbac_api() -> AsyncIterator[KubeApi]:
    async with open_kubeapi(crd_paths=[WIDGETS_CRD], rbac_path=RBAC, rbac_user=USER) as server:
        yield server


async def test_rbac_allows_the_rules_and_forbids_the_rest(rbac_api: KubeApi) -> None:
    assert rbac_api.sa_token and rbac_api.sa_user == USER
    async with make_client(rbac_api, rbac_api.token) as admin:
        assert (await admin.post(WIDGETS, json=widget("w1"))).status_code == 201
    async with make_client(rbac_api, rbac_api.sa_token) as reader:
        assert (await reader.get(WIDGETS)).status_code == 200
        assert (await reader.get(f"{WIDGETS}/w1")).status_code == 200
        status = await reader.patch(
            f"{WIDGETS}/w1/status", json={"status": {"phase": "x"}}, headers=MERGE
        )
        assert status.status_code == 200
        denied = await reader.patch(f"{WIDGETS}/w1", json={"spec": {"size": 5}}, headers=MERGE)
        assert denied.status_code == 403
        assert denied.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'widgets.test.example.org "w1" is forbidden: User'
            f' "{USER}" cannot patch resource "widgets" in API group "test.example.org" at'
            " the cluster scope",
            "reason": "Forbidden",
            "details": {"name": "w1", "group": "test.example.org", "kind": "widgets"},
            "code": 403,
        }
        create = await reader.post(WIDGETS, json=widget("w2"))
        assert create.status_code == 403
        assert create.json()["message"].startswith("widgets.test.example.org is forbidden:")
        pods = await reader.get("/api/v1/namespaces/default/pods")
        assert pods.status_code == 403
        assert pods.json()["message"].endswith('in API group "" in the namespace "default"')
        # another ClusterRole in the same file, with a group wildcard
        assert (await reader.get("/api/v1/nodes")).status_code == 200
        # discovery and health stay open
        assert (await reader.get("/apis/test.example.org/v1alpha1")).status_code == 200


async def test_rbac_resource_names(rbac_api: KubeApi) -> None:
    async with make_client(rbac_api, rbac_api.token) as admin:
        for name in ("allowed", "other"):
            await admin.post(
                "/api/v1/namespaces/default/configmaps", json={"metadata": {"name": name}}
            )
    async with make_client(rbac_api, rbac_api.sa_token) as reader:
        cms = "/api/v1/namespaces/default/configmaps"
        assert (await reader.get(f"{cms}/allowed")).status_code == 200
        assert (await reader.get(f"{cms}/other")).status_code == 403
        assert (await reader.get(cms)).status_code == 403  # a list has no name


async def test_admin_is_never_restricted(rbac_api: KubeApi) -> None:
    async with make_client(rbac_api, rbac_api.token) as admin:
        assert (await admin.get("/api/v1/namespaces/default/secrets")).status_code == 200


async def test_other_users_get_the_rbac_rules(rbac_api: KubeApi) -> None:
    rbac_api.add_token("second", "alice")
    async with make_client(rbac_api, "second") as alice:
        assert (await alice.get(WIDGETS)).status_code == 200
        assert (await alice.delete(f"{WIDGETS}/w1")).status_code == 403


async def test_requests_are_recorded_with_rbac_verbs(rbac_api: KubeApi) -> None:
    async with make_client(rbac_api, rbac_api.token) as admin:
        await admin.post(WIDGETS, json=widget("w1"))
        async with watching(admin, WIDGETS):
            pass
    async with make_client(rbac_api, rbac_api.sa_token) as reader:
        await reader.get(f"{WIDGETS}/w1")
        await reader.get(WIDGETS, params={"fieldSelector": "metadata.name=w1"})
        await reader.patch(f"{WIDGETS}/w1/status", json={"status": {}}, headers=MERGE)
        await reader.delete(f"{WIDGETS}/w1")
        await reader.get("/api/v1/namespaces/default/pods")
    admin_user = "kubernetes-admin"
    group = "test.example.org"
    assert rbac_api.requests == [
        RequestRecord(admin_user, "create", group, "widgets", "", "", "", 201),
        RequestRecord(admin_user, "watch", group, "widgets", "", "", "", 200),
        RequestRecord(USER, "get", group, "widgets", "", "", "w1", 200),
        RequestRecord(USER, "list", group, "widgets", "", "", "w1", 200),
        RequestRecord(USER, "patch", group, "widgets", "status", "", "w1", 200),
        RequestRecord(USER, "delete", group, "widgets", "", "", "w1", 403),
        RequestRecord(USER, "list", "", "pods", "", "default", "", 403),
    ]


async def test_kubeconfigs_point_at_the_server(rbac_api: KubeApi) -> None:
    import yaml

    with open(rbac_api.kubeconfig_path) as file:
        admin = yaml.safe_load(file)
    assert admin["clusters"][0]["cluster"]["server"] == rbac_api.url
    assert admin["users"][0]["user"]["token"] == rbac_api.token
    assert rbac_api.sa_kubeconfig_path is not None
    with open(rbac_api.sa_kubeconfig_path) as file:
        restricted = yaml.safe_load(file)
    assert restricted["users"][0]["user"]["token"] == rbac_api.sa_token
    async with make_client(rbac_api, restricted["users"][0]["user"]["token"]) as reader:
        assert (await reader.get("/api/v1/namespaces")).status_code == 403


async def test_kubeconfig_loads_with_the_kubernetes_package(api: KubeApi) -> None:
    import trio
    from kubernetes import client, config

    def list_namespaces() -> list[str]:
        configuration = client.Configuration()
        path = api.kubeconfig_path
        config.load_kube_config(config_file=path, client_configuration=configuration)  # type: ignore[no-untyped-call]
        with client.ApiClient(configuration) as api_client:
            items = client.CoreV1Api(api_client).list_namespace().items
        return [str(item.metadata.name) for item in items if item.metadata]

    names = await trio.to_thread.run_sync(list_namespaces)
    assert "default" in names


async def test_a_roles_rules_hold_in_its_namespace_only() -> None:
    """cnid's own RBAC (kube/deploy/rbac.yaml): the Role cnid-bgp-secret lets
    it get the Secret cnid-bgp of its namespace, and nothing else of secrets."""
    deploy = Path(__file__).resolve().parents[2] / "kube" / "deploy" / "rbac.yaml"
    user = "system:serviceaccount:pyroute2-cni:cnid"
    async with open_kubeapi(crd_paths=[], rbac_path=deploy, rbac_user=user) as server:
        async with make_client(server, server.token) as admin:
            for ns in ("pyroute2-cni", "other"):
                await admin.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
                for name in ("cnid-bgp", "else"):
                    secret = {"metadata": {"name": name}, "data": {"k": "djE="}}
                    created = await admin.post(f"/api/v1/namespaces/{ns}/secrets", json=secret)
                    assert created.status_code == 201, created.text
        async with make_client(server, server.sa_token) as cnid:
            ours = "/api/v1/namespaces/pyroute2-cni/secrets"
            assert (await cnid.get(f"{ours}/cnid-bgp")).status_code == 200
            assert (await cnid.get(f"{ours}/else")).status_code == 403
            assert (await cnid.get(ours)).status_code == 403  # no list
            other = await cnid.get("/api/v1/namespaces/other/secrets/cnid-bgp")
            assert other.status_code == 403
            assert other.json()["message"].endswith('in the namespace "other"')
            # the ClusterRole's rules still hold everywhere
            assert (await cnid.get("/api/v1/nodes")).status_code == 200
