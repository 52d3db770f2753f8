"""The daemon's end of ExaBGP's API pipe: commands out, events in.

ExaBGP's API program (``_relay.py``) serves a UNIX socket the daemon
connects to; one connection at a time is the live one (a new connection
replaces the old). Lines from ExaBGP are read
by one task, always, so ExaBGP never blocks on a full pipe: acks of our
commands complete the command that waits for them (matched by id), every
other event goes to ``on_event``.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Callable

import trio

from ..core._errors import CnidError
from ._events import AckEvent, BgpEvent, Undecodable, decode_line
from ._wire import Command, encode_command

log = logging.getLogger("cnid.bgp")

MAX_LINE = 4 << 20
COMMAND_TIMEOUT = 30.0
#: Paths per command: keeps each API line far below ExaBGP's 1 MiB limit.
CHUNK = 500


class SpeakerUnavailable(CnidError):
    """ExaBGP is not running or not connected to the daemon."""


class ApiConnection:
    """One live connection to ExaBGP's helper."""

    def __init__(self, sock: trio.socket.SocketType, on_event: Callable[[BgpEvent], None]) -> None:
        self._sock = sock
        self._on_event = on_event
        # Not from 1: an answer to the previous daemon's last command (it
        # died waiting) must not be taken for an answer to one of ours.
        self._ids = itertools.count(random.randrange(1, 1 << 48))
        self._waiting: dict[int, tuple[trio.Event, list[AckEvent]]] = {}
        self._send_lock = trio.Lock()
        self.closed = trio.Event()

    async def read_forever(self) -> None:
        """Read lines until ExaBGP's side closes; then fail every waiter."""
        buf = bytearray()
        try:
            while True:
                try:
                    data = await self._sock.recv(1 << 18)
                except OSError as exc:
                    log.warning("ExaBGP API connection: %s", exc)
                    return
                if not data:
                    return
                buf += data
                while True:
                    end = buf.find(b"\n")
                    if end < 0:
                        break
                    line = bytes(buf[:end])
                    del buf[: end + 1]
                    if line.strip():
                        self._dispatch(line)
                if len(buf) > MAX_LINE:
                    log.error("ExaBGP API: a line over %d bytes, dropped", MAX_LINE)
                    buf.clear()
        finally:
            self.closed.set()
            for event, _ in self._waiting.values():
                event.set()

    def _dispatch(self, line: bytes) -> None:
        try:
            event = decode_line(line)
        except Undecodable as exc:
            log.warning("ExaBGP API: %s: %r", exc, line[:200])
            return
        if event is None:
            return
        if isinstance(event, AckEvent):
            waiter = self._waiting.get(event.id)
            if waiter is None:
                log.warning("ExaBGP API: an answer to no command: %s", event)
                return
            waiter[1].append(event)
            waiter[0].set()
            return
        self._on_event(event)

    async def call(self, command: Command) -> AckEvent:
        """Send one command and wait for its answer."""
        if self.closed.is_set():
            raise SpeakerUnavailable("the ExaBGP API connection is closed")
        done = trio.Event()
        answers: list[AckEvent] = []
        self._waiting[command.id] = (done, answers)
        try:
            line = (encode_command(command) + "\n").encode("ascii")
            async with self._send_lock:
                view = memoryview(line)
                while view:
                    try:
                        sent = await self._sock.send(view)
                    except OSError as exc:
                        raise SpeakerUnavailable(f"ExaBGP API: {exc}") from None
                    view = view[sent:]
            with trio.move_on_after(COMMAND_TIMEOUT):
                await done.wait()
            if not answers:
                if self.closed.is_set():
                    raise SpeakerUnavailable("ExaBGP went away before it answered")
                raise SpeakerUnavailable(f"ExaBGP did not answer in {COMMAND_TIMEOUT:.0f}s")
            return answers[0]
        finally:
            del self._waiting[command.id]

    def close(self) -> None:
        self._sock.close()

    def next_id(self) -> int:
        return next(self._ids)
