"""A change counter that tasks can wait on.

The journal, the domain registry and the address pool bump the node's one
``Notifier`` when what the node announces may have changed (a pod wired or
removed, a domain's kernel objects made, a block claimed or released); the
EVPN controller waits on it instead of polling.
"""

from __future__ import annotations

import trio


class Notifier:
    def __init__(self) -> None:
        self.version = 0
        self._event = trio.Event()

    def bump(self) -> None:
        self.version += 1
        self._event.set()
        self._event = trio.Event()

    async def wait_changed(self, seen: int) -> None:
        """Return once ``version`` differs from ``seen``."""
        while self.version == seen:
            await self._event.wait()


async def wait_any(notifiers: list[tuple[Notifier, int]]) -> None:
    """Until one of the notifiers moved past the version seen of it."""
    async with trio.open_nursery() as nursery:
        for notifier, seen in notifiers:

            async def wait(n: Notifier = notifier, s: int = seen) -> None:
                await n.wait_changed(s)
                nursery.cancel_scope.cancel()

            nursery.start_soon(wait)
