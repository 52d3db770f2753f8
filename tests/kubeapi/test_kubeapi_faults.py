"""Injected failures: the next n requests get a 429, 500 or 503 Status."""

from __future__ import annotations

import httpx
import pytest

from testbed.kubeapi import KubeApi
from tests.kubeapi._helpers import WIDGETS


async def test_too_many_requests_with_retry_after(api: KubeApi, client: httpx.AsyncClient) -> None:
    api.fail_next(2, status=429, retry_after=3)
    for _ in range(2):
        response = await client.get(WIDGETS)
        assert response.status_code == 429
        assert response.headers["retry-after"] == "3"
        assert response.json() == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "Too many requests, please try again later.",
            "reason": "TooManyRequests",
            "details": {"retryAfterSeconds": 3},
            "code": 429,
        }
    assert (await client.get(WIDGETS)).status_code == 200
    assert [r.code for r in api.requests] == [429, 429, 200]


@pytest.mark.parametrize(
    ("status", "reason"), [(500, "InternalError"), (503, "ServiceUnavailable")]
)
async def test_server_errors(
    api: KubeApi, client: httpx.AsyncClient, status: int, reason: str
) -> None:
    api.fail_next(1, status=status)
    response = await client.get(WIDGETS)
    assert response.status_code == status
    assert response.json()["reason"] == reason
    assert "retry-after" not in response.headers
    assert (await client.get(WIDGETS)).status_code == 200


async def test_health_is_not_failed(api: KubeApi, client: httpx.AsyncClient) -> None:
    api.fail_next(1, status=503, retry_after=1)
    assert (await client.get("/readyz")).status_code == 200
    failed = await client.get("/api/v1/nodes")
    assert (failed.status_code, failed.headers["retry-after"]) == (503, "1")


def test_only_server_statuses_can_be_injected() -> None:
    from testbed.kubeapi._errors import injected

    with pytest.raises(ValueError, match="cannot inject HTTP 404"):
        injected(404, None)
