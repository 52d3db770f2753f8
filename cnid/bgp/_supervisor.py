"""The speaker process: ExaBGP kept running from the files of its run directory.

``cnid speaker --run-dir DIR`` (or ``python -m cnid.bgp._supervisor DIR``)
is the node's BGP speaker, a process of its own that outlives the daemon:
in Kubernetes the ``speaker`` container of the cnid pod, standalone a
process the daemon starts once and leaves running (``--detach``), or a
systemd unit. The daemon tells it what to run through two files in DIR
(a volume both containers mount):

* ``exabgp.conf``: ExaBGP's configuration (neighbours; ExaBGP's API helper,
  ``_relay.py``, which serves ``api.sock`` to the daemon). A new content is a
  reload (SIGUSR1): the other sessions and the routes stay up. No file: no
  neighbours, ExaBGP is stopped.
* ``speaker.env``: ExaBGP's environment (JSON: what it reads only at start,
  e.g. its listening address). A new content is a restart of ExaBGP.
* ``bfd.json``: the BFD sessions of the neighbours that ask for them; the
  process runs them (``_bfd.BfdHost``) and serves their states on
  ``bfd.sock``.

The files are polled (every :data:`POLL` seconds; two ``stat`` calls): no
signal crosses the containers. ExaBGP is restarted with backoff when it
dies (1 s doubling to 30 s, from 1 s again after a minute of good run) and
ended with the process (SIGTERM, a grace period, SIGKILL, reaped). Only one
speaker runs per directory: it holds ``speaker.pid`` locked (flock).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

import trio

from ..core._reconcile import Backoff

log = logging.getLogger("cnid.speaker")

CONFIG_FILE = "exabgp.conf"
ENV_FILE = "speaker.env"
PID_FILE = "speaker.pid"
LOG_FILE = "speaker.log"
API_SOCKET = "api.sock"
POLL = 0.25
STOP_GRACE = 5.0
_BACKOFF_MIN, _BACKOFF_MAX, _STABLE = 1.0, 30.0, 60.0

#: What ExaBGP runs from: its configuration text and its environment.
Wanted = tuple[str, dict[str, str]]


def read_wanted(run_dir: Path) -> Wanted | None:
    """The configuration and environment in ``run_dir`` (None: nothing to run)."""
    try:
        text = (run_dir / CONFIG_FILE).read_text()
        env = json.loads((run_dir / ENV_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(env, dict):
        return None
    return text, {str(k): str(v) for k, v in env.items()}


class Supervisor:
    """ExaBGP from the files of ``run_dir``, restarted when it dies."""

    def __init__(
        self,
        run_dir: Path,
        *,
        launcher: tuple[str, ...] = (),
        poll: float = POLL,
        on_exit: Callable[[str], None] | None = None,
    ) -> None:
        self.run_dir = run_dir
        #: A command prefix for ExaBGP (test beds: ``ip netns exec NS``).
        self.launcher = launcher
        self.poll = poll
        #: Called with the reason each time ExaBGP ended (not asked for).
        self.on_exit = on_exit
        self.pid = 0
        self.restarts = 0
        self._poke = trio.Event()

    def poke(self) -> None:
        """The files changed (in-process callers: no need to wait for a poll)."""
        self._poke.set()

    async def _changed(self) -> None:
        with trio.move_on_after(self.poll):
            await self._poke.wait()
        self._poke = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        task_status.started()
        # No jitter: one ExaBGP per node, nothing to spread.
        backoff = Backoff(_BACKOFF_MIN, _BACKOFF_MAX, jitter=False)
        while True:
            wanted = read_wanted(self.run_dir)
            if wanted is None:
                await self._changed()
                continue
            started = trio.current_time()
            reason = await self._run_once(wanted)
            if reason == "restart" or trio.current_time() - started > _STABLE:
                backoff.reset()  # asked for, or it had run well: no penalty
            if reason == "restart":
                continue
            self.restarts += 1
            if self.on_exit is not None:
                self.on_exit(reason)
            delay = backoff.next_delay()
            log.error("ExaBGP %s; starting it again in %.0fs", reason, delay)
            await trio.sleep(delay)

    async def _run_once(self, wanted: Wanted) -> str:
        """Run ExaBGP until it ends ("exited ...") or must restart ("restart")."""
        env = wanted[1]
        # Every setting travels in the environment; an empty file keeps
        # ExaBGP from looking for (and complaining about) one of its own.
        env_file = self.run_dir / "exabgp.env"
        env_file.touch()
        proc = await trio.lowlevel.open_process(
            [
                *self.launcher,
                sys.executable,
                "-m",
                "cnid.bgp._exabgp",
                "--env-file",
                str(env_file),
                str(self.run_dir / CONFIG_FILE),
            ],
            env={**os.environ, **env, "CNID_SPEAKER_PID": str(os.getpid())},
            cwd=str(self.run_dir),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.pid = proc.pid
        log.info("ExaBGP started (pid %d)", proc.pid)
        outcome = "exited"
        try:
            async with trio.open_nursery() as nursery:
                assert proc.stdout is not None
                nursery.start_soon(_pump_log, proc.stdout)

                async def watch_exit() -> None:
                    nonlocal outcome
                    code = await proc.wait()
                    outcome = f"exited with status {code}"
                    nursery.cancel_scope.cancel()

                async def watch_files() -> None:
                    nonlocal outcome
                    outcome = await self._follow(proc, wanted)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch_exit)
                nursery.start_soon(watch_files)
        finally:
            with trio.CancelScope(shield=True):
                await stop_process(proc)
            self.pid = 0
        return outcome

    async def _follow(self, proc: trio.Process, running: Wanted) -> str:
        """SIGUSR1 on each new configuration; "restart" when the environment
        changed or the configuration is gone."""
        text, env = running
        while True:
            await self._changed()
            new = read_wanted(self.run_dir)
            if new is None:
                log.info("no configuration any more: stopping ExaBGP")
                return "restart"
            if new[1] != env:
                log.info("ExaBGP's environment changed: restarting it")
                return "restart"
            if new[0] != text:
                text = new[0]
                log.info("ExaBGP's configuration changed: reloading it")
                proc.send_signal(signal.SIGUSR1)


async def _pump_log(stream: trio.abc.ReceiveStream) -> None:
    buf = b""
    async for chunk in stream:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            text = line.decode(errors="replace").rstrip()
            if text:
                log.info("exabgp: %s", text)


async def stop_process(proc: trio.Process) -> None:
    """SIGTERM, a grace period, SIGKILL; reaped either way."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    with trio.move_on_after(STOP_GRACE):
        await proc.wait()
        return
    log.warning("ExaBGP (pid %d) ignored SIGTERM for %.0fs: killing it", proc.pid, STOP_GRACE)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.wait()


# ------------------------------------------------------------ the process


def lock_pidfile(run_dir: Path) -> IO[str] | None:
    """``speaker.pid`` locked and holding our pid; None when another
    speaker holds it. Keep the file open: the lock lives as long."""
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / PID_FILE, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def running_pid(run_dir: Path) -> int:
    """The pid of the speaker running for ``run_dir`` (0: none)."""
    try:
        f = open(run_dir / PID_FILE)
    except OSError:
        return 0
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        return 0  # nobody holds it


async def serve(run_dir: Path) -> None:
    """Run the speaker until SIGTERM or SIGINT: ExaBGP, and the BFD sessions
    (``_bfd.BfdHost``, from ``bfd.json``), stopped with it (BFD's with
    AdminDown)."""
    from ._bfd import BfdHost

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(Supervisor(run_dir).run)
            await nursery.start(BfdHost(run_dir).run)
            async for signum in signals:
                log.info("%s: stopping ExaBGP and BFD", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


def _detach(run_dir: Path) -> None:
    """Become a daemon: a new session, no terminal, the log in ``speaker.log``
    (the parent returns at once: the caller waits for it)."""
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    fd = os.open(run_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cnid speaker", description="cnid's BGP speaker")
    parser.add_argument("--run-dir", default="/run/cnid/bgp", help="shared with the daemon")
    parser.add_argument("--detach", action="store_true", help="run in the background")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.detach:
        if running_pid(run_dir):
            return 0  # one is running already
        _detach(run_dir)
    lock = lock_pidfile(run_dir)
    if lock is None:
        print(f"cnid speaker: another speaker runs for {run_dir}", file=sys.stderr)
        return 0 if args.detach else 2
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log.info("speaker (pid %d) for %s", os.getpid(), run_dir)
    try:
        trio.run(serve, run_dir)
    finally:
        lock.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
