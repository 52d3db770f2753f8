"""The EVPN controller: local state out to BGP, received routes into the kernel.

Three loops in one nursery:

* **announce**: whenever the node's pods, domains or blocks change (their
  notifiers), the paths of ``_local.local_paths`` go to the speaker, which
  sends ExaBGP the difference;
* **receive**: the speaker's events (updates, End-of-RIB, session changes,
  ExaBGP's own end) update the ``RouteTable``; a session that goes down
  takes its peer's routes with it, but when ExaBGP itself ended, every path
  is kept as stale until it is re-learned, its peer's End-of-RIB, or the
  stale timer;
* **program**: the kernel keys whose desired entry changed are programmed in
  one batch (``dataplane.apply_evpn``), touching only entries of ours.

At start-up the entries a previous run left in the kernel are adopted
(``dataplane.dump_evpn``), not flushed: nothing is removed until every
neighbour has sent its End-of-RIB or the stale timer ran out, so a restart of
the daemon does not interrupt traffic. A periodic repair compares the kernel
with what was programmed and fixes any drift.
"""

from __future__ import annotations

import logging
import math

import trio

from .. import dataplane
from .._errors import CnidError
from .._metrics import Metrics
from .._notify import wait_any
from .._tenants import DomainRegistry
from ..bgp import (
    EvpnPath,
    Speaker,
    SpeakerConfig,
    SpeakerDown,
    SpeakerEvent,
    StateEvent,
    UpdateEvent,
    route_type,
)
from ..cni._journal import Journal
from ..dataplane import EvpnRoute as KernelRoute
from ..dataplane import FdbEntry, KernelEvpn, NeighEntry
from ..ipam import AddressPool
from ._local import LocalBlock, LocalDomain, LocalPod, LocalState, local_paths
from ._remote import KernelEntry, NodeView, entry_key, node_view
from ._rib import STALE, RouteTable

log = logging.getLogger("cnid.evpn")

Key = tuple[object, ...]


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
    ) -> None:
        self.speaker = speaker
        self.identity = identity
        self.registry = registry
        self.journal = journal
        self.pool = pool
        self.node = node
        self.metrics = metrics
        self.stale_timeout = stale_timeout
        self.repair_interval = repair_interval
        self.local_interval = local_interval
        self.table = RouteTable(self._view())
        #: What the kernel holds of ours, by kernel key.
        self.installed: dict[Key, KernelEntry] = {}
        #: The installed routes by (table, prefix): what apply_evpn merges
        #: ECMP paths with, instead of reading the tables back.
        self._routes: dict[tuple[int, str], set[KernelRoute]] = {}
        self.adopting = True
        self.problems: list[str] = []
        self.kernel_failures: list[tuple[str, str]] = []
        self._eor: set[str] = set()
        self._adopt_deadline = math.inf
        self._stale_deadline = math.inf
        #: Peers whose session went down, and until when their paths are
        #: kept as stale (graceful restart's helper side).
        self._peer_deadlines: dict[str, float] = {}
        #: The speaker configuration whose neighbour set was last checked
        #: for peers that left (a scan of every path).
        self._departures_checked: SpeakerConfig | None = None
        self._send, self._receive = trio.open_memory_channel[tuple[float, SpeakerEvent]](math.inf)
        self._dirty = trio.Event()
        self._received_at: list[float] = []
        self._blocks: tuple[LocalBlock, ...] = ()
        self._blocks_version = -1
        self._full_pass = True
        speaker.listener = self._on_event

    # -- wiring ------------------------------------------------------------

    def _on_event(self, event: SpeakerEvent) -> None:
        self._send.send_nowait((trio.current_time(), event))

    def _view(self) -> NodeView:
        return node_view(self.identity.vtep, self.identity.router_id, self.registry.all())

    def _wake(self) -> None:
        self._dirty.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._adopt()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._program_loop)
            task_status.started()

    async def _adopt(self) -> None:
        """Take over what a previous run left in the kernel."""
        try:
            self._set_installed(await self._dump())
        except CnidError as exc:
            log.error("EVPN: cannot read the kernel's EVPN state: %s", exc.msg)
            self._set_installed({})
        self._adopt_deadline = trio.current_time() + self.stale_timeout
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
        found = await dataplane.dump_evpn(vnis, tables)
        out: dict[Key, KernelEntry] = {}
        entries: list[KernelEntry] = [*found.fdb, *found.neigh, *found.routes]
        for entry in entries:
            out[entry_key(entry)] = entry
        return out

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
        ident = self.identity
        return LocalState(
            router_id=ident.router_id,
            asn=ident.asn,
            vtep=ident.vtep,
            domains=tuple(domains),
            blocks=self._blocks,
            pods=tuple(pods),
        )

    async def _announce_loop(self) -> None:
        while True:
            seen = [
                (n, n.version)
                for n in (self.journal.notifier, self.registry.notifier, self.pool.notifier)
            ]
            try:
                state = await self.local_state()
            except CnidError as exc:
                log.warning("EVPN: local state unavailable (%s); retrying", exc.msg)
                await trio.sleep(1.0)
                continue
            paths, problems = local_paths(state)
            if problems != self.problems:
                for problem in problems:
                    log.warning("EVPN: %s", problem)
                self.problems = problems
            self.speaker.announce(paths)
            self._count_announced(paths)
            view = self._view()
            if view != self.table.view:
                self.table.set_view(view)
                self._full_pass = True
                self._wake()
            with trio.move_on_after(self.local_interval):
                await wait_any(seen)

    def _count_announced(self, paths: frozenset[EvpnPath]) -> None:
        counts = {2: 0, 3: 0, 5: 0}
        for p in paths:
            counts[route_type(p.route)] += 1
        for rtype, n in counts.items():
            self.metrics.evpn_announced.labels(type=str(rtype)).set(n)

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
            self._count_received()
            self._wake()

    def _apply(self, received_at: float, event: SpeakerEvent) -> None:
        table = self.table
        if isinstance(event, UpdateEvent):
            for reason, what in event.skipped:
                self.metrics.evpn_skipped.labels(reason="malformed").inc()
                log.warning("EVPN: from %s: %s skipped: %s", event.peer, what, reason)
            for rp in event.announced:
                why = table.announce(event.peer, rp)
                if why:
                    log.debug("EVPN: from %s: %s not programmed: %s", event.peer, rp.path, why)
            for route in event.withdrawn:
                table.withdraw(event.peer, route)
            if event.announced or event.withdrawn:
                self._received_at.append(received_at)
            if event.eor:
                self._eor.add(event.peer)
                self._peer_deadlines.pop(event.peer, None)
                dropped = table.drop_stale(event.peer)
                log.info("EVPN: End-of-RIB from %s (%d stale paths dropped)", event.peer, dropped)
        elif isinstance(event, StateEvent):
            self.metrics.bgp_session.labels(peer=event.peer).set(1 if event.state == "up" else 0)
            if event.state == "down":
                self._eor.discard(event.peer)
                self._peer_down(event.peer)
        elif isinstance(event, SpeakerDown):
            for peer in self.speaker.peers:
                self.metrics.bgp_session.labels(peer=peer).set(0)
            kept = table.make_stale()
            self._eor.clear()
            self._stale_deadline = trio.current_time() + self.stale_timeout
            log.warning(
                "EVPN: ExaBGP ended (%s): %d paths kept as stale until re-learned",
                event.reason,
                kept,
            )
        for rtype, n in table.skip_counts.items():
            self.metrics.evpn_skipped.labels(reason=rtype).inc(n)
        table.skip_counts.clear()

    def _peer_down(self, peer: str) -> None:
        """A session went down (a NOTIFICATION, a hold timer, a closed
        connection). A peer that is still a neighbour most likely restarts
        (its daemon, a rolling update): its paths stay as stale copies, in
        the kernel, until it is back with its End-of-RIB or ``stale_timeout``
        ran out (graceful restart's helper, RFC 4724, for whatever ended the
        session: the speakers of a full mesh are all ours). A peer that is
        no neighbour any more (its Node deleted) goes at once, see
        ``_drop_departed``."""
        table = self.table
        if self.stale_timeout <= 0 or peer not in self._neighbors():
            gone = table.drop_source(peer) + table.drop_stale(peer)
            self._peer_deadlines.pop(peer, None)
            if gone:
                log.info("EVPN: session to %s down: its %d paths removed", peer, gone)
            return
        kept = table.make_stale(peer)
        if kept or peer in self._peer_deadlines:
            self._peer_deadlines.setdefault(peer, trio.current_time() + self.stale_timeout)
        if kept:
            log.info(
                "EVPN: session to %s down: its %d paths kept as stale until it is back "
                "with its End-of-RIB (%.0f s at most)",
                peer,
                kept,
                self.stale_timeout,
            )

    def _neighbors(self) -> set[str]:
        config = self.speaker.config
        return {n.address for n in config.neighbors} if config is not None else set()

    def _drop_stale_peers(self, now: float) -> None:
        """Stale paths of peers that did not come back in time, and every
        path of peers that are no neighbours any more."""
        for peer, deadline in list(self._peer_deadlines.items()):
            if now >= deadline:
                del self._peer_deadlines[peer]
                dropped = self.table.drop_stale(peer)
                if dropped:
                    log.info("EVPN: %s not back in time: its %d stale paths dropped", peer, dropped)
        config = self.speaker.config
        if config is None or config is self._departures_checked:
            return  # neighbours only leave with a new configuration: no scan per pass
        self._departures_checked = config
        neighbors = self._neighbors()
        for source in self.table.sources():
            peer = source.removeprefix(STALE)
            if peer in neighbors:
                continue
            gone = self.table.drop_source(source)
            self._peer_deadlines.pop(peer, None)
            log.info("EVPN: %s is no neighbour any more: its %d paths removed", peer, gone)

    def _count_received(self) -> None:
        for rtype, n in self.table.counts().items():
            self.metrics.evpn_received.labels(type=str(rtype)).set(n)

    # -- program ---------------------------------------------------------------

    def _adoption_over(self) -> bool:
        if self.speaker.config is None:
            # Not told its neighbours yet (the peering starts after this
            # controller): "no neighbours" would sweep what a restarted
            # node adopted before its peers had a chance to resend it.
            return trio.current_time() >= self._adopt_deadline
        neighbors = self._neighbors()
        if not neighbors:
            return True
        if neighbors <= self._eor:
            return True
        return trio.current_time() >= self._adopt_deadline

    async def _program_loop(self) -> None:
        next_repair = trio.current_time() + self.repair_interval
        delay = 1.0
        while True:
            with trio.move_on_after(1.0):
                await self._dirty.wait()
            self._dirty = trio.Event()
            now = trio.current_time()
            if now >= self._stale_deadline:
                dropped = self.table.drop_stale()
                self._stale_deadline = math.inf
                if dropped:
                    log.info("EVPN: stale timer: %d paths not re-learned dropped", dropped)
            self._drop_stale_peers(now)
            sweep = False
            if self.adopting and self._adoption_over():
                self.adopting = False
                sweep = True
                log.info("EVPN: routes re-learned: sweeping what was not")
            if now >= next_repair:
                next_repair = now + self.repair_interval
                try:
                    kernel = await self._dump()
                except CnidError as exc:
                    log.warning("EVPN: repair: %s", exc.msg)
                else:
                    if kernel != self.installed:
                        log.warning("EVPN: kernel drifted from what was programmed: repairing")
                        self._set_installed(kernel)
                        sweep = True
            try:
                await self._program(sweep)
                delay = 1.0
            except CnidError as exc:
                log.error("EVPN: programming the kernel: %s; retrying in %.0fs", exc.msg, delay)
                self._full_pass = True
                await trio.sleep(delay)
                delay = min(delay * 2, 30.0)
                self._wake()
            except Exception:
                # A bug of ours must not stop the node's EVPN for good: say
                # so loudly, start from the kernel's truth, try again.
                log.exception("EVPN: programming the kernel failed; retrying in %.0fs", delay)
                try:
                    self._set_installed(await self._dump())
                except CnidError:
                    pass
                self._full_pass = True
                await trio.sleep(delay)
                delay = min(delay * 2, 30.0)
                self._wake()

    async def _program(self, sweep: bool) -> None:
        table = self.table
        dirty = table.take_dirty()
        if self._full_pass or sweep:
            dirty |= set(self.installed) | set(table.desired())
            self._full_pass = False
        add: list[KernelEntry] = []
        remove: list[KernelEntry] = []
        for key in dirty:
            want = table.chosen(key)
            have = self.installed.get(key)
            if want == have:
                continue
            if have is not None and (want is not None or not self.adopting):
                remove.append(have)
            if want is not None:
                add.append(want)
        received, self._received_at = self._received_at, []
        if add or remove:
            touched = {(e.table, e.prefix) for e in (*add, *remove) if isinstance(e, KernelRoute)}
            now = {k: frozenset(self._routes.get(k, ())) for k in touched}
            result = await dataplane.apply_evpn(_kernel(add), _kernel(remove), now)
            for entry in remove:
                self._uninstall(entry)
            for entry in add:
                self._install(entry)
            if result.failed:
                self.kernel_failures = list(result.failed)
                self.metrics.evpn_kernel_errors.inc(len(result.failed))
                for what, error in result.failed[:10]:
                    log.error("EVPN: kernel refused %s: %s", what, error)
                # The kernel is the truth: read it back, try again later.
                self._set_installed(await self._dump())
                self._full_pass = True
            else:
                self.kernel_failures = []
        done = trio.current_time()
        for t in received:
            self.metrics.evpn_programming.observe(done - t)
        for kind, n in _kinds(self.installed).items():
            self.metrics.evpn_kernel_entries.labels(kind=kind).set(n)

    def _set_installed(self, entries: dict[Key, KernelEntry]) -> None:
        self.installed = {}
        self._routes = {}
        for entry in entries.values():
            self._install(entry)

    def _install(self, entry: KernelEntry) -> None:
        key = entry_key(entry)
        old = self.installed.get(key)
        if old is not None:
            self._uninstall(old)
        self.installed[key] = entry
        if isinstance(entry, KernelRoute):
            self._routes.setdefault((entry.table, entry.prefix), set()).add(entry)

    def _uninstall(self, entry: KernelEntry) -> None:
        key = entry_key(entry)
        if self.installed.get(key) == entry:
            del self.installed[key]
        if isinstance(entry, KernelRoute):
            routes = self._routes.get((entry.table, entry.prefix))
            if routes is not None:
                routes.discard(entry)
                if not routes:
                    del self._routes[(entry.table, entry.prefix)]


def _kernel(entries: list[KernelEntry]) -> KernelEvpn:
    return KernelEvpn(
        fdb=frozenset(e for e in entries if isinstance(e, FdbEntry)),
        neigh=frozenset(e for e in entries if isinstance(e, NeighEntry)),
        routes=frozenset(e for e in entries if isinstance(e, KernelRoute)),
    )


def _kinds(installed: dict[Key, KernelEntry]) -> dict[str, int]:
    out = {"fdb": 0, "flood": 0, "neigh": 0, "route": 0}
    for key in installed:
        out[str(key[0])] += 1
    return out
