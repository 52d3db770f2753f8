"""ExaBGP as the daemon's supervised child: the node's BGP speaker.

``Speaker.run`` serves the API socket, and whenever the node has neighbours
it keeps one ExaBGP process running (``python -m cnid.bgp._exabgp``),
restarting it with backoff when it dies and ending it with the daemon
(SIGTERM, a grace period, SIGKILL, reaped: the trio model for children).

* ``configure()``: the neighbours and session settings. A change of the
  neighbour set rewrites the configuration and sends SIGUSR1 (ExaBGP
  reloads; the other sessions and their routes stay up). A change of what
  ExaBGP reads only at start (its environment: the listening address) is a
  restart.
* ``announce()``: the complete set of paths the node wants announced. The
  speaker sends ExaBGP the difference with what it holds; a restarted ExaBGP
  holds nothing and gets everything again. When a session comes up the
  speaker announces every path to that peer and then sends End-of-RIB
  (graceful restart with a manual End-of-RIB: ``manual-eor``), but only once
  the daemon has said what it announces, so a restarting node never tells a
  peer "that was all" before it re-announced its routes.
* events (session changes, received updates) go to each listener: the one
  given to the constructor and those that ``subscribe()`` (the EVPN
  controller, as it is built); a ``SpeakerDown`` when ExaBGP ended (every
  session ended with it).

The speaker is the one record of the sessions (``peers``: state, since when,
flaps, updates, last error) and of what is announced (``announced``, and
``announced_by_type()``); the EVPN controller reads both from here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgspec
import trio

from ..core._notify import Notifier
from ..core._reconcile import Backoff
from ..core._sockets import serve_unix
from ..core._startup import Startup
from ._api import CHUNK, ApiConnection, SpeakerUnavailable
from ._aspath import drop_loops
from ._config import SpeakerConfig, environment, render
from ._events import BgpEvent, NotificationEvent, StateEvent, UpdateEvent
from ._routes import EvpnPath, route_type
from ._wire import Command

log = logging.getLogger("cnid.bgp")

STOP_GRACE = 5.0
_BACKOFF_MIN, _BACKOFF_MAX, _STABLE = 1.0, 30.0, 60.0


class SpeakerDown(msgspec.Struct, frozen=True):
    """ExaBGP ended: every session went down with it (not the peers' doing)."""

    reason: str


class SpeakerUp(msgspec.Struct, frozen=True):
    pid: int


SpeakerEvent = BgpEvent | SpeakerDown | SpeakerUp
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


class SpeakerStats(msgspec.Struct):
    restarts: int = 0
    pid: int = 0
    started: float = 0.0
    commands: int = 0
    command_errors: int = 0


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
    ) -> None:
        self.run_dir = run_dir
        self.api_socket = str(run_dir / "api.sock")
        self.config_path = run_dir / "exabgp.conf"
        self.env_path = run_dir / "exabgp.env"
        self.log_level = log_level
        self._listeners: list[Listener] = [listener] if listener is not None else []
        self.on_restart = on_restart
        self.clock = clock
        #: A command prefix for ExaBGP (test beds: ``ip netns exec NS``).
        self.launcher = launcher
        #: The daemon's start-up timeline: ExaBGP's start, its API
        #: connection, the first session and the first announcement.
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
        self._process: trio.Process | None = None
        self._config_changed = trio.Event()
        #: Bumped on each change of ``config`` (the BFD sessions follow it).
        self.configured = Notifier()
        self._sync_wanted = trio.Event()
        self._running_env: dict[str, str] | None = None
        self._running_text = ""

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
        self._config_changed.set()
        self.configured.bump()

    def reconfigure(self) -> None:
        """``configure`` again with the last configuration given (after a
        change of what ``adjust`` adds)."""
        self.configure(self._source)

    def subscribe(self, listener: Listener) -> None:
        """Have ``listener`` called with every event from now on (called
        synchronously, in order: it must not block)."""
        self._listeners.append(listener)

    def announce(self, paths: frozenset[EvpnPath]) -> None:
        """The whole set of paths to announce (replaces the previous one)."""
        if paths == self._desired:
            return
        self._desired = paths
        self._desired_by_type = _by_type(paths)
        self._sync_wanted.set()

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
        return self._process is not None and self._conn is not None

    # -- the service -----------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_unix, self.api_socket, self._serve_api)
            nursery.start_soon(self._sync_loop)
            nursery.start_soon(self._supervise)
            task_status.started()

    async def _serve_api(self, sock: trio.socket.SocketType) -> None:
        conn = ApiConnection(sock, self._event)
        if self._conn is not None and not self._conn.closed.is_set():
            log.warning("ExaBGP API: a second connection replaces the first")
        self._conn = conn
        self.startup.mark("exabgp-api")
        self._sync_wanted.set()
        try:
            await conn.read_forever()
        finally:
            if self._conn is conn:
                self._conn = None

    # -- supervision ------------------------------------------------------------

    async def _supervise(self) -> None:
        # No jitter: one ExaBGP per node, nothing to spread, and the log
        # says the delay it waits.
        backoff = Backoff(_BACKOFF_MIN, _BACKOFF_MAX, jitter=False)
        while True:
            config = self.config
            if config is None or not config.neighbors:
                self._config_changed = trio.Event()
                await self._config_changed.wait()
                continue
            started = trio.current_time()
            reason = await self._run_once(config)
            ran = trio.current_time() - started
            self._stopped(reason)
            if reason == "restart" or ran > _STABLE:
                backoff.reset()  # asked for, or it had run well: no penalty
            if reason == "restart":
                continue
            delay = backoff.next_delay()
            log.error("ExaBGP %s; starting it again in %.0fs", reason, delay)
            await trio.sleep(delay)

    def _write_config(self, config: SpeakerConfig) -> str:
        text = render(config, self.api_socket)
        write_private(self.config_path, text)
        return text

    async def _run_once(self, config: SpeakerConfig) -> str:
        """Run ExaBGP until it ends ("exited ...") or needs a restart."""
        env = environment(config, self.log_level)
        self._running_text = self._write_config(config)
        self._running_env = env
        self._held.clear()
        # Every setting travels in the environment; an empty file keeps
        # ExaBGP from looking for (and complaining about) one of its own.
        self.env_path.touch()
        proc = await trio.lowlevel.open_process(
            [
                *self.launcher,
                sys.executable,
                "-m",
                "cnid.bgp._exabgp",
                "--env-file",
                str(self.env_path),
                str(self.config_path),
            ],
            env={**os.environ, **env},
            cwd=str(self.run_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._process = proc
        self.startup.mark("exabgp")
        self.stats.pid = proc.pid
        self.stats.started = self.clock()
        log.info(
            "ExaBGP started (pid %d): router-id %s, AS %d, neighbours %s",
            proc.pid,
            config.router_id,
            config.asn,
            ", ".join(f"{n.address}{' (passive)' if n.passive else ''}" for n in config.neighbors),
        )
        self._emit(SpeakerUp(proc.pid))
        outcome = "exited"
        try:
            async with trio.open_nursery() as nursery:
                assert proc.stdout is not None
                nursery.start_soon(self._pump_log, proc.stdout)

                async def watch_exit() -> None:
                    nonlocal outcome
                    code = await proc.wait()
                    outcome = f"exited with status {code}"
                    nursery.cancel_scope.cancel()

                async def watch_config() -> None:
                    nonlocal outcome
                    outcome = await self._follow_config(proc)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_exit)
                nursery.start_soon(watch_config)
        finally:
            with trio.CancelScope(shield=True):
                await _stop(proc)
            self._process = None
        return outcome

    async def _follow_config(self, proc: trio.Process) -> str:
        """Reload ExaBGP (SIGUSR1) on each change of its neighbours, until a
        change needs a restart (returns "restart")."""
        while True:
            self._config_changed = trio.Event()
            await self._config_changed.wait()
            new = self.config
            if new is None or not new.neighbors:
                return "restart"
            if environment(new, self.log_level) != self._running_env:
                log.info("BGP settings changed: restarting ExaBGP")
                return "restart"
            text = self._write_config(new)
            if text != self._running_text:
                self._running_text = text
                log.info(
                    "BGP neighbours now %s: reloading ExaBGP",
                    ", ".join(n.address for n in new.neighbors),
                )
                proc.send_signal(signal.SIGUSR1)

    async def _pump_log(self, stream: trio.abc.ReceiveStream) -> None:
        buf = b""
        async for chunk in stream:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").rstrip()
                if text:
                    log.info("exabgp: %s", text)

    def _stopped(self, reason: str) -> None:
        self._held.clear()
        if reason != "restart":
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
        for listener in self._listeners:
            listener(event)

    def _event(self, event: BgpEvent) -> None:
        if isinstance(event, StateEvent):
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


async def _stop(proc: trio.Process) -> None:
    """SIGTERM, a grace period, SIGKILL; reaped either way."""
    if proc.returncode is not None:
        return
    try:
        proc.terminate()
    except ProcessLookupError:
        pass
    with trio.move_on_after(STOP_GRACE):
        await proc.wait()
        return
    log.warning("ExaBGP (pid %d) ignored SIGTERM for %.0fs: killing it", proc.pid, STOP_GRACE)
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    await proc.wait()
