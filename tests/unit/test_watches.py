"""The node's watches (Watches) on trio's virtual clock, against the
emulated API server in-process (tests/unit/clusterapi.py): the readiness
they imply (the kube-api component), this node's pods only, an outage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio
import trio.testing

from cnid.cluster import Watches
from cnid.core import Readiness
from cnid.kube import PODS
from testbed.kubeapi import InProcessKubeApi
from tests.unit.clusterapi import CRDS, Admin, cluster

NODE = "n1"


@asynccontextmanager
async def running(
    crd_paths: tuple[Path, ...] = (CRDS,),
) -> AsyncIterator[tuple[InProcessKubeApi, Admin, Watches, Readiness]]:
    async with cluster(crd_paths=crd_paths) as (api, client, admin):
        readiness = Readiness()
        watches = Watches(client, NODE, readiness)
        async with trio.open_nursery() as nursery:
            await nursery.start(watches.run)
            yield api, admin, watches, readiness
            nursery.cancel_scope.cancel()


def pod(name: str, node: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
    }


async def test_ready_once_every_watch_has_listed_and_only_this_nodes_pods(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as (_, admin, watches, readiness):
        await watches.wait_synced()
        await trio.sleep(0.25)
        assert readiness.snapshot()["kube-api"] == "ready"
        assert watches.problem() == ""
        path = PODS.path(namespace="default")
        for name, node in (("mine", NODE), ("theirs", "n2")):
            response = await admin.http.post(path, json=pod(name, node))
            assert response.status_code == 201
        await trio.sleep(0.05)
        assert list(watches.pods.items) == ["default/mine"]


async def test_an_outage_makes_the_node_not_ready_and_its_end_ready_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as (api, _, watches, readiness):
        await watches.wait_synced()
        await trio.sleep(0.25)
        api.down = True
        await trio.sleep(0.25)  # checked every 0.2 s
        state = readiness.snapshot()["kube-api"]
        assert state.startswith("vrfdomains: ") and "connection dropped" in state
        await trio.sleep(600)
        assert "the API server is down" in readiness.snapshot()["kube-api"]
        api.down = False
        await trio.sleep(31)  # a reflector's backoff is at most 30 s
        assert readiness.snapshot()["kube-api"] == "ready"


async def test_a_kind_that_never_lists_keeps_the_node_not_ready_and_says_why(
    autojump_clock: trio.testing.MockClock,
) -> None:
    crds = tuple(p for p in CRDS.glob("*.yaml") if p.name != "vrfdomainbindings.yaml")
    async with running(crd_paths=crds) as (_, _admin, watches, readiness):
        await trio.sleep(60)
        state = readiness.snapshot()["kube-api"]
        assert state.startswith("vrfdomainbindings: not listed yet (")
        assert "404" in state
        assert watches.domains.synced.is_set() and watches.pods.synced.is_set()
        assert not readiness.ready
