"""Fixtures for the API server emulation's tests: a server with the small
Widget CRD beside this file, an admin httpx client, a create helper, a
short directory for UNIX sockets."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testbed.kubeapi import KubeApi, open_kubeapi
from tests.kubeapi._helpers import WIDGETS, WIDGETS_CRD, make_client


@pytest.fixture
async def api() -> AsyncIterator[KubeApi]:
    async with open_kubeapi(crd_paths=[WIDGETS_CRD], bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
async def client(api: KubeApi) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(api, api.token) as admin:
        yield admin


@pytest.fixture
def create(client: httpx.AsyncClient) -> Callable[..., Any]:
    """``await create(obj)``: POST a Widget (or ``path=``) and insist on 201."""

    async def post(obj: dict[str, Any], path: str = WIDGETS) -> dict[str, Any]:
        response = await client.post(path, json=obj)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    return post


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A directory with a short path: a UNIX socket path must fit in 108
    bytes, which pytest's tmp_path for a long test name may not."""
    directory = Path(tempfile.mkdtemp(prefix="kapi-", dir="/tmp"))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
