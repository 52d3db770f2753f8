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
