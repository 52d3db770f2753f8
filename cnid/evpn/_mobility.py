"""MAC mobility (RFC 7432 section 15), as FRR does it (pure: no I/O).

A pod's MAC follows its IPv4 address, so an address reused on another node
is a MAC move. Three things follow, each FRR's behaviour unless said:

* **Local sequence numbers** (zebra's ``loc_seq``). A local MAC that no
  other VTEP announces goes out without the MAC Mobility community
  (sequence 0). A local MAC that is also received from another VTEP goes out
  with the highest sequence received + 1; and when a remote copy later shows
  a sequence at least as high as ours, ours is raised past it again and
  re-announced. In FRR the remote copy would first win (bgpd evicts the
  local route) and the MAC be re-learned from the host's next frame with
  remote + 1; a pod is authoritative while it exists on this node (its
  kernel entries stay, the remote copy is skipped as ``local-mac``), so cnid
  skips the eviction and re-announces at once. Our own routes reflected
  back are not remote copies, nor is a route with a local pod's MAC but
  another IP (the MAC is derived from the pod's IPv4 address: that route
  is a conflict, not the pod having moved).
* **Selection** among received copies of one MAC (:func:`rank`, used by the
  route table for the kernel's FDB and neighbour entries): a sticky copy
  first, then the highest sequence, then, between copies of equal sequence
  of which one carries the community, the lowest VTEP address (bgpd's
  ``bgp_path_info_cmp``). Between copies that carry no community (peers or
  cnid nodes that do not do mobility) the most recently received wins, as
  before this module: FRR takes the lowest VTEP there too.
* **Duplicate detection** (zebra's ``dup-addr-detection max-moves N time
  M``, 5 in 180 s by default): the ``max_moves``-th move of one MAC within
  ``window`` seconds of the first flags it a duplicate, with a log line, a
  counter and a gauge; traffic is neither frozen nor dropped (FRR's default
  without ``freeze``). A move is a sequence raised for a local MAC (the
  MAC came, or came back, from another VTEP), or a received copy of a higher
  sequence than all before from another VTEP than the previous winner's.
  FRR's zebra counts moves only on the VTEPs where the MAC is local; cnid
  counts them on every node that sees them. A flagged local MAC's sequence
  is no longer raised (two nodes that both hold the MAC would otherwise
  raise each other's for ever, with no host traffic to pace them as in
  FRR). The flag is cleared ``window`` seconds after the last move (FRR
  keeps it until ``clear evpn dup-addr``, or its ``freeze`` recovery timer)
  or when the MAC is gone from this node.

Sequences are not persisted: after a restart of the daemon a local MAC's
sequence is derived again from the copies received then (highest + 1, or
none). Nothing is lost by it: a copy another VTEP still announces is
outbid again as soon as it is received, and without one the sequence has
no one to be compared with (the node's own earlier route is replaced by its
new one: the same RD).
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Iterable

import msgspec

from ..bgp import MacIpRoute, ReceivedPath

log = logging.getLogger("cnid.evpn")

#: (VNI, MAC): the identity of a MAC on the fabric.
MacKey = tuple[int, str]


def rank(rp: ReceivedPath, recency: int) -> tuple[int, int, int, int]:
    """How a received copy of a MAC ranks against the others (the highest
    wins): sticky, sequence, and among equal sequences the lowest VTEP if
    the copy carries the community, else the most recent."""
    path = rp.path
    seq = path.mac_mobility_seq
    if seq is None:
        return (int(path.sticky), 0, 0, recency)
    return (int(path.sticky), seq, 1, -_address(path.nexthop))


@functools.lru_cache(maxsize=4096)
def _address(text: str) -> int:
    try:
        return int(ipaddress.ip_address(text))
    except ValueError:
        return 0


class Copy(msgspec.Struct, frozen=True):
    """A MAC as another VTEP announces it."""

    vtep: str
    seq: int
    sticky: bool = False


class Duplicate(msgspec.Struct, frozen=True):
    """A MAC flagged as a duplicate, as ``cnictl evpn duplicates`` shows it."""

    vni: int
    mac: str
    moves: int
    #: Virtual/monotonic time of the first move of the window, of the
    #: detection, of the last move.
    since: float
    detected: float
    last_move: float
    #: The VTEPs the MAC moved between, latest last ("local" is this node).
    vteps: tuple[str, ...]
    local_seq: int | None
    seq: int


class _Mac:
    __slots__ = (
        "detected",
        "flagged",
        "last_move",
        "local",
        "moves",
        "remote",
        "seq",
        "since",
        "vtep",
        "vteps",
    )

    def __init__(self) -> None:
        #: This node's sequence while the MAC is local, else None.
        self.local: int | None = None
        #: Whether another VTEP announces it.
        self.remote = False
        #: The highest sequence seen and where (the winner's VTEP).
        self.seq = 0
        self.vtep = ""
        self.moves = 0
        self.since = 0.0
        self.last_move = 0.0
        self.flagged = False
        self.detected = 0.0
        self.vteps: tuple[str, ...] = ()


class Mobility:
    """Sequences, moves and duplicates of the MACs this node knows."""

    def __init__(
        self, vtep: str, router_id: str, max_moves: int = 5, window: float = 180.0
    ) -> None:
        self.vtep = vtep
        self.router_id = router_id
        #: 0: duplicate detection off.
        self.max_moves = max_moves
        self.window = window
        self._macs: dict[MacKey, _Mac] = {}
        #: The local MACs, those with moves in their window, the flagged
        #: ones: what the per-pass work looks at (not every MAC received).
        self._local: set[MacKey] = set()
        self._moving: set[MacKey] = set()
        self._flagged: set[MacKey] = set()
        #: Moves counted since the caller last drained them (for a counter).
        self.new_moves = 0
        #: MACs flagged since the caller last drained them (for a counter).
        self.new_duplicates: list[Duplicate] = []
        #: Remote copies that would have raised a flagged local MAC's sequence.
        self.held = 0

    # -- reading -----------------------------------------------------------

    def local_seqs(self) -> dict[MacKey, int]:
        """The sequence of each local MAC that has one (> 0)."""
        return {k: m for k in self._local if (m := self._macs[k].local)}

    def duplicates(self) -> list[Duplicate]:
        return [self._duplicate(k, self._macs[k]) for k in sorted(self._flagged)]

    @property
    def flagged_count(self) -> int:
        return len(self._flagged)

    def flagged(self, key: MacKey) -> bool:
        mac = self._macs.get(key)
        return mac is not None and mac.flagged

    def seq(self, key: MacKey) -> tuple[int, str] | None:
        """The highest sequence known of a MAC and where ("local": here)."""
        mac = self._macs.get(key)
        return None if mac is None else (mac.seq, mac.vtep)

    def copies(self, paths: Iterable[ReceivedPath], local_ip: str = "") -> list[Copy]:
        """Another VTEP's copies among received type-2 paths of one MAC
        (our own routes reflected back are not). For a local MAC
        (``local_ip``: its pod's address), a route naming another IP is no
        copy either: a pod's MAC is derived from its IPv4 address, so that
        route is not the pod having moved but a conflict (refused as
        ``local-mac``, not outbid)."""
        out = []
        for rp in paths:
            path = rp.path
            route = path.route
            if not isinstance(route, MacIpRoute):
                continue
            if path.nexthop == self.vtep or (rp.originator and rp.originator == self.router_id):
                continue
            if local_ip and route.ip and route.ip != local_ip:
                continue
            out.append(Copy(path.nexthop, path.mac_mobility_seq or 0, path.sticky))
        return out

    # -- changes -----------------------------------------------------------

    def observe(self, key: MacKey, paths: list[ReceivedPath], local_ip: str, now: float) -> bool:
        """``remote_changed`` from a MAC's received paths, with the common
        case first: one copy without a sequence of a MAC never seen moving."""
        if len(paths) == 1 and key not in self._macs and not paths[0].path.mac_mobility_seq:
            return False
        return self.remote_changed(key, self.copies(paths, local_ip), now)

    def set_local(
        self, local: Iterable[MacKey], copies: dict[MacKey, list[Copy]], now: float
    ) -> bool:
        """This node's MACs now, with the copies other VTEPs announce of
        each. A MAC new here that another VTEP announces is a move: its
        sequence is theirs + 1. Whether any local sequence changed."""
        local = set(local)
        changed = False
        for key in self._local - local:
            mac = self._macs[key]
            mac.local = None
            changed = True
            self._forget_if_gone(key, mac)
        self._local = local
        for key in local:
            known = self._macs.get(key)
            if known is not None and known.local is not None:
                continue
            mac = known if known is not None else self._macs.setdefault(key, _Mac())
            remote = copies.get(key) or []
            mac.remote = bool(remote)
            if remote:
                top = max(remote, key=lambda c: (c.seq, -_address(c.vtep)))
                mac.local = top.seq + 1
                mac.seq, mac.vtep = mac.local, "local"
                self._move(key, mac, top.vtep, "local", now)
                changed = True
            else:
                mac.local = 0
                mac.seq, mac.vtep = 0, "local"
        return changed

    def remote_changed(self, key: MacKey, copies: list[Copy], now: float) -> bool:
        """The copies other VTEPs announce of one MAC changed. Whether a
        local MAC's sequence was raised (it must be announced again)."""
        mac = self._macs.get(key)
        if mac is None:
            # Remembered only from the first sequence above 0 or the
            # second VTEP on (most MACs never move: nothing kept of them).
            if not copies:
                return False
            best = max(c.seq for c in copies)
            vtep = min((c.vtep for c in copies if c.seq == best), key=_address)
            others = [c for c in copies if c.vtep != vtep]
            if best == 0 and not others:
                return False
            mac = self._macs[key] = _Mac()
            if best and others:  # the winner before was one of the others
                prev = max(others, key=lambda c: (c.seq, -_address(c.vtep)))
                mac.seq, mac.vtep = prev.seq, prev.vtep
            else:
                mac.seq, mac.vtep = best, vtep
        mac.remote = bool(copies)
        if mac.local is not None:
            if not copies:
                return False
            top = max(copies, key=lambda c: (c.seq, -_address(c.vtep)))
            if top.seq < mac.local:
                return False
            if mac.flagged:
                self.held += 1
                return False
            mac.local = top.seq + 1
            mac.seq, mac.vtep = mac.local, "local"
            self._move(key, mac, top.vtep, "local", now)
            return True
        if not copies:
            self._forget_if_gone(key, mac)
            return False
        best = max(c.seq for c in copies)
        vtep = min((c.vtep for c in copies if c.seq == best), key=_address)
        before = mac.vtep
        if best >= mac.seq or vtep == before:
            mac.seq, mac.vtep = best, vtep
        if before and mac.vtep != before:
            self._move(key, mac, before, vtep, now)
        return False

    def expire(self, now: float) -> list[MacKey]:
        """Flags older than the window since their MAC's last move are
        cleared, MACs gone for as long forgotten; the keys unflagged."""
        cleared = []
        for key in list(self._moving):
            mac = self._macs[key]
            if now - mac.last_move <= self.window:
                continue
            self._moving.discard(key)
            mac.moves = 0
            was_flagged, mac.flagged = mac.flagged, False
            if was_flagged:
                self._flagged.discard(key)
                cleared.append(key)
            if mac.local is None and not mac.remote:
                del self._macs[key]
            elif was_flagged:
                log.info(
                    "EVPN: MAC %s in VNI %d no longer flagged as a duplicate: no move in %.0fs",
                    key[1],
                    key[0],
                    self.window,
                )
        return cleared

    # -- internals ---------------------------------------------------------

    def _forget_if_gone(self, key: MacKey, mac: _Mac) -> None:
        """A MAC neither local nor received is forgotten, unless its recent
        moves still count (a MAC flapping may be briefly nowhere)."""
        if mac.local is None and not mac.remote and key not in self._moving:
            del self._macs[key]

    def _move(self, key: MacKey, mac: _Mac, came_from: str, to: str, now: float) -> None:
        """One move of a MAC, counted in its detection window."""
        self.new_moves += 1
        vteps = list(mac.vteps)
        for vtep in (came_from, to):
            if not vteps or vteps[-1] != vtep:
                vteps.append(vtep)
        mac.vteps = tuple(vteps[-6:])
        if not mac.moves or now - mac.since > self.window:
            mac.since, mac.moves = now, 0
        mac.moves += 1
        mac.last_move = now
        self._moving.add(key)
        if self.max_moves and not mac.flagged and mac.moves >= self.max_moves:
            mac.flagged, mac.detected = True, now
            self._flagged.add(key)
            dup = self._duplicate(key, mac)
            self.new_duplicates.append(dup)
            log.warning(
                "EVPN: MAC %s in VNI %d detected as a duplicate: %d moves in %.0fs between "
                "VTEPs %s (sequence %d%s)",
                key[1],
                key[0],
                mac.moves,
                now - mac.since,
                ", ".join(mac.vteps),
                mac.local if mac.local is not None else mac.seq,
                ", local: its sequence is no longer raised" if mac.local is not None else "",
            )

    def _duplicate(self, key: MacKey, mac: _Mac) -> Duplicate:
        return Duplicate(
            vni=key[0],
            mac=key[1],
            moves=mac.moves,
            since=mac.since,
            detected=mac.detected,
            last_move=mac.last_move,
            vteps=mac.vteps,
            local_seq=mac.local,
            seq=mac.seq,
        )
