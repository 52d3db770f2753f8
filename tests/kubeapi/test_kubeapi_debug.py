"""``GET /debug/requests``: the request log for tests in another process,
for the admin token only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from testbed.kubeapi import KubeApi, open_kubeapi
from tests.kubeapi._helpers import RBAC, WIDGETS, WIDGETS_CRD, make_client, widget

USER = "system:serviceaccount:test:reader"
KEYS = ["user", "verb", "group", "resource", "subresource", "namespace", "name", "code"]


@pytest.fixture
async def rbac_api() -> AsyncIterator[KubeApi]:
    async with open_kubeapi(crd_paths=[WIDGETS_CRD], rbac_path=RBAC, rbac_user=USER) as api:
        yield api


async def test_admin_reads_the_request_log(rbac_api: KubeApi) -> None:
    async with make_client(rbac_api, rbac_api.sa_token) as restricted:
        assert (await restricted.post(WIDGETS, json=widget("w1"))).status_code == 403
    async with make_client(rbac_api, rbac_api.token) as admin:
        assert (await admin.post(WIDGETS, json=widget("w1"))).status_code == 201
        patch: dict[str, Any] = {"status": {"nodes": {}}}
        merge = {"Content-Type": "application/merge-patch+json"}
        response = await admin.patch(f"{WIDGETS}/w1/status", json=patch, headers=merge)
        assert response.status_code == 200, response.text
        rbac_api.fail_next(1, status=503)  # faults are for API requests, not this one
        response = await admin.get("/debug/requests")
        assert (await admin.get(WIDGETS)).status_code == 503  # the fault was still pending
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    log = response.json()
    assert [list(entry) for entry in log] == [KEYS] * 3
    group, root = "test.example.org", "kubernetes-admin"
    rows = [
        [USER, "create", group, "widgets", "", "", "", 403],
        [root, "create", group, "widgets", "", "", "", 201],
        [root, "patch", group, "widgets", "status", "", "w1", 200],
    ]
    assert log == [dict(zip(KEYS, row, strict=True)) for row in rows]
    assert len(rbac_api.requests) == 4  # reading the log is not in it; the failed list is


async def test_request_log_is_for_the_admin_only(rbac_api: KubeApi) -> None:
    async with make_client(rbac_api, rbac_api.sa_token) as restricted:
        denied = await restricted.get("/debug/requests")
    assert denied.status_code == 403
    assert denied.json()["message"] == (
        f'forbidden: User "{USER}" cannot get path "/debug/requests"'
    )
    rbac_api.add_token("other", "someone")
    async with make_client(rbac_api, "other") as other:
        assert (await other.get("/debug/requests")).status_code == 403
    async with make_client(rbac_api) as anonymous:
        assert (await anonymous.get("/debug/requests")).status_code == 401
    async with make_client(rbac_api, rbac_api.token) as admin:
        assert (await admin.delete("/debug/requests")).status_code == 405
        assert (await admin.get("/debug/requests")).json() == []


async def test_without_rbac_other_users_are_still_refused(api: KubeApi) -> None:
    api.add_token("other", "someone")
    async with make_client(api, "other") as other:
        assert (await other.get(WIDGETS)).status_code == 200
        assert (await other.get("/debug/requests")).status_code == 403
