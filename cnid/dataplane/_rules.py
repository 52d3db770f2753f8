"""Policy routing rules (``ip rule``) over our own netlink client.

Every rule cnid adds carries ``FRA_PROTOCOL`` = ROUTE_PROTO (149, shown as
``proto 149`` by ``ip rule``): ``apply_rules`` reads the rules of that
protocol, adds the wanted ones that are missing, then deletes ours that are
no longer wanted (make before break: a rule that moves to another priority
never leaves a gap). Rules of any other protocol are never read as ours,
changed or removed.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import NamedTuple

from . import _netlink as nl
from ._names import ROUTE_PROTO
from ._netns import netlink_socket
from ._run import in_thread

RTM_NEWRULE = 32
RTM_DELRULE = 33
RTM_GETRULE = 34

FRA_DST = 1
FRA_SRC = 2
FRA_IIFNAME = 3
FRA_PRIORITY = 6
FRA_FWMARK = 10
FRA_TABLE = 15
FRA_FWMASK = 16
FRA_OIFNAME = 17
FRA_PROTOCOL = 21

FR_ACT_TO_TBL = 1
FR_ACT_UNREACHABLE = 7

_HDR = struct.Struct("=BBBBBBBBI")
_ACTIONS = {FR_ACT_TO_TBL: "lookup", FR_ACT_UNREACHABLE: "unreachable"}


class FibRule(NamedTuple):
    """One rule. ``dst``/``src`` are networks as text (``10.0.0.0/26``),
    None for "all"; ``table`` only for ``lookup`` rules."""

    family: int
    priority: int
    action: int = FR_ACT_TO_TBL
    table: int = 0
    dst: str | None = None
    src: str | None = None
    iifname: str | None = None
    oifname: str | None = None
    fwmark: int = 0
    fwmask: int = 0
    protocol: int = ROUTE_PROTO

    def __str__(self) -> str:
        parts = [f"{self.priority}:"]
        parts.append(f"from {self.src or 'all'}")
        if self.dst:
            parts.append(f"to {self.dst}")
        if self.fwmark or self.fwmask:
            parts.append(f"fwmark {self.fwmark:#x}/{self.fwmask:#x}")
        if self.iifname:
            parts.append(f"iif {self.iifname}")
        if self.oifname:
            parts.append(f"oif {self.oifname}")
        verb = _ACTIONS.get(self.action, str(self.action))
        parts.append(f"lookup {self.table}" if self.action == FR_ACT_TO_TBL else verb)
        parts.append(f"proto {self.protocol}")
        return " ".join(parts)


def _prefix(family: int, text: str) -> tuple[bytes, int]:
    address, _, length = text.partition("/")
    raw = socket.inet_pton(family, address)
    return raw, int(length) if length else len(raw) * 8


def encode(rule: FibRule) -> bytes:
    """The rtnetlink body (fib_rule_hdr and attributes) of ``rule``."""
    dst_len = src_len = 0
    attrs = []
    if rule.dst:
        raw, dst_len = _prefix(rule.family, rule.dst)
        attrs.append(nl.nla(FRA_DST, raw))
    if rule.src:
        raw, src_len = _prefix(rule.family, rule.src)
        attrs.append(nl.nla(FRA_SRC, raw))
    table = rule.table if rule.action == FR_ACT_TO_TBL else 0
    hdr = _HDR.pack(
        rule.family, dst_len, src_len, 0, table if table < 256 else 0, 0, 0, rule.action, 0
    )
    if rule.iifname:
        attrs.append(nl.nla_str(FRA_IIFNAME, rule.iifname))
    if rule.oifname:
        attrs.append(nl.nla_str(FRA_OIFNAME, rule.oifname))
    attrs.append(nl.nla_u32(FRA_PRIORITY, rule.priority))
    if rule.fwmark or rule.fwmask:
        attrs.append(nl.nla_u32(FRA_FWMARK, rule.fwmark))
        attrs.append(nl.nla_u32(FRA_FWMASK, rule.fwmask))
    if table:
        attrs.append(nl.nla_u32(FRA_TABLE, table))
    attrs.append(nl.nla_u8(FRA_PROTOCOL, rule.protocol))
    return hdr + b"".join(attrs)


def decode(body: bytes) -> FibRule:
    family, dst_len, src_len, _tos, table, _r1, _r2, action, _flags = _HDR.unpack_from(body)
    attrs = nl.parse_attrs(body, _HDR.size)

    def prefix(kind: int, length: int) -> str | None:
        raw = attrs.get(kind)
        return None if raw is None else f"{socket.inet_ntop(family, raw)}/{length}"

    proto = attrs.get(FRA_PROTOCOL)
    return FibRule(
        family=family,
        priority=nl.attr_u32(attrs, FRA_PRIORITY) or 0,
        action=action,
        table=(nl.attr_u32(attrs, FRA_TABLE) or table) if action == FR_ACT_TO_TBL else 0,
        dst=prefix(FRA_DST, dst_len),
        src=prefix(FRA_SRC, src_len),
        iifname=nl.attr_str(attrs, FRA_IIFNAME),
        oifname=nl.attr_str(attrs, FRA_OIFNAME),
        fwmark=nl.attr_u32(attrs, FRA_FWMARK) or 0,
        fwmask=nl.attr_u32(attrs, FRA_FWMASK) or 0,
        protocol=proto[0] if proto else 0,
    )


def _dump(sock: nl.Netlink, family: int) -> list[FibRule]:
    body = _HDR.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    try:
        raw = sock.dump(nl.Request(RTM_GETRULE, 0, body, "dump rules"))
    except nl.NetlinkFailure as exc:
        if exc.errno == errno.EAFNOSUPPORT:
            return []
        raise
    return [decode(b) for b in raw]


def _ours(protocol: int) -> list[FibRule]:
    with nl.Netlink(netlink_socket(None)) as sock:
        return [
            r
            for family in (socket.AF_INET, socket.AF_INET6)
            for r in _dump(sock, family)
            if r.protocol == protocol
        ]


async def dump_rules(protocol: int = ROUTE_PROTO) -> list[FibRule]:
    """The node's rules of ``protocol`` (ours by default), IPv4 and IPv6."""
    return await in_thread(lambda: _ours(protocol))


def batches(
    sock: nl.Netlink, requests: list[nl.Request], ignore: tuple[int, ...] = (), size: int = 100
) -> None:
    """``Netlink.batch`` in chunks: every request of a batch gets an ACK,
    and the ACKs of one send must fit the receive buffer (ENOBUFS)."""
    for start in range(0, len(requests), size):
        sock.batch(requests[start : start + size], ignore=ignore)


def _key(r: FibRule) -> tuple[object, ...]:
    return tuple("" if x is None else x for x in r)


def _apply(want: list[FibRule], protocol: int) -> tuple[list[FibRule], list[FibRule]]:
    wanted = set(want)
    assert all(r.protocol == protocol for r in wanted), "a wanted rule of another protocol"
    with nl.Netlink(netlink_socket(None)) as sock:
        have = {
            r
            for family in (socket.AF_INET, socket.AF_INET6)
            for r in _dump(sock, family)
            if r.protocol == protocol
        }
        add = sorted(wanted - have, key=_key)
        gone = sorted(have - wanted, key=_key)
        flags = nl.NLM_F_CREATE | nl.NLM_F_EXCL
        batches(
            sock,
            [nl.Request(RTM_NEWRULE, flags, encode(r), str(r)) for r in add],
            ignore=(errno.EEXIST,),
        )
        batches(
            sock,
            [nl.Request(RTM_DELRULE, 0, encode(r), str(r)) for r in gone],
            ignore=(errno.ENOENT, errno.ESRCH),
        )
    return add, gone


async def apply_rules(
    want: list[FibRule], protocol: int = ROUTE_PROTO
) -> tuple[list[FibRule], list[FibRule]]:
    """Make the node's rules of ``protocol`` exactly ``want``: missing ones
    added first, then the others of that protocol deleted. Returns (added,
    deleted)."""
    return await in_thread(lambda: _apply(want, protocol))
