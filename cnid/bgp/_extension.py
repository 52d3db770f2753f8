"""cnid's extension of ExaBGP 5.0.15: announcing EVPN routes.

This module runs INSIDE the ExaBGP process (``python -m cnid.bgp._exabgp``
imports it before ExaBGP's own ``main``); the daemon never imports it.
ExaBGP decodes EVPN but has no syntax to announce it, so this module:

* registers one API command, ``cnid <base64>``, in ExaBGP's command table
  (the messages are in :mod:`cnid.bgp._wire`): announce, withdraw or
  end-of-RIB, for some or all neighbours, each answered by an ack line with
  the command's id (ExaBGP's own ``done``/``error`` acks are turned off);
* builds the NLRI and attributes of MAC/IP (type 2), IMET (type 3) and IP
  prefix (type 5) routes: route distinguisher, route targets, the VXLAN
  encapsulation community, the Router's MAC community (which ExaBGP has no
  class for: :class:`RouterMac` here), the MAC Mobility community of a type-2
  route with a sequence number (RFC 7432 7.7), PMSI ingress replication, with the VNI
  in the label field unshifted (what FRR and GoBGP send and expect);
* accepts 16-byte (IPv6) EVPN next-hops: stock 5.0.15 allows only 4 and
  answers a 16-byte one with a NOTIFICATION;
* applies GTSM to the sessions peers open (:func:`gtsm_on_passive_sessions`);
* retries connections every few seconds at most (:func:`reconnect_within_seconds`);
* keeps what a daemon attaching to a running ExaBGP must learn: the paths
  announced to every neighbour (:data:`ANNOUNCED`), answered by ``state``
  with the established sessions; ``replay`` writes every route of the
  established peers' adj-rib-in (``adj-rib-in true``) as the update lines
  written when they were received, and an End-of-RIB line per peer;
* hands the daemon the EVPN UPDATEs it receives as their bytes
  (:func:`raw_evpn_updates`: one decoder, ``cnid.bgp._decode``, in the
  daemon) instead of ExaBGP's objects and their JSON, and keeps their routes
  in a raw adj-rib-in of its own (:class:`RawRib`) for the replay.

ExaBGP is pinned (pyproject.toml): the names used here are its internals.
tests/unit/test_bgp_extension.py encodes routes with this module and checks
them byte for byte against updates captured from FRR and GoBGP.
"""

from __future__ import annotations

import ipaddress
import os
import time
from struct import pack
from typing import Any, NamedTuple

import msgspec
from exabgp.bgp.message import EOR, Action, Message
from exabgp.bgp.message.direction import Direction
from exabgp.bgp.message.refresh import RouteRefresh
from exabgp.bgp.message.update import Update
from exabgp.bgp.message.update.attribute import Attributes, NextHop
from exabgp.bgp.message.update.attribute.community.extended import (
    ExtendedCommunities,
    ExtendedCommunity,
)
from exabgp.bgp.message.update.attribute.community.extended.encapsulation import Encapsulation
from exabgp.bgp.message.update.attribute.community.extended.mac_mobility import MacMobility
from exabgp.bgp.message.update.attribute.community.extended.rt import (
    RouteTargetASN2Number,
    RouteTargetASN4Number,
    RouteTargetIPNumber,
)
from exabgp.bgp.message.update.attribute.localpref import LocalPreference
from exabgp.bgp.message.update.attribute.origin import Origin
from exabgp.bgp.message.update.attribute.pmsi import PMSIIngressReplication
from exabgp.bgp.message.update.nlri.evpn.mac import MAC as EvpnMac
from exabgp.bgp.message.update.nlri.evpn.multicast import Multicast as EvpnMulticast
from exabgp.bgp.message.update.nlri.evpn.nlri import EVPN
from exabgp.bgp.message.update.nlri.evpn.prefix import Prefix as EvpnPrefix
from exabgp.bgp.message.update.nlri.qualifier import (
    ESI,
    MAC,
    EthernetTag,
    Labels,
    RouteDistinguisher,
)
from exabgp.protocol.family import AFI, SAFI, Family
from exabgp.protocol.ip import IP
from exabgp.reactor import delay as exa_delay
from exabgp.reactor import listener as exa_listener
from exabgp.reactor import peer as exa_peer
from exabgp.reactor.api import processes as exa_processes
from exabgp.reactor.api.command.command import Command as ExaCommand
from exabgp.reactor.api.command.limit import match_neighbors
from exabgp.reactor.network import tcp as exa_tcp
from exabgp.rib.change import Change
from exabgp.rib.incoming import IncomingRIB

from ._decode import AFI_L2VPN, SAFI_EVPN, raw_line
from ._routes import EvpnPath, ImetRoute, MacIpRoute
from ._wire import COMMAND, Ack, Command, SpeakerState, ack_line, decode_command

# ------------------------------------------------------- ExaBGP's gaps, filled


@ExtendedCommunity.register
class RouterMac(ExtendedCommunity):  # type: ignore[misc]
    """The EVPN Router's MAC extended community (RFC 9135 section 8.1):
    type 0x06 (EVPN), sub-type 0x03, then the six octets of the MAC."""

    COMMUNITY_TYPE = 0x06
    COMMUNITY_SUBTYPE = 0x03

    def __init__(self, mac: str, community: bytes | None = None) -> None:
        self.mac = mac
        raw = bytes.fromhex(mac.replace(":", ""))
        ExtendedCommunity.__init__(
            self, community if community is not None else bytes([0x06, 0x03]) + raw
        )

    def __repr__(self) -> str:
        return f"router-mac:{self.mac}"

    @staticmethod
    def unpack(data: bytes) -> RouterMac:
        mac = ":".join(f"{b:02x}" for b in data[2:8])
        return RouterMac(mac, bytes(data[:8]))


def allow_ipv6_nexthops() -> None:
    """EVPN next-hops of 4 or 16 octets (RFC 7432 7: the next hop is the
    PE's IPv4 or IPv6 address)."""
    Family.size[(AFI.l2vpn, SAFI.evpn)] = ((4, 16), 0)


def gtsm_on_passive_sessions() -> None:
    """GTSM (RFC 5082) on the sessions a peer opens. ExaBGP 5.0.15's
    listening sockets (``exabgp.tcp.bind``) get neither GTSM setting: the
    SYN-ACK leaves with TTL 64, which a peer connecting with ``incoming-ttl
    255`` drops (two cnid nodes with ``ttl_security`` never met), and the
    accepted session has no minimum TTL. With ``CNID_GTSM=1`` in its
    environment (``[bgp] ttl_security``) listening sockets send with TTL 255
    and every accepted session gets its neighbour's minimum."""
    if os.environ.get("CNID_GTSM") != "1":
        return
    new_socket = exa_listener.Listener._new_socket
    accepted = exa_listener.set_accepted_ttl

    def _new_socket(self: Any, ip: Any) -> Any:
        sock = new_socket(self, ip)
        exa_tcp.set_sending_ttl(sock, ip.afi, ip.top(), 255)
        return sock

    def set_accepted_ttl(connection: Any, neighbor: Any) -> None:
        accepted(connection, neighbor)
        minimum = neighbor["incoming-ttl"]
        if minimum and connection.io is not None:
            exa_tcp.set_minimum_ttl(connection.io, connection.afi, connection.peer, minimum)

    exa_listener.Listener._new_socket = _new_socket
    exa_listener.set_accepted_ttl = set_accepted_ttl


RECONNECT_MAX = 5


def reconnect_within_seconds() -> None:
    """ExaBGP backs off reconnections up to a minute; inside a cluster a
    node that restarts or joins should be met within seconds: the backoff
    grows the same way but stops at :data:`RECONNECT_MAX`."""

    def increase(self: Any) -> None:
        self._time = time.time() + self._next
        self._next = min(int(1 + self._next * 1.2), RECONNECT_MAX)

    exa_delay.Delay.increase = increase


#: Peer address -> time.time() until which no session is made with it
#: (a ``teardown`` command's hold-down).
HOLD_DOWN: dict[str, float] = {}


def _held_down(peer: Any) -> bool:
    until = HOLD_DOWN.get(str(peer.neighbor["peer-address"]))
    return until is not None and time.time() < until


def hold_down_after_teardown() -> None:
    """A torn-down peer stays down for its hold time: ExaBGP neither
    connects to it (its reconnect delay is pushed to the end of the hold)
    nor accepts its connections (refused with Cease "connection
    rejected")."""
    close = exa_peer.Peer._close
    handle = exa_peer.Peer.handle_connection

    def _close(self: Any, message: str = "", error: Any = "") -> None:
        close(self, message, error)
        until = HOLD_DOWN.get(str(self.neighbor["peer-address"]))
        if until is not None and time.time() < until:
            self._delay._time = until

    def handle_connection(self: Any, connection: Any) -> Any:
        if _held_down(self):
            return connection.notification(6, 5, "hold-down: maximum-prefix or BFD down")
        return handle(self, connection)

    exa_peer.Peer._close = _close
    exa_peer.Peer.handle_connection = handle_connection


#: The peers whose EVPN End-of-RIB ExaBGP received in their current
#: session: only their adj-rib-in is complete, so only they get an
#: End-of-RIB line at a ``replay`` (a session that came up moments before an
#: attach may still be sending its table: a made-up End-of-RIB would sweep
#: the daemon's stale routes before the real ones arrive).
EOR_RECEIVED: set[str] = set()
#: The same for IPv4 unicast (a routed underlay's VTEPs): the underlay's
#: adoption at a daemon's start ends with these.
UNICAST_EOR_RECEIVED: set[str] = set()


def record_received_eor() -> None:
    """Note each peer's received EVPN End-of-RIB; forget it when its
    session comes up again or goes down."""
    processes = exa_processes.Processes
    message, up, down = processes.message, processes.up, processes.down

    def _message(
        self: Any, message_id: int, neighbor: Any, direction: str, msg: Any, *rest: Any
    ) -> Any:
        if direction == "receive" and isinstance(msg, EOR):
            for nlri in msg.nlris:
                if (nlri.afi, nlri.safi) == _EVPN:
                    EOR_RECEIVED.add(str(neighbor["peer-address"]))
                elif (nlri.afi, nlri.safi) == (AFI.ipv4, SAFI.unicast):
                    UNICAST_EOR_RECEIVED.add(str(neighbor["peer-address"]))
        return message(self, message_id, neighbor, direction, msg, *rest)

    def _up(self: Any, neighbor: Any) -> Any:
        EOR_RECEIVED.discard(str(neighbor["peer-address"]))
        UNICAST_EOR_RECEIVED.discard(str(neighbor["peer-address"]))
        return up(self, neighbor)

    def _down(self: Any, neighbor: Any, reason: Any) -> Any:
        EOR_RECEIVED.discard(str(neighbor["peer-address"]))
        UNICAST_EOR_RECEIVED.discard(str(neighbor["peer-address"]))
        return down(self, neighbor, reason)

    processes.message, processes.up, processes.down = _message, _up, _down


def evpn_route_key(code: int, packed: bytes) -> bytes:
    """An EVPN route's key: the fields RFC 7432 (7.1-7.4) and RFC 9136 (3.1)
    make it of, without the labels, the ESI of types 2 and 5 and the gateway
    address, which a withdrawal need not repeat: FRR withdraws a type-2 or
    type-5 route with label 0 (``evpn-samples/withdraw_from_frr.jsonl``)."""
    if code == 1 and len(packed) >= 22:  # RD, ESI, Ethernet tag; the label is not
        return b"\x01" + packed[:22]
    if code == 2 and len(packed) >= 30:  # RD, Ethernet tag, MAC, IP
        end = 30 + (packed[29] + 7) // 8
        return b"\x02" + packed[:8] + packed[18:end]
    if code == 5 and len(packed) in (34, 58):  # RD, Ethernet tag, prefix
        size = 4 if len(packed) == 34 else 16
        return b"\x05" + packed[:8] + packed[18 : 23 + size]
    return bytes((code,)) + packed  # types 3 and 4: no label in them


def adj_rib_in_by_route_key() -> None:
    """ExaBGP keys its adj-rib-in by the NLRI's bytes, labels included: a
    withdrawal with other labels (FRR's, label 0) left the route in it, and
    the ``replay`` at the next attach brought it back to a restarted daemon,
    for good. EVPN routes are keyed by :func:`evpn_route_key` instead."""
    update_cache = IncomingRIB.update_cache

    def _update_cache(self: Any, change: Any) -> None:
        nlri = change.nlri
        if not self.cache or not isinstance(nlri, EVPN):
            update_cache(self, change)
            return
        family = nlri.family().afi_safi()
        key = evpn_route_key(nlri.CODE, nlri.pack_nlri()[2:])
        raw = raw_rib(self)
        if raw is not None:  # this path's route replaces the raw one (raw_evpn_updates)
            raw.routes.pop(key, None)
        if nlri.action == Action.ANNOUNCE:
            self._seen.setdefault(family, {})[key] = change
        elif family in self._seen:
            self._seen[family].pop(key, None)

    IncomingRIB.update_cache = _update_cache


_EVPN = (AFI.l2vpn, SAFI.evpn)
_UNICAST = (AFI.ipv4, SAFI.unicast)
#: The graceful restart capability's code (RFC 4724): a received OPEN's
#: capabilities are keyed by the code as read off the wire.
_GRACEFUL_RESTART = 0x40


# ---------------------------------------------------------- received as bytes

#: The attributes a raw route is kept with: MP_REACH_NLRI's value up to its
#: NLRIs (AFI, SAFI, next hop, reserved octet), then the other attributes as
#: received. One object per distinct set (:meth:`RawRib.intern`).
RawAttributes = tuple[bytes, bytes]


class RawRib:
    """One peer's EVPN routes as received (its adj-rib-in for the replay):
    :func:`evpn_route_key` -> (attributes, the NLRI's type, length and
    value). About 200 bytes a route, against about 2 KiB in ExaBGP's objects."""

    __slots__ = ("_interned", "_limit", "routes")

    #: Interned sets of attributes beyond this (or twice the live ones, if
    #: more): forgotten, then the live ones interned again (sets come and
    #: go: MAC Mobility sequences). Twice: a table of many live sets (a
    #: fabric of 500 VTEPs has thousands) is not walked again at every UPDATE.
    MIN_LIMIT = 4096

    def __init__(self) -> None:
        self.routes: dict[bytes, tuple[RawAttributes, bytes]] = {}
        self._interned: dict[RawAttributes, RawAttributes] = {}
        self._limit = self.MIN_LIMIT

    def intern(self, attributes: RawAttributes) -> RawAttributes:
        if len(self._interned) >= self._limit:
            self._interned = {a: a for a, _ in self.routes.values()}
            self._limit = max(self.MIN_LIMIT, 2 * len(self._interned))
        return self._interned.setdefault(attributes, attributes)

    def clear(self) -> None:
        self.routes.clear()
        self._interned.clear()
        self._limit = self.MIN_LIMIT

    def groups(self) -> dict[RawAttributes, list[bytes]]:
        out: dict[RawAttributes, list[bytes]] = {}
        for attributes, nlri in self.routes.values():
            out.setdefault(attributes, []).append(nlri)
        return out


def raw_rib(incoming: Any, create: bool = False) -> RawRib | None:
    """The raw routes kept beside an ExaBGP adj-rib-in (one per neighbour)."""
    rib: RawRib | None = getattr(incoming, "cnid_raw", None)
    if rib is None and create:
        rib = RawRib()
        incoming.cnid_raw = rib
    return rib


class RawEvpnUpdate(Message):  # type: ignore[misc]
    """What ExaBGP's reader gets instead of its Update for an EVPN UPDATE:
    an UPDATE for its timers and statistics, with no NLRI for its own
    adj-rib-in, and the line for the API (:func:`cnid.bgp._decode.raw_line`)."""

    ID = Message.CODE.UPDATE
    TYPE = bytes([Message.CODE.UPDATE])
    nlris: tuple[Any, ...] = ()
    attributes = Attributes()  # read only (``in``): one for all

    def __init__(self, line: str) -> None:
        self.line = line


def _attribute_spans(data: bytes) -> tuple[bytes | None, bytes | None, bytes] | None:
    """(MP_REACH_NLRI's value, MP_UNREACH_NLRI's value, the other attributes
    as they are) of an UPDATE body without IPv4 NLRIs, or None when its
    framing is not sound: ExaBGP's own path then answers it as it does."""
    end = len(data)
    if end < 4 or data[0] or data[1] or 4 + int.from_bytes(data[2:4], "big") != end:
        return None
    reach: bytes | None = None
    unreach: bytes | None = None
    others: list[bytes] = []
    i = 4
    while i < end:
        if end - i < 4:  # an attribute of no value has 3 octets: the last one
            if end - i < 3 or data[i] & 0x10:
                return None
        flags, code = data[i], data[i + 1]
        if flags & 0x10:
            start = i + 4
            stop = start + int.from_bytes(data[i + 2 : i + 4], "big")
        else:
            start = i + 3
            stop = start + data[i + 2]
        if stop > end:
            return None
        if code == 14:
            if reach is not None:
                return None
            reach = data[start:stop]
        elif code == 15:
            if unreach is not None:
                return None
            unreach = data[start:stop]
        else:
            others.append(data[i:stop])
        i = stop
    return reach, unreach, b"".join(others)


#: The lengths ExaBGP 5.0.15 accepts for a MAC/IP route of each IP length
#: (one or two labels); other lengths make it reset the session.
_MAC_IP_LENGTHS = {0: (33, 36), 32: (37, 40), 128: (49, 52)}


def _evpn_nlris(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(route key, NLRI) of each EVPN NLRI, or None where ExaBGP's parser
    would refuse one (or for route types 1 and 4, left to its checks)."""
    out = []
    i, end = 0, len(data)
    while i < end:
        if end - i < 2:
            return None
        code, length = data[i], data[i + 1]
        stop = i + 2 + length
        if stop > end:
            return None
        value = data[i + 2 : stop]
        if code == 2:
            if length < 30 or value[22] != 48:
                return None
            if length not in _MAC_IP_LENGTHS.get(value[29], ()):
                return None
        elif code == 3:
            if length < 13 or value[12] not in (32, 128) or length != 13 + value[12] // 8:
                return None
        elif code == 5:
            if length not in (34, 58):
                return None
        elif code in (1, 4):
            return None
        out.append((evpn_route_key(code, value), data[i:stop]))
        i = stop
    return out


class _EvpnParts(NamedTuple):
    """What the raw path keeps of an EVPN UPDATE."""

    #: MP_REACH_NLRI's value up to its NLRIs (b"": none), the other attributes.
    header: bytes
    others: bytes
    #: (route key, NLRI) announced, withdrawn.
    announced: list[tuple[bytes, bytes]]
    withdrawn: list[tuple[bytes, bytes]]


def evpn_parts(data: bytes) -> _EvpnParts | None:
    """An UPDATE body of EVPN routes cut up, its framing checked; None for
    anything else (IPv4 unicast, End-of-RIB, framing ExaBGP must answer)."""
    spans = _attribute_spans(data)
    if spans is None:
        return None
    reach, unreach, others = spans
    if reach is None and unreach is None:
        return None
    announced: list[tuple[bytes, bytes]] = []
    withdrawn: list[tuple[bytes, bytes]] = []
    header = b""
    if reach is not None:
        if len(reach) < 5 or reach[:3] != _EVPN_FAMILY or reach[3] not in (4, 16):
            return None
        size = 5 + reach[3]
        found = _evpn_nlris(reach[size:]) if len(reach) > size else None
        if found is None:
            return None
        header, announced = reach[:size], found
    if unreach is not None:
        if len(unreach) < 3 or unreach[:3] != _EVPN_FAMILY:
            return None
        found = _evpn_nlris(unreach[3:])
        if found is None or (not found and reach is None):  # an End-of-RIB
            return None
        withdrawn = found
    return _EvpnParts(header, others, announced, withdrawn)


def _receive_raw(data: bytes, negotiated: Any) -> RawEvpnUpdate | None:
    """An UPDATE of EVPN routes as its bytes, kept in the peer's
    :class:`RawRib`; None for what stays on ExaBGP's own path (see
    :func:`evpn_parts`; ADD-PATH, 2-octet AS numbers)."""
    parts = evpn_parts(data)
    if parts is None:
        return None
    if not negotiated.asn4 or negotiated.addpath.receive(AFI.l2vpn, SAFI.evpn):
        return None
    neighbor = negotiated.neighbor
    incoming = neighbor.rib.incoming
    if incoming.cache:
        rib = raw_rib(incoming, create=True)
        assert rib is not None
        # a route ExaBGP's own path took (see _update_cache) is now this one
        seen = incoming._seen.get(_EVPN)
        routes = rib.routes
        for key, _ in parts.withdrawn:
            routes.pop(key, None)
            if seen:
                seen.pop(key, None)
        if parts.announced:
            attributes = rib.intern((parts.header, parts.others))
            for key, nlri in parts.announced:
                routes[key] = (attributes, nlri)
                if seen:
                    seen.pop(key, None)
    return RawEvpnUpdate(raw_line(str(neighbor["peer-address"]), data))


_EVPN_FAMILY = pack("!HB", AFI_L2VPN, SAFI_EVPN)
_RECEIVE_UPDATE = f"receive-{Message.CODE.UPDATE.SHORT}"
#: ExaBGP's own ``Update.unpack_message`` (the tests compare with it).
EXABGP_UNPACK_MESSAGE: Any = Update.unpack_message.__func__


def raw_evpn_updates() -> None:
    """EVPN UPDATEs skip ExaBGP's objects and JSON: ``Update.unpack_message``
    hands the reader a :class:`RawEvpnUpdate` for them (ExaBGP's session
    handling goes on: hold timer, statistics, NOTIFICATIONs), the API gets
    its line, the peer's :class:`RawRib` its routes; ExaBGP's adj-rib-in
    none. The raw routes go when ExaBGP clears its adj-rib-in (a session
    up) and when the session ends."""
    unpack_message = EXABGP_UNPACK_MESSAGE
    message = exa_processes.Processes.message
    clear = IncomingRIB.clear
    close = exa_peer.Peer._close

    def _unpack_message(cls: Any, data: bytes, direction: Any, negotiated: Any) -> Any:
        if direction == Direction.IN and negotiated is not None:
            raw = _receive_raw(data, negotiated)
            if raw is not None:
                return raw
        return unpack_message(cls, data, direction, negotiated)

    def _message(
        self: Any, message_id: int, neighbor: Any, direction: str, msg: Any, *rest: Any
    ) -> Any:
        if type(msg) is RawEvpnUpdate:
            if not self.silence:
                for process in neighbor.api[_RECEIVE_UPDATE]:
                    self.write(process, msg.line, neighbor)
            return None
        return message(self, message_id, neighbor, direction, msg, *rest)

    def _clear(self: Any) -> None:
        clear(self)
        rib = raw_rib(self)
        if rib is not None:
            rib.clear()

    def _close(self: Any, message: str = "", error: Any = "") -> None:
        try:
            close(self, message, error)
        finally:
            exa_rib = getattr(self.neighbor, "rib", None)
            rib = raw_rib(exa_rib.incoming) if exa_rib is not None else None
            if rib is not None:
                rib.clear()

    Update.unpack_message = classmethod(_unpack_message)
    exa_processes.Processes.message = _message
    IncomingRIB.clear = _clear
    exa_peer.Peer._close = _close


allow_ipv6_nexthops()
gtsm_on_passive_sessions()
reconnect_within_seconds()
hold_down_after_teardown()
record_received_eor()
adj_rib_in_by_route_key()
raw_evpn_updates()


# ------------------------------------------------------------------- building


def _rd(rd: str) -> RouteDistinguisher:
    admin, _, number = rd.rpartition(":")
    return RouteDistinguisher.fromElements(admin, int(number))


def _route_target(rt: str) -> ExtendedCommunity:
    admin, _, number = rt.rpartition(":")
    n = int(number)
    if "." in admin:
        return RouteTargetIPNumber(admin, n)
    asn = int(admin.removesuffix("L"))  # NL: a 4-octet AS however small (RFC 5668)
    if asn < 2**16 and not admin.endswith("L"):
        return RouteTargetASN2Number(asn, n)
    return RouteTargetASN4Number(asn, n)


def _esi(esi: str) -> ESI:
    return ESI(bytes.fromhex(esi.replace(":", "")))


def _vni_labels(*vnis: int) -> Labels:
    """VNIs in the 3-octet label fields, unshifted (RFC 8365 5.1.3)."""
    return Labels([], raw_labels=[v for v in vnis if v])


def _ip(address: str) -> IP:
    return IP.create(address)


def _nlri(path: EvpnPath) -> Any:
    route = path.route
    nexthop = _ip(path.nexthop)
    if isinstance(route, MacIpRoute):
        return EvpnMac(
            rd=_rd(route.rd),
            esi=_esi(route.esi),
            etag=EthernetTag(route.etag),
            mac=MAC(route.mac),
            maclen=48,
            label=_vni_labels(route.vni, route.l3vni),
            ip=_ip(route.ip) if route.ip else None,
            nexthop=nexthop,
        )
    if isinstance(route, ImetRoute):
        return EvpnMulticast(
            rd=_rd(route.rd), etag=EthernetTag(route.etag), ip=_ip(route.ip), nexthop=nexthop
        )
    net = ipaddress.ip_network(route.prefix)
    gateway = route.gateway or ("0.0.0.0" if net.version == 4 else "::")
    return EvpnPrefix(
        rd=_rd(route.rd),
        esi=_esi(route.esi),
        etag=EthernetTag(route.etag),
        label=_vni_labels(route.vni),
        ip=_ip(str(net.network_address)),
        iplen=net.prefixlen,
        gwip=_ip(gateway),
        nexthop=nexthop,
    )


def _pmsi(route: ImetRoute) -> PMSIIngressReplication:
    """Ingress replication toward the originator, the VNI as the label.
    ExaBGP's class packs an IPv4 tunnel only; an IPv6 one is passed packed."""
    tunnel = ipaddress.ip_address(route.ip).packed
    return PMSIIngressReplication(
        route.ip, label=route.vni >> 4, flags=0, tunnel=tunnel, raw_label=route.vni
    )


def build_change(path: EvpnPath, action: int) -> Change:
    """The ExaBGP Change (NLRI + attributes) of a path."""
    nlri = _nlri(path)
    nlri.action = action
    attributes = Attributes()
    attributes.add(Origin(Origin.IGP))
    attributes.add(LocalPreference(100))
    attributes.add(NextHop(path.nexthop))
    communities = [_route_target(rt) for rt in path.route_targets]
    if path.encap_vxlan:
        communities.append(Encapsulation(Encapsulation.Type.VXLAN))
    if path.router_mac:
        communities.append(RouterMac(path.router_mac))
    if isinstance(path.route, MacIpRoute) and (path.mac_mobility_seq is not None or path.sticky):
        communities.append(MacMobility(path.mac_mobility_seq or 0, path.sticky))
    if communities:
        attributes.add(ExtendedCommunities(communities))
    if isinstance(path.route, ImetRoute):
        attributes.add(_pmsi(path.route))
    return Change(nlri, attributes)


def packed_nlri(path: EvpnPath) -> bytes:
    """The route's NLRI as it goes on the wire (type, length, value)."""
    nlri = _nlri(path)
    body: bytes = nlri._packed
    return pack("!BB", nlri.CODE, len(body)) + body


# ------------------------------------------------------------ the API command


def _peers(reactor: Any, service: str, addresses: tuple[str, ...], established: bool) -> list[str]:
    known = reactor.established_peers() if established else reactor.peers(service)
    if not addresses:
        return list(known)
    return list(match_neighbors(known, [[f"neighbor {a}"] for a in addresses]))


def _unicast_eor(reactor: Any, peers: list[str]) -> None:
    """End-of-RIB for ipv4 unicast too, to the neighbours with that family
    (the routed underlay: their VTEP /32 is a static route of the
    configuration, sent when the session comes up; ``manual-eor`` leaves
    the End-of-RIB to us)."""
    unicast = (AFI.ipv4, SAFI.unicast)
    neighbors = reactor.configuration.neighbors
    with_unicast = [p for p in peers if p in neighbors and unicast in neighbors[p].families()]
    if with_unicast:
        reactor.configuration.inject_eor(with_unicast, Family(*unicast))


#: The paths announced to every neighbour (commands without ``peers``):
#: what ExaBGP's adj-rib-out holds of ours, for a daemon that attaches.
ANNOUNCED: set[EvpnPath] = set()
#: When this ExaBGP started (time.time()).
STARTED = time.time()


def restart_time(peer: Any) -> int:
    """The Restart Time ``peer`` advertised in the OPEN of its session
    (its graceful restart capability, RFC 4724); 0 without one."""
    proto = getattr(peer, "proto", None)
    received = proto.negotiated.received_open if proto is not None else None
    if received is None:
        return 0
    graceful = received.capabilities.get(_GRACEFUL_RESTART)
    return int(getattr(graceful, "restart_time", 0) or 0)


def speaker_state(reactor: Any, peers: tuple[str, ...] = ()) -> SpeakerState:
    """Everything; with ``peers``, only those peers' sessions and no paths
    (what the daemon asks when sessions come up: no copy of every path)."""
    established = []
    restart_times = []
    for key in sorted(reactor.established_peers()):
        peer = reactor._peers.get(key)
        if peer is None:
            continue
        address = str(peer.neighbor["peer-address"])
        if peers and address not in peers:
            continue
        established.append((address, float(peer.stats.get("complete") or 0.0)))
        restart_times.append((address, restart_time(peer)))
    return SpeakerState(
        pid=os.getpid(),
        started=STARTED,
        established=tuple(established),
        paths=() if peers else tuple(sorted(ANNOUNCED, key=lambda p: p.route.key)),
        restart_times=tuple(restart_times),
    )


def replay(reactor: Any, service: str, peers: tuple[str, ...]) -> int:
    """The EVPN and IPv4 unicast routes in the adj-rib-in of each established peer (all, or
    those of ``peers``), written to ``service`` as they came (grouped by
    attributes): the EVPN routes of :class:`RawRib` as raw update lines, what
    ExaBGP's adj-rib-in holds as ExaBGP writes a received update; each peer's
    followed by its End-of-RIB lines; the number of routes."""
    encoder = reactor.processes._encoder[service]
    count = 0
    for key in _peers(reactor, service, peers, established=True):
        peer = reactor._peers.get(key)
        if peer is None:
            continue
        neighbor = peer.neighbor
        groups: dict[Any, tuple[Any, list[Any]]] = {}
        # the underlay's IPv4 unicast too (a routed underlay's VTEPs): a
        # daemon attaching after a leaf sent them would never learn them
        for change in neighbor.rib.incoming.cached_changes([_EVPN, _UNICAST]):
            family = change.nlri.afi_safi()
            if family == _EVPN and not isinstance(change.nlri, EVPN):
                continue
            index = (family, change.attributes.index())
            groups.setdefault(index, (change.attributes, []))[1].append(change.nlri)
        for attributes, nlris in groups.values():
            for i in range(0, len(nlris), 500):
                update = Update(nlris[i : i + 500], attributes)
                reactor.processes.write(
                    service, encoder.update(neighbor, "receive", update, None, b"", b"")
                )
                count += len(nlris[i : i + 500])
        address = str(neighbor["peer-address"])
        rib = raw_rib(neighbor.rib.incoming)
        for (header, others), nlris in (rib.groups() if rib is not None else {}).items():
            for body, n in _raw_updates(header, others, nlris):
                reactor.processes.write(service, raw_line(address, body))
                count += n
        if address in EOR_RECEIVED:  # else its own End-of-RIB is still to come
            reactor.processes.write(service, _eor_line(address))
        if address in UNICAST_EOR_RECEIVED:
            reactor.processes.write(service, _eor_line(address, "ipv4", "unicast"))
    return count


def _raw_updates(header: bytes, others: bytes, nlris: list[bytes]) -> list[tuple[bytes, int]]:
    """UPDATE bodies of routes that share their attributes, as many routes
    in each as the 2-octet length of its path attributes allows; (body,
    number of routes)."""
    room = 0xFFFF - len(others) - 4 - len(header)  # 4: MP_REACH's header, extended length
    out = []
    i = 0
    while i < len(nlris):
        size, j = len(nlris[i]), i + 1  # one route at least: it came in an UPDATE
        while j < len(nlris) and size + len(nlris[j]) <= room:
            size += len(nlris[j])
            j += 1
        reach = header + b"".join(nlris[i:j])
        attributes = others + pack("!BBH", 0x90, 14, len(reach)) + reach
        out.append((pack("!HH", 0, len(attributes)) + attributes, j - i))
        i = j
    return out


def _eor_line(peer: str, afi: str = "l2vpn", safi: str = "evpn") -> str:
    return msgspec.json.encode(
        {
            "type": "update",
            "cnid-replay": True,
            "neighbor": {
                "address": {"peer": peer},
                "message": {"eor": {"afi": afi, "safi": safi}},
            },
        }
    ).decode()


def _track(command: Command, done: list[EvpnPath]) -> None:
    if command.peers:
        return  # one peer's (a session that came up): the set is the same
    if command.op == "announce":
        ANNOUNCED.update(done)
    elif command.op == "withdraw":
        ANNOUNCED.difference_update(done)


def execute(reactor: Any, service: str, command: Command) -> Ack:
    if command.op == "state":
        return Ack(command.id, True, state=speaker_state(reactor, command.peers))
    if command.op == "replay":
        return Ack(command.id, True, done=replay(reactor, service, command.peers))
    if command.op == "teardown":
        keys = _peers(reactor, service, command.peers, established=False)
        for address in command.peers:
            HOLD_DOWN[address] = time.time() + command.hold
        for key in keys:
            reactor.teardown_peer(key, command.code or 1)
            peer = reactor._peers.get(key)
            until = HOLD_DOWN.get(str(peer.neighbor["peer-address"])) if peer else None
            if until is not None:
                peer._delay._time = until  # not connected now: no connect attempt either
        return Ack(command.id, True, done=len(keys))
    if command.op == "release":  # a teardown's hold ended early: connect now
        keys = _peers(reactor, service, command.peers, established=False)
        for address in command.peers:
            HOLD_DOWN.pop(address, None)
        for key in keys:
            peer = reactor._peers.get(key)
            if peer is not None:
                peer._delay.reset()
        return Ack(command.id, True, done=len(keys))
    if command.op == "refresh":  # ROUTE-REFRESH (RFC 2918): the peer sends everything again
        peers = _peers(reactor, service, command.peers, established=True)
        if peers:
            reactor.configuration.inject_refresh(peers, [RouteRefresh(AFI.l2vpn, SAFI.evpn)])
        return Ack(command.id, True, done=len(peers))
    if command.op == "eor":
        peers = _peers(reactor, service, command.peers, established=True)
        if peers:
            reactor.configuration.inject_eor(peers, Family(AFI.l2vpn, SAFI.evpn))
            _unicast_eor(reactor, peers)
        return Ack(command.id, True, done=len(peers))
    peers = _peers(reactor, service, command.peers, established=False)
    if not peers:
        return Ack(command.id, False, errors=(f"no neighbour matches {list(command.peers)}",))
    action = Action.ANNOUNCE if command.op == "announce" else Action.WITHDRAW
    errors: list[str] = []
    done: list[EvpnPath] = []
    for path in command.paths:
        try:
            change = build_change(path, action)
        except Exception as exc:  # one bad path must not fail the batch
            errors.append(f"{path.route}: {type(exc).__name__}: {exc}")
            continue
        if reactor.configuration.inject_change(peers, change) or action == Action.WITHDRAW:
            done.append(path)
        else:
            errors.append(f"{path.route}: the neighbours do not have the l2vpn evpn family")
    _track(command, done)
    return Ack(command.id, not errors, done=len(done), errors=tuple(errors))


def _handle(self: Any, reactor: Any, service: str, line: str, use_json: bool) -> bool:
    try:
        command = decode_command(line)
    except (ValueError, msgspec.DecodeError) as exc:
        reactor.processes.write(service, ack_line(Ack(-1, False, errors=(f"undecodable: {exc}",))))
        return False
    reactor.processes.write(service, ack_line(execute(reactor, service, command)))
    return True


ExaCommand.register(COMMAND, neighbor=False)(_handle)
