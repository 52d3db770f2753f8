"""The BFD session state machine (RFC 5880 6.2, 6.8) and its runner on
trio's virtual clock: two sessions wired to each other by a fake link."""

from __future__ import annotations

import itertools
import random

import pytest
import trio
import trio.testing

from cnid.bfd import (
    SLOW_TX_US,
    ControlPacket,
    Diag,
    PeerConfig,
    Runner,
    Session,
    State,
    Transition,
)


class Link:
    """Two runners, each one's packets delivered to the other while up."""

    def __init__(self, a: PeerConfig, b: PeerConfig) -> None:
        self.up = True
        self.sent: dict[str, list[tuple[float, ControlPacket]]] = {"a": [], "b": []}
        self.changes: dict[str, list[tuple[float, Transition]]] = {"a": [], "b": []}
        self.a = self._runner("a", Session(1, a, random.Random(1)))
        self.b = self._runner("b", Session(2, b, random.Random(2)))

    def _runner(self, name: str, session: Session) -> Runner:
        async def send(packet: ControlPacket) -> None:
            self.sent[name].append((trio.current_time(), packet))
            other = self.b if name == "a" else self.a
            if self.up and other.session.state is not State.ADMIN_DOWN:
                other.deliver(packet)

        def changed(t: Transition) -> None:
            self.changes[name].append((trio.current_time(), t))

        return Runner(session, send, changed)

    def states(self) -> tuple[State, State]:
        return self.a.session.state, self.b.session.state


async def wait_for(predicate: object, timeout: float = 30.0) -> float:
    start = trio.current_time()
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.01)
    return trio.current_time() - start


async def test_three_way_handshake_then_fast_timers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link = Link(PeerConfig(), PeerConfig())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.a.run)
        nursery.start_soon(link.b.run)
        await wait_for(lambda: link.states() == (State.UP, State.UP), 5)
        assert [t.new for _, t in link.changes["a"]] in (
            [State.INIT, State.UP],
            [State.UP],
        )
        # slow TX (1 s) until Up, then 300 ms after a Poll Sequence
        first = link.sent["a"][0][1]
        assert first.desired_min_tx == SLOW_TX_US and first.state is not State.UP
        await wait_for(lambda: not link.a.session.poll and not link.b.session.poll, 5)
        for runner in (link.a, link.b):
            assert runner.session.tx_interval_us() == 300_000
            assert runner.session.rx_interval_us() == 300_000
            assert runner.session.detection_time() == pytest.approx(0.9)
        assert any(p.poll for _, p in link.sent["a"]) and any(p.final for _, p in link.sent["b"])
        # steady state: 75-100% of 300 ms between packets
        link.sent["a"].clear()
        await trio.sleep(10)
        times = [t for t, p in link.sent["a"] if not p.final]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps and all(0.225 - 1e-6 <= g <= 0.3 + 1e-6 for g in gaps)
        assert link.states() == (State.UP, State.UP)
        nursery.cancel_scope.cancel()


async def test_link_cut_goes_down_within_detection_time_and_comes_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link = Link(PeerConfig(), PeerConfig(desired_min_tx_ms=500, required_min_rx_ms=200))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.a.run)
        nursery.start_soon(link.b.run)
        await wait_for(lambda: link.states() == (State.UP, State.UP) and not link.b.session.poll)
        # each side's detection time: the remote's multiplier x its agreed TX
        assert link.a.session.detection_time() == pytest.approx(3 * 0.5)
        assert link.b.session.detection_time() == pytest.approx(3 * 0.3)
        await trio.sleep(5)
        link.up = False
        cut = trio.current_time()
        await wait_for(lambda: link.states() == (State.DOWN, State.DOWN))
        downs = {
            n: [(t, c) for t, c in ch if c.new is State.DOWN] for n, ch in link.changes.items()
        }
        assert downs["a"][0][0] - cut <= 1.5 + 1e-6
        assert downs["b"][0][0] - cut <= 0.9 + 1e-6
        assert downs["a"][0][1].diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
        assert link.a.flaps == link.b.flaps == 1
        assert link.a.session.remote_discr == 0
        # Down: back to 1 s TX, no Poll Sequence needed
        assert link.a.session.packet().desired_min_tx == SLOW_TX_US
        link.up = True
        assert await wait_for(lambda: link.states() == (State.UP, State.UP)) < 3
        assert link.a.up_since is not None
        nursery.cancel_scope.cancel()


async def test_poll_sequence_keeps_the_old_tx_interval_until_final(
    autojump_clock: trio.testing.MockClock,
) -> None:
    link = Link(PeerConfig(), PeerConfig())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.a.run)
        nursery.start_soon(link.b.run)
        await wait_for(lambda: link.states() == (State.UP, State.UP) and not link.a.session.poll)
        link.up = False  # hold the Final back
        link.a.session.set_intervals(600, 300)
        assert link.a.session.poll
        assert link.a.session.tx_interval_us() == 300_000  # not yet
        assert link.a.session.packet().poll
        assert link.a.session.packet().desired_min_tx == 600_000
        await trio.sleep(0.2)
        link.up = True
        await wait_for(lambda: not link.a.session.poll, 2)
        assert link.a.session.tx_interval_us() == 600_000
        assert link.b.session.detection_time() == pytest.approx(1.8)
        assert link.states() == (State.UP, State.UP)
        nursery.cancel_scope.cancel()


async def test_admin_down_tells_the_peer(autojump_clock: trio.testing.MockClock) -> None:
    link = Link(PeerConfig(), PeerConfig())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(link.a.run)
        nursery.start_soon(link.b.run)
        await wait_for(lambda: link.states() == (State.UP, State.UP))
        link.a.stop()
        await wait_for(lambda: link.b.session.state is State.DOWN, 0.1)
        assert link.changes["b"][-1][1].diag is Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
        assert link.sent["a"][-1][1].state is State.ADMIN_DOWN
        # with the peer's discriminator (FRR's bfdd ignores it without)
        assert link.sent["a"][-1][1].your_discr == link.b.session.local_discr
        assert link.a.session.state is State.ADMIN_DOWN
        nursery.cancel_scope.cancel()


def up_session(config: PeerConfig | None = None) -> Session:
    s = Session(10, config or PeerConfig(), random.Random(0))
    peer = ControlPacket(state=State.INIT, detect_mult=3, my_discr=20, your_discr=10,
                         desired_min_tx=300_000, required_min_rx=300_000)  # fmt: skip
    assert s.receive(peer, 0.0) == Transition(State.DOWN, State.UP, Diag.NONE)
    return s


def test_remote_down_takes_an_up_session_down() -> None:
    s = up_session()
    down = ControlPacket(state=State.DOWN, diag=Diag.CONTROL_DETECTION_TIME_EXPIRED,
                         detect_mult=3, my_discr=20, desired_min_tx=1_000_000,
                         required_min_rx=300_000)  # fmt: skip
    assert s.receive(down, 1.0) == Transition(
        State.UP, State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN
    )
    assert s.remote_diag is Diag.CONTROL_DETECTION_TIME_EXPIRED
    assert s.detect_deadline is None


def test_poll_is_answered_with_final() -> None:
    s = up_session()
    poll = ControlPacket(state=State.UP, poll=True, detect_mult=3, my_discr=20, your_discr=10,
                         desired_min_tx=300_000, required_min_rx=300_000)  # fmt: skip
    s.receive(poll, 1.0)
    assert s.final_due
    answer = s.packet(final=True)
    assert answer.final and not answer.poll and not s.final_due


def test_detection_timer_only_once_heard() -> None:
    s = Session(10, PeerConfig(), random.Random(0))
    assert s.expire(100.0) is None and s.detect_deadline is None
    s = up_session()
    assert s.detect_deadline == pytest.approx(0.9)
    assert s.expire(0.8) is None
    assert s.expire(0.9) == Transition(State.UP, State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED)


def test_jitter_bounds() -> None:
    s = up_session()
    delays = [s.next_tx_delay() for _ in range(2000)]
    assert 0.225 <= min(delays) < 0.235 and 0.29 < max(delays) <= 0.3
    s1 = up_session(PeerConfig(detect_multiplier=1))
    delays = [s1.next_tx_delay() for _ in range(2000)]
    assert 0.225 <= min(delays) and max(delays) <= 0.27


def test_remote_required_min_rx_zero_stops_transmission() -> None:
    s = up_session()
    quiet = ControlPacket(state=State.UP, detect_mult=3, my_discr=20, your_discr=10,
                          desired_min_tx=300_000, required_min_rx=0)  # fmt: skip
    s.receive(quiet, 1.0)
    assert not s.may_transmit()


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        PeerConfig(detect_multiplier=0)
    with pytest.raises(ValueError):
        PeerConfig(desired_min_tx_ms=0)
    with pytest.raises(ValueError):
        PeerConfig(min_ttl=256)
