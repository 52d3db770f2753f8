"""BFD for the BGP neighbours that ask for it (``bfd: true``): one session
per neighbour, following the neighbour set live, and what a failure does.

* ``follow``: a BFD session per neighbour with ``bfd`` (single hop, or
  multihop, RFC 5883, for a ``multihop`` neighbour), from the BGP session's
  local address, with the neighbour's interval and multiplier; sessions of
  neighbours gone (or their ``bfd`` off) end with AdminDown (RFC 5882 5).
* ``changed``: a session that goes Down after it was Up (``reaction``)
  holds the neighbour down: the controller removes what it learned from it
  at once (the kernel entries follow), what the peer still sends is
  ignored, and the loop (``run``) tears the BGP session down through
  ExaBGP (Cease, subcode 10 "BFD Down", RFC 9384) with a hold that keeps it
  down, for at most ``BFD_HOLD`` (``expire``: BGP may connect with BFD
  still down, RFC 5882 allowing a session without BFD; a peer that starts
  its BFD session only with its BGP session, FRR's dynamic neighbours,
  would otherwise never come back; BFD Down again after Up tears down
  again). BFD Up again releases the hold: ExaBGP connects at once. With the
  routed underlay the neighbour's ECMP member goes too (``on_failure``: the
  underlay's ``peer_down``, the same removal as its session going down).

RFC 5882, what cnid honours (``reaction``):

* AdminDown (ours, or the peer's: 3.2): no action, the routes stay;
* a BFD failure while the BGP session is established: the session is torn
  down and the routes removed, whatever the C bit (4.3.2: BGP cannot signal
  a planned restart, so BFD most likely times out first);
* a BFD failure while the peer is gracefully restarting (its session down,
  its paths kept as stale): with the peer's C bit set (BFD independent of
  its control plane) it is a forwarding failure and the restart is aborted:
  the stale paths go at once; with the C bit clear, BFD shares fate with the
  restart and the paths stay until the End-of-RIB or the stale timer.

A peer whose BFD is control-plane independent keeps its session Up through
its BGP restart, so nothing here happens and graceful restart keeps its
routes. cnid's BFD sessions run in the speaker process (``cnid.bgp``'s
``BfdHost``), beside ExaBGP: they outlive the daemon as the BGP sessions
do, and share fate with ExaBGP, so cnid sends the C bit clear. The guard
asks for them (``BfdLink.configure``: ``bfd.json``) and takes their states
from the host; at each attach it learns what failed while it was away.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable

import trio

from ..bfd import PeerConfig, PeerKey, State, StateChange
from ..bgp import BFD_HOLD, CEASE_BFD_DOWN, BfdLink, Speaker, SpeakerConfig
from ..core._metrics import Metrics
from ..core._notify import Notifier, snapshot, wait_any

log = logging.getLogger("cnid.evpn")

__all__ = ["BFD_HOLD", "CEASE_BFD_DOWN", "BfdGuard", "BfdReaction", "bfd_reaction", "bfd_sessions"]
#: How often the loop retries what ExaBGP did not take, and syncs the
#: packet counters into the metrics.
TICK = 1.0
#: How long sessions may be wanted with no speaker serving them before the
#: log says so.
LINK_WARN = 30.0


class BfdReaction(enum.StrEnum):
    NONE = "none"
    TEARDOWN = "teardown"  # the session torn down, the routes removed
    ABORT_RESTART = "abort-restart"  # graceful restart aborted: stale routes removed
    KEEP_RESTART = "keep-restart"  # graceful restart goes on: stale routes kept


def bfd_reaction(change: StateChange, bgp_up: bool) -> BfdReaction:
    """What a BFD state change does to its BGP neighbour (RFC 5882)."""
    if not change.failed:
        return BfdReaction.NONE  # only a session that was Up can fail; 3.2: nor AdminDown
    if bgp_up:
        return BfdReaction.TEARDOWN
    return BfdReaction.ABORT_RESTART if change.remote_cpi else BfdReaction.KEEP_RESTART


def peer_config(interval_ms: int, multiplier: int, multihop: int) -> PeerConfig:
    """A neighbour's session settings; a multihop neighbour's packets are
    accepted with the TTL it can arrive with (GTSM, as BGP's)."""
    return PeerConfig(
        desired_min_tx_ms=interval_ms,
        required_min_rx_ms=interval_ms,
        detect_multiplier=multiplier,
        min_ttl=256 - multihop if multihop else 255,
    )


def bfd_sessions(config: SpeakerConfig | None) -> dict[str, tuple[PeerKey, PeerConfig]]:
    """Neighbour address -> its BFD session's key and settings."""
    out: dict[str, tuple[PeerKey, PeerConfig]] = {}
    for n in config.neighbors if config is not None else ():
        if not n.bfd or ":" in n.address:  # cnid's BFD is IPv4 only
            continue
        # from the BGP session's own local address (the routed underlay's:
        # the node's end of the link to the leaf)
        local = n.local_address or (config.local_address if config else None)
        key = PeerKey(n.address, local, None, n.multihop > 0)
        out[n.address] = (key, peer_config(n.bfd_interval_ms, n.bfd_multiplier, n.multihop))
    return out


class BfdGuard:
    """The BFD sessions of the speaker's neighbours and the hold-downs they
    cause. ``changed`` and ``bgp_*`` are called by the EVPN controller's
    receive loop (in order with the BGP events); ``run`` follows the
    neighbour set and sends ExaBGP the teardowns and releases."""

    def __init__(self, bfd: BfdLink, speaker: Speaker, metrics: Metrics) -> None:
        self.bfd = bfd
        self.speaker = speaker
        self.metrics = metrics
        #: Neighbour address -> its session's key, and its settings.
        self.sessions: dict[str, PeerKey] = {}
        self._settings: dict[str, PeerConfig] = {}
        #: Peers held down for BFD, and since when (trio's clock).
        self.held: dict[str, float] = {}
        #: How long a failure holds its peer down at most (BFD still down).
        self.hold = BFD_HOLD
        #: Each peer's last reaction to a BFD failure (the peers' view).
        self.last_reaction: dict[str, BfdReaction] = {}
        #: Peers held down whose teardown ExaBGP took (since its last start).
        self._torn: set[str] = set()
        #: Peers released whose release ExaBGP has not taken yet.
        self._to_release: set[str] = set()
        self._work = Notifier()
        self._on_failure: list[Callable[[str], None]] = []
        self._was_running = False
        self._counted: dict[str, int] = {}
        self._last_change: dict[str, StateChange] = {}
        self._unsynced_since: float | None = None
        self._link_warned = False

    # -- what the controller calls ---------------------------------------

    def holds_down(self, peer: str) -> bool:
        return peer in self.held

    def on_failure(self, callback: Callable[[str], None]) -> None:
        """``callback(peer)`` when a BFD failure removes a peer's routes (the
        routed underlay takes the peer's ECMP member out with it)."""
        self._on_failure.append(callback)

    def changed(self, change: StateChange, bgp_up: bool, now: float) -> BfdReaction:
        """A BFD state change: the reaction (the controller removes the routes
        for TEARDOWN and ABORT_RESTART)."""
        peer = change.key.peer
        if self.sessions.get(peer) != change.key:
            return BfdReaction.NONE  # a session that was just replaced or removed
        if self._last_change.get(peer) == change:
            return BfdReaction.NONE  # told twice (an attach's catch-up, and its replay)
        self._last_change[peer] = change
        self.metrics.bfd_session_state.labels(peer=peer).set(int(change.new))
        if change.old is State.UP:
            self.metrics.bfd_session_flaps.labels(peer=peer).inc()
        if change.new is State.UP:
            if self.held.pop(peer, None) is not None:
                log.info("BFD %s Up again: BGP session released", peer)
                self._torn.discard(peer)
                self._to_release.add(peer)
                self._work.bump()
            return BfdReaction.NONE
        # a session the speaker already tore down for BFD (while no daemon
        # was attached) failed while established: no graceful restart of the
        # peer's to wait for
        what = bfd_reaction(change, bgp_up or peer in self.bfd.held_by_speaker)
        if what is BfdReaction.NONE:
            return what
        self.last_reaction[peer] = what
        self.held[peer] = now
        self._work.bump()
        if what is not BfdReaction.KEEP_RESTART:
            self.metrics.bfd_teardowns.labels(peer=peer).inc()
            for callback in self._on_failure:
                callback(peer)
        log.warning(
            "BFD %s down (%s, remote %s, C bit %s): %s",
            peer,
            change.diag.name.lower(),
            change.remote_state.name.lower(),
            "set" if change.remote_cpi else "clear",
            {
                BfdReaction.TEARDOWN: "BGP session torn down, its routes removed",
                BfdReaction.ABORT_RESTART: "its graceful restart aborted, its routes removed",
                BfdReaction.KEEP_RESTART: "its graceful restart goes on (C bit clear)",
            }[what],
        )
        return what

    def bgp_up(self, peer: str) -> None:
        """A BGP session came up: one held down is torn down again (ExaBGP
        restarted, or its hold ended, while BFD stays down); not one whose
        bound just passed (ExaBGP's hold ends with it)."""
        self.expire(trio.current_time())
        if peer in self.held:
            self._torn.discard(peer)
            self._work.bump()

    def expire(self, now: float) -> None:
        """A peer held down for ``hold`` (``BFD_HOLD``) with BFD still down is released
        (the loop sends it with the next round, at most a tick late)."""
        for peer, since in list(self.held.items()):
            if now - since >= self.hold:
                del self.held[peer]
                log.warning(
                    "BFD %s still down after %.0f s: BGP session released (it may "
                    "come up without BFD; BFD Up, then Down, tears it down again)",
                    peer,
                    now - since,
                )
                self._torn.discard(peer)
                self._to_release.add(peer)
                self._work.bump()

    def speaker_restarted(self) -> None:
        """ExaBGP started or ended: it holds nothing down any more."""
        self._torn.clear()
        self._work.bump()

    # -- the loop ------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.follow(self.speaker.config)
        task_status.started()
        while True:
            seen = snapshot([self._work, self.speaker.configured])
            self.follow(self.speaker.config)
            self.expire(trio.current_time())
            await self._send()
            self._count()
            self._check_link()
            now = trio.current_time()
            self.expire(now)
            wait = min([TICK, *(since + self.hold - now for since in self.held.values())])
            with trio.move_on_after(max(wait, 0.0)):  # retries, counters, bounds
                await wait_any(seen)

    def follow(self, config: SpeakerConfig | None) -> None:
        """A session per neighbour with ``bfd``, the others ended (the host
        ends them with AdminDown)."""
        wanted = bfd_sessions(config)
        for peer, key in list(self.sessions.items()):
            if wanted.get(peer, (None,))[0] != key:
                del self.sessions[peer]
                self._settings.pop(peer, None)
                self.metrics.bfd_session_state.remove(peer)
                log.info("BFD %s: session ended (not asked for any more)", peer)
                if self.held.pop(peer, None) is not None:
                    self._torn.discard(peer)
                    self._to_release.add(peer)
                    self._work.bump()
        new: list[PeerKey] = []
        for peer, (key, settings) in wanted.items():
            if peer not in self.sessions:
                self.metrics.bfd_session_state.labels(peer=peer).set(int(State.DOWN))
                new.append(key)
            # (new timers: applied by a Poll Sequence)
            self.sessions[peer] = key
            self._settings[peer] = settings
        self.bfd.configure({self.sessions[p]: s for p, s in self._settings.items()})
        for key in new:  # what the speaker said of it before it was followed
            self.bfd.replay(key)

    async def _send(self) -> None:
        """The teardowns and releases ExaBGP has not taken yet (what it
        refuses is tried again on the next tick)."""
        speaker = self.speaker
        if not self.bfd.synced:
            return  # the sessions' states not known yet: nothing to release
        running = speaker.running
        if running and not self._was_running:
            # A (re)attached ExaBGP may hold down, from a previous run of the
            # daemon, peers that are not held now: release them (not those
            # whose failure is still to be acted on).
            self._to_release |= set(self.sessions) - set(self.held) - self.bfd.failing
        self._was_running = running
        if not running:
            return
        for peer in sorted(set(self.held) - self._torn):
            # ExaBGP's hold ends with the bound (a teardown sent again, to a
            # restarted ExaBGP, does not extend it); the release is sent too
            since = self.held[peer]
            hold = max(since + self.hold - trio.current_time(), 1.0)
            # taken only for the failure it was sent for: BFD Up while the
            # answer was awaited queued the release, and a failure after
            # that needs a teardown of its own
            if await speaker.teardown(peer, hold, code=CEASE_BFD_DOWN) and (
                self.held.get(peer) == since
            ):
                self._torn.add(peer)
        for peer in sorted(self._to_release - set(self.held)):
            if await speaker.release(peer):
                self._to_release.discard(peer)

    def _check_link(self) -> None:
        """Said once: sessions wanted, but no speaker serving them (a
        speaker process older than BFD in the speaker, kept through an
        upgrade of the daemon alone: no BFD until it is replaced)."""
        if self.bfd.synced or not self.sessions:
            self._unsynced_since = None
            return
        now = trio.current_time()
        if self._unsynced_since is None:
            self._unsynced_since = now
        elif now - self._unsynced_since >= LINK_WARN and not self._link_warned:
            self._link_warned = True
            log.warning(
                "BFD: no speaker serves %s for %.0f s: no BFD sessions for %s "
                "(a speaker process older than the daemon? replace it)",
                self.bfd.run_dir / "bfd.sock",
                now - self._unsynced_since,
                ", ".join(sorted(self.sessions)),
            )

    def _count(self) -> None:
        """The service's packet counters into the metrics (as increments)."""
        c = self.bfd.counters
        totals = {"in": c.packets_in, "out": c.packets_out, "send": c.send_errors}
        totals.update({f"discard:{k}": v for k, v in c.discarded.items()})
        for name, total in totals.items():
            delta = total - self._counted.get(name, 0)
            if delta < 0:  # a new speaker process: its own totals from 0
                self._counted[name] = total
            if delta <= 0:
                continue
            self._counted[name] = total
            if name in ("in", "out"):
                self.metrics.bfd_packets.labels(direction=name).inc(delta)
            else:
                self.metrics.bfd_errors.labels(reason=name.removeprefix("discard:")).inc(delta)
