"""The IPBlock store (KubeStore) against the emulated API server in-process
(tests/unit/clusterapi.py): a claim is a create and a status write, the API
server's optimistic concurrency is the store's (StoreConflict), and an API
that fails is StoreUnavailable, after the client's retries on the virtual
clock."""

from __future__ import annotations

import ipaddress

import msgspec
import pytest
import trio
import trio.testing

from cnid.cluster import NODE_LABEL, VRF_LABEL, KubeStore, to_resource
from cnid.core import AllocationRecord, StoreConflict, StoreUnavailable
from cnid.ipam import BlockRecord
from cnid.kube import IP_BLOCKS
from tests.unit.clusterapi import cluster

POD = AllocationRecord(
    kind="pod", container_id="c1", ifname="eth0", pod_name="p", pod_namespace="ns"
)


def block(cidr: str = "10.244.0.0/26", node: str = "n1", vrf: int = 42) -> BlockRecord:
    name = f"vrf-{vrf}-" + cidr.replace(".", "-").replace("/", "-")
    gateway = str(ipaddress.ip_network(cidr)[1])
    return BlockRecord(
        name=name, cidr=cidr, node=node, vrf=vrf, gateway=gateway, allocations={gateway: POD}
    )


async def test_a_claim_is_stored_with_its_labels_and_status_and_read_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with cluster() as (api, client, _):
        store = KubeStore(client)
        stored = await store.create_block(block())
        raw = api.get_object("ipam.pyroute2.org", "ipblocks", stored.name)
        assert raw is not None
        assert raw["metadata"]["labels"] == {NODE_LABEL: "n1", VRF_LABEL: "42"}
        assert raw["status"]["allocations"]["10.244.0.1"]["kind"] == "pod"
        assert raw["status"]["allocated"] == 1 and raw["status"]["capacity"] == 62
        assert stored.version == raw["metadata"]["resourceVersion"]
        assert await store.get_block(stored.name) == stored
        assert await store.get_block("vrf-42-10-9-0-0-26") is None
        await store.create_block(block("10.244.0.64/26", node="n2"))
        await store.create_block(block("10.30.0.0/26", vrf=300))
        assert [b.cidr for b in await store.list_blocks(vrf=42)] == [
            "10.244.0.0/26",
            "10.244.0.64/26",
        ]
        assert sorted(b.cidr for b in await store.list_blocks(node="n1")) == [
            "10.244.0.0/26",
            "10.30.0.0/26",
        ]
        assert [b.cidr for b in await store.list_blocks(vrf=300, node="n1")] == ["10.30.0.0/26"]


async def test_two_claims_of_one_block_one_wins(autojump_clock: trio.testing.MockClock) -> None:
    async with cluster() as (_, client, _admin):
        store = KubeStore(client)
        await store.create_block(block(node="n1"))
        with pytest.raises(StoreConflict, match="exists already"):
            await store.create_block(block(node="n2"))
        got = await store.get_block(block().name)
        assert got is not None and got.node == "n1"


async def test_a_write_from_a_stale_version_is_a_conflict(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with cluster() as (_, client, _admin):
        store = KubeStore(client)
        first = await store.create_block(block())
        other = {**first.allocations, "10.244.0.2": POD}
        second = await store.update_block(msgspec.structs.replace(first, allocations=other))
        assert second.version != first.version
        # another writer based on the first version loses
        with pytest.raises(StoreConflict, match="changed or is gone"):
            await store.update_block(first)
        with pytest.raises(StoreConflict, match="changed"):
            await store.delete_block(first)
        await store.delete_block(second)
        assert await store.get_block(first.name) is None
        await store.delete_block(second)  # gone already: fine
        with pytest.raises(StoreConflict, match="changed or is gone"):
            await store.update_block(second)


async def test_the_labels_are_an_index_the_spec_decides(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with cluster() as (_, client, admin):
        lying = to_resource(block(node="n2"))
        lying.metadata.labels[NODE_LABEL] = "n1"
        await admin.create(IP_BLOCKS, lying)
        assert await KubeStore(client).list_blocks(node="n1") == []


async def test_an_api_error_is_retried_by_the_client_then_store_unavailable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with cluster(retry_deadline=5.0) as (api, client, _):
        store = KubeStore(client)
        api.fail_next(2, status=503)
        start = trio.current_time()
        assert await store.list_blocks() == []
        assert 0 < trio.current_time() - start < 1.0
        api.down = True
        start = trio.current_time()
        with pytest.raises(StoreUnavailable, match=r"IPBlock store: list: .*down"):
            await store.list_blocks()
        # retried until the client's deadline, then the store's error
        assert 0 < trio.current_time() - start <= 5.0
        with pytest.raises(StoreUnavailable, match="IPBlock store: get b"):
            await store.get_block("b")
        # a create that may have reached the server is not retried blindly
        with pytest.raises(StoreUnavailable, match="IPBlock store: create"):
            await store.create_block(block())
