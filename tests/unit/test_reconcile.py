"""The reconcile toolkit on trio's virtual clock: the one backoff, the
change signal, ``retry`` and ``reconcile_forever``."""

from __future__ import annotations

import logging
import random

import pytest
import trio
import trio.testing

from cnid.core import (
    Backoff,
    ChangeSignal,
    CnidError,
    KernelError,
    Notifier,
    Pending,
    Readiness,
    reconcile_forever,
    retry,
    wait_any,
)


class Script:
    """A step that fails while ``failures`` has items (one per attempt),
    recording when each attempt ran."""

    def __init__(self, *failures: str) -> None:
        self.failures = list(failures)
        self.times: list[float] = []

    async def __call__(self) -> str:
        self.times.append(trio.current_time())
        if self.failures:
            raise KernelError(self.failures.pop(0))
        return "done"

    def gaps(self) -> list[float]:
        return [round(b - a, 6) for a, b in zip(self.times, self.times[1:], strict=False)]


# -- Backoff ------------------------------------------------------------------


def test_backoff_without_jitter_doubles_up_to_the_maximum_and_resets() -> None:
    b = Backoff(0.5, 4.0, jitter=False)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5


def test_backoff_with_jitter_stays_between_initial_and_the_cap() -> None:
    b = Backoff(0.2, 30.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(200)]
    caps = [min(30.0, 0.2 * 2**n) for n in range(200)]
    assert all(0.2 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    # jittered: not the deterministic sequence
    assert len({round(d, 9) for d in delays[10:]}) > 100


async def test_backoff_sleep_sleeps_the_delay_it_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    b = Backoff(1.0, 8.0, factor=3.0, jitter=False)
    t0 = trio.current_time()
    assert await b.sleep() == 1.0
    assert await b.sleep() == 3.0
    assert await b.sleep() == 8.0
    assert trio.current_time() - t0 == pytest.approx(12.0)


# -- the change signal ------------------------------------------------------------


async def test_wait_any_returns_when_one_signal_moves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = Notifier(), Notifier()
    signals: list[ChangeSignal] = [a, b]
    seen = [(s, s.version) for s in signals]
    woke: list[float] = []

    async def waiter() -> None:
        await wait_any(seen)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(5)
        assert woke == []
        b.bump()
    assert woke == [pytest.approx(5.0)]
    # Already moved: at once.
    with trio.fail_after(0.001):
        await wait_any(seen)


async def test_wait_any_of_nothing_waits_forever(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.move_on_after(1000) as scope:
        await wait_any([])
    assert scope.cancelled_caught


# -- retry ------------------------------------------------------------------------


async def test_retry_backs_off_marks_not_ready_then_ready_and_returns(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    readiness = Readiness()
    readiness.expect("underlay")
    step = Script("no such interface", "no such interface", "still none")
    errors: list[str] = []
    states: list[str] = []

    def on_error(exc: CnidError) -> None:
        errors.append(exc.msg)
        states.append(readiness.snapshot()["underlay"])

    with caplog.at_level(logging.ERROR, logger="cnid"):
        result = await retry(
            step,
            name="underlay",
            readiness=readiness,
            backoff=Backoff(0.5, 30.0, jitter=False),
            on_error=on_error,
        )
    assert result == "done"
    assert step.gaps() == [0.5, 1.0, 2.0]
    assert errors == ["no such interface", "no such interface", "still none"]
    assert states == ["no such interface", "no such interface", "still none"]
    assert readiness.snapshot() == {"underlay": "ready"}
    assert "underlay: no such interface; retrying in 0.5s" in caplog.text
    assert "underlay: still none; retrying in 2.0s" in caplog.text


async def test_retry_lets_a_bug_through(autojump_clock: trio.testing.MockClock) -> None:
    async def broken() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        await retry(broken, name="x")


# -- reconcile_forever -------------------------------------------------------------


async def test_reconcile_forever_backs_off_on_failure_and_resets_after_success(
    autojump_clock: trio.testing.MockClock,
) -> None:
    readiness = Readiness()
    readiness.expect("domains")
    step = Script("refused", "refused", "refused")
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: reconcile_forever(
                step,
                name="domains",
                readiness=readiness,
                interval=10.0,
                backoff=Backoff(1.0, 30.0, jitter=False),
                task_status=task_status,
            )
        )
        await trio.sleep(1 + 2 + 4 + 10 * 2 + 0.5)
        # Fail again after successes: the backoff starts from 1 s.
        step.failures = ["again", "again"]
        await trio.sleep(10 + 1 + 2 + 0.5)
        nursery.cancel_scope.cancel()
    assert step.gaps() == [1.0, 2.0, 4.0, 10.0, 10.0, 10.0, 1.0, 2.0]
    assert readiness.ready


async def test_reconcile_forever_reports_started_after_the_first_attempt_even_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    readiness = Readiness()
    step = Script("the kernel refuses a VRF")
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        await nursery.start(
            lambda task_status: reconcile_forever(
                step, name="domains", readiness=readiness, task_status=task_status
            )
        )
        # started at once, after the one failed attempt, before any retry
        assert trio.current_time() == t0
        assert len(step.times) == 1
        assert readiness.snapshot() == {"domains": "the kernel refuses a VRF"}
        await trio.sleep(1.5)
        assert len(step.times) == 2
        assert readiness.snapshot() == {"domains": "ready"}
        nursery.cancel_scope.cancel()


async def test_reconcile_forever_readiness_flips_with_each_outcome(
    autojump_clock: trio.testing.MockClock,
) -> None:
    readiness = Readiness()
    readiness.expect("host", "starting")
    seen: list[str] = []
    outcomes = iter(["", "nft refused", "", "rules refused", ""])

    async def step() -> None:
        seen.append(readiness.snapshot()["host"])
        why = next(outcomes, "")
        if why:
            raise KernelError(why)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: reconcile_forever(
                step,
                name="host integration",
                key="host",
                readiness=readiness,
                interval=5.0,
                backoff=Backoff(1.0, jitter=False),
            )
        )
        await trio.sleep(30)
        nursery.cancel_scope.cancel()
    # What each pass found: the outcome of the pass before it.
    assert seen[:6] == ["starting", "ready", "nft refused", "ready", "rules refused", "ready"]


async def test_reconcile_forever_wakes_on_a_change_signal_and_counts_changes_during_a_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = Notifier()
    other = Notifier()
    times: list[float] = []

    async def step() -> None:
        times.append(trio.current_time())
        if len(times) == 2:
            # A change while the pass runs: another pass right after.
            notifier.bump()
            await trio.sleep(0.25)

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: reconcile_forever(
                step,
                name="x",
                interval=100.0,
                changes=[notifier, other],
                task_status=task_status,
            )
        )
        await trio.sleep(3)
        other.bump()
        await trio.sleep(3)
        nursery.cancel_scope.cancel()
    assert times == [0.0, pytest.approx(3.0), pytest.approx(3.25)]


async def test_reconcile_forever_without_signals_waits_the_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    step = Script()
    with trio.move_on_after(25):
        await reconcile_forever(step, name="x", interval=10.0)
    assert step.gaps() == [10.0, 10.0]


async def test_reconcile_forever_lets_a_bug_through(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def broken() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        await reconcile_forever(broken, name="x")


async def test_reconcile_forever_pending_is_not_ready_without_backoff_until_a_change(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    readiness = Readiness()
    notifier = Notifier()
    times: list[float] = []

    async def step() -> None:
        times.append(trio.current_time())
        if notifier.version == 0:
            raise Pending("waiting for the default domain")

    with caplog.at_level(logging.ERROR, logger="cnid"):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: reconcile_forever(
                    step,
                    name="domains",
                    readiness=readiness,
                    interval=60.0,
                    changes=[notifier],
                    task_status=task_status,
                )
            )
            assert readiness.snapshot() == {"domains": "waiting for the default domain"}
            await trio.sleep(7)
            assert times == [0.0]  # no backoff retries: it waits for the change
            notifier.bump()
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert times == [0.0, pytest.approx(7.0)]
    assert readiness.snapshot() == {"domains": "ready"}
    assert caplog.text == ""


async def test_reconcile_forever_a_change_cuts_a_backoff_short_but_not_below_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A failing step waits 1, 2, 4, 8 s; a change during the 8 s wait starts
    the next pass at once, and a change made by the failing pass itself
    waits one second (no spinning on self-made changes)."""
    notifier = Notifier()
    times: list[float] = []

    async def step() -> None:
        times.append(trio.current_time())
        if len(times) == 5:
            notifier.bump()  # the pass's own write moves the signal
        raise KernelError("refused")

    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: reconcile_forever(
                step, name="x", changes=[notifier], task_status=task_status
            )
        )
        await trio.sleep(7 + 3)  # passes at 0, 1, 3, 7; then the 8 s wait
        notifier.bump()
        await trio.sleep(0.5)
        assert times[-1] == pytest.approx(10.0)
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert times == [0.0, 1.0, 3.0, 7.0, pytest.approx(10.0), pytest.approx(11.0)]


async def test_readiness_is_a_change_signal_that_moves_only_on_a_change(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A service waiting for another's readiness waits on it, not by polling."""
    readiness = Readiness()
    signal: ChangeSignal = readiness
    readiness.expect("domains")
    seen = signal.version
    readiness.set_not_ready("domains", "starting")  # the same state: no change
    readiness.expect("domains")
    assert signal.version == seen
    woke: list[float] = []

    async def waiter() -> None:
        await signal.wait_changed(seen)
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(5)
        assert woke == []
        readiness.set_ready("domains")
    assert woke == [5.0]
    assert signal.version == seen + 1
