"""What the kernel holds of ours, and what it refused.

``Installed`` is the controller's record of the EVPN entries in the kernel
(programmed, or adopted from a previous run), by kernel key, with the routes
also grouped by (table, prefix): what ``apply_evpn`` merges an ECMP route's
paths with, instead of reading the tables back.

``Refusals`` keeps each key the kernel refused with the reason and the time
of its next attempt (exponential backoff per key, 1 s doubling to 5 minutes):
a refused entry is shown (``refused: <errno>``), counted, logged once (and
again only if the refusal changes), and never retried on every pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..core._reconcile import Backoff
from ..dataplane import EvpnRoute as KernelRoute
from ..dataplane import FdbEntry, KernelEvpn, NeighEntry
from ._remote import KernelEntry, entry_key

log = logging.getLogger("cnid.evpn")

Key = tuple[object, ...]

#: A refused entry's first retry, and the longest wait between two.
RETRY_MIN, RETRY_MAX = 1.0, 300.0
#: The kinds of kernel keys (``entry_key``'s first element).
_KINDS = ("fdb", "flood", "neigh", "route")
#: Refusals logged one by one per pass; the rest in one line.
_LOGGED = 10


class Installed:
    """The kernel entries of ours, by kernel key."""

    def __init__(self) -> None:
        self.entries: dict[Key, KernelEntry] = {}
        #: table -> prefix -> its one route, or the set of its ECMP paths:
        #: 40,000 prefixes of one path each would cost a set each (8 MiB),
        #: and a (table, prefix) tuple each (2.5 MiB).
        self._routes: dict[int, dict[str, KernelRoute | set[KernelRoute]]] = {}
        #: Entries by kind, kept as they come and go: ``kinds()`` is asked
        #: after every kernel pass (a scan made a burst quadratic).
        self._kinds: dict[object, int] = dict.fromkeys(_KINDS, 0)

    def replace(self, entries: dict[Key, KernelEntry]) -> None:
        """Start from what the kernel was read to hold."""
        self.entries = {}
        self._routes = {}
        self._kinds = dict.fromkeys(_KINDS, 0)
        for key, entry in entries.items():
            self.add(entry, key)

    def get(self, key: Key) -> KernelEntry | None:
        return self.entries.get(key)

    def add(self, entry: KernelEntry, key: Key | None = None) -> None:
        """``key``: the entry's ``entry_key`` when the caller has it (the
        route table's own tuple: one object for both records, not two)."""
        if key is None:
            key = entry_key(entry)
        entries = self.entries
        old = entries.get(key)
        if old is not None:
            self.remove(old, key)
        entries[key] = entry
        self._kinds[key[0]] += 1
        if type(entry) is KernelRoute:
            table = self._routes.get(entry.table)
            if table is None:
                table = self._routes[entry.table] = {}
            routes = table.get(entry.prefix)
            if routes is None:
                table[entry.prefix] = entry
            elif isinstance(routes, set):
                routes.add(entry)
            elif routes != entry:
                table[entry.prefix] = {routes, entry}

    def remove(self, entry: KernelEntry, key: Key | None = None) -> None:
        if key is None:
            key = entry_key(entry)
        if self.entries.get(key) == entry:
            del self.entries[key]
            self._kinds[key[0]] -= 1
        if type(entry) is KernelRoute:
            table = self._routes.get(entry.table)
            routes = table.get(entry.prefix) if table is not None else None
            if table is None or routes is None:
                return
            if isinstance(routes, set):
                routes.discard(entry)
                if len(routes) == 1:
                    table[entry.prefix] = next(iter(routes))
                elif not routes:
                    del table[entry.prefix]
            elif routes == entry:
                del table[entry.prefix]
            if not table:
                del self._routes[entry.table]

    def routes_now(
        self, add: list[KernelEntry], remove: list[KernelEntry]
    ) -> dict[tuple[int, str], frozenset[KernelRoute]]:
        """``apply_evpn``'s record of a batch: the installed paths of each
        (table, prefix) the batch touches, but those it removes (taken as
        held); only the prefixes left with some. A table withdrawn, or a
        burst of new prefixes, is no record at all."""
        installed = self._routes
        removed = {e for e in remove if type(e) is KernelRoute}
        out: dict[tuple[int, str], frozenset[KernelRoute]] = {}
        for e in (*add, *removed):
            if type(e) is not KernelRoute:
                continue
            table = installed.get(e.table)
            routes = table.get(e.prefix) if table is not None else None
            if routes is None or (e.table, e.prefix) in out:
                continue
            if isinstance(routes, set):
                others = frozenset(routes - removed)
            elif routes in removed:
                continue
            else:
                others = frozenset((routes,))
            if others:
                out[(e.table, e.prefix)] = others
        return out

    def kinds(self) -> dict[str, int]:
        """Entries by kind (fdb, flood, neigh, route)."""
        return {str(kind): n for kind, n in self._kinds.items()}


class Refusal:
    """A kernel entry the kernel refused: why, and when to try again."""

    __slots__ = ("backoff", "entry", "error", "retry_at")

    def __init__(self, entry: KernelEntry | None, error: str, now: float) -> None:
        #: The entry it refused to add (None: a removal was refused).
        self.entry = entry
        self.error = error
        self.backoff = Backoff(RETRY_MIN, RETRY_MAX, jitter=False)
        self.retry_at = now + self.backoff.next_delay()

    def again(self, now: float) -> None:
        """Refused again, for the same reason: wait twice as long."""
        self.retry_at = now + self.backoff.next_delay()


class Refusals:
    """The keys the kernel refused, until they are programmed."""

    def __init__(self) -> None:
        self.by_key: dict[Key, Refusal] = {}
        self._errors_seen: set[str] = set()

    def hold_back(
        self, dirty: set[Key], chosen: Callable[[Key], KernelEntry | None], now: float
    ) -> None:
        """Add the keys whose retry is due to ``dirty``; take out those whose
        same entry waits for its retry (no kernel call and no log line per
        pass). A key whose wanted entry changed (``chosen``) goes at once."""
        for key, refusal in self.by_key.items():
            if refusal.retry_at <= now:
                dirty.add(key)
            elif chosen(key) == refusal.entry:
                dirty.discard(key)

    def done(self, key: Key) -> None:
        self.by_key.pop(key, None)

    def record(
        self,
        tried: list[KernelEntry],
        refused: dict[tuple[str, KernelEntry], str],
        now: float,
    ) -> None:
        """After a batch: forget the keys now programmed, keep each refused
        key with its reason and next retry; log a refusal once, and again
        only when it changes."""
        if not refused and not self.by_key:
            return  # the usual batch: nothing refused, nothing to forget
        by_key: dict[Key, tuple[KernelEntry | None, str, str]] = {}
        for (op, entry), why in refused.items():
            by_key[entry_key(entry)] = (entry if op == "add" else None, why, op)
        for entry in tried:
            if entry_key(entry) not in by_key:
                self.by_key.pop(entry_key(entry), None)
        logged = 0
        for key, (wanted, why, op) in by_key.items():
            old = self.by_key.get(key)
            if old is not None and (old.entry, old.error) == (wanted, why):
                old.again(now)
                continue
            self.by_key[key] = Refusal(wanted, why, now)
            if logged < _LOGGED:
                what = wanted if wanted is not None else key
                log.error("EVPN: kernel refused to %s %s: %s; retrying with backoff", op, what, why)
            logged += 1
        if logged > _LOGGED:
            log.error(
                "EVPN: the kernel refused %d more entries (cnictl evpn routes)", logged - _LOGGED
            )

    def of(self, entries: tuple[KernelEntry, ...]) -> str:
        """The kernel's refusal of one of a path's entries ("" if none)."""
        for entry in entries:
            refusal = self.by_key.get(entry_key(entry))
            if refusal is not None and refusal.entry == entry:
                return refusal.error
        return ""

    def by_error(self) -> dict[str, int]:
        """Refused keys by reason, every reason seen so far included (at 0
        once nothing is refused for it any more)."""
        errors: dict[str, int] = {}
        for refusal in self.by_key.values():
            errors[refusal.error] = errors.get(refusal.error, 0) + 1
        self._errors_seen |= set(errors)
        return {name: errors.get(name, 0) for name in self._errors_seen}


def kernel_batch(entries: list[KernelEntry]) -> KernelEvpn:
    fdb: list[FdbEntry] = []
    neigh: list[NeighEntry] = []
    routes: list[KernelRoute] = []
    for e in entries:  # one pass, exact types first (a batch holds thousands)
        if type(e) is KernelRoute:
            routes.append(e)
        elif type(e) is FdbEntry:
            fdb.append(e)
        elif type(e) is NeighEntry:
            neigh.append(e)
        elif isinstance(e, KernelRoute):
            routes.append(e)
        elif isinstance(e, FdbEntry):
            fdb.append(e)
        else:
            neigh.append(e)
    return KernelEvpn(fdb=frozenset(fdb), neigh=frozenset(neigh), routes=frozenset(routes))


def route_failed(what: str) -> bool:
    """Whether a failure (``apply_evpn``'s ``failed``) was a route's."""
    return what.split(" ", 2)[1:2] == ["route"]
