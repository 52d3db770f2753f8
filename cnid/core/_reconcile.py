"""The one reconcile toolkit: a backoff, and the loops built on it.

``Backoff`` is the project's only exponential backoff. ``retry`` runs a
step until it succeeds (the underlay, recovery at start-up);
``reconcile_forever`` runs a level-triggered step again and again (the
domains, the host's integration): after a success at the next interval or
as soon as one of its change signals moves, after a failure once the
backoff has passed. Both mark a readiness component not ready with the
error's message while the step fails, and ready once it succeeds, and log
each failure with the name of what failed and the delay before the next
attempt.

Only ``CnidError`` is an expected failure: anything else is a bug of ours
and propagates (the daemon's nursery ends, and with it the node, loudly).
A step that is not done but has not failed either (it waits for something
a change signal will bring) raises ``Pending``: not ready, no backoff, no
error logged.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn, TypeVar

import trio

from ._errors import CnidError
from ._notify import ChangeSignal, snapshot, wait_any
from ._readiness import Readiness

log = logging.getLogger("cnid")

T = TypeVar("T")

#: After a failed pass, the least wait before a change may start the next.
_FAILED_PASS_GAP = 1.0


class Pending(CnidError):
    """Not done yet, and nothing failed: waiting for something that one of
    the loop's change signals will bring (the message says what)."""


class Backoff:
    """Exponential delays from ``initial`` up to ``maximum``.

    With ``jitter`` (the default), full jitter: a uniform draw below the
    exponential cap spreads the retries of every node of a cluster that lost
    the API server at the same moment, so they do not come back in
    lockstep; the draw never goes below ``initial`` so that a retry loop
    never spins. Without it the delays are exactly ``initial``,
    ``initial * factor``, ... (a node's own kernel or ExaBGP: nobody to
    spread from, and a log that says the delay it will wait).
    """

    def __init__(
        self,
        initial: float = 0.2,
        maximum: float = 30.0,
        factor: float = 2.0,
        *,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        assert 0 < initial <= maximum and factor >= 1
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self.attempts = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        """After a success: the next failure waits ``initial`` again."""
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (and count this one)."""
        cap = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        if not self.jitter:
            return cap
        return max(self.initial, self._rng.uniform(0.0, cap))

    async def sleep(self) -> float:
        """Sleep the next delay; returns it (for logging)."""
        delay = self.next_delay()
        await trio.sleep(delay)
        return delay


def _failed(
    exc: CnidError,
    delay: float,
    *,
    name: str,
    readiness: Readiness | None,
    key: str,
    on_error: Callable[[CnidError], object] | None,
    logger: logging.Logger,
) -> None:
    if readiness is not None:
        readiness.set_not_ready(key, exc.msg)
    if on_error is not None:
        on_error(exc)
    logger.error("%s: %s; retrying in %.1fs", name, exc.msg, delay)


async def retry(
    step: Callable[[], Awaitable[T]],
    *,
    name: str,
    readiness: Readiness | None = None,
    key: str | None = None,
    backoff: Backoff | None = None,
    on_error: Callable[[CnidError], object] | None = None,
    logger: logging.Logger = log,
) -> T:
    """``step()``'s result, retried with ``backoff`` while it raises a
    ``CnidError``. The readiness component ``key`` (default ``name``) is
    not ready with the error's message meanwhile and ready once it returns;
    ``on_error`` hears of each failure."""
    backoff = backoff or Backoff(0.5, 30.0, jitter=False)
    while True:
        try:
            result = await step()
        except CnidError as exc:
            delay = backoff.next_delay()
            _failed(
                exc,
                delay,
                name=name,
                readiness=readiness,
                key=key or name,
                on_error=on_error,
                logger=logger,
            )
            await trio.sleep(delay)
            continue
        if readiness is not None:
            readiness.set_ready(key or name)
        return result


async def reconcile_forever(
    step: Callable[[], Awaitable[object]],
    *,
    name: str,
    readiness: Readiness | None = None,
    key: str | None = None,
    interval: float = math.inf,
    changes: Sequence[ChangeSignal] = (),
    backoff: Backoff | None = None,
    on_error: Callable[[CnidError], object] | None = None,
    logger: logging.Logger = log,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Run ``step()`` forever.

    After a success: the backoff starts over, the readiness component
    ``key`` (default ``name``) is ready, and the next pass comes after
    ``interval`` seconds or as soon as one of ``changes`` moved (a change
    during the step counts: their versions are taken before it). After a
    ``CnidError``: the component is not ready with its message,
    ``on_error`` hears of it, the failure is logged, and the next pass
    comes once the backoff has passed, or sooner on a change (but not
    within a second of the failure). After ``Pending``: not ready with
    its message, and the next pass as after a success.

    Reports started after the first attempt, successful or not: a node
    whose kernel refuses something stays up, says why it is not ready, and
    keeps trying.
    """
    backoff = backoff or Backoff(1.0, 30.0, jitter=False)
    key = key or name
    started = False
    while True:
        seen = snapshot(changes)
        try:
            await step()
        except Pending as exc:
            if readiness is not None:
                readiness.set_not_ready(key, exc.msg)
            logger.debug("%s: %s", name, exc.msg)
        except CnidError as exc:
            delay = backoff.next_delay()
            _failed(
                exc,
                delay,
                name=name,
                readiness=readiness,
                key=key,
                on_error=on_error,
                logger=logger,
            )
            if not started:
                task_status.started()
                started = True
            # A change (one during the failed pass included) cuts the wait
            # short, for a domain or pod that came or went must not wait out
            # a 30 s backoff; but not below ``_FAILED_PASS_GAP``: a step whose
            # own writes move a change signal must not spin while it fails.
            await trio.sleep(min(delay, _FAILED_PASS_GAP))
            with trio.move_on_after(delay - min(delay, _FAILED_PASS_GAP)):
                await wait_any(seen)
            continue
        else:
            backoff.reset()
            if readiness is not None:
                readiness.set_ready(key)
        if not started:
            task_status.started()
            started = True
        with trio.move_on_after(interval):
            await wait_any(seen)
