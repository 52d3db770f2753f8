"""Builders and constants shared by the emulation's tests."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio

from testbed.kubeapi import KubeApi

HERE = Path(__file__).parent
WIDGETS_CRD = HERE / "widgets-crd.yaml"
RBAC = HERE / "rbac.yaml"
WIDGETS = "/apis/test.example.org/v1alpha1/widgets"


def make_client(api: KubeApi, token: str | None = None) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=api.ca_file)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=api.url, verify=context, headers=headers, timeout=10)


def widget(name: str = "w1", /, **spec: Any) -> dict[str, Any]:
    """A valid Widget; keyword arguments replace spec fields."""
    body: dict[str, Any] = {"size": 3, "prefix": "10.1.0.0", "prefixlen": 16}
    body.update(spec)
    return {
        "apiVersion": "test.example.org/v1alpha1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": body,
    }


def pod(name: str, namespace: str = "default", node: str = "", **labels: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class Watch:
    """The events of one watch response, collected by a background task.

    Reading stops by cancelling that task: an exception that unwinds
    httpx's chain of async generators leaves none of them half-iterated
    (stopping with ``break`` would, and trio warns about each one)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: list[dict[str, Any]] = []
        self.ended = trio.Event()
        self.error: Exception | None = None

    async def _collect(self) -> None:
        try:
            async for line in self.response.aiter_lines():
                if line.strip():
                    self.events.append(json.loads(line))
        except httpx.TransportError as error:
            self.error = error
        self.ended.set()

    async def wait_for(self, count: int, timeout: float = 5) -> list[dict[str, Any]]:
        """The first ``count`` events, once they are there."""
        with trio.fail_after(timeout):
            while len(self.events) < count:
                await trio.sleep(0.005)
        return self.events[:count]

    def summary(self) -> list[tuple[str, str]]:
        return [(e["type"], e["object"]["metadata"].get("name", "")) for e in self.events]


@asynccontextmanager
async def watching(client: httpx.AsyncClient, path: str, **params: str) -> AsyncIterator[Watch]:
    async with client.stream("GET", path, params={"watch": "1", **params}) as response:
        assert response.status_code == 200, await response.aread()
        watch = Watch(response)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch._collect)
            yield watch
            nursery.cancel_scope.cancel()


def make_unix_client(path: str | Path, token: str | None = None) -> httpx.AsyncClient:
    """Plain HTTP over the server's UNIX socket (``unix_path=``)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url="http://kubeapi",
        transport=httpx.AsyncHTTPTransport(uds=str(path)),
        headers=headers,
        timeout=10,
    )
