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

_Names = list[tuple[str, _Entry]]
_Outcome = _Entry | _Names
"""Whose outcome a request is: one entry, of the op of its list ("remove"
or "add"), or the (op, entry) names of several (a merge, a replace)."""


def _attr(kind: int, raw: bytes) -> bytes:
    size = 4 + len(raw)
    return _NLA.pack(size, kind) + raw + b"\0" * (-size & 3)


class _Op(NamedTuple):
    """One request and the entries (op, entry) whose outcome it is: how a
    plan reads (``_Plan.removals``, ``_Plan.additions``)."""

    request: nl.Request
    entries: _Names
    #: A removal whose ENOENT means "already gone" (done, not refused).
    gone_ok: bool = False


class _Plan:
    """The requests in parallel lists of requests and of their outcomes
    (``_Outcome``), removals first: a plan holds one per entry of a batch
    of 10,000, so no object is made per request but the request, and the
    (op, entry) names only for the ones that fail."""

    def __init__(self) -> None:
        self.removal_requests: list[nl.Request] = []
        self.removal_outcomes: list[_Outcome] = []
        self.addition_requests: list[nl.Request] = []
        self.addition_outcomes: list[_Outcome] = []
        #: Indexes of the removals whose ENOENT means "already gone".
        self.gone_ok: set[int] = set()
        self.failed: dict[str, str] = {}
        self.refused: dict[tuple[str, _Entry], str] = {}

    def remove(self, request: nl.Request, outcome: _Outcome, gone_ok: bool = False) -> None:
        if gone_ok:
            self.gone_ok.add(len(self.removal_requests))
        self.removal_requests.append(request)
        self.removal_outcomes.append(outcome)

    def add(self, request: nl.Request, outcome: _Outcome) -> None:
        self.addition_requests.append(request)
        self.addition_outcomes.append(outcome)

    def requests(self) -> list[nl.Request]:
        """Every request, in the order to send them (removals first)."""
        return self.removal_requests + self.addition_requests

    def names(self, index: int) -> _Names:
        """The (op, entry) names of ``requests()[index]``."""
        removals = len(self.removal_requests)
        if index < removals:
            op, outcome = "remove", self.removal_outcomes[index]
        else:
            op, outcome = "add", self.addition_outcomes[index - removals]
        return outcome if isinstance(outcome, list) else [(op, outcome)]

    def gone(self, index: int) -> bool:
        """Whether ``requests()[index]`` failing with ENOENT is done."""
        return index in self.gone_ok

    @property
    def removals(self) -> list[_Op]:
        """The removals as ``_Op``: for reading a plan, not for sending it."""
        return [
            _Op(r, self.names(i), i in self.gone_ok) for i, r in enumerate(self.removal_requests)
        ]

    @property
    def additions(self) -> list[_Op]:
        """The additions as ``_Op``: for reading a plan, not for sending it."""
        base = len(self.removal_requests)
        return [_Op(r, self.names(base + i)) for i, r in enumerate(self.addition_requests)]

    def fail(self, op: str, e: _Entry, error: str, reason: str = "invalid") -> None:
        self.failed.setdefault(_what(op, e), error)
        self.refused.setdefault((op, e), reason)
