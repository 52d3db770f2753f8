"""Route targets and route distinguishers as values: their text forms, their
8-octet encodings, and FRR's canonical rendering.

Both are an *administrator* and an *assigned number* in one of three layouts
(RFC 4360 section 4 and RFC 5668 for route targets, RFC 4364 section 4.2
for route distinguishers); ``kind`` is the layout:

====  =====================  ===============  ==================
kind  administrator          number           text
====  =====================  ===============  ==================
0     2-octet AS             4 octets         ``65000:42``
1     IPv4 address           2 octets         ``192.0.2.1:42``
2     4-octet AS             2 octets         ``4200000001:42``
====  =====================  ===============  ==================

On the wire a route target is the transitive extended community of type
``kind`` (0x00, 0x01, 0x02) and sub-type 0x02; a route distinguisher is the
2-octet type ``kind`` followed by the same six octets.

Parsing follows FRR (``str2prefix_rd``, ``ecommunity_str2com``): an AS that
fits two octets gives kind 0 (so ``65000:70000`` is valid), a larger one
kind 2; ``NL:M`` (ExaBGP's and Cisco's mark of a 4-octet AS) forces kind 2.
AS 0 is refused (RFC 7607: AS 0 is never a valid administrator), as is an
IPv4 administrator that is not a unicast host address (0.0.0.0,
multicast, broadcast). The ``target:`` prefix ExaBGP prints is accepted.

Rendering (``str``) is what FRR prints (``65000:42``, ``192.0.2.1:42``,
``4200000001:42``); a kind-2 value with an AS under 65536 renders with the
``L`` mark (``65000L:42``) so that text and value stay one-to-one (FRR
prints it as ``65000:42``, which it cannot parse back to kind 2).
Matching compares values, i.e. the eight octets, as FRR and GoBGP do:
``65000:42`` of kind 0 and ``65000L:42`` are different targets.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Literal

import msgspec

from ._errors import ConfigError

Kind = Literal[0, 1, 2]

#: The route-target sub-type of the three transitive two-octet-AS, IPv4 and
#: four-octet-AS extended community types (RFC 4360 4, RFC 5668 2).
RT_SUBTYPE = 0x02

_LIMITS: dict[int, tuple[int, int]] = {0: (2**16, 2**32), 1: (2**32, 2**16), 2: (2**32, 2**16)}
_TEXT = re.compile(r"(?P<admin>[0-9.]+)(?P<as4>L?):(?P<number>[0-9]+)")
_MAX_TEXT = 32


class _AdminNumber(msgspec.Struct, frozen=True, order=True):
    kind: Kind
    #: The AS number, or the IPv4 address as an integer.
    admin: int
    number: int

    def __post_init__(self) -> None:
        admin_limit, number_limit = _LIMITS[self.kind]
        if not 0 <= self.admin < admin_limit or not 0 <= self.number < number_limit:
            what, admin, number = self._what, self.admin, self.number
            raise ConfigError(f"{what} {admin}:{number} does not fit kind {self.kind}")

    _what = "value"

    def __str__(self) -> str:
        if self.kind == 1:
            return f"{ipaddress.IPv4Address(self.admin)}:{self.number}"
        mark = "L" if self.kind == 2 and self.admin < 2**16 else ""
        return f"{self.admin}{mark}:{self.number}"

    def _six(self) -> bytes:
        if self.kind == 0:
            return self.admin.to_bytes(2, "big") + self.number.to_bytes(4, "big")
        return self.admin.to_bytes(4, "big") + self.number.to_bytes(2, "big")

    @staticmethod
    def _unsix(kind: Kind, six: bytes) -> tuple[int, int]:
        if kind == 0:
            return int.from_bytes(six[:2], "big"), int.from_bytes(six[2:], "big")
        return int.from_bytes(six[:4], "big"), int.from_bytes(six[4:], "big")


class RouteTarget(_AdminNumber, frozen=True):
    """A route target (RFC 4360 section 4, RFC 5668)."""

    _what = "route target"

    def community(self) -> int:
        """The extended community as the 64-bit integer ExaBGP's JSON
        carries in ``value``."""
        return int.from_bytes(self.to_bytes(), "big")

    def to_bytes(self) -> bytes:
        return bytes([self.kind, RT_SUBTYPE]) + self._six()

    @classmethod
    def from_community(cls, value: int | bytes) -> RouteTarget | None:
        """The route target an extended community is, or None when it is
        another community (encapsulation, router MAC, MAC mobility, a
        non-transitive or an IPv6 type...)."""
        raw = value if isinstance(value, bytes) else _eight(value)
        if len(raw) != 8:
            raise ConfigError(f"extended community {raw.hex()} is not 8 octets")
        if raw[0] not in (0, 1, 2) or raw[1] != RT_SUBTYPE:
            return None
        kind: Kind = raw[0]  # type: ignore[assignment]
        admin, number = cls._unsix(kind, raw[2:])
        return cls(kind, admin, number)


class RouteDistinguisher(_AdminNumber, frozen=True):
    """A route distinguisher (RFC 4364 section 4.2)."""

    _what = "route distinguisher"

    def to_bytes(self) -> bytes:
        return self.kind.to_bytes(2, "big") + self._six()

    @classmethod
    def from_bytes(cls, raw: bytes) -> RouteDistinguisher:
        if len(raw) != 8:
            raise ConfigError(f"route distinguisher {raw.hex()} is not 8 octets")
        kind = int.from_bytes(raw[:2], "big")
        if kind not in (0, 1, 2):
            raise ConfigError(f"route distinguisher {raw.hex()}: unknown type {kind}")
        k: Kind = kind  # type: ignore[assignment]
        admin, number = cls._unsix(k, raw[2:])
        return cls(k, admin, number)


def _eight(value: int) -> bytes:
    if not 0 <= value < 2**64:
        raise ConfigError(f"extended community {value} is not 8 octets")
    return value.to_bytes(8, "big")


def _parse(text: str, what: str) -> tuple[Kind, int, int]:
    """The kind, administrator and number of ``text``; ConfigError naming
    the text and what is wrong with it."""
    if not isinstance(text, str):
        raise ConfigError(f"{what} {text!r} is not a string")
    if len(text) > _MAX_TEXT:
        raise ConfigError(f"{what} {text[:_MAX_TEXT]!r}...: too long")
    m = _TEXT.fullmatch(text)
    if m is None:
        raise ConfigError(f"{what} {text!r} is not ASN:NN or IPv4:NN")
    admin_text, as4, number_text = m["admin"], m["as4"], m["number"]
    number = int(number_text)
    if "." in admin_text:
        if as4:
            raise ConfigError(f"{what} {text!r}: 'L' marks an AS, not an address")
        try:
            address = ipaddress.IPv4Address(admin_text)
        except ValueError:
            raise ConfigError(f"{what} {text!r}: {admin_text!r} is not an IPv4 address") from None
        if (
            address.is_unspecified
            or address.is_multicast
            or address == ipaddress.IPv4Address("255.255.255.255")
        ):
            raise ConfigError(f"{what} {text!r}: {admin_text} is not a unicast address")
        if number >= 2**16:
            raise ConfigError(f"{what} {text!r}: number {number} over 65535 after an address")
        return 1, int(address), number
    asn = int(admin_text)
    if asn == 0:
        raise ConfigError(f"{what} {text!r}: AS 0 is reserved (RFC 7607)")
    if asn >= 2**32:
        raise ConfigError(f"{what} {text!r}: AS {asn} over 4294967295")
    if asn < 2**16 and not as4:
        if number >= 2**32:
            raise ConfigError(f"{what} {text!r}: number {number} over 4294967295")
        return 0, asn, number
    if number >= 2**16:
        raise ConfigError(
            f"{what} {text!r}: number {number} over 65535 after a 4-octet AS "
            "(8 octets hold a 2-octet AS with a 4-octet number or the reverse)"
        )
    return 2, asn, number


def parse_route_target(text: str) -> RouteTarget:
    """``ASN:NN``, ``ASNL:NN``, ``IPv4:NN``, optionally ``target:``-prefixed
    (ExaBGP's form); ConfigError otherwise."""
    body = text.removeprefix("target:") if isinstance(text, str) else text
    return RouteTarget(*_parse(body, "route target"))


def parse_rd(text: str) -> RouteDistinguisher:
    """``ASN:NN``, ``ASNL:NN`` or ``IPv4:NN``; ConfigError otherwise."""
    return RouteDistinguisher(*_parse(text, "route distinguisher"))


def route_targets_in(communities: Iterable[int | bytes]) -> tuple[RouteTarget, ...]:
    """The route targets among a path's extended communities, given as
    integers (ExaBGP's ``value``) or 8-octet strings; other communities and
    malformed values are skipped."""
    found: list[RouteTarget] = []
    for value in communities:
        try:
            rt = RouteTarget.from_community(value)
        except ConfigError:
            continue
        if rt is not None:
            found.append(rt)
    return tuple(found)
