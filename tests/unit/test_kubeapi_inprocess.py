"""The emulated API server as an in-process transport (what the cluster
controllers' unit tests stand on): cnid's client and reflector over it on
the virtual clock, its outage and its injected errors."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from cnid.kube import VRF_DOMAINS, Reflector, ServerError, VRFDomain
from tests.unit.clusterapi import cluster, vrfdomain


async def test_a_reflector_lists_watches_loses_the_server_and_comes_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with cluster() as (api, client, admin):
        await admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        domains: Reflector[VRFDomain] = Reflector(client, VRF_DOMAINS, name="vrfdomains")
        async with trio.open_nursery() as nursery:
            await nursery.start(domains.run)
            await domains.synced.wait()
            assert set(domains.items) == {"blue"}
            await admin.create(VRF_DOMAINS, vrfdomain("red", 8, prefix="10.2.0.0"))
            await trio.sleep(0.01)
            assert set(domains.items) == {"blue", "red"}
            await trio.sleep(3600)  # watches end and are resumed; bookmarks keep them alive
            assert domains.connected
            api.down = True
            await trio.sleep(0.01)
            assert not domains.connected
            assert "connection dropped" in domains.last_error  # the open watch broke
            await trio.sleep(600)
            assert not domains.connected
            assert "the API server is down" in domains.last_error  # and reconnecting fails
            api.down = False
            await trio.sleep(31)  # the reflector's backoff is at most 30 s
            assert domains.connected
            await admin.delete(VRF_DOMAINS, "red")
            await trio.sleep(0.01)
            assert set(domains.items) == {"blue"}
            nursery.cancel_scope.cancel()


async def test_injected_errors_reach_the_client(autojump_clock: trio.testing.MockClock) -> None:
    async with cluster() as (api, client, _):
        api.fail_next(1, status=500)
        with pytest.raises(ServerError):
            await client.list(VRF_DOMAINS)
        assert (await client.list(VRF_DOMAINS)).items == []
        assert [r.code for r in api.requests] == [500, 200]
