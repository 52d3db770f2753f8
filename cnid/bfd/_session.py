"""One BFD session's state machine (RFC 5880 6.2, 6.8): pure logic, the
time passed in. The service's runner drives it (``_runner``).

Asynchronous mode only (no demand mode, no echo function). While the session
is not Up, the advertised Desired Min TX is at least one second (6.8.3); a
change of the intervals while Up runs a Poll Sequence (6.5), during which an
increased transmit interval or a reduced receive interval is not yet used.
"""

from __future__ import annotations

import random

import msgspec

from ._packet import ControlPacket, Diag, State

__all__ = ["SLOW_TX_US", "PeerConfig", "Session", "Transition"]

SLOW_TX_US = 1_000_000


class PeerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What is asked of a session: intervals in milliseconds (300 ms x 3 by
    default), ``min_ttl`` the lowest TTL accepted on a multihop session
    (single hop always requires 255), ``cpi`` the C bit sent."""

    desired_min_tx_ms: int = 300
    required_min_rx_ms: int = 300
    detect_multiplier: int = 3
    min_ttl: int = 254
    cpi: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.detect_multiplier <= 255:
            raise ValueError(f"detect_multiplier {self.detect_multiplier} not in 1..255")
        if not 1 <= self.desired_min_tx_ms <= 4_000_000:
            raise ValueError(f"desired_min_tx_ms {self.desired_min_tx_ms} out of range")
        if not 1 <= self.required_min_rx_ms <= 4_000_000:
            raise ValueError(f"required_min_rx_ms {self.required_min_rx_ms} out of range")
        if not 1 <= self.min_ttl <= 255:
            raise ValueError(f"min_ttl {self.min_ttl} not in 1..255")


class Transition(msgspec.Struct, frozen=True):
    """A change of the session's state and why (the local diagnostic)."""

    old: State
    new: State
    diag: Diag


class Session:
    """bfd.* of RFC 5880 6.8.1 and what changes them. Times are seconds on
    the caller's clock; intervals are microseconds as on the wire."""

    def __init__(
        self, local_discr: int, config: PeerConfig, rng: random.Random | None = None
    ) -> None:
        self.local_discr = local_discr
        self.config = config
        self.rng = rng or random.Random()
        self.state = State.DOWN
        self.remote_state = State.DOWN
        self.remote_discr = 0
        self.local_diag = Diag.NONE
        self.remote_diag = Diag.NONE
        self.remote_min_rx = 1  # bfd.RemoteMinRxInterval: 1 until heard (6.8.1)
        self.remote_desired_tx = 0
        self.remote_detect_mult = 0
        self.remote_cpi = False
        # advertised values, and those in use while a Poll Sequence runs
        self.desired_min_tx = max(config.desired_min_tx_ms * 1000, SLOW_TX_US)
        self.required_min_rx = config.required_min_rx_ms * 1000
        self._tx_in_use = self.desired_min_tx
        self._rx_in_use = self.required_min_rx
        self.poll = False
        self.final_due = False
        self.detect_deadline: float | None = None

    # -- derived ---------------------------------------------------------------

    def tx_interval_us(self) -> int:
        """The agreed transmit interval: our Desired Min TX (in use) or the
        remote's Required Min RX, whichever is greater (6.8.2)."""
        return max(self._tx_in_use, self.remote_min_rx)

    def rx_interval_us(self) -> int:
        """The remote's agreed transmit interval (0 until heard from)."""
        if not self.remote_desired_tx:
            return 0
        return max(self._rx_in_use, self.remote_desired_tx)

    def detection_time(self) -> float:
        """Remote Detect Mult x the remote's agreed interval, in seconds (6.8.4)."""
        return self.remote_detect_mult * self.rx_interval_us() / 1e6

    def next_tx_delay(self) -> float:
        """The next periodic transmission's delay, jittered 75-100% (75-90%
        with a Detect Mult of 1) (6.8.7). None to send: no interval yet."""
        top = 0.9 if self.config.detect_multiplier == 1 else 1.0
        return self.tx_interval_us() * self.rng.uniform(0.75, top) / 1e6

    def may_transmit(self) -> bool:
        """6.8.7: not while the remote asks for no packets (Required Min RX 0)."""
        return self.remote_min_rx != 0

    # -- events ----------------------------------------------------------------

    def receive(self, packet: ControlPacket, now: float) -> Transition | None:
        """A packet that passed the checks and was matched to this session
        (RFC 5880 6.8.6, from "If the Your Discriminator field is nonzero")."""
        if self.state is State.ADMIN_DOWN:
            return None  # the service discards and counts it before this
        self.remote_discr = packet.my_discr
        self.remote_state = packet.state
        self.remote_diag = packet.diag
        self.remote_min_rx = packet.required_min_rx
        self.remote_desired_tx = packet.desired_min_tx
        self.remote_detect_mult = packet.detect_mult
        self.remote_cpi = packet.cpi
        if packet.final and self.poll:
            self.poll = False
            self._tx_in_use = self.desired_min_tx
            self._rx_in_use = self.required_min_rx
        if packet.poll:
            self.final_due = True
        transition: Transition | None = None
        if packet.state is State.ADMIN_DOWN:
            if self.state is not State.DOWN:
                transition = self._move(State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN)
        elif self.state is State.DOWN:
            if packet.state is State.DOWN:
                transition = self._move(State.INIT, Diag.NONE)
            elif packet.state is State.INIT:
                transition = self._move(State.UP, Diag.NONE)
        elif self.state is State.INIT:
            if packet.state in (State.INIT, State.UP):
                transition = self._move(State.UP, Diag.NONE)
        elif packet.state is State.DOWN:  # we are Up
            transition = self._move(State.DOWN, Diag.NEIGHBOR_SIGNALED_SESSION_DOWN)
        if self.state in (State.INIT, State.UP) and self.remote_desired_tx:
            self.detect_deadline = now + self.detection_time()
        else:
            self.detect_deadline = None
        return transition

    def expire(self, now: float) -> Transition | None:
        """The detection timer, if it has passed: Init or Up goes Down."""
        if self.detect_deadline is None or now < self.detect_deadline:
            return None
        self.detect_deadline = None
        self.remote_discr = 0  # 6.8.1: zero when the Detection Time expires
        self.remote_state = State.DOWN
        if self.state in (State.INIT, State.UP):
            return self._move(State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED)
        return None

    def set_intervals(self, desired_min_tx_ms: int, required_min_rx_ms: int) -> None:
        """New timers (6.8.3): a Poll Sequence while Up; an increased TX
        interval or a reduced RX interval takes effect when it ends."""
        self.config = msgspec.structs.replace(
            self.config, desired_min_tx_ms=desired_min_tx_ms, required_min_rx_ms=required_min_rx_ms
        )
        self._advertise(self._wanted_tx(), required_min_rx_ms * 1000)

    def admin_down(self) -> Transition | None:
        if self.state is State.ADMIN_DOWN:
            return None
        self.detect_deadline = None
        # bfd.RemoteDiscr stays (6.8.1 zeroes it only when a Detection Time
        # passes): FRR's bfdd ignores an AdminDown with Your Discriminator 0
        return self._move(State.ADMIN_DOWN, Diag.ADMINISTRATIVELY_DOWN)

    def admin_up(self) -> Transition | None:
        if self.state is not State.ADMIN_DOWN:
            return None
        return self._move(State.DOWN, Diag.ADMINISTRATIVELY_DOWN)

    def packet(self, final: bool = False) -> ControlPacket:
        """What to send now; ``final`` answers a Poll (and clears the debt)."""
        if final:
            self.final_due = False
        return ControlPacket(
            state=self.state,
            diag=self.local_diag,
            poll=self.poll and not final,
            final=final,
            cpi=self.config.cpi,
            detect_mult=self.config.detect_multiplier,
            my_discr=self.local_discr,
            your_discr=self.remote_discr,
            desired_min_tx=self.desired_min_tx,
            required_min_rx=self.required_min_rx,
        )

    # -- internals -------------------------------------------------------------

    def _wanted_tx(self) -> int:
        tx = self.config.desired_min_tx_ms * 1000
        return tx if self.state is State.UP else max(tx, SLOW_TX_US)

    def _advertise(self, tx: int, rx: int) -> None:
        if (tx, rx) == (self.desired_min_tx, self.required_min_rx):
            return
        self.desired_min_tx, self.required_min_rx = tx, rx
        if self.state is State.UP:
            self.poll = True
            # faster TX and slower RX are safe at once; the others wait for the Final
            self._tx_in_use = min(self._tx_in_use, tx)
            self._rx_in_use = max(self._rx_in_use, rx)
        else:
            self.poll = False
            self._tx_in_use, self._rx_in_use = tx, rx

    def _move(self, new: State, diag: Diag) -> Transition:
        old = self.state
        self.state = new
        self.local_diag = diag
        # Up after slow start: the configured TX interval, by a Poll Sequence
        self._advertise(self._wanted_tx(), self.required_min_rx)
        return Transition(old, new, diag)
