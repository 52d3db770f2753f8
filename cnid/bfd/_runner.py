"""A session under trio: periodic transmission with jitter, the detection
timer, Final answers, state-change notification. The transport is a send
function, so the timing is tested on the virtual clock with two runners
wired to each other (no sockets)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import trio

from ._packet import ControlPacket, State
from ._session import Session, Transition

__all__ = ["Runner"]

Send = Callable[[ControlPacket], Awaitable[None]]


class Runner:
    """Drives one ``Session``: ``run()`` until ``stop()`` (which sends one
    AdminDown packet, RFC 5880 6.8.16) or cancellation."""

    def __init__(
        self, session: Session, send: Send, on_transition: Callable[[Transition], None]
    ) -> None:
        self.session = session
        self._send = send
        self._on_transition = on_transition
        self._kick = trio.Event()
        self._next_tx = -math.inf
        self._stopping = False
        self.up_since: float | None = None
        self.flaps = 0

    def deliver(self, packet: ControlPacket) -> None:
        """A received packet for this session (checked and matched)."""
        self._transition(self.session.receive(packet, trio.current_time()))
        self._kick.set()

    def stop(self) -> None:
        self._stopping = True
        self._transition(self.session.admin_down())
        self._kick.set()

    async def run(self) -> None:
        session = self.session
        while True:
            now = trio.current_time()
            self._transition(session.expire(now))
            if self._stopping:
                await self._send(session.packet())
                return
            if session.final_due:
                await self._send(session.packet(final=True))
            if now >= self._next_tx:
                if session.may_transmit():
                    await self._send(session.packet())
                self._next_tx = now + session.next_tx_delay()
            wake = min(self._next_tx, session.detect_deadline or math.inf)
            with trio.move_on_at(wake):
                await self._kick.wait()
            self._kick = trio.Event()

    def _transition(self, transition: Transition | None) -> None:
        if transition is None:
            return
        now = trio.current_time()
        if transition.new is State.UP:
            self.up_since = now
        elif transition.old is State.UP:
            self.up_since = None
            self.flaps += 1
        self._next_tx = now  # tell the peer at once
        self._on_transition(transition)
