"""The routes received from the peers and the kernel state they ask for
(pure: no I/O, unit-tested without a kernel).

``RouteTable`` keeps every received path by (source, route key); a source is
a peer, or the stale copy of a peer's paths kept while a restarted ExaBGP
re-learns them. Each path is translated once into kernel entries
(``_remote.kernel_entries``); the table keeps, per kernel key, the candidate
entries that paths ask for with a use count and the sequence number of the
latest request. The *chosen* entry of a key is the candidate requested most
recently (a MAC that moved to another VTEP follows the newer route), unless
type-2 routes carry the MAC Mobility community: then the FDB and neighbour
entries follow ``_mobility.rank`` (sticky, highest sequence, lowest VTEP).
The received type-2 paths are indexed by (VNI, MAC) for ``_mobility``: the
MACs whose copies changed are in ``take_touched_macs()``.

The controller reads ``take_dirty()`` (the keys whose chosen entry may have
changed: not a key whose only candidate got one more use or one less, as the
neighbour and FDB entries a VTEP's prefixes share) and programs only those:
a burst of 50,000 routes costs work in proportion to the routes, never a
rescan of the table per update.

A maximum number of paths per source (``max_paths``, ``[bgp] max_prefix``)
holds the paths beyond it back: kept, shown as not programmed
(``max-prefix``), and taken in, oldest first, when the source's other paths
are withdrawn.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from ..bgp import EvpnRoute, MacIpRoute, PrefixRoute, ReceivedPath, route_type
from ._mobility import MacKey, rank
from ._remote import KernelEntry, Key, NodeView, Skip, keyed_entries

Source = str
PathId = tuple[Source, tuple[object, ...]]
STALE = "stale:"


_Rank = tuple[int, int, int, int]


#: The candidate entries of one kernel key: entry -> (use count, sequence
#: number of the latest use). A plain dict of tuples of ints (which the
#: garbage collector stops tracking), not an object holding a dict of
#: lists: a burst of 50,000 routes makes some 60,000 keys, and every full
#: collection walks the objects that stay tracked.
_Uses = dict[KernelEntry, tuple[int, int]]
#: What the table keeps per key: the one candidate most keys have (one
#: path, or the prefixes of one VTEP sharing its entries) as (entry, use
#: count, sequence number): a tuple, not a dict of one (240 bytes less a
#: key: 14 MiB of a 50,000-route table); ``_Uses`` from the second on.
_Slot = tuple[KernelEntry, int, int] | _Uses
#: entry -> path -> its MAC mobility rank, for the entries of the type-2
#: paths that carry the MAC Mobility community.
_Ranks = dict[KernelEntry, dict[PathId, _Rank]]


def _chosen(uses: _Uses, ranks: _Ranks | None) -> KernelEntry | None:
    """The candidate requested most recently, unless MAC Mobility ranks
    apply (the highest rank, recency among the copies without one)."""
    best: KernelEntry | None = None
    if ranks is None:
        best_seq = -1
        for entry, (count, seq) in uses.items():
            if count > 0 and seq > best_seq:
                best, best_seq = entry, seq
        return best
    best_rank: _Rank | None = None
    for entry, (count, seq) in uses.items():
        if count <= 0:
            continue
        r: _Rank = (0, 0, 0, seq)
        ranked = ranks.get(entry)
        if ranked:
            r = max(r, *ranked.values())
        if best_rank is None or r > best_rank:
            best, best_rank = entry, r
    return best


class RouteTable:
    def __init__(self, view: NodeView) -> None:
        self.view = view
        self._paths: dict[PathId, ReceivedPath] = {}
        #: The entries each path asks for.
        self._entries: dict[PathId, tuple[KernelEntry, ...]] = {}
        #: Their keys, apart: tuples of strings and ints, not tracked by the
        #: garbage collector once it has seen them.
        self._entry_keys: dict[PathId, tuple[Key, ...]] = {}
        self._skipped: dict[PathId, str] = {}
        self._keys: dict[Key, _Slot] = {}
        #: The ranks of the keys that have some (few: MAC Mobility).
        self._ranks: dict[Key, _Ranks] = {}
        self._dirty: set[tuple[object, ...]] = set()
        self._seq = 0
        #: Paths per route type, kept as paths come and go: ``counts()`` is
        #: asked after every batch of updates, a scan would make a burst of
        #: N routes cost N^2 / batch.
        self._types: Counter[int] = Counter()
        #: Why routes were not programmed, counted (for metrics and logs).
        self.skip_counts: Counter[str] = Counter()
        #: Paths whose reason for not being programmed is new or changed:
        #: (source, path, kind, why), drained by the caller to log each once.
        self.new_skips: list[tuple[Source, ReceivedPath, str, str]] = []
        #: Paths per source (held-back ones excluded).
        self._per_source: Counter[Source] = Counter()
        #: 0: no limit; else the most paths one fresh source may have.
        self.max_paths = 0
        #: Paths beyond ``max_paths``, by source, in arrival order.
        self._held: dict[Source, dict[tuple[object, ...], ReceivedPath]] = {}
        #: The type-2 paths of each (VNI, MAC), and the MACs whose paths
        #: changed since ``take_touched_macs``.
        self._macs: dict[MacKey, list[PathId]] = {}
        self._touched_macs: set[MacKey] = set()

    # -- reading ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._paths)

    def paths(self) -> Iterator[tuple[Source, ReceivedPath]]:
        for (source, _), rp in self._paths.items():
            yield source, rp

    def skipped(self) -> dict[PathId, str]:
        return dict(self._skipped)

    def entries(self, source: Source, route: EvpnRoute) -> tuple[KernelEntry, ...]:
        """The kernel entries a path asks for (none if it is skipped)."""
        return self._entries.get((source, route.key), ())

    def held(self) -> Iterator[tuple[Source, ReceivedPath]]:
        """Paths held back by the maximum (not in the table)."""
        for source, paths in self._held.items():
            for rp in paths.values():
                yield source, rp

    def held_count(self, source: Source) -> int:
        return len(self._held.get(source, ()))

    def source_count(self, source: Source) -> int:
        """Paths of one source in the table (held-back ones excluded)."""
        return self._per_source[source]

    def counts(self, source: Source | None = None) -> dict[int, int]:
        """Paths per route type (of one source, or all of them)."""
        if source is None:
            return {2: self._types[2], 3: self._types[3], 5: self._types[5]}
        out = {2: 0, 3: 0, 5: 0}
        for (src, _), rp in self._paths.items():
            if src == source:
                out[route_type(rp.path.route)] += 1
        return out

    def sources(self) -> set[Source]:
        return {src for src, _ in self._paths}

    def chosen(self, key: tuple[object, ...]) -> KernelEntry | None:
        uses = self._keys.get(key)
        if uses is None:
            return None
        if isinstance(uses, tuple):
            return uses[0] if uses[1] > 0 else None
        if len(uses) == 1:
            # most keys have a single candidate (one path, or the prefixes
            # of one VTEP sharing its entries): it, whatever its ranks
            for entry, (count, _) in uses.items():
                return entry if count > 0 else None
        return _chosen(uses, self._ranks.get(key))

    def desired(self) -> dict[tuple[object, ...], KernelEntry]:
        out = {}
        for key in self._keys:
            entry = self.chosen(key)
            if entry is not None:
                out[key] = entry
        return out

    def take_dirty(self) -> set[tuple[object, ...]]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    def mac_paths(self, key: MacKey) -> list[ReceivedPath]:
        """The received type-2 paths (stale ones included) of a (VNI, MAC)."""
        return [self._paths[pid] for pid in self._macs.get(key, ())]

    def take_touched_macs(self) -> set[MacKey]:
        touched, self._touched_macs = self._touched_macs, set()
        return touched

    # -- changes ---------------------------------------------------------

    def announce(self, source: Source, rp: ReceivedPath) -> str:
        """Add or replace a path; "" if it is programmed, else why not."""
        key = rp.path.route.key
        pid = (source, key)
        old = self._paths.get(pid)
        if old == rp:
            return self._skipped.get(pid, "")
        if self._held:
            held = self._held.get(source)
            if held is not None and key in held:
                held[key] = rp
                return MAX_PREFIX
        fresh = not source.startswith(STALE)
        if old is None and self.max_paths and fresh and self._per_source[source] >= self.max_paths:
            self._held.setdefault(source, {})[key] = rp
            self.skip_counts["max-prefix"] += 1
            return MAX_PREFIX
        if old is not None:
            self._drop(pid)
        if fresh:
            # A re-learned path supersedes its stale copy (if the source
            # has any: _per_source counts the stale sources too).
            stale = STALE + source
            if stale in self._per_source:
                self._drop((stale, key))
        self._put(pid, rp)
        return self._translate(pid, rp)

    def withdraw(self, source: Source, route: EvpnRoute) -> bool:
        key = route.key
        if self._held:
            held = self._held.get(source)
            if held is not None and held.pop(key, None) is not None:
                if not held:
                    del self._held[source]
                return True
        if not self._drop((source, key)):
            return False
        if self._held:
            self._take_held(source)
        return True

    def set_max_paths(self, limit: int) -> None:
        """A new maximum: held-back paths are taken in if it allows."""
        self.max_paths = limit
        for source in list(self._held):
            self._take_held(source)

    def _take_held(self, source: Source) -> None:
        held = self._held.get(source)
        while held and (not self.max_paths or self._per_source[source] < self.max_paths):
            key = next(iter(held))
            rp = held.pop(key)
            self._put((source, key), rp)
            self._translate((source, key), rp)
        if held is not None and not held:
            del self._held[source]

    def drop_source(self, source: Source) -> int:
        gone = [pid for pid in self._paths if pid[0] == source]
        for pid in gone:
            self._drop(pid)
        return len(gone) + len(self._held.pop(source, {}))

    def make_stale(self, source: Source | None = None) -> int:
        """Turn the fresh paths (of one source, or all) into stale copies,
        kept until re-learned, an End-of-RIB, or the stale timer."""
        moved = 0
        # Held-back paths are not kept: a returning peer sends them again.
        for held in [s for s in self._held if source is None or s == source]:
            del self._held[held]
        for pid in [p for p in self._paths if not p[0].startswith(STALE)]:
            if source is not None and pid[0] != source:
                continue
            rp = self._paths[pid]
            self._drop(pid)
            stale_pid = (STALE + pid[0], pid[1])
            self._drop(stale_pid)
            self._put(stale_pid, rp)
            self._translate(stale_pid, rp)
            moved += 1
        return moved

    def drop_stale(self, source: Source | None = None) -> int:
        if source is not None:
            return self.drop_source(STALE + source)
        stale = {p[0] for p in self._paths if p[0].startswith(STALE)}
        return sum(self.drop_source(s) for s in stale)

    def set_view(self, view: NodeView) -> None:
        """The node's domains changed: translate every path again."""
        if view == self.view:
            return
        old, self.view = self.view, view
        touched = _touched(old, view) if view.local_only(old) else None
        for pid, rp in list(self._paths.items()):
            if touched is not None and not touched(rp):
                continue
            self._unuse(pid, forget=False)
            self._translate(pid, rp)

    # -- internals -------------------------------------------------------

    def _translate(self, pid: PathId, rp: ReceivedPath) -> str:
        try:
            entries, keys = keyed_entries(rp, self.view)
        except Skip as exc:
            reason = str(exc)
            if self._skipped.get(pid) != reason:
                self.new_skips.append((pid[0], rp, exc.kind, reason))
                self.skip_counts[exc.kind] += 1
            self._skipped[pid] = reason
            return reason
        if self._skipped:
            self._skipped.pop(pid, None)
        self._seq = seq = self._seq + 1
        path = rp.path
        mobile = isinstance(path.route, MacIpRoute) and (
            path.mac_mobility_seq is not None or path.sticky
        )
        ranked = rank(rp, seq) if mobile else None
        # locals: this loop runs for each entry of 50,000 routes in a burst
        table = self._keys
        dirty = self._dirty.add
        for entry, key in zip(entries, keys, strict=True):
            uses = table.get(key)
            if uses is None:
                table[key] = (entry, 1, seq)
            elif isinstance(uses, tuple):
                first = uses[0]
                if first is entry or first == entry:
                    # one more use of the key's only candidate: its choice
                    # is the same (not dirty: the VTEP's shared entries are
                    # asked by each of its 80 prefixes)
                    table[key] = (first, uses[1] + 1, seq)
                    if ranked is not None:
                        self._ranks.setdefault(key, {}).setdefault(entry, {})[pid] = ranked
                    continue
                else:
                    table[key] = {first: (uses[1], uses[2]), entry: (1, seq)}
            else:
                use = uses.get(entry)
                uses[entry] = (1, seq) if use is None else (use[0] + 1, seq)
            if ranked is not None:
                self._ranks.setdefault(key, {}).setdefault(entry, {})[pid] = ranked
            dirty(key)
        self._entries[pid] = entries
        self._entry_keys[pid] = keys
        return ""

    def _unuse(self, pid: PathId, forget: bool = True) -> None:
        if forget and self._skipped:
            self._skipped.pop(pid, None)
        entries = self._entries.pop(pid, None)
        if entries is None:
            return
        keys = self._entry_keys.pop(pid)
        table = self._keys
        ranks = self._ranks
        dirty = self._dirty.add
        for entry, key in zip(entries, keys, strict=True):
            if ranks and key in ranks:
                self._unrank(key, entry, pid)
            uses = table[key]
            if isinstance(uses, tuple):
                if uses[1] > 1:
                    table[key] = (uses[0], uses[1] - 1, uses[2])  # still chosen
                else:
                    del table[key]
                    dirty(key)
                continue
            count, seq = uses[entry]
            if count > 1:
                uses[entry] = (count - 1, seq)
            else:
                del uses[entry]
                if len(uses) == 1:  # back to the one candidate's form
                    ((last, (count, seq)),) = uses.items()
                    table[key] = (last, count, seq)
                elif not uses:
                    del table[key]
            dirty(key)

    def _unrank(self, key: Key, entry: KernelEntry, pid: PathId) -> None:
        ranks = self._ranks[key]
        ranked = ranks.get(entry)
        if ranked is not None:
            ranked.pop(pid, None)
            if not ranked:
                del ranks[entry]
                if not ranks:
                    del self._ranks[key]

    def _put(self, pid: PathId, rp: ReceivedPath) -> None:
        self._paths[pid] = rp
        route = rp.path.route
        self._types[route_type(route)] += 1
        self._per_source[pid[0]] += 1
        if isinstance(route, MacIpRoute):
            mac = (route.vni, route.mac.lower())
            self._macs.setdefault(mac, []).append(pid)
            self._touched_macs.add(mac)

    def _drop(self, pid: PathId) -> bool:
        """Remove a path from the table; whether it was there."""
        rp = self._paths.pop(pid, None)
        if rp is None:
            return False
        route = rp.path.route
        self._types[route_type(route)] -= 1
        per_source = self._per_source
        source = pid[0]
        if per_source[source] > 1:
            per_source[source] -= 1
        else:
            del per_source[source]
        self._unuse(pid)
        if isinstance(route, MacIpRoute):
            mac = (route.vni, route.mac.lower())
            pids = self._macs.get(mac)
            if pids is not None and pid in pids:
                pids.remove(pid)
                if not pids:
                    del self._macs[mac]
            self._touched_macs.add(mac)
        return True


MAX_PREFIX = "held back: the peer's maximum number of prefixes is reached"


def _touched(old: NodeView, new: NodeView) -> Callable[[ReceivedPath], bool]:
    """Which paths a change of the node's own pods or blocks concerns."""
    ips = {ip for _, ip in old.local_ips ^ new.local_ips}
    macs = {mac for _, mac in old.local_macs ^ new.local_macs}
    blocks = old.own_blocks != new.own_blocks

    def touched(rp: ReceivedPath) -> bool:
        route = rp.path.route
        if isinstance(route, MacIpRoute):
            return route.mac.lower() in macs or (bool(route.ip) and route.ip in ips)
        return blocks and isinstance(route, PrefixRoute)

    return touched
