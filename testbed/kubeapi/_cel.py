"""CEL for ``x-kubernetes-validations``: cel-python plus the Kubernetes
libraries our CRDs use (IP and CIDR, a few string helpers).

The Kubernetes libraries are re-implemented from their documentation
(k8s.io/apiserver/pkg/cel/library): ``ip()`` and ``cidr()`` reject what
netip rejects (zones, IPv4-mapped IPv6), a CIDR keeps its host bits until
``masked()``, and two CIDRs are equal only when address and length are.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from typing import Any

import celpy
from celpy import celtypes
from celpy.evaluation import CELEvalError

IPAny = ipaddress.IPv4Address | ipaddress.IPv6Address
IfAny = ipaddress.IPv4Interface | ipaddress.IPv6Interface


class CelCompileError(Exception):
    pass


class CelRuntimeError(Exception):
    pass


class IP:
    """The ``net.IP`` CEL type."""

    def __init__(self, address: IPAny) -> None:
        self.address = address

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IP) and self.address == other.address

    def __hash__(self) -> int:
        return hash(self.address)

    def __str__(self) -> str:
        return str(self.address)

    def __repr__(self) -> str:
        return f"ip({str(self.address)!r})"


class CIDR:
    """The ``net.CIDR`` CEL type: an address (host bits kept) and a length."""

    def __init__(self, interface: IfAny) -> None:
        self.interface = interface

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, CIDR)
            and self.interface.ip == other.interface.ip
            and self.interface.network.prefixlen == other.interface.network.prefixlen
        )

    def __hash__(self) -> int:
        return hash((self.interface.ip, self.interface.network.prefixlen))

    def __str__(self) -> str:
        return f"{self.interface.ip}/{self.interface.network.prefixlen}"

    def __repr__(self) -> str:
        return f"cidr({str(self)!r})"


def _parse_ip(text: str) -> IPAny:
    text = str(text)
    if "%" in text:
        raise ValueError(f"IP address with zone value is not allowed: {text}")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            f'IP Address "{text}" parse error during conversion from string:'
            f' ParseAddr("{text}"): unable to parse IP'
        ) from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise ValueError(f"IPv4-mapped IPv6 address is not allowed: {text}")
    return address


def _parse_cidr(text: str) -> IfAny:
    text = str(text)
    problem = (
        f'network address parse error during conversion from string: netip.ParsePrefix("{text}")'
    )
    address, slash, length = text.partition("/")
    if not slash:
        raise ValueError(f"{problem}: no '/'")
    try:
        _parse_ip(address)
    except ValueError:
        raise ValueError(f'{problem}: ParseAddr("{address}"): unable to parse IP') from None
    if not length.isdigit() or (len(length) > 1 and length.startswith("0")):
        raise ValueError(f'{problem}: bad bits after slash: "{length}"')
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        raise ValueError(f"{problem}: prefix length out of range") from None


def _is_ip(text: Any) -> celtypes.BoolType:
    try:
        _parse_ip(str(text))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _is_cidr(text: Any) -> celtypes.BoolType:
    try:
        _parse_cidr(str(text))
    except ValueError:
        return celtypes.BoolType(False)
    return celtypes.BoolType(True)


def _ip(value: Any) -> IP:
    """``ip(string)`` and ``<cidr>.ip()`` share the name, as in CEL."""
    if isinstance(value, CIDR):
        return IP(value.interface.ip)
    if isinstance(value, str):
        return IP(_parse_ip(value))
    raise TypeError(f"no such overload: ip({type(value).__name__})")


def _cidr(value: Any) -> CIDR:
    if isinstance(value, str):
        return CIDR(_parse_cidr(value))
    raise TypeError(f"no such overload: cidr({type(value).__name__})")


def _as_ip(value: Any) -> IP:
    return value if isinstance(value, IP) else _ip(value)


def _as_cidr(value: Any) -> CIDR:
    return value if isinstance(value, CIDR) else _cidr(value)


def _family(value: IP) -> celtypes.IntType:
    return celtypes.IntType(value.address.version)


def _ip_predicate(attribute: str) -> Callable[[IP], celtypes.BoolType]:
    def check(value: IP) -> celtypes.BoolType:
        return celtypes.BoolType(bool(getattr(value.address, attribute)))

    return check


def _is_global_unicast(value: IP) -> celtypes.BoolType:
    address = value.address
    return celtypes.BoolType(
        not (
            address.is_unspecified
            or address.is_loopback
            or address.is_multicast
            or address.is_link_local
            or address == ipaddress.IPv4Address("255.255.255.255")
        )
    )


def _prefix_length(value: CIDR) -> celtypes.IntType:
    return celtypes.IntType(value.interface.network.prefixlen)


def _masked(value: CIDR) -> CIDR:
    network = value.interface.network
    return CIDR(ipaddress.ip_interface(f"{network.network_address}/{network.prefixlen}"))


def _contains_ip(cidr: CIDR, other: Any) -> celtypes.BoolType:
    return celtypes.BoolType(_as_ip(other).address in cidr.interface.network)


def _contains_cidr(cidr: CIDR, other: Any) -> celtypes.BoolType:
    inner = _as_cidr(other).interface.network
    outer = cidr.interface.network
    return celtypes.BoolType(inner.version == outer.version and inner.subnet_of(outer))  # type: ignore[arg-type]


def _string(value: Any) -> celtypes.StringType:
    if isinstance(value, IP | CIDR):
        return celtypes.StringType(str(value))
    return celtypes.StringType(value)


def _lower_ascii(value: Any) -> celtypes.StringType:
    return celtypes.StringType(str(value).lower())


def _upper_ascii(value: Any) -> celtypes.StringType:
    return celtypes.StringType(str(value).upper())


def _trim(value: Any) -> celtypes.StringType:
    return celtypes.StringType(str(value).strip())


def _split(value: Any, separator: Any) -> celtypes.ListType:
    return celtypes.ListType([celtypes.StringType(p) for p in str(value).split(str(separator))])


def _join(value: Any, separator: Any = "") -> celtypes.StringType:
    return celtypes.StringType(str(separator).join(str(v) for v in value))


def _index_of(value: Any, needle: Any) -> celtypes.IntType:
    if isinstance(value, list):
        return celtypes.IntType(value.index(needle) if needle in value else -1)
    return celtypes.IntType(str(value).find(str(needle)))


def _replace(value: Any, old: Any, new: Any) -> celtypes.StringType:
    return celtypes.StringType(str(value).replace(str(old), str(new)))


def _find(value: Any, pattern: Any) -> celtypes.StringType:
    match = re.search(str(pattern), str(value))
    return celtypes.StringType(match.group(0) if match else "")


FUNCTIONS: dict[str, Any] = {
    "isIP": _is_ip,
    "ip": _ip,
    "family": _family,
    "isUnspecified": _ip_predicate("is_unspecified"),
    "isLoopback": _ip_predicate("is_loopback"),
    "isLinkLocalMulticast": lambda v: celtypes.BoolType(
        v.address.is_multicast and v.address.is_link_local
        if v.address.version == 6
        else v.address in ipaddress.ip_network("224.0.0.0/24")
    ),
    "isLinkLocalUnicast": lambda v: celtypes.BoolType(
        v.address.is_link_local and not v.address.is_multicast
    ),
    "isGlobalUnicast": _is_global_unicast,
    "isCIDR": _is_cidr,
    "cidr": _cidr,
    "prefixLength": _prefix_length,
    "masked": _masked,
    "containsIP": _contains_ip,
    "containsCIDR": _contains_cidr,
    "string": _string,
    "lowerAscii": _lower_ascii,
    "upperAscii": _upper_ascii,
    "trim": _trim,
    "split": _split,
    "join": _join,
    "indexOf": _index_of,
    "replace": _replace,
    "find": _find,
}

_ENV = celpy.Environment()


@functools.lru_cache(maxsize=1024)
def compile_rule(text: str) -> celpy.Runner:
    """A runnable program for one rule; raises CelCompileError."""
    try:
        return _ENV.program(_ENV.compile(text), functions=FUNCTIONS)
    except Exception as error:  # celpy raises its parser's errors, of several classes
        raise CelCompileError(
            str(error).strip().splitlines()[0] if str(error) else repr(error)
        ) from error


def evaluate(program: celpy.Runner, variables: dict[str, Any]) -> Any:
    """The result, or CelRuntimeError with CEL's words for what went wrong."""
    try:
        result = program.evaluate(variables)
    except CELEvalError as error:
        raise CelRuntimeError(_describe(error)) from error
    except Exception as error:  # a library function's own failure
        raise CelRuntimeError(str(error)) from error
    if isinstance(result, CELEvalError):
        raise CelRuntimeError(_describe(result))
    return result


def _describe(error: CELEvalError) -> str:
    """A library function's own words when it failed, CEL's otherwise."""
    if error.__cause__ is not None and str(error.__cause__):
        return str(error.__cause__)
    args = error.args
    text = str(args[0]) if args else "evaluation error"
    if len(args) >= 3 and args[2]:
        detail = args[2][0] if isinstance(args[2], tuple) and args[2] else args[2]
        text = f"{text}: {detail}"
    return text


def to_cel(value: Any) -> Any:
    """A JSON value as CEL sees it when the schema says nothing more."""
    if value is None:
        return None
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, float):
        return celtypes.DoubleType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, list):
        return celtypes.ListType([to_cel(v) for v in value])
    if isinstance(value, dict):
        return celtypes.MapType({celtypes.StringType(k): to_cel(v) for k, v in value.items()})
    raise TypeError(f"not a JSON value: {value!r}")


def from_cel(value: Any) -> Any:
    """A CEL result (a messageExpression's string, mostly) as Python."""
    if isinstance(value, celtypes.BoolType):
        return bool(value)
    if isinstance(value, celtypes.StringType):
        return str(value)
    return value
