"""Jittered exponential backoff, shared by the client's retries and the
reflector's reconnects.

Full jitter (a uniform draw below the exponential cap) spreads the retries
of every node of a cluster that lost the API server at the same moment, so
they do not come back in lockstep; the draw never goes below ``initial`` so
that a retry loop never spins.
"""

from __future__ import annotations

import random

import trio


class Backoff:
    def __init__(
        self,
        initial: float = 0.2,
        maximum: float = 30.0,
        factor: float = 2.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        assert 0 < initial <= maximum and factor >= 1
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempts = 0
        self._rng = rng or random.Random()

    def reset(self) -> None:
        """After a success: the next failure waits ``initial`` again."""
        self.attempts = 0

    def next_delay(self) -> float:
        cap = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        return max(self.initial, self._rng.uniform(0.0, cap))

    async def sleep(self) -> float:
        """Sleep the next delay; returns it (for logging)."""
        delay = self.next_delay()
        await trio.sleep(delay)
        return delay
