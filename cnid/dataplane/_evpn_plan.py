"""A plan of EVPN changes: the requests to send, each with the entries
whose outcome it is, and the entries refused before anything is sent."""

from __future__ import annotations

import struct
from typing import NamedTuple

from . import _netlink as nl
from ._evpn_values import _Entry, _what

_NLA = struct.Struct("=HH")
_U32 = struct.Struct("=I")
_REPLACE = nl.NLM_F_CREATE | nl.NLM_F_REPLACE


def _attr(kind: int, raw: bytes) -> bytes:
    size = 4 + len(raw)
    return _NLA.pack(size, kind) + raw + b"\0" * (-size & 3)


class _Op(NamedTuple):
    """One request and the entries (op, entry) whose outcome it is; their
    names are only made for the ones that fail."""

    request: nl.Request
    entries: list[tuple[str, _Entry]]
    #: A removal whose ENOENT means "already gone" (done, not refused).
    gone_ok: bool = False


class _Plan:
    def __init__(self) -> None:
        self.removals: list[_Op] = []
        self.additions: list[_Op] = []
        self.failed: dict[str, str] = {}
        self.refused: dict[tuple[str, _Entry], str] = {}

    def fail(self, op: str, e: _Entry, error: str, reason: str = "invalid") -> None:
        self.failed.setdefault(_what(op, e), error)
        self.refused.setdefault((op, e), reason)
