"""The EVPN input policy (issue 13): received routes never override what
this node owns, unusable next-hops and router MACs are skipped with a
reason, no route lands inside the node's blocks or the Service CIDR, a
per-peer maximum of prefixes (warning or restart), and kernel refusals
shown, retried with backoff and logged once. Pure functions over received
paths and local state, then the controller over fakes of the speaker and
the kernel, on trio's virtual clock."""

from __future__ import annotations

import itertools
import logging
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from cnid.bgp import EvpnPath, MacIpRoute, PrefixRoute, ReceivedPath, StateEvent, UpdateEvent
from cnid.core import Domain, Metrics
from cnid.ctl import render
from cnid.daemon import bgp_summary, evpn_routes
from cnid.dataplane import ApplyResult, EvpnRoute, FdbEntry, KernelEvpn
from cnid.evpn import EvpnController, Identity, RouteTable, Skip, kernel_entries, node_view
from testbed.domains import VRF42, VRF300

ME = "192.168.77.11"
PEER = "192.168.77.12"
L3 = VRF42
L2 = VRF300
POD_MAC, POD_IP = "0a:00:00:00:00:03", "10.3.0.2"
PODS = [("vrf-300", POD_MAC, POD_IP), ("vrf-42", "0a:00:00:00:00:01", "10.244.0.2")]
BLOCKS = [(42, "10.244.0.0/26"), (300, "10.3.0.0/26")]
SERVICES = ("10.96.0.0/12",)
VIEW = node_view(ME, ME, [L3, L2], asn=65000, pods=PODS, blocks=BLOCKS, service_cidrs=SERVICES)

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


def rx(path: EvpnPath, peer: str = PEER) -> ReceivedPath:
    return ReceivedPath(peer=peer, path=path)


def t5(prefix: str, **kw: object) -> EvpnPath:
    route = PrefixRoute(rd=f"{PEER}:42", prefix=prefix, vni=42)
    return msgspec.structs.replace(T5, route=route, **kw)


def t2(mac: str = "0a:00:00:00:01:01", ip: str = "10.3.0.9", **kw: object) -> EvpnPath:
    route = MacIpRoute(rd=f"{PEER}:300", mac=mac, ip=ip, vni=300)
    return msgspec.structs.replace(T2, route=route, **kw)


# -- the policy, pure ----------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "words"),
    [
        (t2(ip=POD_IP), "local-ip", POD_IP),
        (t2(ip="10.3.0.2"), "local-ip", "pod"),
        (t2(mac=POD_MAC, ip="10.3.0.77"), "local-mac", POD_MAC),
        (t2(mac=POD_MAC.upper(), ip=""), "local-mac", "pod"),
        (t5("10.96.0.10/32"), "service-cidr", "Service CIDR"),
        (t5("10.96.0.0/12"), "service-cidr", "10.96.0.0/12"),
        (t5("10.244.0.0/26"), "own-block", "block"),
        (t5("10.244.0.2/32"), "own-block", "10.244.0.0/26"),
        (t5("10.244.1.0/26", nexthop="127.0.0.1"), "bad-next-hop", "loopback"),
        (t5("10.244.1.0/26", nexthop="224.0.0.5"), "bad-next-hop", "multicast"),
        (t5("10.244.1.0/26", nexthop="255.255.255.255"), "bad-next-hop", "broadcast"),
        (t5("10.244.1.0/26", nexthop="0.0.0.0"), "bad-next-hop", "unspecified"),
        (t5("10.244.1.0/26", nexthop="240.0.0.1"), "bad-next-hop", "reserved"),
        (t5("10.244.1.0/26", nexthop=ME), "own-route", "VTEP"),
        (t5("10.244.1.0/26", router_mac="ff:ff:ff:ff:ff:ff"), "bad-router-mac", "unicast"),
        (t5("10.244.1.0/26", router_mac="01:00:5e:00:00:01"), "bad-router-mac", "unicast"),
        (t5("10.244.1.0/26", router_mac="00:00:00:00:00:00"), "no-router-mac", "without"),
        (t2(router_mac="ff:ff:ff:ff:ff:ff"), "bad-router-mac", "unicast"),
        (t2(nexthop="127.0.0.1"), "bad-next-hop", "loopback"),
    ],
)
def test_what_the_policy_refuses(path: EvpnPath, kind: str, words: str) -> None:
    with pytest.raises(Skip) as info:
        kernel_entries(rx(path), VIEW)
    assert info.value.kind == kind
    assert words in str(info.value)


@pytest.mark.parametrize(
    "path",
    [
        t5("0.0.0.0/0"),  # the fabric's default route: host integration relies on it
        t5("10.0.0.0/8"),  # an aggregate covering our block and the services
        t5("10.244.0.64/26"),  # another node's block of the domain
        t5("10.3.0.0/26"),  # our block, but of another domain (vrf-300)
        t2(ip="10.3.0.3"),
        t2(mac="0a:00:00:00:00:01", ip="10.3.0.4"),  # vrf-42's pod MAC, not vrf-300's
    ],
)
def test_what_the_policy_lets_through(path: EvpnPath) -> None:
    assert kernel_entries(rx(path), VIEW)


def test_without_pods_and_blocks_the_same_routes_are_programmed() -> None:
    bare = node_view(ME, ME, [L3, L2], asn=65000)
    assert kernel_entries(rx(t2(ip=POD_IP)), bare)
    assert kernel_entries(rx(t5("10.244.0.0/26")), bare)


def test_a_local_pod_keeps_its_entries_and_the_conflict_is_logged_once() -> None:
    table = RouteTable(node_view(ME, ME, [L3, L2], asn=65000))
    hijack = rx(t2(mac=POD_MAC, ip=POD_IP))
    assert table.announce(PEER, hijack) == ""  # no pod yet: a remote MAC like any other
    assert FdbEntry(vni=300, mac=POD_MAC, vtep=PEER) in table.desired().values()
    table.take_dirty()
    # The pod starts here: the remote entries go, the local ones stay ours.
    table.set_view(VIEW)
    assert table.desired() == {}
    assert ("fdb", 300, POD_MAC) in table.take_dirty()
    assert [(kind, source) for source, _, kind, _ in table.new_skips] == [("local-mac", PEER)]
    assert table.skip_counts["local-mac"] == 1
    # Sent again, identical or re-translated by an unrelated change: no new log entry.
    table.new_skips.clear()
    assert "pod" in table.announce(PEER, hijack)
    table.set_view(node_view(ME, ME, [L3, L2], asn=65000, pods=PODS, blocks=BLOCKS[:1]))
    assert table.new_skips == []
    # The pod leaves: the route is programmed again.
    table.set_view(node_view(ME, ME, [L3, L2], asn=65000))
    assert FdbEntry(vni=300, mac=POD_MAC, vtep=PEER) in table.desired().values()


def test_max_paths_holds_the_rest_back_and_takes_it_in_when_room_is_made() -> None:
    table = RouteTable(VIEW)
    table.set_max_paths(2)
    paths = [t5(f"10.244.{i}.0/26") for i in range(1, 5)]
    for p in paths:
        table.announce(PEER, rx(p))
    assert table.source_count(PEER) == 2 and table.held_count(PEER) == 2
    assert table.skip_counts["max-prefix"] == 2
    assert sum(1 for k in table.desired() if k[0] == "route") == 2
    # another peer has its own budget
    table.announce("192.168.77.13", rx(t5("10.244.9.0/26", nexthop="192.168.77.13")))
    assert table.source_count("192.168.77.13") == 1
    table.withdraw(PEER, paths[0].route)
    assert table.source_count(PEER) == 2 and table.held_count(PEER) == 1
    routes = {k[2] for k in table.desired() if k[0] == "route"}
    assert "10.244.3.0/26" in routes and "10.244.1.0/26" not in routes
    table.withdraw(PEER, paths[3].route)  # a held-back path withdrawn
    assert table.held_count(PEER) == 0
    table.set_max_paths(0)
    assert table.held_count(PEER) == 0


# -- the controller, over fakes -------------------------------------------------


class FakeRegistry:
    def __init__(self, domains: list[Domain]) -> None:
        self.domains = domains

    def all(self) -> list[Domain]:
        return self.domains


class FakeConfig:
    def __init__(self, neighbors: list[str]) -> None:
        self.neighbors = [type("N", (), {"address": a, "role": "static"})() for a in neighbors]
        self.asn = 65000


class FakeSpeaker:
    def __init__(self) -> None:
        self.listeners: list[Any] = []
        self.config: Any = FakeConfig([PEER])
        self.peers: dict[str, Any] = {}
        self.announced: frozenset[EvpnPath] = frozenset()
        self.torn_down: list[tuple[str, float, int]] = []

    def subscribe(self, listener: Any) -> None:
        self.listeners.append(listener)

    async def teardown(self, peer: str, hold: float, code: int = 1) -> bool:
        self.torn_down.append((peer, hold, code))
        return True


class FakeKernel:
    """apply_evpn and dump_evpn: refuses what ``refuse`` names."""

    def __init__(self) -> None:
        self.refuse: dict[object, str] = {}
        self.calls: list[KernelEvpn] = []

    async def apply(self, add: KernelEvpn, remove: KernelEvpn, now: object = None) -> ApplyResult:
        self.calls.append(add)
        refused = []
        for e in (*add.fdb, *add.neigh, *add.routes):
            why = self.refuse.get(e)
            if why:
                refused.append(("add", e, why))
        failed = tuple((f"add {e}", why) for _, e, why in refused)
        total = len(add.fdb) + len(add.neigh) + len(add.routes)
        return ApplyResult(applied=total - len(refused), failed=failed, refused=tuple(refused))

    async def dump(self, vnis: object, tables: object) -> KernelEvpn:
        return KernelEvpn()


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    from cnid import dataplane

    fake = FakeKernel()
    monkeypatch.setattr(dataplane, "apply_evpn", fake.apply)
    monkeypatch.setattr(dataplane, "dump_evpn", fake.dump)
    return fake


def controller(speaker: FakeSpeaker, **kw: Any) -> EvpnController:
    evpn = EvpnController(
        speaker=speaker,  # type: ignore[arg-type]
        identity=Identity(ME, 65000, ME),
        registry=FakeRegistry([L3, L2]),  # type: ignore[arg-type]
        journal=None,  # type: ignore[arg-type]
        pool=None,  # type: ignore[arg-type]
        node="n1",
        metrics=Metrics(),
        **kw,
    )
    evpn.adopting = False
    return evpn


def update(*paths: EvpnPath, withdrawn: tuple[Any, ...] = ()) -> UpdateEvent:
    return UpdateEvent(PEER, announced=tuple(rx(p) for p in paths), withdrawn=withdrawn)


def metric(evpn: EvpnController, name: str, **labels: str) -> float:
    value = evpn.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_a_kernel_refusal_is_shown_counted_retried_with_backoff_and_logged_once(
    kernel: FakeKernel, caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = FakeSpeaker()
    evpn = controller(speaker)
    route = EvpnRoute(table=42, prefix="10.244.1.0/26", vtep=PEER, vni=42)
    kernel.refuse[route] = "EINVAL"
    evpn._apply(trio.current_time(), update(T5))
    caplog.set_level(logging.ERROR, logger="cnid.evpn")
    await evpn._program(False)
    (row,) = evpn_routes(evpn)
    assert row["state"] == "refused: EINVAL"
    assert metric(evpn, "cnid_evpn_kernel_refused", error="EINVAL") == 1
    assert metric(evpn, "cnid_evpn_kernel_errors_total") == 1
    # The route's other entries are in.
    assert ("neigh", 42, PEER) in evpn.installed
    assert ("route", 42, "10.244.1.0/26", PEER) not in evpn.installed
    # Passes before the retry is due touch nothing (full passes included).
    calls = len(kernel.calls)
    for _ in range(5):
        evpn._full_pass = True
        await evpn._program(False)
    assert len(kernel.calls) == calls
    # Retries with backoff: 1 s, then 2 s, 4 s... logged once in all.
    times = []
    for _ in range(4):
        before = len(kernel.calls)
        while len(kernel.calls) == before:
            await trio.sleep(0.25)
            await evpn._program(False)
        times.append(trio.current_time())
    gaps = [round(b - a) for a, b in itertools.pairwise(times)]
    assert gaps == [2, 4, 8], times
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
    assert metric(evpn, "cnid_evpn_kernel_errors_total") == 5
    # The kernel takes it at last: programmed, the refusal gone.
    del kernel.refuse[route]
    evpn._apply(trio.current_time(), update(T5, withdrawn=()))
    await trio.sleep(20)
    await evpn._program(False)
    assert ("route", 42, "10.244.1.0/26", PEER) in evpn.installed
    assert evpn_routes(evpn)[0]["state"] == "programmed"
    assert evpn.refused == {}
    assert metric(evpn, "cnid_evpn_kernel_refused", error="EINVAL") == 0


async def test_a_changed_route_is_programmed_at_once_despite_a_refusal(kernel: FakeKernel) -> None:
    evpn = controller(FakeSpeaker())
    route = EvpnRoute(table=42, prefix="10.244.1.0/26", vtep=PEER, vni=42)
    kernel.refuse[route] = "ENETUNREACH"
    evpn._apply(trio.current_time(), update(T5))
    await evpn._program(False)
    assert evpn_routes(evpn)[0]["state"] == "refused: ENETUNREACH"
    evpn._apply(trio.current_time(), update(withdrawn=(T5.route,)))
    await evpn._program(False)
    assert evpn.installed == {} and evpn.refused == {}


async def test_hijacks_are_skipped_counted_and_logged_once(
    kernel: FakeKernel, caplog: pytest.LogCaptureFixture
) -> None:
    evpn = controller(FakeSpeaker(), service_cidrs=SERVICES)
    evpn.table.set_view(evpn._view(_state()))
    caplog.set_level(logging.WARNING, logger="cnid.evpn")
    bad = [
        t2(ip=POD_IP),
        t2(mac=POD_MAC, ip="10.3.0.50"),
        t5("10.96.0.10/32"),
        t5("10.244.0.0/26"),
        t5("10.244.7.0/26", nexthop="127.0.0.1"),
        t5("10.244.8.0/26", router_mac="ff:ff:ff:ff:ff:ff"),
    ]
    for _ in range(3):  # a peer resending them costs no log line
        evpn._apply(trio.current_time(), update(*bad))
        evpn._log_skips()
        await evpn._program(False)
    assert evpn.installed == {}
    states = {r["route"]: r["state"] for r in evpn_routes(evpn)}
    assert all(s.startswith("not programmed: ") for s in states.values()), states
    assert "loopback" in states["[5]:[0]:[26]:[10.244.7.0]"]
    assert "Service CIDR" in states["[5]:[0]:[32]:[10.96.0.10]"]
    for reason in ("local-ip", "local-mac", "service-cidr", "own-block", "bad-next-hop"):
        assert metric(evpn, "cnid_evpn_routes_skipped_total", reason=reason) >= 1, reason
    assert metric(evpn, "cnid_evpn_routes_skipped_total", reason="bad-router-mac") == 1
    assert len([r for r in caplog.records if "not programmed" in r.getMessage()]) == len(bad)


def _state() -> Any:
    from cnid.evpn import LocalBlock, LocalPod, LocalState

    return LocalState(
        router_id=ME,
        asn=65000,
        vtep=ME,
        domains=(),
        blocks=tuple(LocalBlock(v, c) for v, c in BLOCKS),
        pods=tuple(LocalPod(d, m, i) for d, m, i in PODS),
    )


async def test_max_prefix_warning_keeps_the_session_and_holds_the_rest_back(
    kernel: FakeKernel, caplog: pytest.LogCaptureFixture
) -> None:
    speaker = FakeSpeaker()
    evpn = controller(speaker, max_prefix=3)
    caplog.set_level(logging.WARNING, logger="cnid.evpn")
    paths = [t5(f"10.244.{i}.0/26") for i in range(1, 7)]
    evpn._apply(trio.current_time(), update(*paths[:4]))
    evpn._apply(trio.current_time(), update(*paths[4:]))
    await evpn._program(False)
    assert sum(1 for k in evpn.installed if k[0] == "route") == 3
    assert speaker.torn_down == []
    assert metric(evpn, "cnid_evpn_max_prefix_exceeded_total", peer=PEER, action="warning") == 1
    assert len([r for r in caplog.records if "maximum" in r.getMessage()]) == 1
    held = [r for r in evpn_routes(evpn) if "maximum" in r["state"]]
    assert len(held) == 3
    assert evpn.table.held_count(PEER) == 3


async def test_max_prefix_restart_tears_down_removes_and_holds_the_peer_down(
    kernel: FakeKernel, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = FakeSpeaker()
    evpn = controller(speaker, max_prefix=3, max_prefix_action="restart", max_prefix_restart=30)
    paths = [t5(f"10.244.{i}.0/26") for i in range(1, 7)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(evpn._teardown_loop)
        evpn._apply(trio.current_time(), update(*paths[:3]))
        await evpn._program(False)
        assert sum(1 for k in evpn.installed if k[0] == "route") == 3
        evpn._apply(trio.current_time(), update(*paths[3:]))
        await trio.sleep(0.1)
        assert speaker.torn_down == [(PEER, 30, 1)]
        await evpn._program(False)
        assert evpn.installed == {} and len(evpn.table) == 0
        assert metric(evpn, "cnid_evpn_max_prefix_exceeded_total", peer=PEER, action="restart") == 1
        # The session goes down, its paths are not kept as stale; what the
        # peer sends until the hold time ran out is ignored.
        evpn._apply(trio.current_time(), StateEvent(PEER, "down"))
        evpn._apply(trio.current_time(), update(paths[0]))
        assert len(evpn.table) == 0
        await trio.sleep(31)
        evpn._apply(trio.current_time(), update(paths[0]))
        assert len(evpn.table) == 1 and PEER not in evpn.held_down
        nursery.cancel_scope.cancel()


async def test_summary_shows_held_back_and_held_down(kernel: FakeKernel) -> None:
    from cnid.bgp import PeerStatus

    speaker = FakeSpeaker()
    speaker.peers = {PEER: PeerStatus(PEER, "static")}
    speaker.running = False  # type: ignore[attr-defined]
    speaker.stats = type("S", (), {"pid": 0, "restarts": 0})()  # type: ignore[attr-defined]
    speaker.announced_by_type = lambda: {2: 0, 3: 0, 5: 0}  # type: ignore[attr-defined]
    evpn = controller(speaker, max_prefix=1)
    evpn._apply(trio.current_time(), update(t5("10.244.1.0/26"), t5("10.244.2.0/26")))
    (peer,) = bgp_summary(evpn)["peers"]
    assert peer["held_back"] == 1 and peer["held_down"] is False
    assert peer["received"] == 1


async def test_routes_of_no_domain_s_target_are_skipped_counted_and_shown(
    kernel: FakeKernel,
) -> None:
    evpn = controller(FakeSpeaker())
    stray = t5("10.9.0.0/24", route_targets=("65000:4711",))  # vrf-42's VNI, no one's target
    bare = t2(mac="0a:00:00:00:01:02", ip="10.3.0.8", route_targets=())
    # vrf-300's target and vrf-42's VNI: vrf-300's segment, not vrf-42's
    crossed = msgspec.structs.replace(
        t2(mac="0a:00:00:00:01:03", ip="10.3.0.7"),
        route=MacIpRoute(rd=f"{PEER}:9", mac="0a:00:00:00:01:03", ip="10.3.0.7", vni=42),
    )
    evpn._apply(trio.current_time(), update(stray, bare, crossed))
    await evpn._program(False)
    assert metric(evpn, "cnid_evpn_routes_skipped_total", reason="no-route-target") == 2
    assert set(evpn.installed) == {("fdb", 300, "0a:00:00:00:01:03"), ("neigh", 300, "10.3.0.7")}
    rows = {r["route"]: r for r in evpn_routes(evpn)}
    row = rows["[5]:[0]:[24]:[10.9.0.0]"]
    assert row["state"] == (
        "not programmed: no-route-target: route targets 65000:4711 imported by no domain "
        "of this node"
    )
    assert row["domains"] == []
    assert "route targets none" in rows["[2]:[0]:[48]:[0a:00:00:00:01:02]:[32]:[10.3.0.8]"]["state"]
    done = rows["[2]:[0]:[48]:[0a:00:00:00:01:03]:[32]:[10.3.0.7]"]
    assert (done["state"], done["domains"], done["vni"]) == ("programmed", ["vrf-300"], "42")
    text = render("evpn-routes", list(rows.values()))
    assert "DOMAINS" in text.splitlines()[0]
    assert any("vrf-300" in line and "10.3.0.7" in line for line in text.splitlines())
