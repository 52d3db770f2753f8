"""BFD in the speaker process: the sessions outlive the daemon, as BGP's do.

FRR 8.4 resets a BGP session when its BFD session goes down (a timeout, or
the AdminDown of a stopping peer), so BFD runs where the BGP sessions do:
in the speaker process (``_supervisor.serve``; inside the daemon with
``speaker = child``). Two ends, one code path in every mode:

* ``BfdHost`` (the speaker's side) runs a ``cnid.bfd.BfdService`` from
  ``bfd.json`` in the run directory, which the daemon writes as it writes
  ``exabgp.conf``. The file is polled (every ``POLL`` seconds): sessions
  added, changed (new timers: a Poll Sequence) or removed (AdminDown)
  without disturbing the others. It serves ``bfd.sock``: to each daemon
  that connects, a ``BfdSnapshot`` (every session's status, the counters,
  the failures still down), then every ``BfdChanged`` as it happens, and a
  snapshot again every ``SNAPSHOT_EVERY`` seconds, after each change of the
  file and as soon as a session shows other intervals (``BfdService.watch``). Frames as
  the CNI socket's (``cnid.core._protocol.frame``: a length, then
  MessagePack). While no daemon is connected, the host acts on
  a failure itself: it tears the BGP session down through ExaBGP's API
  (the relay's socket, as the daemon does: Cease "BFD Down", held down) and
  releases it when BFD is Up again. The speaker's end (SIGTERM) ends the
  sessions with AdminDown (RFC 5882 3.2: the peers take no action).
* ``BfdLink`` (the daemon's side) writes ``bfd.json`` (``configure``) and
  reads the host's frames: ``subscribe`` gets every state change, ``peers``
  and ``counters`` the last snapshot (``cnictl bfd peers``, the metrics).
  At each (re)connection it reports what the snapshot says it missed: a
  session failed while no daemon listened (so the daemon holds its BGP
  session down and removes what was learned from it) or Up again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import msgspec
import trio

from ..bfd import (
    BfdService,
    Counters,
    Diag,
    PeerConfig,
    PeerKey,
    PeerStatus,
    SocketFactory,
    State,
    StateChange,
    udp_socket,
)
from ..core._errors import CnidError
from ..core._protocol import frame
from ..core._sockets import read_frame, send_all, serve_unix
from ._api import ApiConnection
from ._wire import Command

log = logging.getLogger("cnid.bfd")

BFD_FILE = "bfd.json"
BFD_SOCKET = "bfd.sock"
POLL = 0.25
SNAPSHOT_EVERY = 1.0
#: How often a daemon tries to reach the host's socket while it is not there.
CONNECT_RETRY = 0.2
#: Cease subcode "BFD Down" (RFC 9384).
CEASE_BFD_DOWN = 10
#: How long a BFD failure holds the BGP session down at most (the daemon's
#: ``BfdGuard`` and, while no daemon is attached, ``BfdHost``; ExaBGP's hold
#: from the ``teardown`` is the same). BFD Up releases it earlier; a session
#: that comes up anyway while held is torn down again. After it BGP may
#: connect with BFD still down (RFC 5882 allows a session without BFD): a
#: peer that starts its BFD session only with its BGP session (FRR's
#: dynamic neighbours, ``bgp listen range``) would otherwise never come
#: back. BFD going Down again after it was Up tears down again. 30 s: cnid's
#: default BGP hold time, the time a failure took to be seen without BFD.
BFD_HOLD = 30.0


class BfdSession(msgspec.Struct, frozen=True):
    key: PeerKey
    config: PeerConfig


class BfdWanted(msgspec.Struct, frozen=True):
    """``bfd.json``: the sessions the daemon asks for."""

    sessions: tuple[BfdSession, ...] = ()


class BfdSnapshot(msgspec.Struct, frozen=True, tag="snapshot"):
    """Every session's status and the counters; ``failed``: the failure
    (``StateChange.failed``) of each session still down after it."""

    peers: tuple[PeerStatus, ...] = ()
    counters: Counters = msgspec.field(default_factory=Counters)
    failed: tuple[StateChange, ...] = ()
    pid: int = 0
    #: The peers whose BGP session ExaBGP holds down for BFD.
    held: tuple[str, ...] = ()


class BfdChanged(msgspec.Struct, frozen=True, tag="change"):
    change: StateChange


BfdMessage = BfdSnapshot | BfdChanged
_decoder = msgspec.msgpack.Decoder(BfdMessage)


def decode_message(payload: bytes) -> BfdMessage:
    return _decoder.decode(payload)


def key_of(status: PeerStatus) -> PeerKey:
    return PeerKey(status.peer, status.local, status.vrf, status.multihop)


# ------------------------------------------------------------ the speaker's side


class BfdHost:
    """The BFD sessions of ``bfd.json``, served on ``bfd.sock``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        socket_factory: SocketFactory = udp_socket,
        poll: float = POLL,
        service: BfdService | None = None,
        hold: float = BFD_HOLD,
    ) -> None:
        self.run_dir = run_dir
        self.poll = poll
        #: How long a failure holds its BGP session down at most.
        self.hold = hold
        self.service = service or BfdService(socket_factory=socket_factory)
        self.service.subscribe(self._changed)
        self.service.watch(lambda _key: self._status_changed())
        self._applied: dict[PeerKey, PeerConfig] = {}
        #: Each session down after a failure: that failure.
        self.failed: dict[PeerKey, StateChange] = {}
        #: When each of those failed (trio's clock): forgotten after ``hold``.
        self._failed_at: dict[PeerKey, float] = {}
        #: The peers ExaBGP holds down for BFD (by us, or by the daemon).
        self.held: set[str] = set()
        self._clients: set[trio.MemorySendChannel[bytes]] = set()
        self._work = trio.Event()
        self._unreached = False

    @property
    def attached(self) -> bool:
        """A daemon is connected (it acts on the failures)."""
        return bool(self._clients)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            self._apply(self._read())  # the previous run's sessions, at once
            await nursery.start(self.service.run)
            await nursery.start(
                functools.partial(serve_unix, max_connections=4),
                str(self.run_dir / BFD_SOCKET),
                self._serve,
            )
            nursery.start_soon(self._follow)
            nursery.start_soon(self._snapshots)
            nursery.start_soon(self._act_alone)
            task_status.started()

    # -- bfd.json --------------------------------------------------------------

    def _read(self) -> bytes:
        try:
            return (self.run_dir / BFD_FILE).read_bytes()
        except FileNotFoundError:
            return b""
        except OSError as exc:
            log.warning("BFD: %s: %s", BFD_FILE, exc.strerror)
            return b""

    async def _follow(self) -> None:
        seen = self._read()
        while True:
            await trio.sleep(self.poll)
            data = self._read()
            if data != seen:
                seen = data
                self._apply(data)
                self._broadcast(frame(self.snapshot()))

    def _apply(self, data: bytes) -> None:
        try:
            wanted = msgspec.json.decode(data, type=BfdWanted) if data else BfdWanted()
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.error("BFD: %s ignored: %s", BFD_FILE, exc)
            return
        sessions = {s.key: s.config for s in wanted.sessions}
        for key in [k for k in self._applied if k not in sessions]:
            log.info("BFD %s: session ended (not asked for any more)", key.peer)
            self.service.remove_peer(key)
            self.failed.pop(key, None)
            self._failed_at.pop(key, None)
            del self._applied[key]
        for key, config in sessions.items():
            if self._applied.get(key) == config:
                continue
            log.info(
                "BFD %s: session from %s (%s, %d ms x %d)",
                key.peer,
                key.local,
                "multihop" if key.multihop else "single hop",
                config.desired_min_tx_ms,
                config.detect_multiplier,
            )
            self.service.add_peer(
                key.peer, local=key.local, vrf=key.vrf, multihop=key.multihop, config=config
            )
            self._applied[key] = config
        self._work.set()

    # -- what the daemons get -------------------------------------------------------

    def snapshot(self) -> BfdSnapshot:
        return BfdSnapshot(
            tuple(self.service.peers()),
            self.service.counters,
            tuple(self.failed.values()),
            os.getpid(),
            tuple(sorted(self.held)),
        )

    def _changed(self, change: StateChange) -> None:
        if change.failed:
            self.failed[change.key] = change
            self._failed_at[change.key] = trio.current_time()
        elif change.new in (State.UP, State.ADMIN_DOWN):
            self.failed.pop(change.key, None)
            self._failed_at.pop(change.key, None)
        self._broadcast(frame(BfdChanged(change)))
        self._work.set()

    def _broadcast(self, data: bytes) -> None:
        for channel in list(self._clients):
            try:
                channel.send_nowait(data)
            except (trio.WouldBlock, trio.ClosedResourceError):
                log.warning("BFD: a daemon does not read its messages: disconnected")
                self._clients.discard(channel)
                channel.close()

    def _status_changed(self) -> None:
        """A session shows other intervals (a Poll Sequence ended), or the
        remote's state changed: the daemons see it now, not a second later."""
        if self._clients:
            self._broadcast(frame(self.snapshot()))

    async def _snapshots(self) -> None:
        """A snapshot every SNAPSHOT_EVERY seconds: uptimes, counters."""
        while True:
            await trio.sleep(SNAPSHOT_EVERY)
            if self._clients:
                self._broadcast(frame(self.snapshot()))

    async def _serve(self, sock: trio.socket.SocketType) -> None:
        send, receive = trio.open_memory_channel[bytes](256)
        send.send_nowait(frame(self.snapshot()))
        self._clients.add(send)
        self._work.set()
        log.info("BFD: a daemon attached")
        try:
            async with trio.open_nursery() as nursery:

                async def until_closed() -> None:
                    with contextlib.suppress(OSError):
                        while await sock.recv(4096):
                            pass  # the daemon says nothing: only its end counts
                    nursery.cancel_scope.cancel()

                nursery.start_soon(until_closed)
                async with receive:
                    async for data in receive:
                        await send_all(sock, data)
                nursery.cancel_scope.cancel()
        finally:
            self._clients.discard(send)
            send.close()
            self._work.set()
            log.info("BFD: the daemon detached")

    # -- no daemon: the host tears BGP down itself ----------------------------------

    async def _act_alone(self) -> None:
        """While no daemon is attached, ExaBGP holds down exactly the peers
        whose BFD failed; while one is, it does that itself (and holds
        those)."""
        while True:
            self._expire()
            want = {c.key.peer for c in self.failed.values()}
            if self._clients:
                self.held = want
            elif want != self.held:
                await self._hold(want)
            with trio.move_on_after(SNAPSHOT_EVERY):  # a refusal is retried
                await self._work.wait()
            self._work = trio.Event()

    def _expire(self) -> None:
        """A failure held down for ``hold`` is forgotten: BGP is released
        with BFD still down (a peer that starts BFD only with BGP), and a
        daemon that attaches is not told of it (nor holds it down again)."""
        now = trio.current_time()
        for key, at in list(self._failed_at.items()):
            if now - at >= self.hold:
                del self._failed_at[key]
                if self.failed.pop(key, None) is not None:
                    log.warning(
                        "BFD %s still down after %.0f s: BGP session no longer held down",
                        key.peer,
                        now - at,
                    )
                    self._broadcast(frame(self.snapshot()))

    async def _hold(self, want: set[str]) -> None:
        now = trio.current_time()
        held = {
            k.peer: max(self._failed_at.get(k, now) + self.hold - now, 1.0) for k in self.failed
        }
        try:
            async with api_session(self.run_dir) as conn:
                for peer in sorted(want - self.held):
                    # ExaBGP's hold ends with the bound, not later
                    command = Command(
                        conn.next_id(), "teardown", (peer,), hold=held[peer], code=CEASE_BFD_DOWN
                    )
                    if (await conn.call(command)).ok:
                        log.warning("BFD %s down, no daemon attached: BGP session torn down", peer)
                        self.held.add(peer)
                for peer in sorted(self.held - want):
                    if (await conn.call(Command(conn.next_id(), "release", (peer,)))).ok:
                        log.info("BFD %s Up again, no daemon attached: BGP released", peer)
                        self.held.discard(peer)
        except (OSError, CnidError) as exc:
            # retried every second: said once (ExaBGP not running holds no
            # session up anyway)
            if not self._unreached:
                log.warning("BFD: ExaBGP's API not reached (retrying): %s", exc)
            self._unreached = True
        else:
            self._unreached = False


@contextlib.asynccontextmanager
async def api_session(run_dir: Path) -> AsyncIterator[ApiConnection]:
    """A short connection to ExaBGP's API (the relay's socket; it replaces
    a daemon's connection, so only while none is attached). What ExaBGP
    says meanwhile is dropped."""
    from ._supervisor import API_SOCKET

    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    with sock:
        await sock.connect(str(run_dir / API_SOCKET))
        conn = ApiConnection(sock, lambda _event: None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.read_forever)
            yield conn
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------ the daemon's side


class BfdLink:
    """The daemon's end: the sessions asked for (``bfd.json``) and the
    host's states (``bfd.sock``)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._wanted: dict[PeerKey, PeerConfig] | None = None
        self._subscribers: list[Callable[[StateChange], None]] = []
        #: Each session as the host last said, and when (trio's clock).
        self._peers: dict[PeerKey, tuple[PeerStatus, float]] = {}
        self.counters = Counters()
        #: A snapshot came on the current connection: the states are known.
        self.synced = False
        self.host_pid = 0
        #: The last state each session was reported in to the subscribers.
        self._reported: dict[PeerKey, State] = {}
        #: The peers whose session failed and is not Up again (as reported).
        self.failing: set[str] = set()
        #: The peers whose BGP session ExaBGP holds down for BFD (the
        #: speaker's or a previous daemon's teardown), as the host last said.
        self.held_by_speaker: set[str] = set()
        #: The last change reported of each session (``replay``).
        self._last: dict[PeerKey, StateChange] = {}

    @property
    def sessions(self) -> dict[PeerKey, PeerConfig]:
        return dict(self._wanted or {})

    def configure(self, sessions: Mapping[PeerKey, PeerConfig]) -> None:
        """The sessions wanted (the whole set; written only when it changed)."""
        if self._wanted == sessions:
            return
        from ._speaker import write_private

        self._wanted = dict(sessions)
        ordered = sorted(sessions.items(), key=lambda item: repr(item[0]))
        doc = BfdWanted(tuple(BfdSession(k, c) for k, c in ordered))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_private(self.run_dir / BFD_FILE, msgspec.json.encode(doc).decode())

    def subscribe(self, callback: Callable[[StateChange], None]) -> Callable[[], None]:
        """``callback`` gets every state change (synchronously: it must not
        block); returns the unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def peers(self) -> list[PeerStatus]:
        """The sessions asked for, as the host last said (uptimes now)."""
        wanted, now = self._wanted or {}, trio.current_time()
        return [
            p if p.uptime_s is None else msgspec.structs.replace(p, uptime_s=p.uptime_s + now - at)
            for key, (p, at) in self._peers.items()
            if key in wanted
        ]

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        path = str(self.run_dir / BFD_SOCKET)
        while True:
            sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
            with sock:
                try:
                    await sock.connect(path)
                except OSError:
                    await trio.sleep(CONNECT_RETRY)
                    continue
                try:
                    while True:
                        payload, fds = await read_frame(sock)
                        for fd in fds:
                            os.close(fd)
                        self.deliver(decode_message(payload))
                except (CnidError, OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                    log.warning("BFD: the speaker's BFD connection ended: %s", exc)
                finally:
                    self.synced = False
            await trio.sleep(CONNECT_RETRY)

    def deliver(self, message: BfdMessage) -> None:
        """One message from the host."""
        if isinstance(message, BfdChanged):
            change = message.change
            self._changed_status(change)
            if self._reported.get(change.key) is change.new:
                return  # already told (by the snapshot that came first)
            self._report(change)
            return
        now = trio.current_time()
        self._peers = {key_of(p): (p, now) for p in message.peers}
        self.counters = message.counters
        self.held_by_speaker = set(message.held)
        if not self.synced or message.pid != self.host_pid:
            self.synced, self.host_pid = True, message.pid
            self._catch_up(message)

    def _changed_status(self, change: StateChange) -> None:
        """A session's view follows its changes at once (not a second later,
        with the next snapshot)."""
        known = self._peers.get(change.key)
        if known is None:
            return
        status, at = known
        up = change.new is State.UP
        was_up = change.old is State.UP
        self._peers[change.key] = (
            msgspec.structs.replace(
                status,
                state=change.new.name.lower(),
                remote_state=change.remote_state.name.lower(),
                local_diag=change.diag.name.lower(),
                remote_diag=change.remote_diag.name.lower(),
                remote_cpi=change.remote_cpi,
                flaps=status.flaps + (was_up and not up),
                uptime_s=(status.uptime_s if was_up else 0.0) if up else None,
            ),
            at if up and was_up else trio.current_time(),
        )

    def _catch_up(self, snapshot: BfdSnapshot) -> None:
        """What happened while nobody listened: failures still down, and
        sessions Up again (or Up from the start of this daemon)."""
        failed = {c.key: c for c in snapshot.failed}
        for status in snapshot.peers:
            key = key_of(status)
            state = State[status.state.upper()]
            before = self._reported.get(key)
            if key in failed:
                if before is not failed[key].new:
                    self._report(failed[key])
            elif state is State.UP and before is not State.UP:
                remote = State[status.remote_state.upper()]
                self._report(
                    StateChange(
                        key,
                        before if before is not None else State.DOWN,
                        State.UP,
                        Diag.NONE,
                        Diag[status.remote_diag.upper()],
                        status.remote_cpi,
                        remote,
                    )
                )
            else:
                self._reported[key] = state

    def replay(self, key: PeerKey) -> None:
        """The last change of session ``key`` to the subscribers again: for a
        session the daemon starts following after the host reported it (the
        attach's catch-up comes before the daemon knows its neighbours)."""
        change = self._last.get(key)
        if change is not None:
            self._report(change)

    def _report(self, change: StateChange) -> None:
        self._reported[change.key] = change.new
        self._last[change.key] = change
        if change.failed:
            self.failing.add(change.key.peer)
        elif change.new in (State.UP, State.ADMIN_DOWN):
            self.failing.discard(change.key.peer)
        for callback in list(self._subscribers):
            try:
                callback(change)
            except Exception:
                log.exception("BFD state-change subscriber failed")
