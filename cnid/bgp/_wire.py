"""The messages between the daemon and cnid's ExaBGP extension.

A command travels as one API line, ``cnid <base64 of msgpack>``: ExaBGP
reformats every API line before it dispatches it (it puts spaces around
brackets and commas) and finds the command by substrings, and base64 has
neither. Each command is answered by one JSON line ``{"cnid-ack": {...}}``
carrying the command's id, so answers are matched to commands by id, not by
order. This module needs only msgspec: the daemon imports it without ExaBGP.
"""

from __future__ import annotations

import base64
from typing import Literal

import msgspec

from ._routes import EvpnPath

COMMAND = "cnid"
ACK_KEY = "cnid-ack"


class Command(msgspec.Struct, frozen=True):
    """What the daemon asks of ExaBGP. ``peers``: neighbour addresses; empty
    means every configured neighbour (for ``eor``: every established one).
    ``teardown``: a NOTIFICATION (Cease, subcode ``code``) to the peers,
    then no session with them for ``hold`` seconds (FRR's ``maximum-prefix
    N restart M``; BFD's hold-down while it is down). ``release``: the end
    of a teardown's hold, the session made again at once (BFD back Up).
    ``state``: what ExaBGP holds (answered with ``Ack.state``; with
    ``peers``, only those peers' sessions and no paths). ``replay``:
    every route received from the established peers (ExaBGP's adj-rib-in),
    as the update lines ExaBGP wrote when it received them, then an
    End-of-RIB line per peer, then the ack: what a daemon that (re)attaches
    missed."""

    id: int
    op: Literal[
        "announce", "withdraw", "eor", "teardown", "refresh", "release", "state", "replay"
    ]
    peers: tuple[str, ...] = ()
    paths: tuple[EvpnPath, ...] = ()
    hold: float = 0.0
    code: int = 0


class SpeakerState(msgspec.Struct, frozen=True):
    """What a running ExaBGP holds, as the extension knows it: its process
    (``pid``, ``started``: time.time()), the established sessions (peer
    address, established since: time.time()), the paths announced to every
    neighbour, and the Restart Time each established peer advertised in its
    OPEN (graceful restart, RFC 4724; 0: no such capability), which bounds
    how long its routes are kept once its session ends."""

    pid: int
    started: float
    established: tuple[tuple[str, float], ...] = ()
    paths: tuple[EvpnPath, ...] = ()
    restart_times: tuple[tuple[str, int], ...] = ()


class Ack(msgspec.Struct, frozen=True):
    id: int
    ok: bool
    done: int = 0
    errors: tuple[str, ...] = ()
    state: SpeakerState | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Command)


def encode_command(command: Command) -> str:
    """The API line for ``command`` (no newline)."""
    return f"{COMMAND} {base64.b64encode(_encoder.encode(command)).decode('ascii')}"


def decode_command(line: str) -> Command:
    """ValueError or msgspec.DecodeError when the line is not a command."""
    _, _, payload = line.strip().partition(" ")
    return _decoder.decode(base64.b64decode(payload.replace(" ", ""), validate=True))


def ack_line(ack: Ack) -> str:
    return msgspec.json.encode({ACK_KEY: ack}).decode()
