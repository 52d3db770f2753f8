"""The plain-HTTP UNIX socket (``unix_path=``): the same API, store, tokens
and RBAC as the HTTPS port, streaming watches, no socket file left behind."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest
import trio

from testbed.kubeapi import open_kubeapi
from tests.kubeapi._helpers import (
    RBAC,
    WIDGETS,
    WIDGETS_CRD,
    make_client,
    make_unix_client,
    watching,
    widget,
)

ADMIN = "kubernetes-admin"
USER = "system:serviceaccount:test:reader"


async def test_unix_socket_serves_the_same_api_with_tokens_and_rbac(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with open_kubeapi(
        crd_paths=[WIDGETS_CRD], rbac_path=RBAC, rbac_user=USER, unix_path=path
    ) as api:
        assert api.unix_path == str(path)
        assert path.is_socket()
        async with make_unix_client(path, api.token) as admin, make_client(api, api.token) as tls:
            created = await admin.post(WIDGETS, json=widget("w1"))
            assert created.status_code == 201, created.text
            over_tls = await tls.get(f"{WIDGETS}/w1")
            assert over_tls.json()["metadata"]["uid"] == created.json()["metadata"]["uid"]
            assert (await admin.get("/version")).json()["gitVersion"] == "v1.31.0"
        async with make_unix_client(path) as anonymous:
            assert (await anonymous.get(WIDGETS)).status_code == 401
        async with make_unix_client(path, "not-a-token") as stranger:
            assert (await stranger.get(WIDGETS)).status_code == 401
        async with make_unix_client(path, api.sa_token) as restricted:
            assert (await restricted.get(f"{WIDGETS}/w1")).status_code == 200
            denied = await restricted.delete(f"{WIDGETS}/w1")
            assert denied.status_code == 403
            assert denied.json()["message"] == (
                'widgets.test.example.org "w1" is forbidden: User "system:serviceaccount:test:'
                'reader" cannot delete resource "widgets" in API group "test.example.org" at the'
                " cluster scope"
            )
        assert [(r.user, r.verb, r.name, r.code) for r in api.requests] == [
            (ADMIN, "create", "", 201),
            (ADMIN, "get", "w1", 200),
            ("system:anonymous", "list", "", 401),
            ("system:anonymous", "list", "", 401),
            (USER, "get", "w1", 200),
            (USER, "delete", "w1", 403),
        ]
    assert not path.exists()


async def test_unix_socket_streams_watches_and_drops_them(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    async with open_kubeapi(crd_paths=[WIDGETS_CRD], bookmark_interval=0.2, unix_path=path) as api:
        async with make_unix_client(path, api.token) as client:
            rv = (await client.get(WIDGETS)).json()["metadata"]["resourceVersion"]
            params = {"resourceVersion": rv, "allowWatchBookmarks": "true"}
            async with watching(client, WIDGETS, **params) as watch:
                assert (await client.post(WIDGETS, json=widget("w1"))).status_code == 201
                first, second = await watch.wait_for(2)
                assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "w1")
                assert second["type"] == "BOOKMARK"
                api.drop_watches()
                with trio.fail_after(5):
                    await watch.ended.wait()
                assert isinstance(watch.error, httpx.RemoteProtocolError)
            async with watching(client, WIDGETS) as watch:
                assert (await watch.wait_for(1))[0]["type"] == "ADDED"
                assert api.open_watches == 1
        with trio.fail_after(5):  # a client that hangs up frees its watch
            while api.open_watches:
                await trio.sleep(0.01)


async def test_stale_socket_is_replaced_a_live_one_refused(sock_dir: Path) -> None:
    path = sock_dir / "admin.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # a killed server's socket file: nobody listens
    async with open_kubeapi(unix_path=path) as api:
        async with make_unix_client(path, api.token) as client:
            assert (await client.get("/api/v1/namespaces")).status_code == 200
        with pytest.raises(ValueError, match="another server listens there"):
            async with open_kubeapi(unix_path=path):
                pass
        assert path.is_socket()  # the refused second server left it alone
    assert not path.exists()
    path.write_text("not a socket")
    with pytest.raises(ValueError, match="exists and is not a socket"):
        async with open_kubeapi(unix_path=path):
            pass
    assert path.read_text() == "not a socket"
