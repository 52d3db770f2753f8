"""BFD for the BGP neighbours (``cnid.evpn``'s ``BfdGuard``) on trio's
virtual clock: the EVPN controller runs whole against the fakes of
test_evpn_controller (speaker, kernel, pool) and the daemon's real end of
the speaker's BFD (``BfdLink``) fed the state changes the tests make. The
BFD sessions' own timing is test_bfd_service's and test_bfd_session's; the
speaker's end (``BfdHost``), test_bfd_speaker's; against real FRR (bgpd + bfdd),
tests/host/test_bfd_bgp.py."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from cnid.bfd import Diag, PeerConfig, PeerKey, PeerStatus, State, StateChange
from cnid.bgp import (
    BfdChanged,
    BfdLink,
    BfdSnapshot,
    Neighbor,
    SpeakerConfig,
    SpeakerUp,
    UnicastPath,
)
from cnid.core import DomainRegistry, Journal, Notifier, Readiness
from cnid.ctl import render
from cnid.daemon import ControlServer, bfd_peers
from cnid.evpn import (
    BFD_HOLD,
    CEASE_BFD_DOWN,
    BfdReaction,
    UnderlayController,
    UnderlayPolicy,
    bfd_reaction,
    bfd_sessions,
)
from cnid.ipam import AddressPool, MemoryStore
from testbed.domains import VRF42
from tests.unit.test_evpn_controller import (
    ME,
    OTHER,
    PEER,
    FakeSpeaker,
    t5,
    until,
    update,
)
from tests.unit.test_evpn_controller import Node as ControllerNode
from tests.unit.test_underlay import FAR, L1, L2, VTEP, unicast
from tests.unit.test_underlay import FakeKernel as UnderlayKernel
from tests.unit.test_underlay import FakeSpeaker as UnderlaySpeaker

ROUTE = ("route", 42, "10.244.1.0/26", PEER)
OTHER_ROUTE = ("route", 42, "10.244.2.0/26", OTHER)


class Speaker(FakeSpeaker):
    """The fake speaker with what BFD asks of it: releases, whether ExaBGP
    runs, the configuration's change signal."""

    def __init__(self, *neighbors: Neighbor) -> None:
        super().__init__([n.address for n in neighbors])
        self.config = SpeakerConfig(
            router_id=ME, local_address=ME, asn=65000, neighbors=tuple(neighbors)
        )
        self.configured = Notifier()
        self.running = True
        self.released: list[str] = []
        self.refuse = False
        #: While set and not yet set off: a teardown waits for it (ExaBGP's
        #: API slow to answer).
        self.gate: trio.Event | None = None

    def configure(self, config: SpeakerConfig) -> None:
        self.config = config
        self.configured.bump()

    async def teardown(self, peer: str, hold: float, code: int = 1) -> bool:
        if self.refuse:
            return False
        if self.gate is not None:
            await self.gate.wait()
        return await super().teardown(peer, hold, code)

    async def release(self, peer: str) -> bool:
        if self.refuse:
            return False
        self.released.append(peer)
        return True


class FakeBfd(BfdLink):
    """The daemon's real end of the speaker's BFD (``bfd.json`` written in
    ``tmp``), the speaker's end played by the test: the sessions asked for,
    those ended, and state changes sent as the host sends them."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp / "bgp")
        self.removed: list[PeerKey] = []
        self.deliver(BfdSnapshot())  # the host's first word: no session yet

    def configure(self, sessions: Mapping[PeerKey, PeerConfig]) -> None:
        self.removed += [k for k in self.sessions if k not in sessions]
        super().configure(sessions)

    def peers(self) -> list[PeerStatus]:
        return [_status(k, c) for k, c in self.sessions.items()]

    def change(
        self,
        peer: str,
        old: State,
        new: State,
        *,
        diag: Diag = Diag.CONTROL_DETECTION_TIME_EXPIRED,
        remote_state: State = State.DOWN,
        cpi: bool = False,
    ) -> None:
        key = next(k for k in self.sessions if k.peer == peer)
        self.deliver(BfdChanged(StateChange(key, old, new, diag, Diag.NONE, cpi, remote_state)))


def _status(key: PeerKey, config: PeerConfig) -> PeerStatus:
    return PeerStatus(
        peer=key.peer, local=key.local, vrf=key.vrf, multihop=key.multihop, state="up",
        remote_state="up", local_discr=1, remote_discr=2, local_diag="none",
        remote_diag="none", detect_multiplier=config.detect_multiplier,
        remote_detect_multiplier=3, desired_min_tx_ms=config.desired_min_tx_ms,
        required_min_rx_ms=config.required_min_rx_ms, remote_desired_min_tx_ms=300.0,
        remote_required_min_rx_ms=300.0, tx_interval_ms=300.0, rx_interval_ms=300.0,
        detection_time_ms=900.0, uptime_s=12.0, flaps=0, remote_cpi=False, packets_in=5,
        packets_out=6,
    )  # fmt: skip


class Node(ControllerNode):
    """test_evpn_controller's node, with a BFD speaker and ``bfd``."""

    def __init__(self, tmp: Path, *neighbors: Neighbor, **kw: Any) -> None:
        self.bfd = FakeBfd(tmp)
        super().__init__(tmp / "state", speaker=Speaker(*neighbors), bfd=self.bfd, **kw)
        self.speaker: Speaker
        assert self.evpn.bfd is not None
        self.guard = self.evpn.bfd

    async def converged(self) -> None:
        """Both peers' routes programmed, BGP up, BFD Up with PEER."""
        for peer in self.speaker.peers:
            self.speaker.session(peer, "up")
        self.speaker.send(update(t5("10.244.1.0/26"), eor=True))
        self.speaker.send(update(t5("10.244.2.0/26", OTHER), peer=OTHER, eor=True))
        await until("routes in", lambda: self.has(ROUTE) and self.has(OTHER_ROUTE))
        self.bfd.change(PEER, State.DOWN, State.INIT, diag=Diag.NONE)
        self.bfd.change(PEER, State.INIT, State.UP, diag=Diag.NONE)
        await trio.sleep(0.1)
        # ExaBGP found running: any hold a previous run left was released
        assert self.speaker.released == [PEER]
        self.speaker.released.clear()


LEAF = Neighbor(PEER, role="neighbor", asn=65101, bfd=True)
PLAIN = Neighbor(OTHER, role="neighbor", asn=65102)


# -- what a state change does (RFC 5882) -------------------------------------------


def _change(old: State, new: State, remote: State = State.DOWN, cpi: bool = False) -> StateChange:
    key = PeerKey(PEER, ME)
    return StateChange(key, old, new, Diag.CONTROL_DETECTION_TIME_EXPIRED, Diag.NONE, cpi, remote)


@pytest.mark.parametrize(
    ("change", "bgp_up", "expected"),
    [
        (_change(State.UP, State.DOWN), True, BfdReaction.TEARDOWN),
        (_change(State.UP, State.DOWN, cpi=True), True, BfdReaction.TEARDOWN),
        # the peer's BGP gracefully restarting (its session down): the C bit decides
        (_change(State.UP, State.DOWN, cpi=True), False, BfdReaction.ABORT_RESTART),
        (_change(State.UP, State.DOWN, cpi=False), False, BfdReaction.KEEP_RESTART),
        # administratively down, ours or the peer's: no action (3.2)
        (_change(State.UP, State.DOWN, remote=State.ADMIN_DOWN), True, BfdReaction.NONE),
        (_change(State.UP, State.DOWN, remote=State.ADMIN_DOWN, cpi=True), False, BfdReaction.NONE),
        (_change(State.UP, State.ADMIN_DOWN), True, BfdReaction.NONE),
        # never Up: no failure (the peer may not do BFD at all)
        (_change(State.INIT, State.DOWN), True, BfdReaction.NONE),
        (_change(State.DOWN, State.INIT), True, BfdReaction.NONE),
        (_change(State.INIT, State.UP), True, BfdReaction.NONE),
    ],
)
def test_what_a_bfd_state_change_does_to_its_bgp_neighbour(
    change: StateChange, bgp_up: bool, expected: BfdReaction
) -> None:
    assert bfd_reaction(change, bgp_up) is expected


def test_a_session_per_neighbour_asking_for_bfd() -> None:
    config = SpeakerConfig(
        router_id=ME,
        local_address=ME,
        asn=65000,
        neighbors=(
            LEAF,
            Neighbor(OTHER, asn=65102, multihop=3, bfd=True, bfd_interval_ms=100, bfd_multiplier=5),
            Neighbor("192.168.77.14", asn=65103),  # no BFD
            # the routed underlay's: from the node's end of the link
            Neighbor("10.1.1.0", asn=65105, bfd=True, local_address="10.1.1.1"),
            Neighbor("2001:db8::1", asn=65104, bfd=True),  # IPv6: cnid's BFD is IPv4 only
        ),
    )
    assert bfd_sessions(config) == {
        PEER: (PeerKey(PEER, ME, None, False), PeerConfig(min_ttl=255)),
        "10.1.1.0": (PeerKey("10.1.1.0", "10.1.1.1"), PeerConfig(min_ttl=255)),
        OTHER: (
            PeerKey(OTHER, ME, None, True),  # multihop (RFC 5883), GTSM as BGP's: 256 - 3
            PeerConfig(
                desired_min_tx_ms=100, required_min_rx_ms=100, detect_multiplier=5, min_ttl=253
            ),
        ),
    }
    assert bfd_sessions(None) == {}


# -- the guard in the controller -------------------------------------------------------


async def test_sessions_follow_the_neighbours_live(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, LEAF, PLAIN)
    async with node.running():
        assert node.bfd.sessions == {PeerKey(PEER, ME): PeerConfig(min_ttl=255)}
        assert node.metric("cnid_bfd_session_state", peer=PEER) == int(State.DOWN)
        # new timers: the same session, its intervals changed (a Poll Sequence)
        faster = msgspec.structs.replace(LEAF, bfd_interval_ms=50, bfd_multiplier=4)
        other_bfd = msgspec.structs.replace(PLAIN, bfd=True, multihop=2)
        node.speaker.configure(msgspec.structs.replace(
            node.speaker.config, neighbors=(faster, other_bfd)
        ))  # fmt: skip
        await trio.sleep(0.1)
        assert node.bfd.sessions == {
            PeerKey(PEER, ME): PeerConfig(
                desired_min_tx_ms=50, required_min_rx_ms=50, detect_multiplier=4, min_ttl=255
            ),
            PeerKey(OTHER, ME, None, True): PeerConfig(min_ttl=254),
        }
        assert node.bfd.removed == []
        # BFD off for one, the other gone: both sessions end
        node.speaker.configure(msgspec.structs.replace(
            node.speaker.config, neighbors=(msgspec.structs.replace(LEAF, bfd=False),)
        ))  # fmt: skip
        await trio.sleep(0.1)
        assert node.bfd.sessions == {}
        assert set(node.bfd.removed) == {PeerKey(PEER, ME), PeerKey(OTHER, ME, None, True)}


async def test_bfd_down_tears_bgp_down_removes_the_routes_holds_down_and_recovers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, LEAF, PLAIN)
    speaker, bfd = node.speaker, node.bfd
    failures: list[str] = []  # the routed underlay's peer_down
    node.guard.on_failure(failures.append)
    async with node.running():
        await node.converged()
        assert node.metric("cnid_bfd_session_state", peer=PEER) == int(State.UP)
        assert speaker.torn_down == []

        # BFD detects the failure: the routes leave the kernel at once, the
        # session is torn down (Cease, "BFD Down"), the other peer untouched
        bfd.change(PEER, State.UP, State.DOWN)
        took = await until("the peer's routes out", lambda: not node.has(ROUTE))
        assert took < 0.1
        await until("torn down", lambda: speaker.torn_down == [(PEER, BFD_HOLD, CEASE_BFD_DOWN)])
        assert node.has(OTHER_ROUTE) and len(node.evpn.table) == 1
        assert failures == [PEER]
        assert node.metric("cnid_bfd_session_flaps_total", peer=PEER) == 1
        assert node.metric("cnid_bfd_bgp_teardowns_total", peer=PEER) == 1
        assert node.metric("cnid_bfd_session_state", peer=PEER) == int(State.DOWN)
        speaker.session(PEER, "down")  # ExaBGP says so: nothing kept as stale
        await trio.sleep(1)
        assert not node.has(ROUTE) and PEER not in node.evpn.graceful.peer_deadlines

        # held down: what the peer still sends is ignored; a session that
        # comes up anyway (ExaBGP restarted, or its hold ran out) is torn
        # down again
        speaker.send(update(t5("10.244.1.0/26")))
        await trio.sleep(5)
        assert not node.has(ROUTE)
        view = bfd_peers(node.evpn)["peers"]
        assert [(p["peer"], p["bgp_held_down"], p["last_reaction"]) for p in view] == [
            (PEER, True, "teardown")
        ]
        speaker.session(PEER, "up")
        await until("torn down again", lambda: len(speaker.torn_down) == 2)
        speaker.session(PEER, "down")
        assert speaker.released == []

        # BFD Up again: the hold is released, the session and its routes come back
        bfd.change(PEER, State.DOWN, State.INIT, diag=Diag.NONE)
        bfd.change(PEER, State.INIT, State.UP, diag=Diag.NONE)
        await until("released", lambda: speaker.released == [PEER])
        assert not node.guard.holds_down(PEER)
        speaker.session(PEER, "up")
        speaker.send(update(t5("10.244.1.0/26"), eor=True))
        await until("the peer's routes back", lambda: node.has(ROUTE))
        assert len(speaker.torn_down) == 2


async def test_the_hold_down_is_bounded_for_a_peer_whose_bfd_stays_down(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A peer that starts its BFD session only with its BGP session (FRR's
    dynamic neighbours, ``bgp listen range``) never brings BFD Up while held
    down: the hold ends after BFD_HOLD and BGP comes back without BFD; BFD
    Up, then Down again, tears it down again; BFD Up before the bound
    releases at once."""
    node = Node(tmp_path, LEAF, PLAIN)
    speaker, bfd = node.speaker, node.bfd
    async with node.running():
        await node.converged()
        bfd.change(PEER, State.UP, State.DOWN)
        start = trio.current_time()
        await until("torn down", lambda: speaker.torn_down == [(PEER, BFD_HOLD, CEASE_BFD_DOWN)])
        speaker.session(PEER, "down")
        await until("the peer's routes out", lambda: not node.has(ROUTE))

        # still held just before the bound
        await trio.sleep(BFD_HOLD - 1 - (trio.current_time() - start))
        assert node.guard.holds_down(PEER) and speaker.released == []

        # the bound passes, BFD still down: released (ExaBGP's own hold ends then too)
        await until("released", lambda: speaker.released == [PEER])
        took = trio.current_time() - start
        assert BFD_HOLD <= took < BFD_HOLD + 0.1, took
        assert not node.guard.holds_down(PEER)

        # BGP comes back without BFD: kept, its routes taken
        speaker.session(PEER, "up")
        speaker.send(update(t5("10.244.1.0/26"), eor=True))
        await until("the peer's routes back", lambda: node.has(ROUTE))
        await trio.sleep(5)
        assert len(speaker.torn_down) == 1 and node.has(ROUTE)

        # the peer's BFD comes Up with its BGP session: nothing to do
        bfd.change(PEER, State.DOWN, State.INIT, diag=Diag.NONE)
        bfd.change(PEER, State.INIT, State.UP, diag=Diag.NONE)
        await trio.sleep(1)
        assert len(speaker.torn_down) == 1 and speaker.released == [PEER]

        # Down again after Up: torn down again, held again
        bfd.change(PEER, State.UP, State.DOWN)
        await until("torn down again", lambda: len(speaker.torn_down) == 2)
        assert speaker.torn_down[1] == (PEER, BFD_HOLD, CEASE_BFD_DOWN)
        await until("the peer's routes out", lambda: not node.has(ROUTE))
        assert node.guard.holds_down(PEER)
        speaker.session(PEER, "down")
        assert node.metric("cnid_bfd_bgp_teardowns_total", peer=PEER) == 2

        # BFD Up before the bound: released at once
        await trio.sleep(5)
        bfd.change(PEER, State.DOWN, State.INIT, diag=Diag.NONE)
        bfd.change(PEER, State.INIT, State.UP, diag=Diag.NONE)
        took = await until("released at once", lambda: speaker.released == [PEER, PEER])
        assert took < 0.1 and not node.guard.holds_down(PEER)


async def test_rfc_5882_admin_down_and_graceful_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, LEAF, PLAIN, stale_timeout=120.0)
    speaker, bfd = node.speaker, node.bfd
    async with node.running():
        await node.converged()
        # the peer takes BFD down administratively: no action at all
        bfd.change(PEER, State.UP, State.DOWN, diag=Diag.NEIGHBOR_SIGNALED_SESSION_DOWN,
                   remote_state=State.ADMIN_DOWN)  # fmt: skip
        await trio.sleep(5)
        assert node.has(ROUTE) and speaker.torn_down == [] and not node.guard.holds_down(PEER)

        # its BGP restarts gracefully (the session down, its paths kept as
        # stale), and BFD fails meanwhile with the C bit clear: BFD shares
        # fate with the restart, the paths stay until the End-of-RIB
        bfd.change(PEER, State.DOWN, State.UP, diag=Diag.NONE)
        speaker.session(PEER, "down")
        await trio.sleep(1)
        bfd.change(PEER, State.UP, State.DOWN, cpi=False)
        await trio.sleep(30)
        assert node.has(ROUTE) and PEER in node.evpn.graceful.peer_deadlines
        assert node.guard.last_reaction[PEER] is BfdReaction.KEEP_RESTART
        bfd.change(PEER, State.DOWN, State.UP, diag=Diag.NONE)
        await until("released", lambda: speaker.released == [PEER])
        speaker.session(PEER, "up")
        speaker.send(update(t5("10.244.1.0/26"), eor=True))
        await trio.sleep(1)

        # the same with the C bit set: a forwarding failure, the restart is
        # aborted and its stale paths go at once
        speaker.session(PEER, "down")
        await trio.sleep(1)
        assert node.has(ROUTE)
        bfd.change(PEER, State.UP, State.DOWN, cpi=True)
        took = await until("the stale paths out", lambda: not node.has(ROUTE))
        assert took < 0.1
        assert node.guard.last_reaction[PEER] is BfdReaction.ABORT_RESTART
        assert PEER not in node.evpn.graceful.peer_deadlines


async def test_a_restarted_exabgp_is_told_again_and_refusals_are_retried(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, LEAF)
    speaker, bfd = node.speaker, node.bfd
    async with node.running():
        await node.converged()
        speaker.refuse = True  # ExaBGP's API not answering
        bfd.change(PEER, State.UP, State.DOWN)
        await trio.sleep(3.5)
        assert speaker.torn_down == [] and not node.has(ROUTE)  # the routes went anyway
        speaker.refuse = False
        await until("torn down on a retry", lambda: len(speaker.torn_down) == 1, timeout=1.5)
        # ExaBGP restarted: it holds nothing down any more; told again
        speaker.send(SpeakerUp(4242))
        await until("torn down again", lambda: len(speaker.torn_down) == 2)
        # not running (a daemon without its speaker yet): nothing sent, then
        # on attach every BFD neighbour not held is released (a previous
        # run's hold), the held one torn down
        speaker.running = False
        bfd.change(PEER, State.DOWN, State.UP, diag=Diag.NONE)
        await trio.sleep(3)
        assert speaker.released == []
        speaker.running = True
        await until("released on attach", lambda: speaker.released == [PEER], timeout=1.5)


async def test_bfd_up_while_the_teardown_is_under_way_a_later_failure_tears_down_again(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """BFD Up again while ExaBGP's answer to the teardown is awaited (a
    flap at bring-up, under load): the release follows, and the next
    failure tears the session down again (it was taken as torn down already
    and only the hold time ended it: tests/vm/test_silent_peer.py, once)."""
    node = Node(tmp_path, LEAF)
    speaker, bfd = node.speaker, node.bfd
    async with node.running():
        await node.converged()
        speaker.gate = trio.Event()
        bfd.change(PEER, State.UP, State.DOWN)
        await trio.sleep(0.5)  # the teardown sent, its answer awaited
        assert speaker.torn_down == []
        bfd.change(PEER, State.DOWN, State.INIT, diag=Diag.NONE)
        bfd.change(PEER, State.INIT, State.UP, diag=Diag.NONE)
        speaker.gate.set()
        await until("torn down, then released", lambda: speaker.released == [PEER])
        assert len(speaker.torn_down) == 1 and not node.guard.holds_down(PEER)
        # BFD fails again, BGP up: a teardown again
        bfd.change(PEER, State.UP, State.DOWN)
        await until("torn down again", lambda: len(speaker.torn_down) == 2)
        assert node.guard.holds_down(PEER)


async def test_cnictl_bfd_peers_and_the_packet_metrics(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, LEAF)
    async with node.running():
        node.bfd.counters.packets_in, node.bfd.counters.packets_out = 10, 12
        node.bfd.counters.discarded = {"ttl": 2}
        await trio.sleep(1.5)
        assert node.metric("cnid_bfd_packets_total", direction="in") == 10
        assert node.metric("cnid_bfd_packets_total", direction="out") == 12
        assert node.metric("cnid_bfd_errors_total", reason="ttl") == 2
        node.bfd.counters.packets_in = 15
        await trio.sleep(1.5)
        assert node.metric("cnid_bfd_packets_total", direction="in") == 15
        server = ControlServer(
            node="n1",
            readiness=Readiness(),
            journal=Journal(tmp_path / "ctl"),
            pool=AddressPool(MemoryStore(), "n1"),
            domains=DomainRegistry(VRF42),
            metrics=node.metrics,
            evpn=node.evpn,
        )
        data = await server.views["bfd-peers"]({})
        assert data == bfd_peers(node.evpn) and data["counters"]["packets_in"] == 15
        text = render("bfd-peers", msgspec.json.decode(msgspec.json.encode(data)))
    header, row = text.splitlines()[:2]
    assert header.split() == ["PEER", "LOCAL", "TYPE", "STATE", "UPTIME", "TX", "RX", "MULT",
                              "DETECT", "FLAPS", "DIAG", "REMOTE-DIAG"]  # fmt: skip
    assert row.split() == [PEER, ME, "single-hop", "up", "00:00:12", "300ms", "[300]", "300ms",
                           "[300]", "3/3", "900ms", "0", "ok", "ok"]  # fmt: skip
    assert "packets in 15, out 12" in text


async def test_a_bfd_failure_takes_the_underlays_ecmp_member_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The routed underlay: what the daemon wires to ``on_failure``."""
    kernel, speaker = UnderlayKernel(), UnderlaySpeaker()
    ctl = UnderlayController(
        speaker=speaker,  # type: ignore[arg-type]
        policy=UnderlayPolicy(vtep=VTEP, asn=65011),
        kernel=kernel,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(ctl.run)
        speaker.emit(unicast(L1, UnicastPath(FAR, L1)))
        speaker.emit(unicast(L2, UnicastPath(FAR, L2)))
        await trio.sleep(0.1)
        assert kernel.routes == {FAR: frozenset({L1, L2})}
        ctl.peer_down(L1)  # BFD: before ExaBGP says the session is down
        await trio.sleep(0.01)
        assert kernel.routes == {FAR: frozenset({L2})}
        nursery.cancel_scope.cancel()


async def test_a_failure_from_before_the_daemon_attached_is_acted_on(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The speaker tore the session down while no daemon was attached; the
    new daemon's link hears of it before its guard follows the neighbours
    (the peering configures the speaker later): the guard acts on it then."""
    node = Node(tmp_path, LEAF, PLAIN)
    speaker, bfd = node.speaker, node.bfd
    key = PeerKey(PEER, ME)
    down = msgspec.structs.replace(_status(key, PeerConfig(min_ttl=255)), state="down")
    failed = StateChange(key, State.UP, State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED,
                         Diag.NONE, False, State.DOWN)  # fmt: skip
    # what a speaker that tore the session down says to the daemon that attaches
    bfd.deliver(BfdSnapshot(peers=(down,), failed=(failed,), pid=4242, held=(PEER,)))
    assert bfd.failing == {PEER}
    async with node.running():
        await until("torn down", lambda: speaker.torn_down == [(PEER, BFD_HOLD, CEASE_BFD_DOWN)])
        assert node.guard.holds_down(PEER)
        assert node.guard.last_reaction[PEER] is BfdReaction.TEARDOWN  # not a restart's
        await trio.sleep(2)
        # told by the catch-up and again when followed: counted once
        assert node.metric("cnid_bfd_bgp_teardowns_total", peer=PEER) == 1
        assert node.metric("cnid_bfd_session_flaps_total", peer=PEER) == 1
        assert speaker.released == []  # not the attach's release of old holds
        bfd.change(PEER, State.DOWN, State.UP, diag=Diag.NONE)
        await until("released", lambda: speaker.released == [PEER])


async def test_no_speaker_serving_bfd_is_said_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A speaker process older than the daemon (kept through an upgrade of
    the daemon alone) serves no ``bfd.sock``: the log says so, once."""
    node = Node(tmp_path, LEAF)
    node.bfd.synced = False
    async with node.running():
        await trio.sleep(100)
    said = [r for r in caplog.records if "no speaker serves" in r.getMessage()]
    assert len(said) == 1 and PEER in said[0].getMessage()
