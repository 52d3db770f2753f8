"""The EVPN controller's loops and timers on trio's virtual clock.

The controller runs whole (``run``: announce, receive, program, teardowns)
against fakes of its two seams: the speaker (what ExaBGP would send and be
told) and the kernel (``EvpnKernel``: ``apply_evpn`` and ``dump_evpn`` over
a dict). The node's own state is the real journal and domain registry, the
address pool a fake. A 120 s stale timer is a millisecond test here; the
host tier (tests/host/test_evpn_*.py) keeps the same behaviour against real
ExaBGP, FRR, GoBGP and a real kernel.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from cnid.bgp import (
    EvpnPath,
    ImetRoute,
    MacIpRoute,
    Neighbor,
    PeerStatus,
    PrefixRoute,
    ReceivedPath,
    SpeakerConfig,
    SpeakerDown,
    SpeakerEvent,
    StateEvent,
    UpdateEvent,
)
from cnid.core import (
    CnidError,
    DomainLinks,
    DomainRegistry,
    Journal,
    KernelError,
    Metrics,
    Notifier,
    PodRecord,
    PodResult,
    ResultInterface,
)
from cnid.dataplane import ApplyResult, EvpnRoute, FdbEntry, KernelEvpn, NeighEntry
from cnid.evpn import EvpnController, Identity, KernelEntry, entry_key
from testbed.domains import VRF42, VRF300

ME = "192.168.77.11"
PEER = "192.168.77.12"
OTHER = "192.168.77.13"
ROUTER_MAC = "02:42:00:00:00:11"
POD_MAC, POD_IP = "0a:00:00:00:00:03", "10.3.0.2"

T5 = EvpnPath(
    PrefixRoute(rd=f"{PEER}:42", prefix="10.244.1.0/26", vni=42),
    nexthop=PEER,
    route_targets=("65000:42",),
    router_mac="02:42:00:00:00:12",
)
T2 = EvpnPath(
    MacIpRoute(rd=f"{PEER}:300", mac="0a:00:00:00:01:01", ip="10.3.0.9", vni=300),
    PEER,
    route_targets=("65000:300",),
)
T5_ROUTE = ("route", 42, "10.244.1.0/26", PEER)
T2_FDB = ("fdb", 300, "0a:00:00:00:01:01")


def t5(prefix: str, peer: str = PEER) -> EvpnPath:
    route = PrefixRoute(rd=f"{peer}:42", prefix=prefix, vni=42)
    return EvpnPath(route, nexthop=peer, route_targets=("65000:42",), router_mac=T5.router_mac)


def update(
    *paths: EvpnPath, peer: str = PEER, withdrawn: tuple[Any, ...] = (), eor: bool = False
) -> UpdateEvent:
    announced = tuple(ReceivedPath(peer=peer, path=p) for p in paths)
    return UpdateEvent(peer, announced=announced, withdrawn=withdrawn, eor=eor)


# -- the fakes -------------------------------------------------------------------


class FakeSpeaker:
    """What the controller asks of the speaker; ``send`` plays ExaBGP."""

    def __init__(self, neighbors: Iterable[str] = (PEER,)) -> None:
        self.listeners: list[Callable[[SpeakerEvent], None]] = []
        self.config: SpeakerConfig | None = SpeakerConfig(
            router_id=ME,
            local_address=ME,
            asn=65000,
            neighbors=tuple(Neighbor(a) for a in neighbors),
        )
        self.peers = {a: PeerStatus(a, "static") for a in neighbors}
        self.announced: frozenset[EvpnPath] = frozenset()
        #: (virtual time, paths) of each announcement that changed something
        self.announcements: list[tuple[float, frozenset[EvpnPath]]] = []
        self.torn_down: list[tuple[str, float, int]] = []

    def subscribe(self, listener: Callable[[SpeakerEvent], None]) -> None:
        self.listeners.append(listener)

    def announce(self, paths: frozenset[EvpnPath]) -> None:
        if paths != self.announced:
            self.announced = paths
            self.announcements.append((trio.current_time(), paths))

    def announced_by_type(self) -> dict[int, int]:
        out = {2: 0, 3: 0, 5: 0}
        for p in self.announced:
            out[{MacIpRoute: 2, ImetRoute: 3, PrefixRoute: 5}[type(p.route)]] += 1
        return out

    async def teardown(self, peer: str, hold: float, code: int = 1) -> bool:
        self.torn_down.append((peer, hold, code))
        return True

    def send(self, event: SpeakerEvent) -> None:
        for listener in self.listeners:
            listener(event)

    def session(self, peer: str, state: str) -> None:
        """A session changes: recorded first, then sent (as the speaker does)."""
        self.peers[peer].state = state
        self.send(StateEvent(peer, state))


class FakeKernel:
    """The kernel's EVPN entries of ours, by kernel key."""

    def __init__(self, entries: Iterable[KernelEntry] = ()) -> None:
        self.entries: dict[tuple[object, ...], KernelEntry] = {entry_key(e): e for e in entries}
        #: Each apply_evpn call: (virtual time, added, removed).
        self.applies: list[tuple[float, set[KernelEntry], set[KernelEntry]]] = []
        self.dumps = 0
        #: Failures to raise, one per call, before the kernel works again.
        self.failures: list[Exception] = []

    async def apply_evpn(
        self,
        add: KernelEvpn,
        remove: KernelEvpn,
        routes_now: Mapping[tuple[int, str], Iterable[EvpnRoute]] | None = None,
    ) -> ApplyResult:
        await trio.lowlevel.checkpoint()
        added: set[KernelEntry] = {*add.fdb, *add.neigh, *add.routes}
        removed: set[KernelEntry] = {*remove.fdb, *remove.neigh, *remove.routes}
        self.applies.append((trio.current_time(), added, removed))
        if self.failures:
            raise self.failures.pop(0)
        for e in removed:
            if self.entries.get(entry_key(e)) == e:
                del self.entries[entry_key(e)]
        for e in added:
            self.entries[entry_key(e)] = e
        return ApplyResult(applied=len(added) + len(removed), failed=())

    async def dump_evpn(self, vnis: Iterable[int], tables: Iterable[int]) -> KernelEvpn:
        await trio.lowlevel.checkpoint()
        self.dumps += 1
        values = list(self.entries.values())
        return KernelEvpn(
            fdb=frozenset(e for e in values if isinstance(e, FdbEntry)),
            neigh=frozenset(e for e in values if isinstance(e, NeighEntry)),
            routes=frozenset(e for e in values if isinstance(e, EvpnRoute)),
        )

    def removed(self) -> set[KernelEntry]:
        return {e for _, _, removed in self.applies for e in removed}


class Block:
    def __init__(self, vrf: int, cidr: str) -> None:
        self.vrf = vrf
        self.cidr = cidr


class FakePool:
    """The address pool as the controller reads it: this node's blocks."""

    def __init__(self) -> None:
        self.notifier = Notifier()
        self.store = self
        self.blocks = [Block(42, "10.244.0.0/26")]
        self.failures: list[CnidError] = []

    async def list_blocks(self, vrf: int | None = None, node: str | None = None) -> list[Block]:
        await trio.lowlevel.checkpoint()
        if self.failures:
            raise self.failures.pop(0)
        return list(self.blocks)


class Node:
    def __init__(
        self,
        tmp: Path,
        kernel: FakeKernel | None = None,
        speaker: FakeSpeaker | None = None,
        **kw: Any,
    ) -> None:
        self.speaker = speaker or FakeSpeaker()
        self.kernel = kernel or FakeKernel()
        self.registry = DomainRegistry(VRF42, static=True)
        self.registry.set_domains([VRF42, VRF300])
        self.registry.set_links("vrf-42", DomainLinks("vrf-42", 42, "br-42", "vx-42", ROUTER_MAC))
        self.journal = Journal(tmp)
        self.journal.load()
        self.pool = FakePool()
        self.metrics = Metrics()
        self.evpn = EvpnController(
            speaker=self.speaker,  # type: ignore[arg-type]
            identity=Identity(ME, 65000, ME),
            registry=self.registry,
            journal=self.journal,
            pool=self.pool,  # type: ignore[arg-type]
            node="n1",
            metrics=self.metrics,
            kernel=self.kernel,
            **kw,
        )

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def has(self, key: tuple[object, ...]) -> bool:
        return key in self.kernel.entries

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.evpn.run)
            yield
            nursery.cancel_scope.cancel()


async def until(what: str, check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Poll ``check`` on the virtual clock; the virtual time it took."""
    start = trio.current_time()
    with trio.move_on_after(timeout):
        while not check():
            await trio.sleep(0.01)
        return trio.current_time() - start
    raise AssertionError(f"{what}: not within {timeout} s")


def pod(name: str, mac: str = POD_MAC, ip: str = POD_IP) -> PodRecord:
    iface = ResultInterface("eth0", mac, sandbox=f"/var/run/netns/{name}")
    return PodRecord(
        container_id=name,
        ifname="eth0",
        state="ready",
        network_name="cnid",
        netns=f"/var/run/netns/{name}",
        domain="vrf-300",
        vrf=300,
        host_ifname=f"veth{name}",
        address=ip,
        result=PodResult(interfaces=(iface,), ips=()),
    )


# -- announce -------------------------------------------------------------------


async def test_the_local_state_is_announced_and_each_change_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path)
    speaker = node.speaker
    async with node.running():
        await until("the first announcement", lambda: bool(speaker.announcements))
        routes = {p.route for p in speaker.announced}
        # RDs router-id:index: the VRF first, then the l2vni
        assert ImetRoute(rd=f"{ME}:2", ip=ME, vni=300) in routes
        assert PrefixRoute(rd=f"{ME}:1", prefix="10.244.0.0/26", vni=42) in routes
        assert node.metric("cnid_evpn_routes_announced", type="5") == 1
        assert node.metric("cnid_evpn_routes_announced", type="2") == 0

        # A pod: its type-2 goes out on the journal's change, not at the
        # next 30 s pass.
        node.journal.put(pod("p1"))
        took = await until("the pod's type-2", lambda: node.speaker.announced_by_type()[2] == 1)
        assert took < 0.1
        (mac_ip,) = [p.route for p in speaker.announced if isinstance(p.route, MacIpRoute)]
        assert (mac_ip.mac, mac_ip.ip, mac_ip.vni) == (POD_MAC, POD_IP, 300)
        assert node.metric("cnid_evpn_routes_announced", type="2") == 1

        # A new block (the pool's change), then the pod gone (the journal's).
        node.pool.blocks.append(Block(42, "10.244.0.64/26"))
        node.pool.notifier.bump()
        assert await until("the block", lambda: speaker.announced_by_type()[5] == 2) < 0.1
        node.journal.delete(pod("p1").attachment)
        assert await until("the pod withdrawn", lambda: speaker.announced_by_type()[2] == 0) < 0.1
        # Nothing changes: nothing is announced again.
        count = len(speaker.announcements)
        await trio.sleep(120)
        assert len(speaker.announcements) == count


async def test_a_local_pod_makes_a_received_route_for_it_not_programmed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path)
    hijack = EvpnPath(
        MacIpRoute(rd=f"{PEER}:300", mac=POD_MAC, ip="10.3.0.77", vni=300),
        PEER,
        route_targets=("65000:300",),
    )
    async with node.running():
        node.speaker.send(update(hijack, eor=True))
        await until("the remote MAC", lambda: node.has(("fdb", 300, POD_MAC)))
        node.journal.put(pod("p1"))
        await until("the remote MAC gone", lambda: not node.has(("fdb", 300, POD_MAC)))
        assert node.metric("cnid_evpn_routes_skipped_total", reason="local-mac") == 1


async def test_local_state_unavailable_is_retried_with_backoff(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    node = Node(tmp_path)
    node.pool.failures = [CnidError("the API server is away")] * 3
    async with node.running():
        took = await until("the first announcement", lambda: bool(node.speaker.announcements))
    assert round(took) == 1 + 2 + 4
    failures = [r for r in caplog.records if "the API server is away" in r.getMessage()]
    assert len(failures) == 3


# -- receive and program --------------------------------------------------------


async def test_received_routes_are_installed_and_withdrawn(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path)
    async with node.running():
        node.speaker.send(update(T5, T2, eor=True))
        took = await until("installed", lambda: node.has(T5_ROUTE) and node.has(T2_FDB))
        assert took < 0.1
        assert node.has(("neigh", 42, PEER))  # the router MAC's neighbour entry
        assert node.evpn.installed == node.kernel.entries
        assert node.metric("cnid_evpn_routes_received", type="5") == 1
        assert node.metric("cnid_evpn_routes_received", type="2") == 1
        assert node.metric("cnid_evpn_kernel_entries", kind="route") == 1
        node.speaker.send(update(withdrawn=(T5.route,)))
        await until("withdrawn", lambda: not node.has(T5_ROUTE))
        assert node.has(T2_FDB)
        assert node.metric("cnid_evpn_routes_received", type="5") == 0


async def test_the_session_gauge_follows_the_speakers_peers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path)
    gauge = "cnid_bgp_session_established"
    async with node.running():
        node.speaker.session(PEER, "up")
        await until("up", lambda: node.metric(gauge, peer=PEER) == 1)
        node.speaker.peers[PEER].state = "idle"  # ExaBGP ended: every session with it
        node.speaker.send(SpeakerDown("exited with status 1"))
        await until("down", lambda: node.metric(gauge, peer=PEER) == 0)


# -- stale paths: a session down, ExaBGP's end ---------------------------------


async def test_a_peer_down_keeps_its_routes_for_stale_timeout_then_they_go(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, stale_timeout=120.0)
    async with node.running():
        node.speaker.send(update(T5, T2, eor=True))
        await until("installed", lambda: node.has(T5_ROUTE) and node.has(T2_FDB))
        down = trio.current_time()
        node.speaker.session(PEER, "down")
        await until("stale", lambda: node.evpn.table.sources() == {f"stale:{PEER}"})
        await trio.sleep_until(down + 119)
        assert node.has(T5_ROUTE) and node.has(T2_FDB)
        assert node.kernel.removed() == set()
        await until("dropped", lambda: not node.has(T5_ROUTE))
        assert 120 <= trio.current_time() - down <= 121.5  # the program loop ticks each second
        assert not node.has(T2_FDB) and len(node.evpn.table) == 0


async def test_a_peer_back_in_time_keeps_its_routes_without_a_gap(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, stale_timeout=120.0)
    async with node.running():
        node.speaker.send(update(T5, T2, eor=True))
        await until("installed", lambda: node.has(T5_ROUTE) and node.has(T2_FDB))
        node.speaker.session(PEER, "down")
        await trio.sleep(60)
        node.speaker.session(PEER, "up")
        node.speaker.send(update(T5, T2, eor=True))
        await until("fresh again", lambda: node.evpn.table.sources() == {PEER})
        await trio.sleep(300)  # well past the stale timer
        assert node.has(T5_ROUTE) and node.has(T2_FDB)
        assert node.kernel.removed() == set()


async def test_a_peer_down_keeps_its_routes_for_its_advertised_restart_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A replaced speaker pod (ExaBGP and the daemon started afresh) took
    83 s to be back in the VM lab, whose stale timer is 60 s: its peers must
    keep its routes for the Restart Time it advertised (120 s), not drop
    them 23 s before it announces them again (RFC 4724)."""
    node = Node(tmp_path, stale_timeout=60.0)
    node.speaker.peers[PEER].restart_time = 120
    async with node.running():
        node.speaker.send(update(T5, T2, eor=True))
        await until("installed", lambda: node.has(T5_ROUTE) and node.has(T2_FDB))
        down = trio.current_time()
        node.speaker.session(PEER, "down")
        await trio.sleep_until(down + 83)
        assert node.has(T5_ROUTE) and node.has(T2_FDB)  # past the 60 s stale timer
        node.speaker.session(PEER, "up")
        node.speaker.send(update(T5, T2, eor=True))
        await until("fresh again", lambda: node.evpn.table.sources() == {PEER})
        await trio.sleep(300)
        assert node.kernel.removed() == set()
        # not back within its restart time: its routes go then
        down = trio.current_time()
        node.speaker.session(PEER, "down")
        await trio.sleep_until(down + 119)
        assert node.has(T5_ROUTE)
        await until("dropped", lambda: not node.has(T5_ROUTE))
        assert 120 <= trio.current_time() - down <= 121.5


async def test_a_peer_that_advertised_a_short_restart_time_keeps_the_stale_timer(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, stale_timeout=60.0)
    node.speaker.peers[PEER].restart_time = 5
    async with node.running():
        node.speaker.send(update(T5, eor=True))
        await until("installed", lambda: node.has(T5_ROUTE))
        down = trio.current_time()
        node.speaker.session(PEER, "down")
        await until("dropped", lambda: not node.has(T5_ROUTE), timeout=100)
        assert 60 <= trio.current_time() - down <= 61.5


async def test_a_peer_back_without_a_route_loses_that_one_at_its_end_of_rib(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, stale_timeout=120.0)
    async with node.running():
        node.speaker.send(update(T5, T2, eor=True))
        await until("installed", lambda: node.has(T5_ROUTE) and node.has(T2_FDB))
        node.speaker.session(PEER, "down")
        await trio.sleep(10)
        node.speaker.session(PEER, "up")
        node.speaker.send(update(T5))
        await trio.sleep(5)
        assert node.has(T2_FDB)  # not re-learned yet, but no End-of-RIB yet either
        node.speaker.send(update(eor=True))
        took = await until("T2 gone at the End-of-RIB", lambda: not node.has(T2_FDB))
        assert took < 1.1 and node.has(T5_ROUTE)


async def test_exabgps_end_keeps_every_path_until_relearned_or_the_stale_timer(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, stale_timeout=120.0)
    async with node.running():
        node.speaker.send(update(T5, T2, eor=True))
        await until("installed", lambda: node.has(T5_ROUTE) and node.has(T2_FDB))
        ended = trio.current_time()
        node.speaker.send(SpeakerDown("exited with status 1"))
        await trio.sleep(30)
        node.speaker.send(update(T5))  # re-learned; T2 not
        await trio.sleep_until(ended + 119)
        assert node.has(T5_ROUTE) and node.has(T2_FDB)
        await until("T2 dropped", lambda: not node.has(T2_FDB))
        assert 120 <= trio.current_time() - ended <= 121.5
        assert node.has(T5_ROUTE)


async def test_a_peer_that_is_no_neighbour_any_more_loses_its_routes_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, stale_timeout=120.0)
    node.speaker.config = SpeakerConfig(ME, ME, 65000, (Neighbor(PEER), Neighbor(OTHER)))
    node.speaker.peers[OTHER] = PeerStatus(OTHER, "static")
    other = ("route", 42, "10.244.2.0/26", OTHER)
    async with node.running():
        node.speaker.send(update(T5, eor=True))
        node.speaker.send(update(t5("10.244.2.0/26", OTHER), peer=OTHER, eor=True))
        await until("installed", lambda: node.has(T5_ROUTE) and node.has(other))
        node.speaker.config = SpeakerConfig(ME, ME, 65000, (Neighbor(PEER),))  # its Node deleted
        took = await until("gone", lambda: not node.has(other))
        assert took <= 1.1 and node.has(T5_ROUTE)


# -- adoption of a previous run's entries, repair -------------------------------


async def test_adopted_entries_stay_until_every_neighbour_sent_end_of_rib(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    leftover = EvpnRoute(table=42, prefix="10.244.9.0/26", vtep=PEER, vni=42)
    t5_route = EvpnRoute(table=42, prefix="10.244.1.0/26", vtep=PEER, vni=42)
    kernel = FakeKernel([leftover, t5_route])
    node = Node(tmp_path, kernel=kernel, stale_timeout=120.0)
    async with node.running():
        assert node.evpn.adopting and entry_key(leftover) in node.evpn.installed
        node.speaker.send(update(T5))
        await trio.sleep(60)
        assert leftover in kernel.entries.values() and node.evpn.adopting
        node.speaker.send(update(eor=True))
        await until("the sweep", lambda: not node.evpn.adopting)
        await until("the leftover swept", lambda: leftover not in kernel.entries.values())
        assert kernel.entries[T5_ROUTE] == t5_route
        assert t5_route not in kernel.removed()  # re-learned: never out of the kernel


async def test_adopted_entries_go_at_the_stale_timer_without_end_of_rib(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    leftover = EvpnRoute(table=42, prefix="10.244.9.0/26", vtep=PEER, vni=42)
    kernel = FakeKernel([leftover])
    node = Node(tmp_path, kernel=kernel, stale_timeout=120.0)
    start = trio.current_time()
    async with node.running():
        await until("the sweep", lambda: leftover not in kernel.entries.values(), timeout=200)
        assert 120 <= trio.current_time() - start <= 122


async def test_a_kernel_that_drifted_is_repaired_at_the_repair_interval(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    node = Node(tmp_path, repair_interval=30.0)
    async with node.running():
        node.speaker.send(update(T5, eor=True))
        await until("installed", lambda: node.has(T5_ROUTE))
        del node.kernel.entries[T5_ROUTE]  # someone else removed it
        took = await until("repaired", lambda: node.has(T5_ROUTE), timeout=40)
        assert 0 < took <= 31
    assert any("drifted" in r.getMessage() for r in caplog.records)


# -- kernel failures ------------------------------------------------------------


async def test_a_kernel_failure_is_retried_with_backoff(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    node = Node(tmp_path)
    kernel = node.kernel
    kernel.failures = [KernelError("netlink: ENOBUFS")] * 3
    async with node.running():
        node.speaker.send(update(T5, eor=True))
        await until("installed after the failures", lambda: node.has(T5_ROUTE), timeout=20)
        tries = [t for t, added, _ in kernel.applies if added]
        gaps = [round(b - a, 1) for a, b in itertools.pairwise(tries)]
        assert gaps == [1.0, 2.0, 4.0], tries
        # Succeeded: the backoff starts over.
        kernel.failures = [KernelError("netlink: ENOBUFS")]
        node.speaker.send(update(T2))
        start = trio.current_time()
        took = await until("T2 after one failure", lambda: node.has(T2_FDB))
        assert round(took) == 1, (start, took)
    logged = [r for r in caplog.records if "ENOBUFS" in r.getMessage()]
    assert len(logged) == 4 and all(r.levelno == logging.ERROR for r in logged)


async def test_an_unexpected_error_is_retried_from_the_kernels_state(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    node = Node(tmp_path)
    kernel = node.kernel
    kernel.failures = [RuntimeError("a bug of ours")]
    async with node.running():
        dumps = kernel.dumps
        node.speaker.send(update(T5, eor=True))
        took = await until("installed after the bug", lambda: node.has(T5_ROUTE))
        assert 1 <= took < 1.5
        assert kernel.dumps == dumps + 1  # read back before the retry
    (bug,) = [r for r in caplog.records if r.exc_info is not None]
    assert "a bug of ours" in str(bug.exc_info[1])  # type: ignore[index]


# -- maximum prefixes -----------------------------------------------------------


async def test_max_prefix_warning_holds_the_rest_back_and_takes_it_in_when_room_is_made(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, max_prefix=3)
    paths = [t5(f"10.244.{i}.0/26") for i in range(1, 6)]
    routes = [("route", 42, p.route.prefix, PEER) for p in paths]  # type: ignore[union-attr]
    async with node.running():
        node.speaker.send(update(*paths, eor=True))
        await until("three in", lambda: sum(node.has(r) for r in routes) == 3)
        await trio.sleep(10)
        assert sum(node.has(r) for r in routes) == 3
        assert node.speaker.torn_down == []
        assert node.metric("cnid_evpn_max_prefix_exceeded_total", peer=PEER, action="warning") == 1
        node.speaker.send(update(withdrawn=(paths[0].route,)))
        await until("a held-back one in", lambda: node.has(routes[3]) and not node.has(routes[0]))
        assert sum(node.has(r) for r in routes) == 3


async def test_max_prefix_restart_tears_down_and_ignores_the_peer_for_the_restart_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, max_prefix=3, max_prefix_action="restart", max_prefix_restart=60.0)
    paths = [t5(f"10.244.{i}.0/26") for i in range(1, 6)]
    routes = [("route", 42, p.route.prefix, PEER) for p in paths]  # type: ignore[union-attr]
    async with node.running():
        node.speaker.send(update(*paths[:3], eor=True))
        await until("three in", lambda: all(node.has(r) for r in routes[:3]))
        tripped = trio.current_time()
        node.speaker.send(update(paths[3]))
        await until("torn down", lambda: node.speaker.torn_down == [(PEER, 60.0, 1)])
        await until("its paths out", lambda: not any(node.has(r) for r in routes))
        assert node.metric("cnid_evpn_max_prefix_exceeded_total", peer=PEER, action="restart") == 1
        # The session goes down: nothing kept as stale; what it sends until
        # the restart time ran out is ignored.
        node.speaker.session(PEER, "down")
        await trio.sleep(30)
        node.speaker.send(update(paths[0]))
        await trio.sleep(5)
        assert not node.has(routes[0]) and len(node.evpn.table) == 0
        assert PEER in node.evpn.held_down
        await trio.sleep_until(tripped + 61)
        node.speaker.session(PEER, "up")
        node.speaker.send(update(paths[0], eor=True))
        await until("back after the restart time", lambda: node.has(routes[0]))
        assert PEER not in node.evpn.held_down
