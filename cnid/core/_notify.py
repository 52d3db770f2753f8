"""One versioned change signal.

A ``ChangeSignal`` is a counter that moves when what it stands for
changes, and that a task can wait on: ``version`` now, and
``wait_changed(seen)`` until it differs from the version seen. The node's
``Notifier`` is one (the journal, the domain registry and the address pool
bump it when what the node announces may have changed: a pod wired or
removed, a domain's kernel objects made, a block claimed or released); each
Kubernetes ``Reflector`` is another (its cache changed). Controllers wait on
either with ``wait_any`` instead of polling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import trio


class ChangeSignal(Protocol):
    @property
    def version(self) -> int: ...

    async def wait_changed(self, seen: int) -> object:
        """Return once ``version`` differs from ``seen``."""
        ...


class Notifier:
    """A ``ChangeSignal`` that its owner bumps."""

    def __init__(self) -> None:
        self.version = 0
        self._event = trio.Event()

    def bump(self) -> None:
        self.version += 1
        self._event.set()
        self._event = trio.Event()

    async def wait_changed(self, seen: int) -> int:
        """Return, with the version now, once ``version`` differs from ``seen``."""
        while self.version == seen:
            await self._event.wait()
        return self.version


def snapshot(signals: Sequence[ChangeSignal]) -> list[tuple[ChangeSignal, int]]:
    """Each signal with its version now, for ``wait_any`` later."""
    return [(s, s.version) for s in signals]


async def wait_any(seen: Sequence[tuple[ChangeSignal, int]]) -> None:
    """Until one of the signals moved past the version seen of it (at once if
    one already has). With no signal at all: forever."""
    if not seen:
        await trio.sleep_forever()
    if any(signal.version != version for signal, version in seen):
        return
    async with trio.open_nursery() as nursery:
        for signal, version in seen:

            async def wait(s: ChangeSignal = signal, v: int = version) -> None:
                await s.wait_changed(v)
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)
