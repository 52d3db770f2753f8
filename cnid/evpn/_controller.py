"""The EVPN controller: local state out to BGP, received routes into the kernel.

Four loops in one nursery:

* **announce**: whenever the node's pods, domains or blocks change (their
  notifiers), the paths of ``_local.local_paths`` go to the speaker, which
  sends ExaBGP the difference;
* **receive**: the speaker's events (updates, End-of-RIB, session changes,
  ExaBGP's own end) update the ``RouteTable``; what a session that went
  down leaves behind is ``_graceful``'s, a peer over its maximum
  ``_max_prefix``'s;
* **program**: the kernel keys whose desired entry changed are programmed in
  one batch (``apply_evpn``), touching only entries of ours (``_installed``
  keeps what the kernel holds of ours, and what it refused, retried with
  backoff, never on every pass);
* **teardowns**: the sessions ``_max_prefix`` ends;
* **BFD** (with the speaker's ``BfdLink``): ``_bfd``'s sessions for the neighbours
  that ask for it; a BFD failure removes the peer's paths here, in the
  receive loop (in order with the BGP events), and the guard's loop tears
  its BGP session down and holds it down until BFD is Up again (at most
  ``BFD_HOLD``).

The input policy (``_remote``) keeps received routes off what the node owns.

At start-up the entries a previous run left in the kernel are adopted
(``dump_evpn``), not flushed: nothing is removed until every neighbour has
sent its End-of-RIB or the stale timer ran out, so a restart of the daemon
does not interrupt traffic. A periodic repair compares the kernel with what
was programmed and fixes any drift.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterable, Mapping
from typing import Protocol

import msgspec
import trio

from .. import dataplane
from ..bfd import StateChange
from ..bgp import (
    SKIP_REASONS,
    BfdLink,
    Speaker,
    SpeakerDown,
    SpeakerEvent,
    SpeakerResync,
    SpeakerUp,
    StateEvent,
    UpdateEvent,
)
from ..core._errors import CnidError
from ..core._journal import Journal
from ..core._metrics import Metrics
from ..core._notify import Notifier
from ..core._reconcile import Backoff, reconcile_forever
from ..core._tenants import DomainRegistry
from ..dataplane import ApplyResult, KernelEvpn
from ..dataplane import EvpnRoute as KernelRoute
from ..ipam import AddressPool
from ._bfd import BfdGuard, BfdReaction
from ._graceful import GracefulRestart
from ._installed import Installed, Key, Refusal, Refusals, kernel_batch, route_failed
from ._local import (
    LocalBlock,
    LocalDomain,
    LocalPod,
    LocalState,
    RdOwner,
    local_macs,
    local_paths,
    rd_indexes,
)
from ._max_prefix import MaxPrefix
from ._mobility import Mobility
from ._remote import KernelEntry, NodeView, entry_key, node_view
from ._rib import RouteTable

#: Reasons a route is not programmed that say something is wrong with the
#: route (a conflict, a hijack, a broken peer): logged as warnings, once.
POLICY_SKIPS = frozenset(
    {"local-ip", "local-mac", "own-block", "service-cidr", "bad-next-hop", "bad-router-mac"}
)

log = logging.getLogger("cnid.evpn")

#: The shortest time between two kernel passes (``_program_pass``).
PASS_INTERVAL = 0.05


class EvpnKernel(Protocol):
    """The kernel's EVPN state, as the controller uses it: the
    ``cnid.dataplane`` module itself, or a fake."""

    async def apply_evpn(
        self,
        add: KernelEvpn,
        remove: KernelEvpn,
        routes_now: Mapping[tuple[int, str], Iterable[KernelRoute]] | None = None,
    ) -> ApplyResult: ...

    async def dump_evpn(self, vnis: Iterable[int], tables: Iterable[int]) -> KernelEvpn: ...


class Identity:
    """Who the node is on the fabric."""

    def __init__(self, router_id: str, asn: int, vtep: str) -> None:
        self.router_id = router_id
        self.asn = asn
        self.vtep = vtep


class EvpnController:
    def __init__(
        self,
        *,
        speaker: Speaker,
        identity: Identity,
        registry: DomainRegistry,
        journal: Journal,
        pool: AddressPool,
        node: str,
        metrics: Metrics,
        stale_timeout: float = 120.0,
        repair_interval: float = 30.0,
        local_interval: float = 30.0,
        service_cidrs: tuple[str, ...] = ("10.96.0.0/12",),
        max_prefix: int = 0,
        max_prefix_action: str = "warning",
        max_prefix_restart: float = 60.0,
        dup_max_moves: int = 5,
        dup_time: float = 180.0,
        kernel: EvpnKernel = dataplane,
        bfd: BfdLink | None = None,
    ) -> None:
        self.speaker = speaker
        self.identity = identity
        self.registry = registry
        self.journal = journal
        self.pool = pool
        self.node = node
        self.metrics = metrics
        self.kernel = kernel
        self.repair_interval = repair_interval
        self.local_interval = local_interval
        self.service_cidrs = tuple(service_cidrs)
        self.table = RouteTable(self._view())
        self.graceful = GracefulRestart(self.table, stale_timeout)
        self.limits = MaxPrefix(
            self.table, metrics, max_prefix, max_prefix_action, max_prefix_restart
        )
        #: MAC mobility: local sequences, moves, duplicates (``_mobility``).
        self.mobility = Mobility(identity.vtep, identity.router_id, dup_max_moves, dup_time)
        #: Bumped when a local MAC's sequence was raised (to announce it).
        self._sequences = Notifier()
        #: The pods' (L2VNI, MAC) -> IP, as last announced.
        self._local_ips: dict[tuple[int, str], str] = {}
        #: What the kernel holds of ours, and the keys it refused.
        self.kernel_state = Installed()
        self.refusals = Refusals()
        self.adopting = True
        self.problems: list[str] = []
        self.kernel_failures: list[tuple[str, str]] = []
        self._send, self._receive = trio.open_memory_channel[
            tuple[float, SpeakerEvent | StateChange]
        ](math.inf)
        #: Bumped when the program loop has work (received routes, a new view).
        self._work = Notifier()
        self._next_repair = math.inf
        self._received_at: list[float] = []
        self._blocks: tuple[LocalBlock, ...] = ()
        self._blocks_version = -1
        #: The route distinguisher indexes handed out (kept while their VRF
        #: or VNI exists).
        self.rd_indexes: dict[RdOwner, int] = {}
        self._full_pass = True
        #: The shortest time between the starts of two kernel passes.
        self.pass_interval = PASS_INTERVAL
        self._last_pass = -math.inf
        speaker.subscribe(self._on_event)
        #: BFD for the neighbours that ask for it (``_bfd``).
        self.bfd: BfdGuard | None = None
        if bfd is not None:
            self.bfd = BfdGuard(bfd, speaker, metrics)
            bfd.subscribe(self._on_event)

    # -- what the views and test beds read -------------------------------------

    @property
    def installed(self) -> dict[Key, KernelEntry]:
        """What the kernel holds of ours, by kernel key."""
        return self.kernel_state.entries

    @property
    def refused(self) -> dict[Key, Refusal]:
        return self.refusals.by_key

    @property
    def held_down(self) -> dict[str, float]:
        """Peers torn down for their maximum, and until when."""
        return self.limits.held_down

    @property
    def stale_timeout(self) -> float:
        return self.graceful.stale_timeout

    @stale_timeout.setter
    def stale_timeout(self, value: float) -> None:
        self.graceful.stale_timeout = value

    def set_max_prefix(self, limit: int, action: str = "warning", restart: float = 60.0) -> None:
        """FRR's ``maximum-prefix limit [warning-only | restart M]``."""
        self.limits.configure(limit, action, restart)

    def refusal_of(self, entries: tuple[KernelEntry, ...]) -> str:
        """The kernel's refusal of one of a path's entries ("" if none)."""
        return self.refusals.of(entries)

    # -- wiring ------------------------------------------------------------

    def _on_event(self, event: SpeakerEvent | StateChange) -> None:
        self._send.send_nowait((trio.current_time(), event))

    def _view(self, state: LocalState | None = None) -> NodeView:
        by_name = {d.name: d for d in self.registry.all()}
        pods: list[tuple[str, str, str]] = []
        blocks: list[tuple[int, str]] = []
        if state is not None:
            pods = [(p.domain, p.mac, p.ip) for p in state.pods]
            blocks = [(b.vrf, b.cidr) for b in state.blocks]
        return node_view(
            self.identity.vtep,
            self.identity.router_id,
            list(by_name.values()),
            asn=self.identity.asn,
            pods=pods,
            blocks=blocks,
            service_cidrs=self.service_cidrs,
        )

    def _wake(self) -> None:
        self._work.bump()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._adopt()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._program_loop)
            nursery.start_soon(self._teardown_loop)
            if self.bfd is not None:
                await nursery.start(self.bfd.run)
            task_status.started()

    async def _adopt(self) -> None:
        """Take over what a previous run left in the kernel."""
        try:
            self.kernel_state.replace(await self._dump())
        except CnidError as exc:
            log.error("EVPN: cannot read the kernel's EVPN state: %s", exc.msg)
            self.kernel_state.replace({})
        self.graceful.start_adoption(trio.current_time())
        self._next_repair = trio.current_time() + self.repair_interval
        if self.installed:
            log.info(
                "EVPN: adopted %d kernel entries of a previous run; kept until the routes "
                "are re-learned (End-of-RIB from every neighbour, or %.0fs)",
                len(self.installed),
                self.stale_timeout,
            )

    async def _dump(self) -> dict[Key, KernelEntry]:
        domains = self.registry.all()
        vnis = [a.vni for d in domains for a in d.attachments]
        tables = [d.table for d in domains]
        found = await self.kernel.dump_evpn(vnis, tables)
        entries: list[KernelEntry] = [*found.fdb, *found.neigh, *found.routes]
        return {entry_key(entry): entry for entry in entries}

    # -- announce --------------------------------------------------------------

    async def local_state(self) -> LocalState:
        domains = []
        for d in self.registry.all():
            links = self.registry.links(d.name)
            domains.append(LocalDomain(d, links.router_mac or "" if links else ""))
        if self._blocks_version != self.pool.notifier.version:
            version = self.pool.notifier.version
            records = await self.pool.store.list_blocks(node=self.node)
            self._blocks = tuple(LocalBlock(r.vrf, r.cidr) for r in records)
            self._blocks_version = version
        pods = []
        for rec in self.journal.all():
            if rec.state != "ready" or not rec.address or rec.result is None:
                continue
            mac = next((i.mac for i in rec.result.interfaces if i.sandbox), "")
            if mac:
                pods.append(LocalPod(rec.domain, mac.lower(), rec.address))
        with contextlib.suppress(CnidError):  # local_paths reports it
            self.rd_indexes = rd_indexes((ld.domain for ld in domains), self.rd_indexes)
        ident = self.identity
        return LocalState(
            router_id=ident.router_id,
            asn=ident.asn,
            vtep=ident.vtep,
            domains=tuple(domains),
            blocks=self._blocks,
            pods=tuple(pods),
            rd_indexes=self.rd_indexes,
        )

    async def _announce_loop(self) -> None:
        await reconcile_forever(
            self._announce,
            name="EVPN: local state",
            interval=self.local_interval,
            changes=(
                self.journal.notifier,
                self.registry.notifier,
                self.pool.notifier,
                self._sequences,
            ),
            backoff=Backoff(1.0, 30.0, jitter=False),
            logger=log,
        )

    async def _announce(self) -> None:
        """The node's paths to the speaker; the view of what the node owns
        (pods, blocks) to the route table."""
        state = await self.local_state()
        mine = local_macs(state)
        self._local_ips = mine
        copies = {
            key: self.mobility.copies(self.table.mac_paths(key), ip) for key, ip in mine.items()
        }
        self.mobility.set_local(mine, copies, trio.current_time())
        self._count_mobility()
        state = msgspec.structs.replace(state, mac_seqs=self.mobility.local_seqs())
        paths, problems = local_paths(state)
        if problems != self.problems:
            for problem in problems:
                log.warning("EVPN: %s", problem)
            self.problems = problems
        self.speaker.announce(paths)
        # The speaker owns what is announced, and its count by type.
        for rtype, n in self.speaker.announced_by_type().items():
            self.metrics.evpn_announced.labels(type=str(rtype)).set(n)
        view = self._view(state)
        if view != self.table.view:
            self.table.set_view(view)
            self._count_skips()  # a new pod or block can make received routes conflict
            self._full_pass = True
            self._wake()

    # -- receive ---------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            first = await self._receive.receive()
            batch = [first]
            while True:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            for received_at, event in batch:
                self._apply(received_at, event)
            self._observe_macs()
            self._log_skips()
            for rtype, n in self.table.counts().items():
                self.metrics.evpn_received.labels(type=str(rtype)).set(n)
            self._wake()

    def _log_skips(self) -> None:
        """Each path's reason for not being programmed, once (when it is new
        or changes): a peer resending a bad route costs no log line."""
        skips, self.table.new_skips = self.table.new_skips, []
        for source, rp, kind, why in skips[:100]:
            level = logging.WARNING if kind in POLICY_SKIPS else logging.DEBUG
            log.log(level, "EVPN: from %s: %s not programmed: %s", source, rp.path.route, why)
        if len(skips) > 100:
            log.warning(
                "EVPN: %d more routes not programmed (cnictl evpn routes)", len(skips) - 100
            )

    def _apply(self, received_at: float, event: SpeakerEvent | StateChange) -> None:
        now = trio.current_time()
        bfd = self.bfd
        if isinstance(event, UpdateEvent) and (
            self.limits.holds_down(event.peer, now)
            or (bfd is not None and bfd.holds_down(event.peer))
        ):
            pass  # torn down (its maximum, BFD): what it sent until then is ignored
        elif isinstance(event, UpdateEvent):
            self._apply_update(received_at, event)
        elif isinstance(event, StateEvent):
            self._show_sessions()
            if event.state == "down":
                session = self.speaker.peers.get(event.peer)
                restart_time = session.restart_time if session is not None else 0
                self.graceful.session_down(event.peer, self.speaker.config, now, restart_time)
            elif event.state == "up" and bfd is not None:
                bfd.bgp_up(event.peer)
        elif isinstance(event, SpeakerDown | SpeakerUp):
            if isinstance(event, SpeakerDown):
                self._show_sessions()
                self.graceful.speaker_down(event.reason, now)
            if bfd is not None:
                bfd.speaker_restarted()
        elif isinstance(event, SpeakerResync):
            # updates may have been missed: what is not replayed goes
            self.graceful.speaker_down(event.reason, now)
        elif isinstance(event, StateChange) and bfd is not None:
            self._bfd_changed(event, now)
        self._count_skips()

    def _bfd_changed(self, change: StateChange, now: float) -> None:
        """A BFD session changed: a failure removes the peer's paths at once
        (``_bfd.reaction``: not for AdminDown, nor during a graceful restart
        with the C bit clear); the kernel entries follow in the next pass."""
        assert self.bfd is not None
        peer = change.key.peer
        session = self.speaker.peers.get(peer)
        what = self.bfd.changed(change, session is not None and session.state == "up", now)
        if what in (BfdReaction.TEARDOWN, BfdReaction.ABORT_RESTART):
            gone = self.table.drop_source(peer) + self.table.drop_stale(peer)
            self.graceful.forget(peer)
            log.warning("EVPN: BFD to %s down: its %d paths removed", peer, gone)

    def _count_skips(self) -> None:
        for reason, n in self.table.skip_counts.items():
            self.metrics.evpn_skipped.labels(reason=reason).inc(n)
        self.table.skip_counts.clear()

    def _apply_update(self, received_at: float, event: UpdateEvent) -> None:
        table = self.table
        for reason, what in event.skipped:
            # as-loop (the speaker's): expected (a node's own routes come
            # back through the rack's other leaf), so not a warning
            label = reason if reason in SKIP_REASONS else "malformed"
            self.metrics.evpn_skipped.labels(reason=label).inc()
            level = logging.DEBUG if label in SKIP_REASONS else logging.WARNING
            log.log(level, "EVPN: from %s: %s skipped: %s", event.peer, what, reason)
        for rp in event.announced:
            table.announce(event.peer, rp)
        for route in event.withdrawn:
            table.withdraw(event.peer, route)
        if event.announced and self.limits.check(event.peer, trio.current_time()):
            self.graceful.forget(event.peer)
        if event.announced or event.withdrawn:
            self._received_at.append(received_at)
        if event.eor:
            self.graceful.end_of_rib(event.peer)

    def _observe_macs(self) -> None:
        """The MACs whose received copies changed, to ``_mobility``: a local
        MAC outbid by another VTEP is announced again with a higher
        sequence; moves and duplicates are counted."""
        now = trio.current_time()
        raised = False
        for key in self.table.take_touched_macs():
            paths = self.table.mac_paths(key)
            raised |= self.mobility.observe(key, paths, self._local_ips.get(key, ""), now)
        self._count_mobility()
        if raised:
            self._sequences.bump()

    def _count_mobility(self) -> None:
        mobility, metrics = self.mobility, self.metrics
        if mobility.new_moves:
            metrics.evpn_mac_moves.inc(mobility.new_moves)
            mobility.new_moves = 0
        if mobility.new_duplicates:
            metrics.evpn_mac_duplicates.inc(len(mobility.new_duplicates))
            mobility.new_duplicates = []
        metrics.evpn_mac_duplicates_flagged.set(mobility.flagged_count)

    def _show_sessions(self) -> None:
        """The session gauge, from the speaker's peers (the one record of
        which session is up: it saw the event first)."""
        for address, peer in self.speaker.peers.items():
            self.metrics.bgp_session.labels(peer=address).set(1 if peer.state == "up" else 0)

    async def _teardown_loop(self) -> None:
        await self.limits.send_teardowns(self.speaker)

    # -- program ---------------------------------------------------------------

    async def _program_loop(self) -> None:
        await reconcile_forever(
            self._program_pass,
            name="EVPN: programming the kernel",
            interval=1.0,  # the timers' tick: stale paths, adoption, repair, refusals
            changes=(self._work,),
            backoff=Backoff(1.0, 30.0, jitter=False),
            on_error=self._failed,
            logger=log,
        )

    async def _program_pass(self) -> None:
        # In a burst of updates (a session coming up with a full table) the
        # passes are at least PASS_INTERVAL apart, so that each takes in
        # what arrived meanwhile (hundreds of entries, not tens: the kernel
        # call's fixed cost is paid a few times a second, not per UPDATE);
        # a lone update, after a quiet spell, is programmed at once.
        wait = self._last_pass + self.pass_interval - trio.current_time()
        if wait > 0:
            await trio.sleep(wait)
        self._last_pass = trio.current_time()
        now = trio.current_time()
        config = self.speaker.config
        self.graceful.expire(config, now)
        self.mobility.expire(now)
        self._observe_macs()
        unlearned = full = False
        if self.adopting and self.graceful.adoption_over(config, now):
            self.adopting = False
            unlearned = True
            log.info("EVPN: routes re-learned: sweeping what was not")
        if now >= self._next_repair:
            self._next_repair = now + self.repair_interval
            full = await self._repair()
        try:
            await self._program(full, unlearned)
        except CnidError:
            raise
        except Exception as exc:
            # A bug of ours must not stop the node's EVPN for good (unlike
            # the toolkit's other loops, where it ends the daemon: here the
            # pods keep running and need their routes): say so loudly,
            # start from the kernel's truth, and try again with backoff.
            log.exception("EVPN: programming the kernel failed")
            with contextlib.suppress(CnidError):
                self.kernel_state.replace(await self._dump())
            raise CnidError(f"unexpected {type(exc).__name__} (see above)") from exc

    def _failed(self, exc: CnidError) -> None:
        """After a failed pass, the next one compares every key."""
        self._full_pass = True

    async def _repair(self) -> bool:
        """Whether the kernel drifted from what was programmed (then what it
        holds is taken as installed, and the next pass is a sweep)."""
        try:
            kernel = await self._dump()
        except CnidError as exc:
            log.warning("EVPN: repair: %s", exc.msg)
            return False
        if kernel == self.installed:
            return False
        log.warning("EVPN: kernel drifted from what was programmed: repairing")
        self.kernel_state.replace(kernel)
        return True

    async def _program(self, full: bool, unlearned: bool = False) -> None:
        """``full``: compare every key (the kernel drifted, a pass failed);
        ``unlearned``: the adoption is over: the installed keys that no path
        asks for go too (every other key was dirty when its path came)."""
        table = self.table
        dirty = table.take_dirty()
        if self._full_pass or full:
            dirty |= set(self.installed) | set(table.desired())
            self._full_pass = False
        elif unlearned:
            chosen = table.chosen
            dirty.update(key for key in self.installed if chosen(key) is None)
        self.refusals.hold_back(dirty, table.chosen, trio.current_time())
        add: list[KernelEntry] = []
        remove: list[KernelEntry] = []
        keys: list[Key] = []  # the key of each entry added
        for key in dirty:
            want = table.chosen(key)
            have = self.kernel_state.get(key)
            if want == have:
                self.refusals.done(key)
                continue
            if have is not None and (want is not None or not self.adopting):
                remove.append(have)
            if want is not None:
                add.append(want)
                keys.append(key)
        received, self._received_at = self._received_at, []
        if add or remove:
            await self._apply_batch(add, remove, keys)
        done = trio.current_time()
        for t in received:
            self.metrics.evpn_programming.observe(done - t)
        for kind, n in self.kernel_state.kinds().items():
            self.metrics.evpn_kernel_entries.labels(kind=kind).set(n)
        for error, n in self.refusals.by_error().items():
            self.metrics.evpn_refused.labels(error=error).set(n)

    async def _apply_batch(
        self, add: list[KernelEntry], remove: list[KernelEntry], keys: list[Key]
    ) -> None:
        """``keys``: the route table's key of each entry of ``add`` (kept as
        the installed record's key: one tuple for both records, not two)."""
        routes_now = self.kernel_state.routes_now(add, remove)
        result = await self.kernel.apply_evpn(kernel_batch(add), kernel_batch(remove), routes_now)
        refused = {(op, entry): why for op, entry, why in result.refused}
        installed = self.kernel_state
        removed, added = remove, list(zip(add, keys, strict=True))
        if refused:  # else every entry is done (no lookup per entry)
            removed = [e for e in remove if ("remove", e) not in refused]
            added = [(e, key) for e, key in added if ("add", e) not in refused]
        for entry in removed:
            installed.remove(entry)
        for entry, key in added:
            installed.add(entry, key)
        self.refusals.record([*add, *remove], refused, trio.current_time())
        if result.failed:
            self.kernel_failures = list(result.failed)
            self.metrics.evpn_kernel_errors.inc(len(result.failed))
            if any(route_failed(what) for what, _ in result.failed):
                # An ECMP route's paths are merged with what was
                # programmed: read the kernel back before the retry.
                self.kernel_state.replace(await self._dump())
        else:
            self.kernel_failures = []


__all__ = ["EvpnController", "EvpnKernel", "Identity"]
