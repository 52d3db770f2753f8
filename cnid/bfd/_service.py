"""The BFD service: sessions keyed by (peer, local address, VRF, kind),
their sockets, the demultiplexing of received packets (RFC 5880 6.8.6's
session lookup, RFC 5881/5883's TTL checks), state-change subscriptions,
counters and the peers' view.

    bfd = BfdService()
    await nursery.start(bfd.run)
    key = bfd.add_peer("192.0.2.1", local="192.0.2.2")
    bfd.subscribe(lambda change: ...)   # the seam for tearing BGP down
    bfd.peers()                          # what ``cnictl bfd peers`` shows
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import msgspec
import trio

from ._packet import BadPacket, BfdError, ControlPacket, Diag, Discard, State, decode, encode
from ._runner import Runner
from ._session import PeerConfig, Session, Transition
from ._transport import (
    MULTIHOP_PORT,
    SINGLE_HOP_PORT,
    TTL,
    Datagram,
    SocketFactory,
    bind_sender,
    open_listener,
    receive,
    udp_socket,
)

__all__ = ["BfdService", "Counters", "PeerKey", "PeerStatus", "StateChange"]

log = logging.getLogger("cnid.bfd")


class PeerKey(msgspec.Struct, frozen=True):
    """A session's identity: the peer, our address (None: any), the VRF
    device its sockets are bound to (None: the default VRF), and its kind."""

    peer: str
    local: str | None = None
    vrf: str | None = None
    multihop: bool = False


class StateChange(msgspec.Struct, frozen=True):
    """What subscribers get: the session, its old and new state, the local
    diagnostic, the remote's last diagnostic and C bit, and the remote's
    state (AdminDown: RFC 5882 3.2, not a failure)."""

    key: PeerKey
    old: State
    new: State
    diag: Diag
    remote_diag: Diag
    remote_cpi: bool
    remote_state: State = State.DOWN

    @property
    def failed(self) -> bool:
        """A session that was Up and is not any more, not administratively
        (ours or the peer's: RFC 5882 3.2): a path failure."""
        return (
            self.old is State.UP
            and self.new not in (State.UP, State.ADMIN_DOWN)
            and self.remote_state is not State.ADMIN_DOWN
        )


class Counters(msgspec.Struct):
    packets_in: int = 0
    packets_out: int = 0
    send_errors: int = 0
    flaps: int = 0
    discarded: dict[str, int] = msgspec.field(default_factory=dict)

    def discard(self, reason: Discard) -> None:
        self.discarded[reason.value] = self.discarded.get(reason.value, 0) + 1


class PeerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One session as ``cnictl bfd peers`` shows it. Intervals in ms: the
    configured ones, and the agreed ones (TX: ours; RX: the remote's)."""

    peer: str
    local: str | None
    vrf: str | None
    multihop: bool
    state: str
    remote_state: str
    local_discr: int
    remote_discr: int
    local_diag: str
    remote_diag: str
    detect_multiplier: int
    remote_detect_multiplier: int
    desired_min_tx_ms: int
    required_min_rx_ms: int
    remote_desired_min_tx_ms: float
    remote_required_min_rx_ms: float
    tx_interval_ms: float
    rx_interval_ms: float
    detection_time_ms: float
    uptime_s: float | None
    flaps: int
    remote_cpi: bool
    packets_in: int
    packets_out: int


class _Peer:
    def __init__(self, key: PeerKey, runner: Runner) -> None:
        self.key = key
        self.runner = runner
        self.scope = trio.CancelScope()
        self.sock: trio.socket.SocketType | None = None
        self.packets_in = 0
        self.packets_out = 0


class BfdService:
    """BFD sessions under trio. ``add_peer``/``remove_peer`` may be called
    before ``run`` starts (the sessions start with it) or while it runs."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        single_hop_port: int = SINGLE_HOP_PORT,
        multihop_port: int = MULTIHOP_PORT,
        socket_factory: SocketFactory = udp_socket,
    ) -> None:
        self._rng = rng or random.SystemRandom()
        self._new_socket = socket_factory
        self._ports = {False: single_hop_port, True: multihop_port}
        self._peers: dict[PeerKey, _Peer] = {}
        self._by_discr: dict[int, _Peer] = {}
        self._listening: set[tuple[bool, str | None]] = set()
        self._subscribers: list[Callable[[StateChange], None]] = []
        self._watchers: list[Callable[[PeerKey], None]] = []
        self._nursery: trio.Nursery | None = None
        self.counters = Counters()

    # -- the service -------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            kinds = {(k.multihop, k.vrf) for k in self._peers}
            for kind in sorted(kinds, key=repr):
                await nursery.start(self._listen, *kind)
            for peer in self._peers.values():
                nursery.start_soon(self._run_peer, peer)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def add_peer(
        self,
        peer: str,
        *,
        local: str | None = None,
        vrf: str | None = None,
        multihop: bool = False,
        config: PeerConfig | None = None,
    ) -> PeerKey:
        """A session to ``peer`` (idempotent: the same key again changes its
        intervals, by a Poll Sequence if Up)."""
        key = PeerKey(peer, local, vrf, multihop)
        config = config or PeerConfig()
        existing = self._peers.get(key)
        if existing is not None:
            session = existing.runner.session
            session.set_intervals(config.desired_min_tx_ms, config.required_min_rx_ms)
            session.config = config
            return key
        discr = self._new_discriminator()
        holder: list[_Peer] = []

        async def send(packet: ControlPacket) -> None:
            await self._send(holder[0], packet)

        runner = Runner(
            Session(discr, config, random.Random(self._rng.random())),
            send,
            lambda t: self._notify(holder[0], t),
        )
        entry = _Peer(key, runner)
        holder.append(entry)
        self._peers[key] = entry
        self._by_discr[discr] = entry
        if self._nursery is not None:
            self._nursery.start_soon(self._run_peer, entry)
        return key

    def remove_peer(self, key: PeerKey) -> None:
        """Ends the session: one AdminDown packet to the peer, then silence."""
        entry = self._peers.pop(key, None)
        if entry is None:
            return
        del self._by_discr[entry.runner.session.local_discr]
        entry.runner.stop()
        if self._nursery is not None:  # a send that blocks does not keep it
            entry.scope.deadline = trio.current_time() + 1.0

    def subscribe(self, callback: Callable[[StateChange], None]) -> Callable[[], None]:
        """``callback`` gets every state change, synchronously in the
        session's task (it must not block); returns the unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def watch(self, callback: Callable[[PeerKey], None]) -> None:
        """``callback(key)`` when a received packet changed what a session
        shows besides its state: the agreed intervals (a Poll Sequence
        ended), the remote's state or discriminator."""
        self._watchers.append(callback)

    def peers(self) -> list[PeerStatus]:
        return [self._status(p) for _k, p in sorted(self._peers.items(), key=lambda i: repr(i[0]))]

    def state(self, key: PeerKey) -> State | None:
        entry = self._peers.get(key)
        return None if entry is None else entry.runner.session.state

    # -- internals ---------------------------------------------------------------

    def _new_discriminator(self) -> int:
        while True:
            discr = self._rng.randint(1, 0xFFFF_FFFF)
            if discr not in self._by_discr:
                return discr

    async def _run_peer(self, entry: _Peer) -> None:
        kind = (entry.key.multihop, entry.key.vrf)
        if kind not in self._listening and self._nursery is not None:
            await self._nursery.start(self._listen, *kind)
        try:
            entry.sock = await bind_sender(
                entry.key.local, entry.key.vrf, self._rng, self._new_socket
            )
        except BfdError as exc:
            log.error("%s", exc)
            return
        with entry.sock, entry.scope:
            if entry.key not in self._peers:
                entry.runner.stop()
            try:
                await entry.runner.run()
            finally:
                await self._last_words(entry)

    async def _last_words(self, entry: _Peer) -> None:
        """The service ends (the speaker process stops, with its BGP
        sessions): one AdminDown packet, so a peer that honours RFC 5882 3.2
        takes it for no path failure."""
        if entry.runner.session.admin_down() is None:
            return  # already AdminDown: removed, and said so
        with trio.CancelScope(shield=True), trio.move_on_after(0.5):
            await self._send(entry, entry.runner.session.packet())

    async def _send(self, entry: _Peer, packet: ControlPacket) -> None:
        port = self._ports[entry.key.multihop]
        if entry.sock is None:
            return
        try:
            await entry.sock.sendto(encode(packet), (entry.key.peer, port))
        except OSError as exc:
            self.counters.send_errors += 1
            log.debug("BFD to %s: %s", entry.key.peer, exc)
            return
        self.counters.packets_out += 1
        entry.packets_out += 1

    async def _listen(
        self,
        multihop: bool,
        vrf: str | None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        if (multihop, vrf) in self._listening:
            task_status.started()
            return
        self._listening.add((multihop, vrf))
        try:
            sock = await open_listener(self._ports[multihop], vrf, self._new_socket)
        except BfdError:
            self._listening.discard((multihop, vrf))
            raise
        with sock:
            task_status.started()
            while True:
                try:
                    datagram = await receive(sock)
                except OSError as exc:
                    log.warning("BFD receive (vrf %s): %s", vrf, exc)
                    await trio.sleep(0.1)
                    continue
                self._dispatch(datagram, multihop, vrf)

    def _dispatch(self, datagram: Datagram, multihop: bool, vrf: str | None) -> None:
        """RFC 5880 6.8.6 (what needs the sessions) and the TTL checks."""
        self.counters.packets_in += 1
        try:
            packet = decode(datagram.data)
            entry = self._match(packet, datagram, multihop, vrf)
            min_ttl = entry.runner.session.config.min_ttl if multihop else TTL
            if datagram.ttl is None or datagram.ttl < min_ttl:
                raise BadPacket(Discard.TTL, f"{datagram.ttl} < {min_ttl}")
            if entry.runner.session.state is State.ADMIN_DOWN:
                raise BadPacket(Discard.ADMIN_DOWN)
        except BadPacket as exc:
            self.counters.discard(exc.reason)
            log.debug("BFD from %s: %s", datagram.source, exc)
            return
        entry.packets_in += 1
        before = _shown(entry.runner.session)
        entry.runner.deliver(packet)
        if self._watchers and _shown(entry.runner.session) != before:
            for callback in list(self._watchers):
                callback(entry.key)

    def _match(
        self, packet: ControlPacket, datagram: Datagram, multihop: bool, vrf: str | None
    ) -> _Peer:
        if packet.your_discr:
            entry = self._by_discr.get(packet.your_discr)
            if (
                entry is None
                or entry.key.peer != datagram.source
                or entry.key.multihop != multihop
                or entry.key.vrf != vrf
            ):
                raise BadPacket(Discard.NO_SESSION, f"your discriminator {packet.your_discr}")
            return entry
        for local in (datagram.destination, None):
            entry = self._peers.get(PeerKey(datagram.source, local, vrf, multihop))
            if entry is not None:
                return entry
        raise BadPacket(Discard.NO_SESSION, f"{datagram.source} -> {datagram.destination}")

    def _notify(self, entry: _Peer, transition: Transition) -> None:
        if transition.old is State.UP:
            self.counters.flaps += 1
        session = entry.runner.session
        change = StateChange(
            entry.key,
            transition.old,
            transition.new,
            transition.diag,
            session.remote_diag,
            session.remote_cpi,
            session.remote_state,
        )
        log.info(
            "BFD %s: %s -> %s (%s)",
            entry.key.peer,
            transition.old.name,
            transition.new.name,
            transition.diag.name,
        )
        for callback in list(self._subscribers):
            try:
                callback(change)
            except Exception:
                log.exception("BFD state-change subscriber failed")

    def _status(self, entry: _Peer) -> PeerStatus:
        s = entry.runner.session
        up_since = entry.runner.up_since
        return PeerStatus(
            peer=entry.key.peer,
            local=entry.key.local,
            vrf=entry.key.vrf,
            multihop=entry.key.multihop,
            state=s.state.name.lower(),
            remote_state=s.remote_state.name.lower(),
            local_discr=s.local_discr,
            remote_discr=s.remote_discr,
            local_diag=s.local_diag.name.lower(),
            remote_diag=s.remote_diag.name.lower(),
            detect_multiplier=s.config.detect_multiplier,
            remote_detect_multiplier=s.remote_detect_mult,
            desired_min_tx_ms=s.config.desired_min_tx_ms,
            required_min_rx_ms=s.config.required_min_rx_ms,
            remote_desired_min_tx_ms=s.remote_desired_tx / 1000,
            remote_required_min_rx_ms=s.remote_min_rx / 1000,
            tx_interval_ms=s.tx_interval_us() / 1000,
            rx_interval_ms=s.rx_interval_us() / 1000,
            detection_time_ms=s.detection_time() * 1000,
            uptime_s=None if up_since is None else trio.current_time() - up_since,
            flaps=entry.runner.flaps,
            remote_cpi=s.remote_cpi,
            packets_in=entry.packets_in,
            packets_out=entry.packets_out,
        )


def _shown(s: Session) -> tuple[object, ...]:
    """What a session shows that a received packet may change."""
    return (s.tx_interval_us(), s.rx_interval_us(), s.detection_time(), s.remote_state,
            s.remote_discr, s.remote_detect_mult)  # fmt: skip
