"""A per-peer maximum of received prefixes: FRR's ``maximum-prefix``.

``warning`` logs once and holds the paths beyond the limit back (the
``RouteTable`` keeps them, shown as not programmed, and takes them in when
the peer withdraws others). ``restart`` drops the peer's paths, tears its
session down with a NOTIFICATION (Cease, "maximum number of prefixes
reached") and ignores what it sends for ``restart`` seconds.
"""

from __future__ import annotations

import logging
from typing import Protocol

import trio

from ..core._metrics import Metrics
from ._rib import RouteTable

log = logging.getLogger("cnid.evpn")

MAX_PREFIX_ACTIONS = ("warning", "restart")


class TearsDown(Protocol):
    """The speaker's part in a restart: ending one session for a while."""

    async def teardown(self, peer: str, hold: float, code: int = 1) -> bool: ...


class MaxPrefix:
    def __init__(
        self,
        table: RouteTable,
        metrics: Metrics,
        limit: int = 0,
        action: str = "warning",
        restart: float = 60.0,
    ) -> None:
        self.table = table
        self.metrics = metrics
        self.limit = 0
        self.action = "warning"
        self.restart = 60.0
        self.configure(limit, action, restart)
        #: Peers torn down for their maximum, and until when.
        self.held_down: dict[str, float] = {}
        #: Peers over their maximum whose warning was logged.
        self._warned: set[str] = set()
        self._teardowns: list[str] = []
        self._teardown_wanted = trio.Event()

    def configure(self, limit: int, action: str = "warning", restart: float = 60.0) -> None:
        """FRR's ``maximum-prefix limit [warning-only | restart M]`` (0: none)."""
        if action not in MAX_PREFIX_ACTIONS:
            raise ValueError(f"max_prefix_action {action!r}")
        self.limit = limit
        self.action = action
        self.restart = restart
        self.table.set_max_paths(limit if action == "warning" else 0)

    def holds_down(self, peer: str, now: float) -> bool:
        """Whether what ``peer`` sends is ignored (torn down, not back yet)."""
        until = self.held_down.get(peer)
        if until is None:
            return False
        if now < until:
            return True
        del self.held_down[peer]
        return False

    def check(self, peer: str, now: float) -> bool:
        """After ``peer`` announced paths: True when it went over its maximum
        with ``restart`` (its paths are gone, its teardown queued)."""
        if not self.limit:
            return False
        count = self.table.source_count(peer)
        held = self.table.held_count(peer)
        if count + held <= self.limit:
            if count < self.limit:
                self._warned.discard(peer)
            return False
        if self.action == "warning":
            if peer not in self._warned:
                self._warned.add(peer)
                self.metrics.evpn_max_prefix.labels(peer=peer, action="warning").inc()
                log.warning(
                    "EVPN: %s sent more than its maximum of %d prefixes: the rest not accepted",
                    peer,
                    self.limit,
                )
            return False
        self.held_down[peer] = now + self.restart
        gone = self.table.drop_source(peer)
        self.metrics.evpn_max_prefix.labels(peer=peer, action="restart").inc()
        log.warning(
            "EVPN: %s sent more than its maximum of %d prefixes: session torn down, its %d "
            "paths removed, no session for %.0f s",
            peer,
            self.limit,
            gone,
            self.restart,
        )
        self._teardowns.append(peer)
        self._teardown_wanted.set()
        return True

    async def send_teardowns(self, speaker: TearsDown) -> None:
        """Forever: end the sessions ``check`` tore down, as they come."""
        while True:
            await self._teardown_wanted.wait()
            self._teardown_wanted = trio.Event()
            peers, self._teardowns = self._teardowns, []
            for peer in peers:
                if not await speaker.teardown(peer, self.restart, code=1):
                    log.warning("EVPN: could not tear the session to %s down", peer)
