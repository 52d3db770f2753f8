"""The routes received from the peers and the kernel state they ask for
(pure: no I/O, unit-tested without a kernel).

``RouteTable`` keeps every received path by (source, route key); a source is
a peer, or the stale copy of a peer's paths kept while a restarted ExaBGP
re-learns them. Each path is translated once into kernel entries
(``_remote.kernel_entries``); the table keeps, per kernel key, the candidate
entries that paths ask for with a use count and the sequence number of the
latest request. The *chosen* entry of a key is the candidate requested most
recently (a MAC that moved to another VTEP follows the newer route).

The controller reads ``take_dirty()`` (the keys whose chosen entry may have
changed) and programs only those: a burst of 50,000 routes costs work in
proportion to the routes, never a rescan of the table per update.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from ..bgp import EvpnRoute, ReceivedPath, route_type
from ._remote import KernelEntry, NodeView, Skip, entry_key, kernel_entries

Source = str
PathId = tuple[Source, tuple[object, ...]]
STALE = "stale:"


class _Candidates:
    __slots__ = ("uses",)

    def __init__(self) -> None:
        #: entry -> [use count, sequence number of the latest use]
        self.uses: dict[KernelEntry, list[int]] = {}

    def chosen(self) -> KernelEntry | None:
        best: KernelEntry | None = None
        best_seq = -1
        for entry, (count, seq) in self.uses.items():
            if count > 0 and seq > best_seq:
                best, best_seq = entry, seq
        return best


class RouteTable:
    def __init__(self, view: NodeView) -> None:
        self.view = view
        self._paths: dict[PathId, ReceivedPath] = {}
        self._entries: dict[PathId, tuple[KernelEntry, ...]] = {}
        self._skipped: dict[PathId, str] = {}
        self._keys: dict[tuple[object, ...], _Candidates] = {}
        self._dirty: set[tuple[object, ...]] = set()
        self._seq = 0
        #: Paths per route type, kept as paths come and go: ``counts()`` is
        #: asked after every batch of updates, a scan would make a burst of
        #: N routes cost N^2 / batch.
        self._types: Counter[int] = Counter()
        #: Why routes were not programmed, counted (for metrics and logs).
        self.skip_counts: Counter[str] = Counter()

    # -- reading ---------------------------------------------------------

    def __len__(self) -> int:
        return len(self._paths)

    def paths(self) -> Iterator[tuple[Source, ReceivedPath]]:
        for (source, _), rp in self._paths.items():
            yield source, rp

    def skipped(self) -> dict[PathId, str]:
        return dict(self._skipped)

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
        cands = self._keys.get(key)
        return cands.chosen() if cands is not None else None

    def desired(self) -> dict[tuple[object, ...], KernelEntry]:
        out = {}
        for key, cands in self._keys.items():
            entry = cands.chosen()
            if entry is not None:
                out[key] = entry
        return out

    def take_dirty(self) -> set[tuple[object, ...]]:
        dirty, self._dirty = self._dirty, set()
        return dirty

    # -- changes ---------------------------------------------------------

    def announce(self, source: Source, rp: ReceivedPath) -> str:
        """Add or replace a path; "" if it is programmed, else why not."""
        pid = (source, rp.path.route.key)
        old = self._paths.get(pid)
        if old == rp:
            return self._skipped.get(pid, "")
        self._drop(pid)
        if not source.startswith(STALE):
            # A re-learned path supersedes its stale copy.
            self._drop((STALE + source, rp.path.route.key))
        self._put(pid, rp)
        return self._translate(pid, rp)

    def withdraw(self, source: Source, route: EvpnRoute) -> bool:
        pid = (source, route.key)
        if pid not in self._paths:
            return False
        self._drop(pid)
        return True

    def drop_source(self, source: Source) -> int:
        gone = [pid for pid in self._paths if pid[0] == source]
        for pid in gone:
            self._drop(pid)
        return len(gone)

    def make_stale(self, source: Source | None = None) -> int:
        """Turn the fresh paths (of one source, or all) into stale copies,
        kept until re-learned, an End-of-RIB, or the stale timer."""
        moved = 0
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
        self.view = view
        for pid, rp in list(self._paths.items()):
            self._unuse(pid)
            self._translate(pid, rp)

    # -- internals -------------------------------------------------------

    def _translate(self, pid: PathId, rp: ReceivedPath) -> str:
        try:
            entries = kernel_entries(rp, self.view)
        except Skip as exc:
            reason = str(exc)
            self._skipped[pid] = reason
            self.skip_counts[exc.kind] += 1
            return reason
        self._skipped.pop(pid, None)
        self._seq += 1
        for entry in entries:
            key = entry_key(entry)
            cands = self._keys.get(key)
            if cands is None:
                cands = self._keys[key] = _Candidates()
            use = cands.uses.get(entry)
            if use is None:
                cands.uses[entry] = [1, self._seq]
            else:
                use[0] += 1
                use[1] = self._seq
            self._dirty.add(key)
        self._entries[pid] = entries
        return ""

    def _unuse(self, pid: PathId) -> None:
        self._skipped.pop(pid, None)
        for entry in self._entries.pop(pid, ()):
            key = entry_key(entry)
            cands = self._keys[key]
            use = cands.uses[entry]
            use[0] -= 1
            if use[0] <= 0:
                del cands.uses[entry]
                if not cands.uses:
                    del self._keys[key]
            self._dirty.add(key)

    def _put(self, pid: PathId, rp: ReceivedPath) -> None:
        self._paths[pid] = rp
        self._types[route_type(rp.path.route)] += 1

    def _drop(self, pid: PathId) -> None:
        rp = self._paths.pop(pid, None)
        if rp is not None:
            self._types[route_type(rp.path.route)] -= 1
            self._unuse(pid)


def entries_of(paths: Iterable[ReceivedPath], view: NodeView) -> set[KernelEntry]:
    """Every kernel entry of some paths (for tests and views)."""
    out: set[KernelEntry] = set()
    for rp in paths:
        try:
            out.update(kernel_entries(rp, view))
        except Skip:
            pass
    return out
