"""HostIntegration on trio's virtual clock, over a fake of what it applies a
plan to (``apply_host``'s contract: our rules, our leak routes per table, our
nftables table), the real registry, readiness and address pool (a
MemoryStore that can be made unreachable). What ``apply_host`` itself does
to a kernel is the host tier's (tests/host/test_hostpath.py); here: when the
service applies which plan, and what it says meanwhile."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from cnid.core import (
    Domain,
    DomainLinks,
    DomainRegistry,
    KernelError,
    Readiness,
    StoreUnavailable,
    VniAttachment,
)
from cnid.dataplane import (
    PRIO_PROBE,
    FibRule,
    HostPlan,
    HostPolicy,
    HostSettings,
    HostState,
    LeakRoute,
    PolicyMatch,
)
from cnid.hostintegration import COMPONENT, HostIntegration, PolicySource
from cnid.ipam import AddressPool, BlockRecord, MemoryStore

INTERVAL = 30.0
NODE = "n1"


def domain(name: str, vrf: int, table: int, prefix: str) -> Domain:
    return Domain(
        name=name,
        vrf=vrf,
        table=table,
        prefix=prefix,
        prefixlen=16,
        ipblocklen=26,
        attachments=(VniAttachment(type="l3vni", vni=vrf),),
    )


V42 = domain("vrf-42", 42, 42, "10.244.0.0")
V300 = domain("vrf-300", 300, 10300, "10.30.0.0")
#: A VRF id wider than the 16-bit mark: planned with a problem (probes only).
WIDE = domain("wide", 70000, 70000, "10.70.0.0")


def links(d: Domain) -> DomainLinks:
    return DomainLinks(vrf=f"vrf-{d.vrf}", table=d.table, bridge=None, vxlan=None, router_mac=None)


class FakeHost:
    """What apply_host leaves on a node, applied as it applies it: every rule
    of ours replaced by the plan's, leak routes per table (the tables of the
    previous plan that this one lacks lose theirs), our table rewritten when
    it differs (True then). ``fail`` makes the next calls raise."""

    def __init__(self) -> None:
        self.rules: set[FibRule] = set()
        self.routes: dict[int, set[LeakRoute]] = {}
        self.nft: str | None = None
        self.fail: KernelError | None = None
        #: virtual time of every call, failed ones included
        self.calls: list[float] = []

    async def apply(self, plan: HostPlan, state: HostState, mark_mask: int) -> bool:
        await trio.lowlevel.checkpoint()
        self.calls.append(trio.current_time())
        if self.fail is not None:
            raise self.fail
        for table in state.tables - set(plan.routes):
            self.routes.pop(table, None)
        self.routes.update({t: set(r) for t, r in plan.routes.items()})
        state.tables = set(plan.routes)
        self.rules = set(plan.rules)
        rewritten = self.nft != plan.nft
        self.nft = plan.nft
        return rewritten

    def holds(self, plan: HostPlan) -> bool:
        return (
            self.rules == set(plan.rules)
            and self.routes == {t: set(r) for t, r in plan.routes.items()}
            and self.nft == plan.nft
        )

    def tables(self) -> set[int]:
        """The VRF tables our rules and routes point into."""
        return {r.table for r in self.rules if r.table not in (0, 254, 255)} | set(self.routes)


class FlakyStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def list_blocks(
        self, vrf: int | None = None, node: str | None = None
    ) -> list[BlockRecord]:
        if self.down:
            await trio.lowlevel.checkpoint()
            raise StoreUnavailable("the API server is not reachable")
        return await super().list_blocks(vrf, node)


class Env:
    def __init__(self, *domains: Domain, domains_ready: bool = True) -> None:
        self.registry = DomainRegistry(V42, static=False)
        self.registry.set_domains(list(domains))
        for d in domains:
            self.registry.set_links(d.name, links(d))
        self.store = FlakyStore()
        self.pool = AddressPool(self.store, NODE)
        self.readiness = Readiness()
        self.readiness.expect("domains")
        if domains_ready:
            self.readiness.set_ready("domains")
        self.kernel = FakeHost()
        self.policies = PolicySource()
        self.host = HostIntegration(
            node=NODE,
            registry=self.registry,
            pool=self.pool,
            readiness=self.readiness,
            settings=HostSettings(),
            policies=self.policies,
            interval=INTERVAL,
            apply=self.kernel.apply,
        )

    def state(self) -> str:
        return self.readiness.snapshot()[COMPONENT]

    def plan(self) -> HostPlan:
        assert self.host.plan is not None
        return self.host.plan

    async def claim(self, cidr: str, vrf: int) -> None:
        """A block of this node appears in the store (the pool bumps its
        notifier when it claims one)."""
        gateway = cidr.rsplit(".", 1)[0] + ".1"
        await self.store.create_block(
            BlockRecord(name=f"b-{vrf}-{cidr}", cidr=cidr, node=NODE, vrf=vrf, gateway=gateway)
        )
        self.pool.notifier.bump()


@asynccontextmanager
async def running(env: Env) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(env.host.run)
        yield
        nursery.cancel_scope.cancel()


def probe(block: str, table: int, rank: int = 0) -> FibRule:
    return FibRule(socket.AF_INET, PRIO_PROBE + rank, table=table, dst=block, iifname="lo")


async def test_the_first_plan_waits_for_the_domains(
    autojump_clock: trio.testing.MockClock,
) -> None:
    env = Env(V42, domains_ready=False)
    async with running(env):
        await trio.sleep(10)
        assert env.kernel.calls == []
        assert env.state() == "waiting for the domains"
        assert not env.readiness.ready
        env.readiness.set_ready("domains")
        await trio.sleep(0.5)
        assert len(env.kernel.calls) == 1
        assert env.state() == "ready"
        assert env.kernel.holds(env.plan()) and env.kernel.tables() == {42}


async def test_a_domain_that_is_never_programmed_holds_the_first_plan_back_only_a_while(
    autojump_clock: trio.testing.MockClock,
) -> None:
    env = Env(V42, domains_ready=False)
    async with running(env):
        await trio.sleep(59)  # max(2 * interval, 60 s)
        assert env.kernel.calls == []
        await trio.sleep(2)
        assert len(env.kernel.calls) == 1
        assert env.state() == "ready"
        assert env.kernel.tables() == {42}


async def test_drift_is_repaired_each_interval_and_not_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    env = Env(V42)
    await env.claim("10.244.0.0/26", 42)
    async with running(env):
        await trio.sleep(1)
        start = env.kernel.calls[0]
        wanted = env.plan()
        assert probe("10.244.0.0/26", 42) in env.kernel.rules
        # someone else deletes a rule and a leak route and flushes our table
        env.kernel.rules.discard(probe("10.244.0.0/26", 42))
        env.kernel.routes[42].pop()
        env.kernel.nft = None
        await trio.sleep(start + INTERVAL - 0.5 - trio.current_time())
        assert not env.kernel.holds(wanted)
        await trio.sleep(1)
        assert env.kernel.holds(wanted)
        assert env.plan() == wanted
        await trio.sleep(3 * INTERVAL)
        assert env.kernel.calls == [start + n * INTERVAL for n in range(5)]
        assert env.state() == "ready"


async def test_a_new_domain_is_applied_at_once_and_a_deleted_one_withdrawn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    env = Env(V42)
    async with running(env):
        await trio.sleep(1)
        assert env.kernel.tables() == {42}
        calls = len(env.kernel.calls)
        env.registry.set_domains([V42, V300])
        env.registry.set_links(V300.name, links(V300))
        await env.claim("10.30.0.0/26", 300)
        await trio.sleep(0.01)
        assert len(env.kernel.calls) > calls  # not at the next interval
        assert env.kernel.tables() == {42, 10300}
        assert probe("10.30.0.0/26", 10300, rank=1) in env.kernel.rules
        assert set(env.plan().marks) == {"vrf-42", "vrf-300"}
        assert "0x012c0000" in (env.kernel.nft or "")
        env.registry.set_domains([V42])
        await trio.sleep(0.01)
        assert env.kernel.tables() == {42}
        assert 10300 not in env.kernel.routes
        assert not [r for r in env.kernel.rules if r.src == "10.30.0.0/16"]
        assert "0x012c0000" not in (env.kernel.nft or "")
        assert env.kernel.holds(env.plan()) and set(env.plan().marks) == {"vrf-42"}


async def test_a_domain_is_left_out_until_its_kernel_objects_exist(
    autojump_clock: trio.testing.MockClock,
) -> None:
    env = Env(V42)
    env.registry.set_domains([V42, V300])  # V300 accepted, not programmed yet
    async with running(env):
        await trio.sleep(1)
        assert env.kernel.tables() == {42}
        env.registry.set_links(V300.name, links(V300))
        await trio.sleep(0.01)
        assert env.kernel.tables() == {42, 10300}


async def test_a_kernel_error_makes_it_not_ready_and_is_retried_within_seconds(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    env = Env(V42)
    async with running(env):
        await trio.sleep(1)
        assert env.state() == "ready"
        env.kernel.fail = KernelError("nft: table inet cnid: Operation not permitted")
        env.registry.set_domains([V42, V300])
        env.registry.set_links(V300.name, links(V300))
        await trio.sleep(0.01)
        failed = env.kernel.calls[-1]
        assert env.state() == "nft: table inet cnid: Operation not permitted"
        assert not env.readiness.ready
        assert "host integration: nft: table inet cnid" in caplog.text
        await trio.sleep(5)
        # retried every 2 s while it fails, not every interval
        assert env.kernel.calls[-3:] == [failed, failed + 2, failed + 4]
        env.kernel.fail = None
        await trio.sleep(2)
        assert env.state() == "ready"
        assert env.kernel.tables() == {42, 10300}
        # back to the interval once it works
        worked = env.kernel.calls[-1]
        assert worked == failed + 6
        await trio.sleep(worked + INTERVAL + 0.5 - trio.current_time())
        assert env.kernel.calls[-2:] == [worked, worked + INTERVAL]


async def test_the_api_away_keeps_the_last_blocks_and_readiness(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    env = Env(V42)
    await env.claim("10.244.0.0/26", 42)
    async with running(env):
        await trio.sleep(1)
        assert probe("10.244.0.0/26", 42) in env.kernel.rules
        env.store.down = True
        calls = len(env.kernel.calls)
        await trio.sleep(INTERVAL)
        assert len(env.kernel.calls) == calls + 1  # reconciled without the store
        assert probe("10.244.0.0/26", 42) in env.kernel.rules  # probes keep working
        assert env.state() == "ready"
        assert "blocks not read (the API server is not reachable)" in caplog.text
        # back: the blocks read again, a released one loses its probe rule
        env.store.down = False
        (rec,) = await env.store.list_blocks()
        await env.store.delete_block(rec)
        env.pool.notifier.bump()
        await trio.sleep(0.01)
        assert probe("10.244.0.0/26", 42) not in env.kernel.rules
        assert env.host.blocks == {}


async def test_policies_are_applied_at_once_and_each_plan_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    env = Env(V42)
    seen: list[HostPlan] = []
    env.host.on_applied.append(seen.append)
    policy = HostPolicy("p", "vrf-42", (PolicyMatch(dst="192.0.2.0/24"),))
    async with running(env):
        await trio.sleep(1)
        assert len(seen) == 1
        applied = env.host.applied.version
        env.policies.set([policy])
        await trio.sleep(0.01)
        assert [r.table for r in env.kernel.rules if r.dst == "192.0.2.0/24"] == [42]
        assert env.host.planned_policies == [policy]
        assert seen[-1] == env.plan() and len(seen) == 2
        assert env.host.applied.version == applied + 1
        env.policies.set([policy])  # the same: no change, no reconcile
        await trio.sleep(0.01)
        assert len(seen) == 2
        env.policies.set([])
        await trio.sleep(0.01)
        assert not [r for r in env.kernel.rules if r.dst == "192.0.2.0/24"]


async def test_a_plan_problem_is_logged_once_not_each_reconcile(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    env = Env(V42, WIDE)
    async with running(env):
        await trio.sleep(3 * INTERVAL + 1)
        assert len(env.kernel.calls) == 4
    problems = [r for r in caplog.records if "does not fit" in r.getMessage()]
    assert len(problems) == 1
    assert problems[0].getMessage().startswith("host integration: wide: VRF id 70000")
    assert "wide" in env.plan().problems and env.state() == "ready"
