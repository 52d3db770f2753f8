"""BFD control packets (RFC 5880 section 4.1) as typed values: an encoder and
a strict decoder with the reception checks of section 6.8.6 that need no
session (the rest are the service's: the session lookup by discriminator).

No authentication is implemented: a packet with the A bit is discarded
(``Discard.AUTHENTICATION``), as RFC 5880 6.8.6 requires of a system
without it.
"""

from __future__ import annotations

import enum
import struct

import msgspec

from cnid.core import CnidError

__all__ = [
    "MANDATORY_LENGTH",
    "BadPacket",
    "BfdError",
    "ControlPacket",
    "Diag",
    "Discard",
    "State",
    "decode",
    "encode",
]

VERSION = 1
MANDATORY_LENGTH = 24
_AUTH_MIN_LENGTH = 26
_LAYOUT = struct.Struct("!BBBBIIIII")
_U32 = 0xFFFF_FFFF

_POLL, _FINAL, _CPI, _AUTH, _DEMAND, _MULTIPOINT = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01


class State(enum.IntEnum):
    """bfd.SessionState (RFC 5880 4.1, "Sta")."""

    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diag(enum.IntEnum):
    """bfd.LocalDiag (RFC 5880 4.1); values 9-31 are reserved."""

    NONE = 0
    CONTROL_DETECTION_TIME_EXPIRED = 1
    ECHO_FUNCTION_FAILED = 2
    NEIGHBOR_SIGNALED_SESSION_DOWN = 3
    FORWARDING_PLANE_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMINISTRATIVELY_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class Discard(enum.StrEnum):
    """Why a received packet was discarded: the counters' labels."""

    SHORT = "short"  # shorter than the mandatory section, or than its Length
    VERSION = "version"
    LENGTH = "length"  # Length field below the minimum
    DIAG = "diag"  # a reserved diagnostic code
    MULTIPLIER = "multiplier"  # Detect Mult is zero
    MULTIPOINT = "multipoint"  # M bit set
    MY_DISCRIMINATOR = "my-discriminator"  # My Discriminator is zero
    YOUR_DISCRIMINATOR = "your-discriminator"  # zero while the sender is not Down
    AUTHENTICATION = "authentication"  # A bit set: not supported
    TTL = "ttl"  # GTSM (RFC 5881 5, RFC 5883 2)
    NO_SESSION = "no-session"  # no session for its discriminator or addresses
    ADMIN_DOWN = "admin-down"  # our session is AdminDown


class BfdError(CnidError):
    """Base class of the BFD package's errors."""


class BadPacket(BfdError):
    """A received packet failed a reception check; ``reason`` says which."""

    def __init__(self, reason: Discard, detail: str = "") -> None:
        super().__init__(
            f"BFD packet discarded: {reason.value}" + (f" ({detail})" if detail else "")
        )
        self.reason = reason


class ControlPacket(msgspec.Struct, frozen=True, kw_only=True):
    """The mandatory section. Intervals in microseconds, as on the wire."""

    state: State
    diag: Diag = Diag.NONE
    poll: bool = False
    final: bool = False
    cpi: bool = False  # control plane independent
    auth: bool = False
    demand: bool = False
    multipoint: bool = False
    detect_mult: int
    my_discr: int
    your_discr: int = 0
    desired_min_tx: int
    required_min_rx: int
    required_min_echo_rx: int = 0


def encode(packet: ControlPacket) -> bytes:
    """The 24-byte packet (the A bit is encoded as given, with no
    authentication section: a sender never sets it)."""
    flags = (
        (packet.state << 6)
        | (_POLL if packet.poll else 0)
        | (_FINAL if packet.final else 0)
        | (_CPI if packet.cpi else 0)
        | (_AUTH if packet.auth else 0)
        | (_DEMAND if packet.demand else 0)
        | (_MULTIPOINT if packet.multipoint else 0)
    )
    for name in ("my_discr", "your_discr", "desired_min_tx", "required_min_rx",
                 "required_min_echo_rx"):  # fmt: skip
        value = getattr(packet, name)
        if not 0 <= value <= _U32:
            raise BfdError(f"BFD packet: {name}={value} does not fit 32 bits")
    if not 0 <= packet.detect_mult <= 0xFF:
        raise BfdError(f"BFD packet: detect_mult={packet.detect_mult} does not fit 8 bits")
    return _LAYOUT.pack(
        (VERSION << 5) | packet.diag,
        flags,
        packet.detect_mult,
        MANDATORY_LENGTH,
        packet.my_discr,
        packet.your_discr,
        packet.desired_min_tx,
        packet.required_min_rx,
        packet.required_min_echo_rx,
    )


def decode(data: bytes) -> ControlPacket:
    """A received datagram's packet, after RFC 5880 6.8.6's checks that need
    no session; anything else raises ``BadPacket`` (never another error)."""
    if len(data) < MANDATORY_LENGTH:
        raise BadPacket(Discard.SHORT, f"{len(data)} bytes")
    vers_diag, flags, mult, length, my, your, tx, rx, echo = _LAYOUT.unpack_from(data)
    if vers_diag >> 5 != VERSION:
        raise BadPacket(Discard.VERSION, str(vers_diag >> 5))
    auth = bool(flags & _AUTH)
    if length < (_AUTH_MIN_LENGTH if auth else MANDATORY_LENGTH):
        raise BadPacket(Discard.LENGTH, str(length))
    if length > len(data):
        raise BadPacket(Discard.SHORT, f"Length {length} > {len(data)} bytes received")
    if mult == 0:
        raise BadPacket(Discard.MULTIPLIER)
    if flags & _MULTIPOINT:
        raise BadPacket(Discard.MULTIPOINT)
    if my == 0:
        raise BadPacket(Discard.MY_DISCRIMINATOR)
    state = State(flags >> 6)
    if your == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        raise BadPacket(Discard.YOUR_DISCRIMINATOR, state.name)
    if auth:
        raise BadPacket(Discard.AUTHENTICATION)
    try:
        diag = Diag(vers_diag & 0x1F)
    except ValueError:
        raise BadPacket(Discard.DIAG, str(vers_diag & 0x1F)) from None
    return ControlPacket(
        state=state,
        diag=diag,
        poll=bool(flags & _POLL),
        final=bool(flags & _FINAL),
        cpi=bool(flags & _CPI),
        auth=auth,
        demand=bool(flags & _DEMAND),
        multipoint=False,
        detect_mult=mult,
        my_discr=my,
        your_discr=your,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
    )
