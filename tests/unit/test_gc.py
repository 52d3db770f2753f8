"""The GarbageCollector on trio's virtual clock: a 120 s grace period in
milliseconds. The CNI service, the address pool over a MemoryStore and the
journal are the real ones with the CNI tests' fake dataplane
(test_cni_service.Env); the three watches are fakes of what the collector
reads of a Reflector (its cache, whether it is synced and connected, the
objects that did not decode)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from test_cni_service import NETNS_FD, Env

from cnid.cluster import GarbageCollector
from cnid.cni import parse_invocation
from cnid.core import Attachment, StoreUnavailable
from cnid.ipam import BlockRecord, MemoryStore
from cnid.kube import Node, ObjectMeta, Pod, VRFDomain, VRFDomainSpec

NODE = "node1"  # test_cni_service.Env's node
INTERVAL = 10.0
GRACE = 120.0


class FakeWatch:
    """What the collector reads of a Reflector."""

    def __init__(self, items: dict[str, Any]) -> None:
        self.items = items
        self.invalid: dict[str, str] = {}
        self.synced = trio.Event()
        self.synced.set()
        self.connected = True


class FlakyStore(MemoryStore):
    """The IPBlock store, which can become unreachable (the API away)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def list_blocks(
        self, vrf: int | None = None, node: str | None = None
    ) -> list[BlockRecord]:
        await trio.lowlevel.checkpoint()
        if self.down:
            raise StoreUnavailable("the API server is not reachable")
        return await super().list_blocks(vrf, node)


def pod(name: str, uid: str = "") -> Pod:
    return Pod(metadata=ObjectMeta(name=name, namespace="ns", uid=uid))


def vrfdomain(name: str, vrf: int) -> VRFDomain:
    spec = VRFDomainSpec(vrf=vrf, table=vrf, prefix="10.244.0.0", prefixlen=16, ipblocklen=26)
    return VRFDomain(metadata=ObjectMeta(name=name), spec=spec)


class Cluster:
    """A node's CNI service, pool and journal, the cluster's objects as the
    watches show them, and the collector over them."""

    def __init__(self, tmp: Path) -> None:
        self.store = FlakyStore()
        self.env = Env(tmp, store=self.store)
        self.pods = FakeWatch({})
        self.nodes = FakeWatch({NODE: Node(metadata=ObjectMeta(name=NODE))})
        self.domains = FakeWatch({"vrf-42": vrfdomain("vrf-42", 42)})
        self.gc = GarbageCollector(
            node=NODE,
            service=self.env.service,
            pool=self.env.pool,
            journal=self.env.journal,
            pods=self.pods,  # type: ignore[arg-type]
            nodes=self.nodes,  # type: ignore[arg-type]
            domains=self.domains,  # type: ignore[arg-type]
            interval=INTERVAL,
            grace=GRACE,
        )

    async def add(self, name: str, uid: str = "", *, kubernetes: bool = True) -> str:
        """A pod ADDed on this node (``kubernetes``: with kubelet's CNI_ARGS)
        and, for a Kubernetes pod, seen by the Pod watch; its address."""
        args = f"K8S_POD_NAMESPACE=ns;K8S_POD_NAME={name};K8S_POD_UID={uid}"
        env = {
            "CNI_COMMAND": "ADD",
            "CNI_CONTAINERID": f"{name}-cid",
            "CNI_IFNAME": "eth0",
            "CNI_NETNS": f"/run/netns/{name}",
            "CNI_ARGS": args if kubernetes else "",
        }
        stdin = json.dumps({"cniVersion": "1.0.0", "name": "cnid"}).encode()
        result = await self.env.service.handle(parse_invocation(env, stdin, True), NETNS_FD)
        if kubernetes:
            self.pods.items[f"ns/{name}"] = pod(name, uid)
        return str(result["ips"][0]["address"]).split("/")[0]

    def attached(self, name: str) -> bool:
        """Journal, host link and lease: all three or none (asserted)."""
        att = Attachment(f"{name}-cid", "eth0")
        rec = self.env.journal.get(att)
        link = any(c == att.container_id for c, _, _ in self.env.dp.links.values())
        assert (rec is not None) == link, (rec, self.env.dp.links)
        return rec is not None

    async def addresses(self) -> set[str]:
        return await self.env.pod_addresses()

    async def blocks(self, node: str | None = None, vrf: int | None = None) -> list[BlockRecord]:
        return await MemoryStore.list_blocks(self.store, vrf, node)


@pytest.fixture
def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path)


@asynccontextmanager
async def collecting(cluster: Cluster) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(cluster.gc.run)
        yield
        nursery.cancel_scope.cancel()


async def test_a_pod_gone_is_released_after_the_grace_period_and_not_before(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    gone = await cluster.add("gone")
    stays = await cluster.add("stays")
    async with collecting(cluster):
        await trio.sleep(5 * INTERVAL)
        assert cluster.attached("gone") and cluster.attached("stays")
        del cluster.pods.items["ns/gone"]
        await trio.sleep(GRACE - 5)
        assert cluster.attached("gone")
        assert gone in await cluster.addresses()
        await trio.sleep(INTERVAL + 10)
        assert not cluster.attached("gone")
        assert await cluster.addresses() == {stays}
        # the running pod is never touched, however long it runs
        await trio.sleep(10 * GRACE)
        assert cluster.attached("stays")
        assert await cluster.addresses() == {stays}


async def test_a_pod_seen_again_within_the_grace_period_starts_the_count_over(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    await cluster.add("flaky")
    async with collecting(cluster):
        await trio.sleep(1)
        entry = cluster.pods.items.pop("ns/flaky")
        await trio.sleep(GRACE - 20)
        cluster.pods.items["ns/flaky"] = entry  # seen again (a relist)
        await trio.sleep(2 * INTERVAL)
        del cluster.pods.items["ns/flaky"]
        await trio.sleep(GRACE - 20)  # 220 s after it first went missing
        assert cluster.attached("flaky")
        await trio.sleep(20 + INTERVAL + 1)
        assert not cluster.attached("flaky")


async def test_a_pod_of_the_same_name_with_another_uid_is_not_the_pod_wired(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    await cluster.add("replaced", uid="uid-1")
    await cluster.add("same", uid="uid-2")
    await cluster.add("no-uid")  # the runtime passed no K8S_POD_UID: the name is enough
    cluster.pods.items["ns/replaced"] = pod("replaced", uid="uid-9")  # a new pod, same name
    cluster.pods.items["ns/no-uid"] = pod("no-uid", uid="uid-3")
    async with collecting(cluster):
        await trio.sleep(GRACE - 5)
        assert cluster.attached("replaced")
        await trio.sleep(2 * INTERVAL)
        assert not cluster.attached("replaced")
        assert cluster.attached("same") and cluster.attached("no-uid")


async def test_an_attachment_of_no_kubernetes_pod_is_left_to_the_runtimes_gc(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    address = await cluster.add("plain", kubernetes=False)
    async with collecting(cluster):
        await trio.sleep(10 * GRACE)
        assert cluster.attached("plain")
        assert address in await cluster.addresses()


async def test_nothing_is_judged_while_a_watch_is_not_current(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    await cluster.add("p")
    async with collecting(cluster):
        await trio.sleep(1)
        # the API goes away: the Pod watch's cache is stale, the pod looks gone
        cluster.pods.connected = False
        del cluster.pods.items["ns/p"]
        await trio.sleep(10 * GRACE)
        assert cluster.attached("p")
        assert await cluster.gc.collect() == []
        # back, and the pod really is gone: the grace period counts from now
        cluster.pods.connected = True
        await trio.sleep(GRACE - 5)
        assert cluster.attached("p")
        await trio.sleep(2 * INTERVAL)
        assert not cluster.attached("p")


@pytest.mark.parametrize("which", ["pods", "nodes", "domains"])
async def test_nothing_is_judged_before_every_watch_synced(
    cluster: Cluster, which: str, autojump_clock: trio.testing.MockClock
) -> None:
    await cluster.add("p")
    del cluster.pods.items["ns/p"]
    await cluster.store.create_block(
        BlockRecord(name="b-n2", cidr="10.244.9.0/26", node="n2", vrf=42, gateway="10.244.9.1")
    )
    unsynced: FakeWatch = getattr(cluster, which)
    unsynced.synced = trio.Event()
    async with collecting(cluster):
        await trio.sleep(10 * GRACE)
        assert cluster.attached("p")
        assert len(await cluster.blocks(node="n2")) == 1
        unsynced.synced.set()
        await trio.sleep(GRACE + INTERVAL + 1)
        assert not cluster.attached("p")
        assert await cluster.blocks(node="n2") == []


async def test_an_add_in_flight_is_never_collected(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    """The pod's ADD takes longer than the grace period, and the Pod watch
    has not shown the pod yet: its pending record, its link and its lease
    are spared, and the ADD completes."""
    cluster.env.dp.wire_delay = 3 * GRACE
    results: dict[str, str] = {}

    async def add() -> None:
        results["slow"] = await cluster.add("slow")

    async with collecting(cluster), trio.open_nursery() as adds:
        adds.start_soon(add)
        await trio.sleep(3 * GRACE - 1)
        rec = cluster.env.journal.get(Attachment("slow-cid", "eth0"))
        assert rec is not None and rec.state == "pending"
        assert len(await cluster.addresses()) == 1
        await trio.sleep(2)
        assert cluster.attached("slow")
        assert await cluster.addresses() == {results["slow"]}
        await trio.sleep(5 * GRACE)
        assert cluster.attached("slow")


async def test_the_leftover_of_an_interrupted_add_goes_at_the_next_pass(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    """A pending record that no ADD holds any more is a leftover: no grace,
    whatever the Pod watch says."""
    await cluster.add("p")
    rec = cluster.env.journal.get(Attachment("p-cid", "eth0"))
    assert rec is not None
    cluster.env.journal.put(msgspec.structs.replace(rec, state="pending"))
    async with collecting(cluster):
        await trio.sleep(INTERVAL + 1)
        assert not cluster.attached("p")
        assert await cluster.addresses() == set()


async def test_a_count_ends_with_its_attachment(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    """An attachment that left the journal (the runtime's DEL) while it was
    being counted, then came back: its count starts over."""
    await cluster.add("p")
    async with collecting(cluster):
        await trio.sleep(1)
        del cluster.pods.items["ns/p"]
        await trio.sleep(GRACE - 20)
        assert await cluster.env.call("DEL", cid="p-cid") is None
        await trio.sleep(2 * INTERVAL)
        await cluster.add("p")  # the same container and interface again
        del cluster.pods.items["ns/p"]
        await trio.sleep(GRACE - 5)
        assert cluster.attached("p")
        await trio.sleep(2 * INTERVAL)
        assert not cluster.attached("p")


async def test_a_block_still_used_stays_and_an_emptied_one_goes(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    """When the pods of a block go, the block goes with them unless it is
    the VRF's last; a block that still holds a pod stays."""
    names = [f"p{i}" for i in range(70)]  # more than a /26 holds: two blocks
    for name in names:
        await cluster.add(name)
    assert len(await cluster.blocks(node=NODE)) == 2
    first = sorted(await cluster.blocks(node=NODE), key=lambda b: b.name)
    async with collecting(cluster):
        await trio.sleep(1)
        for name in names[:10]:
            del cluster.pods.items[f"ns/{name}"]
        await trio.sleep(GRACE + 2 * INTERVAL)
        assert {b.name for b in await cluster.blocks(node=NODE)} == {b.name for b in first}
        assert len(await cluster.addresses()) == 60
        for name in names[10:65]:  # the first block is left with none of them
            del cluster.pods.items[f"ns/{name}"]
        await trio.sleep(GRACE + 2 * INTERVAL)
        left = await cluster.blocks(node=NODE)
        assert len(left) == 1 and len(await cluster.addresses()) == 5
        assert all(cluster.attached(n) for n in names[65:])


async def test_a_vrf_no_domain_has_loses_this_nodes_blocks_after_the_grace(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    await cluster.add("p")
    async with collecting(cluster):
        await trio.sleep(1)
        # one domain that does not decode: it may own vrf 42, nothing goes
        del cluster.domains.items["vrf-42"]
        cluster.domains.invalid["broken"] = "spec.vrf: expected int"
        await trio.sleep(10 * GRACE)
        assert len(await cluster.blocks(node=NODE, vrf=42)) == 1
        cluster.domains.invalid.clear()
        await trio.sleep(GRACE - 5)
        assert len(await cluster.blocks(node=NODE, vrf=42)) == 1
        await trio.sleep(2 * INTERVAL)
        assert await cluster.blocks(node=NODE, vrf=42) == []


async def test_a_node_that_left_loses_its_blocks_after_the_grace(
    cluster: Cluster, autojump_clock: trio.testing.MockClock
) -> None:
    for node in ("n2", "n3"):
        cluster.nodes.items[node] = Node(metadata=ObjectMeta(name=node))
        await cluster.store.create_block(
            BlockRecord(name=f"b-{node}", cidr="10.244.9.0/26", node=node, vrf=42, gateway="x")
        )
    # this node is missing from its own watch (a lag): its blocks are never judged
    del cluster.nodes.items[NODE]
    await cluster.add("p")
    async with collecting(cluster):
        await trio.sleep(1)
        del cluster.nodes.items["n2"]
        await trio.sleep(GRACE - 5)
        assert len(await cluster.blocks(node="n2")) == 1
        await trio.sleep(2 * INTERVAL)
        assert await cluster.blocks(node="n2") == []
        assert len(await cluster.blocks(node="n3")) == 1
        await trio.sleep(10 * GRACE)
        assert len(await cluster.blocks(node=NODE)) == 1 and cluster.attached("p")


async def test_an_api_outage_skips_passes_and_the_next_pass_after_it_collects(
    cluster: Cluster, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    await cluster.add("p")
    async with collecting(cluster):
        await trio.sleep(1)
        del cluster.pods.items["ns/p"]
        cluster.store.down = True
        await trio.sleep(GRACE + 3 * INTERVAL)
        warnings = [r.getMessage() for r in caplog.records if r.name == "cnid.gc"]
        assert warnings and all(
            w == "GC: the API server is not reachable; next pass in 10s" for w in warnings
        )
        # every pass still runs and fails, one per interval
        assert GRACE / INTERVAL <= len(warnings) <= GRACE / INTERVAL + 4
        cluster.store.down = False
        await trio.sleep(INTERVAL + 1)
        assert not cluster.attached("p")
        assert await cluster.addresses() == set()
