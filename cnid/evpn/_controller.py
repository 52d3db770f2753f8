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
  one batch (``dataplane.apply_evpn``), touching only entries of ours. An
  entry the kernel refuses is logged once (and again only if the refusal
  changes), shown as ``refused: <errno>`` and retried with backoff (1 s
  doubling to 5 minutes), never on every pass.

The input policy (``_remote``) keeps received routes off what the node owns;
a per-peer maximum (``max_prefix``, FRR's ``maximum-prefix``) either holds
the paths beyond it back (``warning``) or tears the session down and keeps
it down for ``max_prefix_restart`` seconds (``restart``).

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

#: Reasons a route is not programmed that say something is wrong with the
#: route (a conflict, a hijack, a broken peer): logged as warnings, once.
POLICY_SKIPS = frozenset(
    {"local-ip", "local-mac", "own-block", "service-cidr", "bad-next-hop", "bad-router-mac"}
)
MAX_PREFIX_ACTIONS = ("warning", "restart")
_RETRY_MIN, _RETRY_MAX = 1.0, 300.0


class Refusal:
    """A kernel entry the kernel refused: why, and when to try again."""

    __slots__ = ("delay", "entry", "error", "retry_at")

    def __init__(self, entry: KernelEntry | None, error: str, retry_at: float) -> None:
        self.entry = entry
        self.error = error
        self.retry_at = retry_at
        self.delay = _RETRY_MIN


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
        service_cidrs: tuple[str, ...] = ("10.96.0.0/12",),
        max_prefix: int = 0,
        max_prefix_action: str = "warning",
        max_prefix_restart: float = 60.0,
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
        self.service_cidrs = tuple(service_cidrs)
        self.table = RouteTable(self._view())
        self.set_max_prefix(max_prefix, max_prefix_action, max_prefix_restart)
        #: Kernel keys the kernel refused, until they are programmed.
        self.refused: dict[Key, Refusal] = {}
        #: Peers over their maximum: (the warning was logged) or held down
        #: until when (restart).
        self._over_limit: set[str] = set()
        self.held_down: dict[str, float] = {}
        self._teardowns: list[str] = []
        self._refused_errors: set[str] = set()
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
        self._teardown_wanted = trio.Event()
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
            pods=pods,
            blocks=blocks,
            service_cidrs=self.service_cidrs,
        )

    def _wake(self) -> None:
        self._dirty.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self._adopt()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._announce_loop)
            nursery.start_soon(self._receive_loop)
            nursery.start_soon(self._program_loop)
            nursery.start_soon(self._teardown_loop)
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
            view = self._view(state)
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
            self._log_skips()
            self._count_received()
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

    # -- maximum prefixes ------------------------------------------------------

    def set_max_prefix(self, limit: int, action: str = "warning", restart: float = 60.0) -> None:
        """FRR's ``maximum-prefix limit [warning-only | restart M]``."""
        if action not in MAX_PREFIX_ACTIONS:
            raise ValueError(f"max_prefix_action {action!r}")
        self.max_prefix = limit
        self.max_prefix_action = action
        self.max_prefix_restart = restart
        self.table.set_max_paths(limit if action == "warning" else 0)

    def _check_limit(self, peer: str) -> None:
        """FRR's ``maximum-prefix``: ``warning`` logs once and holds the
        paths beyond the limit back (the RouteTable); ``restart`` drops the
        peer's paths and tears the session down for ``max_prefix_restart``
        seconds."""
        if not self.max_prefix:
            return
        count = self.table.source_count(peer)
        held = self.table.held_count(peer)
        if count + held <= self.max_prefix:
            if count < self.max_prefix:
                self._over_limit.discard(peer)
            return
        if self.max_prefix_action == "warning":
            if peer not in self._over_limit:
                self._over_limit.add(peer)
                self.metrics.evpn_max_prefix.labels(peer=peer, action="warning").inc()
                log.warning(
                    "EVPN: %s sent more than its maximum of %d prefixes: the rest not accepted",
                    peer,
                    self.max_prefix,
                )
            return
        until = trio.current_time() + self.max_prefix_restart
        self.held_down[peer] = until
        gone = self.table.drop_source(peer)
        self._peer_deadlines.pop(peer, None)
        self.metrics.evpn_max_prefix.labels(peer=peer, action="restart").inc()
        log.warning(
            "EVPN: %s sent more than its maximum of %d prefixes: session torn down, its %d "
            "paths removed, no session for %.0f s",
            peer,
            self.max_prefix,
            gone,
            self.max_prefix_restart,
        )
        self._teardowns.append(peer)
        self._teardown_wanted.set()

    async def _teardown_loop(self) -> None:
        while True:
            await self._teardown_wanted.wait()
            self._teardown_wanted = trio.Event()
            peers, self._teardowns = self._teardowns, []
            for peer in peers:
                if not await self.speaker.teardown(peer, self.max_prefix_restart, code=1):
                    log.warning("EVPN: could not tear the session to %s down", peer)

    def _held_down(self, peer: str) -> bool:
        until = self.held_down.get(peer)
        if until is None:
            return False
        if trio.current_time() < until:
            return True
        del self.held_down[peer]
        return False

    def _apply(self, received_at: float, event: SpeakerEvent) -> None:
        table = self.table
        if isinstance(event, UpdateEvent) and self._held_down(event.peer):
            pass  # torn down for its maximum: what it sent until then is ignored
        elif isinstance(event, UpdateEvent):
            for reason, what in event.skipped:
                self.metrics.evpn_skipped.labels(reason="malformed").inc()
                log.warning("EVPN: from %s: %s skipped: %s", event.peer, what, reason)
            for rp in event.announced:
                table.announce(event.peer, rp)
            for route in event.withdrawn:
                table.withdraw(event.peer, route)
            if event.announced:
                self._check_limit(event.peer)
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
        now_t = trio.current_time()
        for key, refusal in self.refused.items():
            if refusal.retry_at <= now_t:
                dirty.add(key)
            elif table.chosen(key) == refusal.entry:
                # Not yet: the same entry waits for its retry (no kernel
                # call and no log line per pass); a new one goes at once.
                dirty.discard(key)
        add: list[KernelEntry] = []
        remove: list[KernelEntry] = []
        for key in dirty:
            want = table.chosen(key)
            have = self.installed.get(key)
            if want == have:
                self.refused.pop(key, None)
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
            refused = {(op, entry): why for op, entry, why in result.refused}
            for entry in remove:
                if ("remove", entry) not in refused:
                    self._uninstall(entry)
            for entry in add:
                if ("add", entry) not in refused:
                    self._install(entry)
            self._refusals(add, remove, refused)
            if result.failed:
                self.kernel_failures = list(result.failed)
                self.metrics.evpn_kernel_errors.inc(len(result.failed))
                if any(_route_failed(what) for what, _ in result.failed):
                    # An ECMP route's paths are merged with what was
                    # programmed: read the kernel back before the retry.
                    self._set_installed(await self._dump())
            else:
                self.kernel_failures = []
        done = trio.current_time()
        for t in received:
            self.metrics.evpn_programming.observe(done - t)
        for kind, n in _kinds(self.installed).items():
            self.metrics.evpn_kernel_entries.labels(kind=kind).set(n)
        errors: dict[str, int] = {}
        for refusal in self.refused.values():
            errors[refusal.error] = errors.get(refusal.error, 0) + 1
        for name in self._refused_errors | set(errors):
            self.metrics.evpn_refused.labels(error=name).set(errors.get(name, 0))
        self._refused_errors |= set(errors)

    def _refusals(
        self,
        add: list[KernelEntry],
        remove: list[KernelEntry],
        refused: dict[tuple[str, KernelEntry], str],
    ) -> None:
        """Keep each refused key with its reason and next retry (backoff);
        log a refusal once, and again only when it changes."""
        now = trio.current_time()
        by_key: dict[Key, tuple[KernelEntry | None, str, str]] = {}
        for (op, entry), why in refused.items():
            by_key[entry_key(entry)] = (entry if op == "add" else None, why, op)
        for done in (*add, *remove):
            if entry_key(done) not in by_key:
                self.refused.pop(entry_key(done), None)
        logged = 0
        for key, (wanted, why, op) in by_key.items():
            old = self.refused.get(key)
            if old is not None and (old.entry, old.error) == (wanted, why):
                old.delay = min(old.delay * 2, _RETRY_MAX)
                old.retry_at = now + old.delay
                continue
            self.refused[key] = Refusal(wanted, why, now + _RETRY_MIN)
            if logged < 10:
                what = wanted if wanted is not None else key
                log.error("EVPN: kernel refused to %s %s: %s; retrying with backoff", op, what, why)
            logged += 1
        if logged > 10:
            log.error("EVPN: the kernel refused %d more entries (cnictl evpn routes)", logged - 10)

    def refusal_of(self, entries: tuple[KernelEntry, ...]) -> str:
        """The kernel's refusal of one of a path's entries ("" if none)."""
        for entry in entries:
            refusal = self.refused.get(entry_key(entry))
            if refusal is not None and refusal.entry == entry:
                return refusal.error
        return ""

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


def _route_failed(what: str) -> bool:
    return what.split(" ", 2)[1:2] == ["route"]


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
