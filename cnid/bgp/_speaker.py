"""The daemon's side of the node's BGP speaker (ExaBGP, a process of its own).

ExaBGP runs in the speaker process (``_supervisor.py``: ``cnid speaker``),
which outlives the daemon: a daemon crash, restart, reload or upgrade leaves
every BGP session up. ``Speaker.run`` attaches to it over the API socket its
relay serves (``_relay.py``), and re-attaches whenever the connection ends:

* **attach**: ``state`` (ExaBGP's pid, the established sessions, the paths
  announced to every neighbour), then ``replay`` (every route the established
  peers sent, from ExaBGP's adj-rib-in, each peer's followed by End-of-RIB),
  so a daemon that starts, or comes back, learns what it missed without any
  session going down. Another pid than at the last attach: ExaBGP restarted
  (``SpeakerDown``, every session ended with it); the same pid after a lost
  connection: ``SpeakerResync`` (what was received is re-learned).
* **mode**: ``child``: the speaker process's supervision (and its BFD
  sessions) runs inside the daemon and ends with it (unit and bench
  harnesses); ``detached``: the
  daemon starts ``cnid speaker --detach`` once (none running for the
  directory) and leaves it running; ``external``: someone else runs it (the
  pod's ``speaker`` container, a systemd unit).
* ``configure()``: the neighbours and session settings, written to the run
  directory (``exabgp.conf``, ``speaker.env``) where the speaker process
  reads them: a new configuration is a reload (SIGUSR1: the other sessions
  and their routes stay up), a new environment (what ExaBGP reads only at
  start: its listening address) a restart.
* ``announce()``: the complete set of paths the node wants announced. The
  speaker sends ExaBGP the difference with what it holds (learned at
  attach: a restarted daemon announces what is missing and withdraws what
  is no longer true). When a session comes up (or is found up at attach)
  the speaker announces every path to that peer and then sends End-of-RIB
  (graceful restart with a manual End-of-RIB: ``manual-eor``), but only once
  the daemon has said what it announces, so a restarting node never tells a
  peer "that was all" before it re-announced its routes.
* events (session changes, received updates) go to each listener: the one
  given to the constructor and those that ``subscribe()`` (the EVPN
  controller, as it is built).

The speaker is the one record of the sessions (``peers``: state, since when,
flaps, updates, last error) and of what is announced (``announced``, and
``announced_by_type()``); the EVPN controller reads both from here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import trio

from ..bfd import SocketFactory, udp_socket
from ..core._notify import Notifier
from ..core._startup import Startup
from ._api import CHUNK, ApiConnection, SpeakerUnavailable
from ._aspath import drop_loops
from ._bfd import BfdHost, BfdLink
from ._config import SpeakerConfig, environment, render
from ._events import BgpEvent, NotificationEvent, StateEvent, UpdateEvent
from ._routes import EvpnPath, route_type
from ._supervisor import API_SOCKET, CONFIG_FILE, ENV_FILE, Supervisor, running_pid
from ._wire import Command, SpeakerState

log = logging.getLogger("cnid.bgp")

MODES = ("detached", "external", "child")
#: How often the daemon tries to reach the speaker's socket while it is not there.
CONNECT_RETRY = 0.2


class SpeakerDown(msgspec.Struct, frozen=True):
    """ExaBGP ended: every session went down with it (not the peers' doing)."""

    reason: str


class SpeakerUp(msgspec.Struct, frozen=True):
    pid: int


class SpeakerResync(msgspec.Struct, frozen=True):
    """The daemon re-attached to the same ExaBGP: the sessions stayed up, but
    updates may have been missed; what is received is replayed now (each
    established peer's routes, then its End-of-RIB)."""

    reason: str


SpeakerEvent = BgpEvent | SpeakerDown | SpeakerUp | SpeakerResync
Listener = Callable[[SpeakerEvent], None]


class PeerStatus(msgspec.Struct):
    address: str
    role: str
    #: The neighbour's AS, whether it is eBGP (another AS than the node's)
    #: and its ``bfd`` flag (``cnid.evpn``'s ``BfdGuard`` acts on it).
    asn: int = 0
    ebgp: bool = False
    bfd: bool = False
    state: str = "idle"
    since: float = 0.0
    updates: int = 0
    flaps: int = 0
    last_error: str = ""
    #: The Restart Time the peer advertised in the OPEN of its last session
    #: (graceful restart, RFC 4724; 0: none, or not known to this daemon):
    #: how long its routes outlive that session at least (``cnid.evpn``).
    restart_time: int = 0


class SpeakerStats(msgspec.Struct):
    restarts: int = 0
    pid: int = 0
    started: float = 0.0
    commands: int = 0
    command_errors: int = 0
    #: Attachments to a running ExaBGP (the first one included).
    attaches: int = 0
    #: Routes replayed at the last attach, and how long it took (s).
    replayed: int = 0
    replay_seconds: float = 0.0


class Speaker:
    def __init__(
        self,
        *,
        run_dir: Path,
        log_level: str = "WARNING",
        listener: Listener | None = None,
        on_restart: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        launcher: tuple[str, ...] = (),
        startup: Startup | None = None,
        mode: str = "child",
        journal: Path | None = None,
        bfd_sockets: SocketFactory = udp_socket,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"speaker mode {mode!r}: one of {', '.join(MODES)}")
        self.run_dir = run_dir
        self.api_socket = str(run_dir / API_SOCKET)
        self.config_path = run_dir / CONFIG_FILE
        self.env_path = run_dir / ENV_FILE
        self.log_level = log_level
        self.mode = mode
        self._listeners: list[Listener] = [listener] if listener is not None else []
        self.on_restart = on_restart
        self.clock = clock
        #: A command prefix for the speaker process (test beds: ``ip netns exec NS``).
        self.launcher = launcher
        #: The daemon's start-up timeline: the speaker's attachment, the
        #: first session and the first announcement.
        self.startup = startup or Startup()
        self.config: SpeakerConfig | None = None
        #: Applied to every configuration given to ``configure`` (the
        #: routed underlay adds its family, local addresses and VTEP route).
        self.adjust: Callable[[SpeakerConfig], SpeakerConfig] | None = None
        self._source: SpeakerConfig | None = None
        self.peers: dict[str, PeerStatus] = {}
        self.stats = SpeakerStats()
        self._desired: frozenset[EvpnPath] | None = None
        self._desired_by_type = _by_type(frozenset())
        self._held: set[EvpnPath] = set()
        self._to_refresh: set[str] = set()
        self._to_ask_again: set[str] = set()
        self._conn: ApiConnection | None = None
        self._config_changed = trio.Event()
        #: Bumped on each change of ``config`` (the BFD sessions follow it).
        self.configured = Notifier()
        self._sync_wanted = trio.Event()
        self._supervisor: Supervisor | None = None
        self._spawned = False
        #: Where the neighbours and the paths announced are kept for the next
        #: start (``restore``); None: nowhere.
        self.journal = journal
        #: Every event since the start, until ``subscribed`` says every
        #: listener of the daemon's start is there: each hears all of it. The
        #: daemon attaches (and the replay arrives) while its controllers are
        #: still being made, one after the other: the underlay's, made after
        #: the EVPN controller, missed the replay's IPv4 unicast routes and
        #: End-of-RIB and stayed adopting (test_underlay_daemon).
        self._early: list[SpeakerEvent] | None = []
        #: Peers whose session changed (an event) while the state was asked.
        self._changed_while_attaching: set[str] = set()
        #: The BFD sessions, which run beside ExaBGP (``_bfd``): what the
        #: daemon asks for and the states it gets.
        self.bfd = BfdLink(run_dir)
        #: Child mode: the BFD sessions' sockets (test beds: a namespace's).
        self.bfd_sockets = bfd_sockets

    # -- what the daemon tells the speaker ------------------------------------

    def configure(self, config: SpeakerConfig | None) -> None:
        self._source = config
        if config is not None and self.adjust is not None:
            config = self.adjust(config)
        if config == self.config:
            return
        old = {n.address: n for n in (self.config.neighbors if self.config else ())}
        for n in config.neighbors if config else ():
            was = old.get(n.address)
            if was is not None and was.allow_as_in != n.allow_as_in:
                # routes dropped (or kept) by the old rule: the peer sends
                # them again (FRR's soft reconfiguration inbound)
                self._to_ask_again.add(n.address)
                self._sync_wanted.set()
        self.config = config
        wanted = {n.address: n for n in (config.neighbors if config else ())}
        for address in list(self.peers):
            if address not in wanted:
                del self.peers[address]
        for address, n in wanted.items():
            assert config is not None
            peer = self.peers.setdefault(address, PeerStatus(address, n.role))
            peer.role = n.role
            peer.asn = n.peer_as(config.asn)
            peer.ebgp = n.ebgp(config.asn)
            peer.bfd = n.bfd
        self._write_files(config)
        self._save()
        self._config_changed.set()
        self.configured.bump()

    def reconfigure(self) -> None:
        """``configure`` again with the last configuration given (after a
        change of what ``adjust`` adds)."""
        self.configure(self._source)

    def _write_files(self, config: SpeakerConfig | None) -> None:
        """What the speaker process runs ExaBGP from: no neighbours, no files
        (ExaBGP is stopped)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if config is None or not config.neighbors:
            for path in (self.config_path, self.env_path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        else:
            env = json.dumps(environment(config, self.log_level), sort_keys=True)
            # the environment first: the configuration is what starts ExaBGP
            write_private(self.env_path, env)
            write_private(self.config_path, render(config, self.api_socket))
            log.info(
                "BGP: router-id %s, AS %d, neighbours %s",
                config.router_id,
                config.asn,
                ", ".join(n.address + (" (passive)" * n.passive) for n in config.neighbors),
            )
        if self._supervisor is not None:
            self._supervisor.poke()

    def subscribe(self, listener: Listener) -> None:
        """Have ``listener`` called with every event from now on (called
        synchronously, in order: it must not block); until ``subscribed``,
        it first hears every event since the start."""
        self._listeners.append(listener)
        for event in list(self._early or ()):
            listener(event)

    def subscribed(self) -> None:
        """Every listener of the daemon's start is there: the events since
        the start need no longer be kept."""
        self._early = None

    def announce(self, paths: frozenset[EvpnPath]) -> None:
        """The whole set of paths to announce (replaces the previous one)."""
        if paths == self._desired:
            return
        self._desired = paths
        self._desired_by_type = _by_type(paths)
        self._save()
        self._sync_wanted.set()

    # -- the journal: what the next start announces first ---------------------

    def _save(self) -> None:
        if self.journal is None:
            return
        saved = SavedSpeaker(self.config, tuple(sorted(self._desired or (), key=_path_key)))
        try:
            write_private(self.journal, msgspec.json.encode(saved).decode())
        except OSError as exc:
            log.warning("BGP: cannot save %s: %s", self.journal, exc.strerror)

    def restore(self) -> int:
        """At start, before anything else: the neighbours and the paths of
        the previous run, from the journal. The speaker is configured with
        them (ExaBGP starts now if it is not running) and they are announced
        as soon as it is attached, End-of-RIB after them, without waiting
        for the node's state to be rebuilt (the API server's lists): a
        restarted speaker's peers get back what they held before its
        restart, in seconds, within the restart time they keep it for. The
        first ``announce()`` replaces them. The number of paths restored."""
        if self.journal is None:
            return 0
        try:
            saved = msgspec.json.decode(self.journal.read_bytes(), type=SavedSpeaker)
        except FileNotFoundError:
            return 0
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("BGP: %s unreadable, ignored: %s", self.journal, exc)
            return 0
        if saved.config is not None:
            self.configure(saved.config)
        if saved.paths:
            self.announce(frozenset(saved.paths))
        log.info(
            "BGP: restored from %s: %d neighbours, %d paths to announce first",
            self.journal,
            len(saved.config.neighbors) if saved.config else 0,
            len(saved.paths),
        )
        return len(saved.paths)

    async def teardown(self, peer: str, hold: float, code: int = 1) -> bool:
        """End the session to ``peer`` with a NOTIFICATION (Cease, subcode
        ``code``: 1 is "maximum number of prefixes reached") and make none
        with it for ``hold`` seconds; False when ExaBGP is not running (a
        restarted ExaBGP holds nothing down: the limit trips again if the
        peer still sends too much)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            ack = await conn.call(
                Command(conn.next_id(), "teardown", (peer,), hold=hold, code=code)
            )
        except SpeakerUnavailable as exc:
            log.warning("BGP peer %s: teardown not sent: %s", peer, exc.msg)
            return False
        self.stats.commands += 1
        return ack.ok

    async def release(self, peer: str) -> bool:
        """End a ``teardown``'s hold early: the session to ``peer`` is made
        again at once; False when ExaBGP is not running (it holds nothing)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            ack = await conn.call(Command(conn.next_id(), "release", (peer,)))
        except SpeakerUnavailable as exc:
            log.warning("BGP peer %s: release not sent: %s", peer, exc.msg)
            return False
        self.stats.commands += 1
        return ack.ok

    @property
    def announced(self) -> frozenset[EvpnPath]:
        return self._desired or frozenset()

    @property
    def running(self) -> bool:
        return self._conn is not None

    # -- the service -----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            if self.mode == "child":
                self._supervisor = Supervisor(
                    self.run_dir, launcher=self.launcher, on_exit=self._exabgp_exited
                )
                await nursery.start(self._supervisor.run)
                await nursery.start(BfdHost(self.run_dir, socket_factory=self.bfd_sockets).run)
            nursery.start_soon(self.bfd.run)
            nursery.start_soon(self._sync_loop)
            nursery.start_soon(self._attach_loop)
            task_status.started()

    def _exabgp_exited(self, reason: str) -> None:
        """Child mode: ExaBGP's end is known at once (elsewhere at the next
        attach, by its pid)."""
        if self.stats.pid:
            self._stopped(reason)
            self.stats.pid = 0

    async def _spawn_detached(self) -> None:
        """``cnid speaker --detach`` for the run directory, unless one runs."""
        if running_pid(self.run_dir):
            return
        argv = [
            *self.launcher,
            sys.executable,
            "-m",
            "cnid.bgp",
            "--run-dir",
            str(self.run_dir),
            "--detach",
        ]
        log.info("BGP: starting the speaker process (detached): %s", " ".join(argv))
        await trio.run_process(argv, check=False)
        self._spawned = True

    async def _attach_loop(self) -> None:
        """Connect to the speaker's socket, attach, serve the connection;
        again when it ends."""
        while True:
            config = self.config
            if config is None or not config.neighbors:
                self._config_changed = trio.Event()
                await self._config_changed.wait()
                continue
            if self.mode == "detached":
                await self._spawn_detached()
            try:
                sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
                try:
                    await sock.connect(self.api_socket)
                except OSError:
                    sock.close()
                    raise
            except OSError:
                await trio.sleep(CONNECT_RETRY)
                continue
            await self._serve(ApiConnection(sock, self._event))
            log.warning("BGP: the speaker's API connection ended; attaching again")
            await trio.sleep(CONNECT_RETRY)

    async def _serve(self, conn: ApiConnection) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(conn.read_forever)
                try:
                    await self._attach(conn)
                except SpeakerUnavailable as exc:
                    log.warning("BGP: attaching to the speaker: %s", exc.msg)
                    nursery.cancel_scope.cancel()
                    return
                await conn.closed.wait()
                nursery.cancel_scope.cancel()
        finally:
            if self._conn is conn:
                self._conn = None
            conn.close()
            for peer in self.peers.values():
                if peer.state == "up":
                    peer.state = "unknown"  # until the next attach says

    async def _attach(self, conn: ApiConnection) -> None:
        """Learn what the running ExaBGP holds and what it received."""
        self._changed_while_attaching = set()
        ack = await conn.call(Command(conn.next_id(), "state"))
        state = ack.state
        if state is None:
            raise SpeakerUnavailable("the speaker answered no state (an older extension?)")
        previous = self.stats.pid
        if previous and previous != state.pid:
            self._stopped(f"restarted (pid {previous} -> {state.pid})")
        self.stats.attaches += 1
        self.stats.pid = state.pid
        self.stats.started = state.started
        if previous != state.pid:
            self.startup.mark("exabgp")
            self._emit(SpeakerUp(state.pid))
        elif previous:
            self._emit(SpeakerResync("the speaker's API connection was lost"))
        self._held = set(state.paths)
        self._learn_sessions(state)
        log.info(
            "BGP: attached to ExaBGP (pid %d, up %.0f s): %d sessions established, "
            "%d paths announced",
            state.pid,
            max(0.0, time.time() - state.started),
            len(state.established),
            len(state.paths),
        )
        began = trio.current_time()
        ack = await conn.call(Command(conn.next_id(), "replay"))
        self.stats.replayed = ack.done
        self.stats.replay_seconds = trio.current_time() - began
        log.info("BGP: %d received routes replayed in %.3f s", ack.done, self.stats.replay_seconds)
        self._conn = conn
        self.startup.mark("exabgp-api")
        self._sync_wanted.set()

    def _learn_restart_times(self, state: SpeakerState) -> None:
        """Kept after the session ends: that is when it counts."""
        for address, seconds in state.restart_times:
            peer = self.peers.get(address)
            if peer is not None:
                peer.restart_time = seconds

    def _learn_sessions(self, state: SpeakerState) -> None:
        self._learn_restart_times(state)
        up = dict(state.established)
        for address, peer in self.peers.items():
            if address in self._changed_while_attaching:
                continue  # its own event (read before the answer) is newer
            if address in up:
                if peer.state != "up":
                    peer.state = "up"
                    peer.since = up[address]
                # everything to it again, then End-of-RIB (announcing what
                # ExaBGP holds already sends nothing: its adj-rib-out)
                self._to_refresh.add(address)
            elif peer.state in ("up", "unknown"):
                peer.state = "idle"
                peer.since = self.clock()
        for address in up:
            if address not in self._changed_while_attaching:
                self._emit(StateEvent(address, "up"))

    def _stopped(self, reason: str) -> None:
        self._held.clear()
        self.stats.restarts += 1
        if self.on_restart is not None:
            self.on_restart()
        for peer in self.peers.values():
            if peer.state != "idle":
                peer.state = "idle"
                peer.since = self.clock()
        self._emit(SpeakerDown(reason))

    # -- events -----------------------------------------------------------------

    def _emit(self, event: SpeakerEvent) -> None:
        if self._early is not None:
            self._early.append(event)
        for listener in self._listeners:
            listener(event)

    def _event(self, event: BgpEvent) -> None:
        if isinstance(event, StateEvent):
            self._changed_while_attaching.add(event.peer)
            peer = self.peers.get(event.peer)
            if peer is not None and peer.state != event.state:
                if peer.state == "up":
                    peer.flaps += 1
                peer.state = event.state
                peer.since = self.clock()
                if event.state == "down" and event.reason:
                    peer.last_error = event.reason
                log.info(
                    "BGP peer %s: %s%s",
                    event.peer,
                    event.state,
                    f" ({event.reason})" if event.reason else "",
                )
            if event.state == "up":
                if self.startup.mark("first-session"):
                    log.info(
                        "BGP: first session (%s) %.2f s after the daemon's start",
                        event.peer,
                        self.startup.at("first-session"),
                    )
                self._to_refresh.add(event.peer)
                self._sync_wanted.set()
        elif isinstance(event, UpdateEvent):
            event = self._without_loops(event)
            peer = self.peers.get(event.peer)
            if peer is not None:
                peer.updates += 1
        elif isinstance(event, NotificationEvent):
            peer = self.peers.get(event.peer)
            if peer is not None:
                peer.last_error = (
                    f"NOTIFICATION {event.direction} {event.code}/{event.subcode} {event.data}"
                ).strip()
        self._emit(event)

    def _without_loops(self, event: UpdateEvent) -> UpdateEvent:
        """AS_PATH loop detection (ExaBGP has none): against the node's AS,
        with the neighbour's ``allow_as_in``."""
        config = self.config
        if config is None or not event.announced:
            return event
        allow = next((n.allow_as_in for n in config.neighbors if n.address == event.peer), 0)
        return drop_loops(event, config.asn, allow)

    # -- announcements -------------------------------------------------------

    async def _sync_loop(self) -> None:
        while True:
            await self._sync_wanted.wait()
            self._sync_wanted = trio.Event()
            conn = self._conn
            if conn is None or self._desired is None:
                continue
            try:
                await self._sync(conn, self._desired)
            except SpeakerUnavailable as exc:
                log.warning("BGP announcements deferred: %s", exc.msg)
                # The next connection (or the next change) syncs again.

    async def _sync(self, conn: ApiConnection, desired: frozenset[EvpnPath]) -> None:
        gone = [p for p in self._held if p not in desired]
        new = [p for p in desired if p not in self._held]
        if gone:
            await self._call(conn, "withdraw", (), gone)
            self._held.difference_update(gone)
        if new:
            await self._call(conn, "announce", (), new)
            self._held.update(new)
        if gone or new:
            log.info(
                "BGP: %d paths announced (%d new, %d withdrawn)", len(desired), len(new), len(gone)
            )
        ask, self._to_ask_again = self._to_ask_again, set()
        for peer in sorted(ask):
            if peer in self.peers and self.peers[peer].state == "up":
                await self._call(conn, "refresh", (peer,), [])
                log.info("BGP peer %s: route refresh asked (allow_as_in changed)", peer)
        refresh, self._to_refresh = self._to_refresh, set()
        for peer in sorted(refresh):
            # A (re)established session: everything to that peer, then
            # End-of-RIB (ExaBGP keeps the routes per neighbour, but one
            # added by a reload starts empty).
            if desired:
                await self._call(conn, "announce", (peer,), list(desired))
            await self._call(conn, "eor", (peer,), [])
            log.info("BGP peer %s: %d paths sent, then End-of-RIB", peer, len(desired))
        if refresh:
            # The sessions' OPENs (their restart times) are ExaBGP's, and its
            # session event carries none: asked for once the peers have
            # their routes (it counts only when a session ends).
            ack = await conn.call(Command(conn.next_id(), "state", tuple(sorted(refresh))))
            if ack.state is not None:
                self._learn_restart_times(ack.state)

    async def _call(
        self, conn: ApiConnection, op: str, peers: tuple[str, ...], paths: list[EvpnPath]
    ) -> None:
        chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)] or [[]]
        for chunk in chunks:
            command = Command(conn.next_id(), op, peers, tuple(chunk))  # type: ignore[arg-type]
            ack = await conn.call(command)
            self.stats.commands += 1
            if ack.ok and op == "announce" and chunk and self.startup.mark("first-announcement"):
                log.info(
                    "BGP: first announcement acknowledged %.2f s after the daemon's start",
                    self.startup.at("first-announcement"),
                )
            if not ack.ok:
                self.stats.command_errors += 1
                for error in ack.errors[:5]:
                    log.error("ExaBGP refused %s to %s: %s", op, list(peers) or "all", error)

    def announced_by_type(self) -> dict[int, int]:
        """The paths announced, by route type (2, 3 and 5)."""
        return dict(self._desired_by_type)


class SavedSpeaker(msgspec.Struct, frozen=True):
    """The speaker's journal (``bgp.json`` in the state directory)."""

    config: SpeakerConfig | None
    paths: tuple[EvpnPath, ...] = ()


def _path_key(path: EvpnPath) -> tuple[object, ...]:
    return path.route.key


def _by_type(paths: frozenset[EvpnPath]) -> dict[int, int]:
    out = {2: 0, 3: 0, 5: 0}
    for path in paths:
        out[route_type(path.route)] += 1
    return out


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only, from its creation on (it
    may hold the MD5 password): a temporary file opened with mode 0600,
    then renamed over ``path``."""
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a leftover could have any mode: O_EXCL below
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w") as f:
            fd = -1
            f.write(text)
    finally:
        if fd >= 0:
            os.close(fd)
    tmp.replace(path)
