"""EVPN routes as typed values: the three route types cnid speaks and a path
(a route plus the attributes it travels with).

These Structs are what the daemon hands the ExaBGP extension to announce or
withdraw, and what the received updates decode into. They are frozen and
hashable, so they key dictionaries and live in sets; the RIB compares paths
by value.

An NLRI's *identity* (what BGP uses to tell two routes apart, and what a
withdrawal names) is ``key``: for a MAC/IP route the RD, Ethernet tag, MAC and
IP; for an IMET route the RD, Ethernet tag and originator IP; for a prefix
route the RD, Ethernet tag and prefix. VNI labels, the ESI and the gateway
are carried but not part of the identity (RFC 7432, RFC 9136), yet ExaBGP
only withdraws a route it finds by the whole value: the daemon withdraws
exactly what it announced.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

import msgspec

ESI_ZERO = "00:00:00:00:00:00:00:00:00:00"
"""A single-homed route's Ethernet Segment Identifier."""


class MacIpRoute(msgspec.Struct, frozen=True, tag="2", gc=False):
    """Type 2: a MAC (and optionally its IP) behind a VTEP. ``vni`` is the
    L2VNI (first label); ``l3vni`` the second label of a symmetric-IRB route
    (0: none)."""

    rd: str
    mac: str
    vni: int
    ip: str = ""
    l3vni: int = 0
    esi: str = ESI_ZERO
    etag: int = 0

    @property
    def key(self) -> tuple[str, str, int, str, str]:
        return ("2", self.rd, self.etag, self.mac, self.ip)


class ImetRoute(msgspec.Struct, frozen=True, tag="3", gc=False):
    """Type 3: inclusive multicast (BUM flooding) toward ``ip``, the
    originating VTEP. ``vni`` travels in the PMSI tunnel attribute (ingress
    replication)."""

    rd: str
    ip: str
    vni: int
    etag: int = 0

    @property
    def key(self) -> tuple[str, str, int, str]:
        return ("3", self.rd, self.etag, self.ip)


class PrefixRoute(msgspec.Struct, frozen=True, tag="5", gc=False):
    """Type 5: an IP prefix in a tenant's VRF. ``vni`` is the L3VNI."""

    rd: str
    prefix: str
    vni: int
    gateway: str = ""
    esi: str = ESI_ZERO
    etag: int = 0

    @property
    def key(self) -> tuple[str, str, int, str]:
        return ("5", self.rd, self.etag, self.prefix)


EvpnRoute = MacIpRoute | ImetRoute | PrefixRoute
RouteType = Literal[2, 3, 5]


def route_type(route: EvpnRoute) -> RouteType:
    # by exact class first: the route table asks twice per received path
    found = _ROUTE_TYPES.get(type(route))
    if found is not None:
        return found
    if isinstance(route, MacIpRoute):
        return 2
    if isinstance(route, ImetRoute):
        return 3
    return 5


_ROUTE_TYPES: dict[type, RouteType] = {MacIpRoute: 2, ImetRoute: 3, PrefixRoute: 5}


class EvpnPath(msgspec.Struct, frozen=True, gc=False):
    """A route and the attributes it is announced with. ``route_targets``
    are ``ASN:N`` or ``IP:N`` strings; ``router_mac`` is the Router's MAC
    extended community (type-5 and symmetric-IRB type-2); ``encap_vxlan`` the
    encapsulation extended community (tunnel type 8); ``mac_mobility_seq``
    and ``sticky`` the MAC Mobility extended community of a type-2 route
    (RFC 7432 section 7.7: type 0x06, sub-type 0x00, the sticky flag and a
    4-octet sequence number; None: the route carries no such community,
    which RFC 7432 section 15 reads as sequence 0)."""

    route: EvpnRoute
    nexthop: str
    route_targets: tuple[str, ...] = ()
    router_mac: str = ""
    encap_vxlan: bool = True
    mac_mobility_seq: int | None = None
    sticky: bool = False


class ReceivedPath(msgspec.Struct, frozen=True, gc=False):
    """A path as a peer sent it: who sent it and who originated it
    (``originator`` is the ORIGINATOR_ID a route reflector adds, else "")."""

    peer: str
    path: EvpnPath
    originator: str = ""
    local_pref: int = 100
    #: The AS_PATH's AS numbers in order (sequences and sets flattened).
    as_path: tuple[int, ...] = ()


# -------------------------------------------------------------- validation


def check_rd(rd: str) -> None:
    """ValueError unless ``rd`` is ``ASN:N`` (type 0 or 2) or ``IPv4:N`` (type 1)."""
    admin, sep, number = rd.rpartition(":")
    if not sep or not number.isdigit():
        raise ValueError(f"route distinguisher {rd!r} is not ADMIN:NUMBER")
    n = int(number)
    if "." in admin:
        ipaddress.IPv4Address(admin)
        if n >= 2**16:
            raise ValueError(f"route distinguisher {rd!r}: number over 65535")
    elif admin.removesuffix("L").isdigit():  # NL: a 4-octet AS (RFC 5668)
        asn, as4 = int(admin.removesuffix("L")), admin.endswith("L")
        if not (asn < 2**16 and n < 2**32 and not as4) and not (asn < 2**32 and n < 2**16):
            raise ValueError(f"route distinguisher {rd!r} does not fit 8 octets")
    else:
        raise ValueError(f"route distinguisher {rd!r}: bad administrator")


def check_route_target(rt: str) -> None:
    """ValueError unless ``rt`` is ``ASN:N`` or ``IPv4:N``."""
    check_rd(rt)


def check_mac(mac: str) -> None:
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"MAC {mac!r} is not six colon-separated octets")
    bytes.fromhex("".join(parts))


def check_path(path: EvpnPath) -> None:
    """ValueError naming the first field the wire encoding cannot carry."""
    route = path.route
    check_rd(route.rd)
    ipaddress.ip_address(path.nexthop)
    for rt in path.route_targets:
        check_route_target(rt)
    if path.router_mac:
        check_mac(path.router_mac)
    if path.mac_mobility_seq is not None or path.sticky:
        if not isinstance(route, MacIpRoute):
            raise ValueError("a MAC Mobility community on a route that is not a MAC/IP route")
        if not 0 <= (path.mac_mobility_seq or 0) < 2**32:
            raise ValueError(f"MAC mobility sequence {path.mac_mobility_seq} out of range")
    if not 0 <= route.etag < 2**32:
        raise ValueError(f"ethernet tag {route.etag} out of range")
    if not 0 < route.vni < 2**24:
        raise ValueError(f"VNI {route.vni} out of range")
    if isinstance(route, MacIpRoute):
        check_mac(route.mac)
        if route.ip:
            ipaddress.ip_address(route.ip)
        if not 0 <= route.l3vni < 2**24:
            raise ValueError(f"L3VNI {route.l3vni} out of range")
    elif isinstance(route, ImetRoute):
        ipaddress.ip_address(route.ip)
    else:
        net = ipaddress.ip_network(route.prefix, strict=True)
        if route.gateway and ipaddress.ip_address(route.gateway).version != net.version:
            raise ValueError(f"gateway {route.gateway} is not of the prefix's family")
    if not isinstance(route, ImetRoute) and len(route.esi.split(":")) != 10:
        raise ValueError(f"ESI {route.esi!r} is not ten octets")
