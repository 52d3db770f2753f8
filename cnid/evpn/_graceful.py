"""Which received paths outlive their session, and for how long.

Graceful restart's helper side (RFC 4724), for whatever ended a session: the
speakers of a full mesh are all ours, so a peer that went down most likely
restarts (its daemon, a rolling update). Its paths stay, as stale copies in
the ``RouteTable`` and in the kernel, until it is back with its End-of-RIB
or its time is up: counted from the session's end, the longer of
``stale_timeout`` and the Restart Time the peer advertised in its OPEN
(RFC 4724: its routes are kept that long for it to come back; a replaced
speaker pod, ExaBGP and the daemon started afresh, can take longer than a
short stale timer, and its peers must not drop its routes a moment before it
announces them again). When ExaBGP itself ended, every path is kept for
``stale_timeout``. A peer that is no neighbour any more (its Node deleted) loses
its paths at once.

The adoption of a previous run's kernel entries ends the same way: once
every neighbour sent its End-of-RIB, or the timeout ran out.

The session itself (up, down, since when, flaps) is the speaker's
(``Speaker.peers``); what is kept here is about the peers' routes only.
"""

from __future__ import annotations

import logging
import math

from ..bgp import SpeakerConfig
from ._rib import STALE, RouteTable

log = logging.getLogger("cnid.evpn")


def neighbors_of(config: SpeakerConfig | None) -> set[str]:
    return {n.address for n in config.neighbors} if config is not None else set()


class GracefulRestart:
    def __init__(self, table: RouteTable, stale_timeout: float) -> None:
        self.table = table
        self.stale_timeout = stale_timeout
        #: Peers whose End-of-RIB came since their session (re)started.
        self.eor: set[str] = set()
        #: Peers whose session went down, and until when their paths are
        #: kept as stale.
        self.peer_deadlines: dict[str, float] = {}
        #: ExaBGP ended: until when every path it had learned is kept.
        self.stale_deadline = math.inf
        #: A previous run's kernel entries: kept until when at most.
        self.adopt_deadline = math.inf
        #: The speaker configuration whose neighbour set was last checked
        #: for peers that left (a scan of every path).
        self._departures_checked: SpeakerConfig | None = None

    def start_adoption(self, now: float) -> None:
        self.adopt_deadline = now + self.stale_timeout

    def adoption_over(self, config: SpeakerConfig | None, now: float) -> bool:
        if config is None:
            # Not told its neighbours yet (the peering starts after the
            # controller): "no neighbours" would sweep what a restarted
            # node adopted before its peers had a chance to resend it.
            return now >= self.adopt_deadline
        neighbors = neighbors_of(config)
        if not neighbors or neighbors <= self.eor:
            return True
        return now >= self.adopt_deadline

    def end_of_rib(self, peer: str) -> None:
        self.eor.add(peer)
        self.peer_deadlines.pop(peer, None)
        dropped = self.table.drop_stale(peer)
        log.info("EVPN: End-of-RIB from %s (%d stale paths dropped)", peer, dropped)

    def session_down(
        self, peer: str, config: SpeakerConfig | None, now: float, restart_time: float = 0.0
    ) -> None:
        """A session went down (a NOTIFICATION, a hold timer, a closed
        connection): a neighbour's paths are kept as stale (for the longer
        of ``stale_timeout`` and ``restart_time``, the Restart Time it
        advertised), a former neighbour's go at once (see ``expire`` for
        those that leave later)."""
        self.eor.discard(peer)
        table = self.table
        if self.stale_timeout <= 0 or peer not in neighbors_of(config):
            gone = table.drop_source(peer) + table.drop_stale(peer)
            self.peer_deadlines.pop(peer, None)
            if gone:
                log.info("EVPN: session to %s down: its %d paths removed", peer, gone)
            return
        kept = table.make_stale(peer)
        keep = max(self.stale_timeout, restart_time)
        if kept or peer in self.peer_deadlines:
            self.peer_deadlines.setdefault(peer, now + keep)
        if kept:
            log.info(
                "EVPN: session to %s down: its %d paths kept as stale until it is back "
                "with its End-of-RIB (%.0f s at most)",
                peer,
                kept,
                self.peer_deadlines[peer] - now,
            )

    def speaker_down(self, reason: str, now: float) -> None:
        """ExaBGP ended: every path is kept as stale until re-learned."""
        kept = self.table.make_stale()
        self.eor.clear()
        self.stale_deadline = now + self.stale_timeout
        log.warning(
            "EVPN: ExaBGP ended (%s): %d paths kept as stale until re-learned", reason, kept
        )

    def forget(self, peer: str) -> None:
        """The peer's paths went for another reason (its maximum): no timer."""
        self.peer_deadlines.pop(peer, None)

    def expire(self, config: SpeakerConfig | None, now: float) -> None:
        """Drop the stale paths whose time is up (ExaBGP's end, or each
        peer's), and every path of peers that are no neighbours any more."""
        if now >= self.stale_deadline:
            dropped = self.table.drop_stale()
            self.stale_deadline = math.inf
            if dropped:
                log.info("EVPN: stale timer: %d paths not re-learned dropped", dropped)
        for peer, deadline in list(self.peer_deadlines.items()):
            if now >= deadline:
                del self.peer_deadlines[peer]
                dropped = self.table.drop_stale(peer)
                if dropped:
                    log.info("EVPN: %s not back in time: its %d stale paths dropped", peer, dropped)
        if config is None or config is self._departures_checked:
            return  # neighbours only leave with a new configuration: no scan per pass
        self._departures_checked = config
        neighbors = neighbors_of(config)
        for source in self.table.sources():
            peer = source.removeprefix(STALE)
            if peer in neighbors:
                continue
            gone = self.table.drop_source(source)
            self.peer_deadlines.pop(peer, None)
            log.info("EVPN: %s is no neighbour any more: its %d paths removed", peer, gone)
