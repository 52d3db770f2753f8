"""AddressPool over MemoryStore: allocation, release, several nodes, GC,
concurrency with injected store conflicts."""

from __future__ import annotations

import ipaddress
import random
from collections import Counter

import pytest
import trio
import trio.testing

from cnid.core import AddressExhausted, ConfigError, Domain, StoreConflict, VniAttachment
from cnid.ipam import (
    MAX_ATTEMPTS,
    AddressPool,
    BlockRecord,
    Lease,
    MemoryStore,
    Owner,
    Store,
)


def domain(
    vrf: int = 42, prefix: str = "10.244.0.0", prefixlen: int = 16, ipblocklen: int = 26
) -> Domain:
    return Domain(
        name=f"vrf-{vrf}",
        vrf=vrf,
        table=vrf + 1000,
        prefix=prefix,
        prefixlen=prefixlen,
        ipblocklen=ipblocklen,
        attachments=(VniAttachment(type="l3vni", vni=vrf + 60000),),
    )


def owner(cid: str, ifname: str = "eth0") -> Owner:
    return Owner(cid, ifname, pod_namespace="ns", pod_name=f"pod-{cid}", pod_uid=f"uid-{cid}")


class FlakyStore:
    """A Store that loses the race now and then: each write raises
    StoreConflict (without applying) with probability ``rate``. Reads and
    writes add checkpoints so that callers interleave."""

    def __init__(self, inner: Store, rate: float, seed: int) -> None:
        self.inner = inner
        self.rate = rate
        self.rng = random.Random(seed)
        self.injected = 0

    async def _maybe_conflict(self) -> None:
        await trio.lowlevel.checkpoint()
        if self.rng.random() < self.rate:
            self.injected += 1
            raise StoreConflict("injected")

    async def list_blocks(
        self, vrf: int | None = None, node: str | None = None
    ) -> list[BlockRecord]:
        await trio.lowlevel.checkpoint()
        return await self.inner.list_blocks(vrf, node)

    async def get_block(self, name: str) -> BlockRecord | None:
        return await self.inner.get_block(name)

    async def create_block(self, rec: BlockRecord) -> BlockRecord:
        await self._maybe_conflict()
        return await self.inner.create_block(rec)

    async def update_block(self, rec: BlockRecord) -> BlockRecord:
        await self._maybe_conflict()
        return await self.inner.update_block(rec)

    async def delete_block(self, rec: BlockRecord) -> None:
        await self._maybe_conflict()
        await self.inner.delete_block(rec)


async def check_store_consistent(store: Store) -> dict[str, BlockRecord]:
    """Blocks do not overlap within a VRF, every block has its gateway, and
    no address is in two blocks. Returns address -> block per VRF key."""
    by_vrf: dict[int, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    seen: dict[str, BlockRecord] = {}
    for rec in await store.list_blocks():
        net = ipaddress.ip_network(rec.cidr)
        for other in by_vrf.setdefault(rec.vrf, []):
            assert not net.overlaps(other), (rec.cidr, other)
        by_vrf[rec.vrf].append(net)
        assert rec.allocations[rec.gateway].kind == "gateway"
        for addr in rec.allocations:
            assert ipaddress.ip_address(addr) in net
            key = f"{rec.vrf}/{addr}"
            assert key not in seen
            seen[key] = rec
    return seen


# -- one node -------------------------------------------------------------


async def test_sequential_allocation() -> None:
    store = MemoryStore()
    pool = AddressPool(store, "k8s03")
    a = await pool.allocate(domain(), owner("c1"))
    assert a == Lease(
        address="10.244.0.2",
        block="10.244.0.0/26",
        block_name="vrf-42-10-244-0-0-26",
        gateway="10.244.0.1",
        vrf=42,
        owner=owner("c1"),
    )
    assert a.ip == ipaddress.ip_address("10.244.0.2")
    assert a.network == ipaddress.ip_network("10.244.0.0/26")
    b = await pool.allocate(domain(), owner("c2"))
    c = await pool.allocate(domain(), owner("c2", "net1"))  # same container, 2nd interface
    assert [b.address, c.address] == ["10.244.0.3", "10.244.0.4"]
    [rec] = await store.list_blocks()
    assert rec.node == "k8s03" and rec.gateway == "10.244.0.1"
    assert rec.allocations["10.244.0.1"].kind == "gateway"
    assert rec.allocations["10.244.0.4"].ifname == "net1"
    assert rec.allocations["10.244.0.4"].pod_uid == "uid-c2"
    assert await pool.leases() == [a, b, c]


async def test_allocation_is_idempotent_per_owner() -> None:
    store = MemoryStore()
    pool = AddressPool(store, "n1")
    first = await pool.allocate(domain(), owner("c1"))
    again = await pool.allocate(domain(), Owner("c1", "eth0"))  # pod fields need not match
    assert again == first
    [rec] = await store.list_blocks()
    assert len(rec.allocations) == 2  # gateway + one pod
    assert await pool.lookup(42, "c1", "eth0") == first
    assert await pool.lookup(42, "c1", "eth1") is None
    assert await pool.lookup(43, "c1", "eth0") is None


async def test_release_is_idempotent_and_addresses_are_reused() -> None:
    store = MemoryStore()
    pool = AddressPool(store, "n1")
    leases = [await pool.allocate(domain(), owner(f"c{i}")) for i in range(4)]
    assert [x.address for x in leases] == [f"10.244.0.{i}" for i in range(2, 6)]
    assert await pool.release(42, "c1", "eth0") == leases[1]
    assert await pool.release(42, "c1", "eth0") is None
    assert await pool.release(42, "never", "eth0") is None
    assert await pool.release(7, "c2", "eth0") is None  # another VRF
    assert await pool.lookup(42, "c1", "eth0") is None
    assert [x.address for x in await pool.leases()] == ["10.244.0.2", "10.244.0.4", "10.244.0.5"]
    reused = await pool.allocate(domain(), owner("new"))
    assert reused.address == "10.244.0.3"
    assert (await pool.allocate(domain(), owner("next"))).address == "10.244.0.6"


async def test_second_block_when_the_first_is_full_then_exhaustion() -> None:
    store = MemoryStore()
    pool = AddressPool(store, "n1")
    small = domain(prefix="10.9.0.0", prefixlen=28, ipblocklen=30)  # 4 blocks, 1 pod each
    got = [await pool.allocate(small, owner(f"c{i}")) for i in range(4)]
    assert [(x.address, x.block, x.gateway) for x in got] == [
        ("10.9.0.2", "10.9.0.0/30", "10.9.0.1"),
        ("10.9.0.6", "10.9.0.4/30", "10.9.0.5"),
        ("10.9.0.10", "10.9.0.8/30", "10.9.0.9"),
        ("10.9.0.14", "10.9.0.12/30", "10.9.0.13"),
    ]
    with pytest.raises(AddressExhausted, match="vrf-42"):
        await pool.allocate(small, owner("one-too-many"))
    # Nothing was written for the failed allocation.
    assert sum(len(r.allocations) for r in await store.list_blocks()) == 8
    # A release makes room again, in the block that has it.
    await pool.release(42, "c2", "eth0")
    assert (await pool.allocate(small, owner("late"))).address == "10.9.0.10"


async def test_full_26_block_matches_the_seeds() -> None:
    store = MemoryStore()
    pool = AddressPool(store, "n1")
    for i in range(61):
        lease = await pool.allocate(domain(), owner(f"c{i}"))
    assert lease.address == "10.244.0.62"  # .63 is the broadcast address
    [usage] = await pool.blocks()
    assert (usage.allocated, usage.capacity) == (62, 62)
    nxt = await pool.allocate(domain(), owner("c61"))
    assert (nxt.address, nxt.block_name) == ("10.244.0.66", "vrf-42-10-244-0-64-26")


async def test_blocks_too_small_for_a_pod_are_refused() -> None:
    pool = AddressPool(MemoryStore(), "n1")
    with pytest.raises(ConfigError, match="too small"):
        await pool.allocate(domain(prefixlen=24, ipblocklen=31), owner("c1"))


async def test_ipv6_domain() -> None:
    store = MemoryStore()
    pool = AddressPool(store, "n1")
    v6 = domain(vrf=6, prefix="fd00:6::", prefixlen=112, ipblocklen=120)
    first = await pool.allocate(v6, owner("c0"))
    assert (first.address, first.gateway, first.block_name) == (
        "fd00:6::2",
        "fd00:6::1",
        "vrf-6-fd00-6---120",
    )
    for i in range(1, 254):
        last = await pool.allocate(v6, owner(f"c{i}"))
    assert last.address == "fd00:6::ff"  # no broadcast in IPv6: the last address is used
    nxt = await pool.allocate(v6, owner("c254"))
    assert (nxt.address, nxt.block) == ("fd00:6::102", "fd00:6::100/120")
    usage = {u.cidr: (u.allocated, u.capacity) for u in await pool.blocks()}
    assert usage == {"fd00:6::/120": (255, 255), "fd00:6::100/120": (2, 255)}


async def test_ipv6_64_blocks() -> None:
    pool = AddressPool(MemoryStore(), "n1")
    v6 = domain(vrf=6, prefix="fd00:6::", prefixlen=48, ipblocklen=64)
    leases = [await pool.allocate(v6, owner(f"c{i}")) for i in range(300)]
    assert leases[0].address == "fd00:6::2"
    assert leases[-1].address == "fd00:6::12d"
    [usage] = await pool.blocks()
    assert (usage.allocated, usage.capacity) == (301, 2**64 - 1)


async def test_two_vrfs_with_the_same_prefix_are_independent() -> None:
    store = MemoryStore()
    pool = AddressPool(store, "n1")
    a = await pool.allocate(domain(vrf=42), owner("c1"))
    b = await pool.allocate(domain(vrf=43), owner("c1"))  # same owner, other VRF
    assert a.address == b.address == "10.244.0.2"
    assert (a.block_name, b.block_name) == ("vrf-42-10-244-0-0-26", "vrf-43-10-244-0-0-26")
    assert await pool.release(42, "c1", "eth0") == a
    assert await pool.lookup(43, "c1", "eth0") == b
    assert await pool.leases(43) == [b]
    assert await pool.leases(42) == []


# -- several nodes ----------------------------------------------------------


async def test_blocks_of_other_nodes_are_skipped() -> None:
    store = MemoryStore()
    n1, n2 = AddressPool(store, "n1"), AddressPool(store, "n2")
    a = await n1.allocate(domain(), owner("a"))
    b = await n2.allocate(domain(), owner("b"))
    c = await n1.allocate(domain(), owner("c"))
    assert (a.address, b.address, c.address) == ("10.244.0.2", "10.244.0.66", "10.244.0.3")
    # Each node sees, looks up, releases only its own.
    assert await n1.leases() == [a, c]
    assert await n2.leases() == [b]
    assert await n1.lookup(42, "b", "eth0") is None
    assert await n1.release(42, "b", "eth0") is None
    assert await n2.lookup(42, "b", "eth0") == b


async def test_no_borrowing_from_other_nodes_blocks() -> None:
    store = MemoryStore()
    n1, n2 = AddressPool(store, "n1"), AddressPool(store, "n2")
    small = domain(prefix="10.9.0.0", prefixlen=25, ipblocklen=26)  # two blocks
    await n1.allocate(small, owner("a"))
    await n2.allocate(small, owner("b"))
    await n1.allocate(small, owner("c"))
    # n3 finds both blocks held, though each has free addresses.
    with pytest.raises(AddressExhausted):
        await AddressPool(store, "n3").allocate(small, owner("d"))


async def test_seed_table_reproduced() -> None:
    store = MemoryStore()
    k8s02, k8s03 = AddressPool(store, "k8s02"), AddressPool(store, "k8s03")
    vrf200 = domain(vrf=200, prefix="10.150.0.0", prefixlen=16, ipblocklen=26)
    for i in range(61):
        await k8s03.allocate(vrf200, owner(f"a{i}"))
    for i in range(61):
        await k8s02.allocate(vrf200, owner(f"b{i}"))
    for i in range(40):
        await k8s03.allocate(vrf200, owner(f"c{i}"))
        await k8s02.allocate(vrf200, owner(f"d{i}"))
    for i in range(3):
        await k8s03.allocate(domain(vrf=42), owner(f"e{i}"))
        await k8s02.allocate(domain(vrf=42), owner(f"f{i}"))
    lines = ["NAME                      CIDR              NODE    VRF   ALLOCATED   CAPACITY"]
    for u in await k8s02.blocks():
        lines.append(f"{u.name:<26}{u.cidr:<18}{u.node:<8}{u.vrf:<6}{u.allocated:<12}{u.capacity}")
    assert "\n".join(lines) == (
        "NAME                      CIDR              NODE    VRF   ALLOCATED   CAPACITY\n"
        "vrf-200-10-150-0-0-26     10.150.0.0/26     k8s03   200   62          62\n"
        "vrf-200-10-150-0-128-26   10.150.0.128/26   k8s03   200   41          62\n"
        "vrf-200-10-150-0-192-26   10.150.0.192/26   k8s02   200   41          62\n"
        "vrf-200-10-150-0-64-26    10.150.0.64/26    k8s02   200   62          62\n"
        "vrf-42-10-244-0-0-26      10.244.0.0/26     k8s03   42    4           62\n"
        "vrf-42-10-244-0-64-26     10.244.0.64/26    k8s02   42    4           62"
    )


# -- concurrency ----------------------------------------------------------


async def test_concurrent_allocations_on_three_nodes_with_conflicts() -> None:
    memory = MemoryStore()
    flaky = FlakyStore(memory, rate=0.2, seed=1)
    pools = [AddressPool(flaky, f"n{i}") for i in range(3)]
    dom = domain(prefix="10.50.0.0", prefixlen=22, ipblocklen=27)  # 32 blocks of 30
    leases: list[Lease] = []

    async def add(pool: AddressPool, cid: str) -> None:
        leases.append(await pool.allocate(dom, owner(cid)))

    async with trio.open_nursery() as nursery:
        for i in range(200):
            for n, pool in enumerate(pools):
                nursery.start_soon(add, pool, f"n{n}-c{i}")
    assert flaky.injected > 50  # the retry paths really ran
    assert len(leases) == 600
    assert len({x.address for x in leases}) == 600
    records = {r.name: r for r in await memory.list_blocks()}
    await check_store_consistent(memory)
    for lease in leases:
        rec = records[lease.block_name]
        # The lease is recorded, in a block of the node that asked for it.
        assert rec.node == lease.owner.container_id.split("-")[0]
        assert rec.allocations[lease.address].container_id == lease.owner.container_id
    per_node = Counter(r.node for r in records.values())
    # 200 pods need 7 blocks of 29 pods each; a node never holds spare blocks.
    assert per_node == {"n0": 7, "n1": 7, "n2": 7}
    assert sum(len(r.allocations) for r in records.values()) == 600 + 21
    for n, pool in enumerate(pools):
        mine = await pool.leases()
        assert len(mine) == 200
        assert {x.owner.container_id for x in mine} == {f"n{n}-c{i}" for i in range(200)}

    # Now release half and allocate new ones, all at once.
    async def churn(pool: AddressPool, n: int, i: int) -> None:
        if i % 2:
            assert await pool.release(42, f"n{n}-c{i}", "eth0") is not None
        else:
            leases.append(await pool.allocate(dom, owner(f"n{n}-new{i}")))

    async with trio.open_nursery() as nursery:
        for i in range(200):
            for n, pool in enumerate(pools):
                nursery.start_soon(churn, pool, n, i)
    live = await check_store_consistent(memory)
    pods = [k for k, r in live.items() if r.allocations[k.split("/")[1]].kind == "pod"]
    assert len(pods) == 600
    for pool in pools:
        assert len(await pool.leases()) == 200


async def test_two_pools_of_the_same_node_never_share_an_address() -> None:
    """Two processes on one node (an old and a new daemon during an upgrade)
    only have the store's versions between them."""
    memory = MemoryStore()
    flaky = FlakyStore(memory, rate=0.1, seed=2)
    a, b = AddressPool(flaky, "n1"), AddressPool(flaky, "n1")
    leases: list[Lease] = []

    async def add(pool: AddressPool, cid: str) -> None:
        leases.append(await pool.allocate(domain(), owner(cid)))

    async with trio.open_nursery() as nursery:
        for i in range(100):
            nursery.start_soon(add, a, f"a{i}")
            nursery.start_soon(add, b, f"b{i}")
    assert len({x.address for x in leases}) == 200
    await check_store_consistent(memory)
    assert len(await a.leases()) == 200


async def test_exhaustion_race_hands_out_exactly_the_capacity() -> None:
    memory = MemoryStore()
    flaky = FlakyStore(memory, rate=0.2, seed=3)
    pools = [AddressPool(flaky, f"n{i}") for i in range(3)]
    dom = domain(prefix="10.60.0.0", prefixlen=26, ipblocklen=28)  # 4 blocks of 13 pods
    ok: list[Lease] = []
    exhausted = 0

    async def add(pool: AddressPool, cid: str) -> None:
        nonlocal exhausted
        try:
            ok.append(await pool.allocate(dom, owner(cid)))
        except AddressExhausted:
            exhausted += 1

    async with trio.open_nursery() as nursery:
        for i in range(30):
            for n, pool in enumerate(pools):
                nursery.start_soon(add, pool, f"n{n}-c{i}")
    blocks = await memory.list_blocks()
    assert len(blocks) == 4
    # Whichever node got two blocks, every block is full and nothing was
    # handed out twice.
    assert len(ok) == 4 * 13
    assert len({x.address for x in ok}) == len(ok)
    assert exhausted == 90 - len(ok)
    assert all(len(r.allocations) == 14 for r in blocks)


class CountingStore(MemoryStore):
    """Counts the conflicts the store itself raises."""

    def __init__(self) -> None:
        super().__init__()
        self.conflicts = 0

    async def update_block(self, rec: BlockRecord) -> BlockRecord:
        try:
            return await super().update_block(rec)
        except StoreConflict:
            self.conflicts += 1
            raise

    async def create_block(self, rec: BlockRecord) -> BlockRecord:
        try:
            return await super().create_block(rec)
        except StoreConflict:
            self.conflicts += 1
            raise

    async def delete_block(self, rec: BlockRecord) -> None:
        try:
            await super().delete_block(rec)
        except StoreConflict:
            self.conflicts += 1
            raise


async def test_one_process_never_conflicts_with_itself() -> None:
    """The per-VRF lock serialises allocate, release and gc inside one
    pool: the store never sees two of its writes race."""
    store = CountingStore()
    pool = AddressPool(store, "n1")
    small = domain(prefix="10.9.0.0", prefixlen=22, ipblocklen=28)

    async def allocate_release(i: int) -> None:
        await pool.allocate(small, owner(f"c{i}"))
        if i % 3 == 0:
            await pool.release(42, f"c{i}", "eth0")

    async def collect() -> None:
        for _ in range(20):
            await pool.gc(lambda lease: int(lease.owner.container_id[1:]) % 5 != 0)
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        for i in range(150):
            nursery.start_soon(allocate_release, i)
    assert store.conflicts == 0
    await check_store_consistent(store)
    assert len(await pool.leases()) > 0


class BlockingStore(MemoryStore):
    """Writes of one VRF wait for an event."""

    def __init__(self, vrf: int) -> None:
        super().__init__()
        self.vrf = vrf
        self.release_writes = trio.Event()
        self.waiting = trio.Event()

    async def create_block(self, rec: BlockRecord) -> BlockRecord:
        if rec.vrf == self.vrf:
            self.waiting.set()
            await self.release_writes.wait()
        return await super().create_block(rec)


async def test_vrfs_do_not_wait_for_each_other() -> None:
    store = BlockingStore(vrf=1)
    pool = AddressPool(store, "n1")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pool.allocate, domain(vrf=1), owner("slow"))
        await store.waiting.wait()
        # VRF 1's write hangs; VRF 2 allocates anyway.
        with trio.fail_after(5):
            lease = await pool.allocate(domain(vrf=2), owner("fast"))
        assert lease.vrf == 2
        assert await pool.lookup(1, "slow", "eth0") is None  # not recorded yet
        store.release_writes.set()
    assert (await pool.lookup(1, "slow", "eth0")) is not None


class AlwaysConflicting(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    async def create_block(self, rec: BlockRecord) -> BlockRecord:
        self.writes += 1
        raise StoreConflict("always")


async def test_conflicts_are_retried_a_bounded_number_of_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = AlwaysConflicting()
    with pytest.raises(StoreConflict, match="gave up") as info:
        await AddressPool(store, "n1").allocate(domain(), owner("c1"))
    assert store.writes == MAX_ATTEMPTS
    assert info.value.details == "always"


# -- garbage collection -----------------------------------------------------


async def test_gc_releases_what_keep_rejects_and_empty_blocks_but_one() -> None:
    store = MemoryStore()
    pool, other = AddressPool(store, "n1"), AddressPool(store, "n2")
    small = domain(vrf=1, prefix="10.9.0.0", prefixlen=26, ipblocklen=29)  # 5 pods per block
    leases = [await pool.allocate(small, owner(f"c{i}")) for i in range(12)]  # 3 blocks
    v2 = await pool.allocate(domain(vrf=2), owner("v2"))
    theirs = await other.allocate(small, owner("theirs"))
    assert len({x.block for x in leases}) == 3

    alive = {"c3", "c11"}  # one in block 0, one in block 2; block 1 empties
    seen: list[Lease] = []

    def keep(lease: Lease) -> bool:
        seen.append(lease)
        return lease.owner.container_id in alive

    released = await pool.gc(keep)
    # keep() saw exactly this node's leases.
    assert sorted(x.address for x in seen) == sorted(x.address for x in [*leases, v2])
    assert sorted(x.address for x in released) == sorted(
        x.address for x in [*leases, v2] if x.owner.container_id not in alive
    )
    assert [x.owner.container_id for x in await pool.leases()] == ["c3", "c11"]
    names = {r.name for r in await store.list_blocks(node="n1")}
    # Block 1 of vrf 1 emptied and went; vrf 2's empty block is the one kept.
    assert names == {"vrf-1-10-9-0-0-29", "vrf-1-10-9-0-16-29", "vrf-2-10-244-0-0-26"}
    assert await other.leases() == [theirs]

    # Empty everything: one block per VRF stays, the lowest.
    released = await pool.gc(lambda lease: False)
    assert {x.owner.container_id for x in released} == {"c3", "c11"}
    names = {r.name for r in await store.list_blocks(node="n1")}
    assert names == {"vrf-1-10-9-0-0-29", "vrf-2-10-244-0-0-26"}
    assert await pool.gc(lambda lease: False) == []
    # The kept block is used again, from its lowest address.
    assert (await pool.allocate(small, owner("again"))).address == "10.9.0.2"


async def test_gc_retries_keep_their_releases(autojump_clock: trio.testing.MockClock) -> None:
    memory = MemoryStore()
    flaky = FlakyStore(memory, rate=0.0, seed=4)
    pool = AddressPool(flaky, "n1")
    small = domain(vrf=1, prefix="10.9.0.0", prefixlen=24, ipblocklen=29)
    for i in range(30):
        await pool.allocate(small, owner(f"c{i}"))
    flaky.rate = 0.5
    released = await pool.gc(lambda lease: int(lease.owner.container_id[1:]) % 3 == 0)
    assert flaky.injected > 0
    assert len(released) == 20
    assert len({x.address for x in released}) == 20
    assert len(await pool.leases()) == 10
    await check_store_consistent(memory)


async def test_release_domain_removes_only_this_nodes_blocks_of_that_vrf() -> None:
    store = MemoryStore()
    pool, other = AddressPool(store, "n1"), AddressPool(store, "n2")
    for i in range(70):  # two blocks
        await pool.allocate(domain(vrf=1), owner(f"c{i}"))
    keep2 = await pool.allocate(domain(vrf=2), owner("x"))
    theirs = await other.allocate(domain(vrf=1), owner("y"))
    await pool.release_domain(1)
    assert await pool.leases() == [keep2]
    assert await other.leases() == [theirs]
    assert {r.name for r in await store.list_blocks()} == {
        "vrf-2-10-244-0-0-26",
        "vrf-1-10-244-0-128-26",
    }
    await pool.release_domain(1)  # twice: fine
    await pool.release_domain(99)  # never had any: fine
    # The freed blocks are claimable again, lowest first.
    assert (await pool.allocate(domain(vrf=1), owner("c0"))).address == "10.244.0.2"
