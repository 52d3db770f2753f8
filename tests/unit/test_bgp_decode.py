"""EVPN UPDATEs decoded from their bytes (cnid.bgp.decode_update_bytes) give the same
UpdateEvent as the JSON path (ExaBGP's objects, its JSON, then
``_events.decode_update``): on UPDATEs rebuilt from the FRR and GoBGP
captures, and on UPDATEs the extension's own encoders build. What the
extension leaves to ExaBGP (framing that resets the session) and what the
decoder treats as withdraw (RFC 7606) are checked against ExaBGP too."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from struct import pack
from typing import Any

import msgspec
import pytest
from exabgp.bgp.message import Action
from exabgp.bgp.message.direction import Direction
from exabgp.bgp.message.notification import Notify
from exabgp.bgp.message.open.asn import ASN
from exabgp.bgp.message.open.capability.negotiated import Negotiated
from exabgp.bgp.message.update import EOR, Update
from exabgp.bgp.neighbor import Neighbor
from exabgp.protocol.family import AFI, SAFI
from exabgp.protocol.ip import IP
from exabgp.reactor.api.response import Response
from exabgp.version import json as json_version

from cnid.bgp import (
    RAW_PREFIX,
    EvpnPath,
    ImetRoute,
    MacIpRoute,
    PrefixRoute,
    UpdateEvent,
    decode_line,
    decode_update_bytes,
    raw_line,
)
from cnid.bgp import _exabgp_fast as _fast
from cnid.bgp import _extension as ext

assert _fast  # debug logging off and checked first: ExaBGP's logger is not set up here

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CAPTURES = [
    "evpn/from_frr.jsonl",
    "evpn/from_gobgp.jsonl",
    "evpn/type5_from_frr_l3vni.jsonl",
    "evpn/withdraw_from_frr.jsonl",
    "mobility/mac_mobility.jsonl",
]
SHARED = Path("/work/shared/notes/evpn-samples")


def _neighbor(peer: str = "10.0.0.9") -> Neighbor:
    n = Neighbor()
    n["peer-address"] = IP.create(peer)
    n["local-address"] = IP.create("10.0.0.2")
    n["local-as"] = ASN(65000)
    n["peer-as"] = ASN(65000)
    n["router-id"] = IP.create("10.0.0.2")
    n.add_family((AFI.l2vpn, SAFI.evpn))
    n.make_rib()
    n.rib.incoming.clear()  # ExaBGP keeps a neighbour's RIB by name, across tests
    return n


def _negotiated(neighbor: Neighbor, asn4: bool = True) -> Negotiated:
    negotiated = Negotiated(neighbor)
    negotiated.asn4 = asn4
    negotiated.families = [(AFI.l2vpn, SAFI.evpn)]
    return negotiated


NEIGHBOR = _neighbor()
NEGOTIATED = _negotiated(NEIGHBOR)


def _json_event(body: bytes, negotiated: Negotiated = NEGOTIATED) -> UpdateEvent | None:
    """The JSON path: ExaBGP's own parser, its JSON, cnid's decode_line."""
    update = ext.EXABGP_UNPACK_MESSAGE(Update, body, Direction.IN, negotiated)
    if isinstance(update, EOR):
        return None
    line = Response.JSON(json_version).update(negotiated.neighbor, "receive", update, None, "", "")
    event = decode_line(line)
    assert isinstance(event, UpdateEvent)
    return event


def _raw_event(body: bytes, peer: str = "10.0.0.9", asn4: bool = True) -> UpdateEvent:
    """The raw path, through the line the extension writes."""
    event = decode_line(raw_line(peer, body, asn4))
    assert isinstance(event, UpdateEvent)
    return event


# ------------------------------------------------ UPDATEs rebuilt from captures


def _attribute(flags: int, code: int, value: bytes) -> bytes:
    if flags & 0x10 or len(value) > 255:
        return pack("!BBH", flags | 0x10, code, len(value)) + value
    return pack("!BBB", flags, code, len(value)) + value


def _body(attributes: bytes) -> bytes:
    return pack("!HH", 0, len(attributes)) + attributes


def _pmsi(text: str) -> bytes:
    """ExaBGP's ``pmsi:ingressreplication:FLAGS:LABEL(RAW):IP`` back to the attribute."""
    _, kind, flags, label, ip = text.split(":")
    assert kind == "ingressreplication", text
    raw = int(label.split("(")[1].rstrip(")")) if "(" in label else int(label) << 4
    return pack("!BB", int(flags), 6) + raw.to_bytes(3, "big") + socket.inet_aton(ip)


def _packed_attributes(attrs: dict[str, Any]) -> bytes:
    """A capture's attributes as they were on the wire (the order of RFC 4271's codes)."""
    out = b""
    known = {
        "origin",
        "med",
        "local-preference",
        "originator-id",
        "cluster-list",
        "extended-community",
        "pmsi",
        "as-path",
    }
    assert set(attrs) <= known, set(attrs) - known  # else this test does not rebuild it
    if "origin" in attrs:
        out += _attribute(0x40, 1, bytes([("igp", "egp", "incomplete").index(attrs["origin"])]))
    if "as-path" in attrs:
        numbers = attrs["as-path"]
        out += _attribute(0x40, 2, pack(f"!BB{len(numbers)}L", 2, len(numbers), *numbers))
    if "med" in attrs:
        out += _attribute(0x80, 4, pack("!L", attrs["med"]))
    if "local-preference" in attrs:
        out += _attribute(0x40, 5, pack("!L", attrs["local-preference"]))
    if "originator-id" in attrs:
        out += _attribute(0x80, 9, socket.inet_aton(attrs["originator-id"]))
    if "cluster-list" in attrs:
        out += _attribute(0x80, 10, b"".join(socket.inet_aton(c) for c in attrs["cluster-list"]))
    if "extended-community" in attrs:
        values = [c["value"] for c in attrs["extended-community"]]
        out += _attribute(0xC0, 16, b"".join(v.to_bytes(8, "big") for v in values))
    if "pmsi" in attrs:
        out += _attribute(0xC0, 22, _pmsi(attrs["pmsi"]))
    return out


def _ip_bytes(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def _captured_bodies(line: str) -> tuple[str, list[bytes]]:
    """The peer and the UPDATE bodies of one captured line: one per next
    hop (an MP_REACH_NLRI has one), the withdrawals with the first."""
    neighbor = json.loads(line)["neighbor"]
    update = neighbor["message"]["update"]
    attributes = _packed_attributes(update.get("attribute", {}))
    family = pack("!HB", 25, 70)
    unreach = b""
    withdrawn = update.get("withdraw", {}).get("l2vpn evpn", [])
    if withdrawn:
        nlris = b"".join(bytes.fromhex(n["raw"]) for n in withdrawn)
        unreach = _attribute(0x90, 15, family + nlris)
    bodies = []
    for nexthop, nlris in update.get("announce", {}).get("l2vpn evpn", {}).items():
        hop = _ip_bytes(nexthop)
        value = family + bytes([len(hop)]) + hop + b"\0"
        value += b"".join(bytes.fromhex(n["raw"]) for n in nlris)
        bodies.append(_body(attributes + _attribute(0x90, 14, value) + unreach))
        unreach = b""
    if unreach:
        bodies.append(_body(unreach))
    return neighbor["address"]["peer"], bodies


def _capture_lines() -> list[tuple[str, str]]:
    out = []
    for name in CAPTURES:
        for line in (FIXTURES / name).read_text().splitlines():
            if line.strip():
                out.append((name, line))
    for path in sorted(SHARED.glob("*.jsonl")) if SHARED.is_dir() else ():
        for line in path.read_text().splitlines():
            if line.strip():
                out.append((path.name, line))
    return out


def _merged(peer: str, events: list[UpdateEvent]) -> UpdateEvent:
    return UpdateEvent(
        peer,
        tuple(rp for e in events for rp in e.announced),
        tuple(r for e in events for r in e.withdrawn),
        tuple(s for e in events for s in e.skipped),
    )


def test_every_capture_decodes_the_same_from_its_bytes() -> None:
    seen = 0
    for name, line in _capture_lines():
        peer, bodies = _captured_bodies(line)
        assert bodies, name
        raw = [_raw_event(body, peer) for body in bodies]
        assert _merged(peer, raw) == decode_line(line), name
        for body, event in zip(bodies, raw, strict=True):
            # and ExaBGP's own reading of the same bytes, through its JSON
            assert event == _json_event(body, _negotiated(_neighbor(peer))), name
            # which the extension hands over as bytes
            assert ext._receive_raw(body, _negotiated(_neighbor(peer))) is not None, name
        seen += sum(len(e.announced) + len(e.withdrawn) for e in raw)
    assert seen >= 20


# ------------------------------------- UPDATEs built by the extension's encoders

PATHS = [
    EvpnPath(
        MacIpRoute(rd="10.0.0.1:100", mac="02:00:00:00:00:01", ip="10.1.0.5", vni=100, l3vni=4242),
        nexthop="10.0.0.1",
        route_targets=("65000:100", "65000:4242"),
        router_mac="02:00:00:00:00:09",
    ),
    EvpnPath(
        MacIpRoute(
            rd="65001:7", mac="02:00:00:00:00:02", vni=200, esi="00:11:22:33:44:55:66:77:88:99"
        ),
        nexthop="10.0.0.1",
        route_targets=("65001L:7", "4200000001:7"),  # sorted, as ExaBGP keeps them
        mac_mobility_seq=3,
        sticky=True,
    ),
    EvpnPath(
        MacIpRoute(rd="10.0.0.1:3", mac="02:00:00:00:00:03", ip="fd00::5", vni=300, etag=9),
        nexthop="fd00::1",
        route_targets=("10.0.0.1:300",),
        encap_vxlan=False,
        mac_mobility_seq=0,
    ),
    EvpnPath(ImetRoute(rd="10.0.0.1:2", ip="10.0.0.1", vni=100), nexthop="10.0.0.1"),
    EvpnPath(ImetRoute(rd="4200000001:2", ip="fd00::1", vni=16000000, etag=4), nexthop="fd00::1"),
    EvpnPath(
        PrefixRoute(rd="10.0.0.1:1", prefix="10.244.1.0/26", vni=5000),
        nexthop="10.0.0.1",
        route_targets=("65000:5000",),
        router_mac="7a:d2:c3:5d:a5:05",
    ),
    EvpnPath(
        PrefixRoute(
            rd="10.0.0.1:1",
            prefix="fd10::/64",
            vni=5000,
            gateway="fd10::1",
            esi="00:00:00:00:00:00:00:00:00:01",
            etag=1,
        ),
        nexthop="fd00::1",
    ),
]


def _built(paths: list[EvpnPath], action: int = Action.ANNOUNCE) -> list[bytes]:
    """The UPDATE bodies ExaBGP sends for the extension's Changes."""
    changes = [ext.build_change(p, action) for p in paths]
    update = Update([c.nlri for c in changes], changes[0].attributes)
    return [m[19:] for m in update.messages(NEGOTIATED)]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: str(p.route)[:40])
def test_built_routes_decode_as_sent_and_as_exabgps_json_says(path: EvpnPath) -> None:
    [body] = _built([path])
    event = _raw_event(body)
    [rp] = event.announced
    assert rp.path == path and rp.peer == "10.0.0.9" and rp.local_pref == 100
    exabgp = _json_event(body)
    if isinstance(path.route, ImetRoute) and ":" in path.route.ip:
        # ExaBGP reads a 16-octet ingress replication tunnel with its
        # generic PMSI class, whose text has the label shifted (VNI >> 4):
        # the JSON path got an IPv6 VTEP's VNI wrong, the bytes do not
        assert exabgp is not None
        [json_rp] = exabgp.announced
        assert json_rp.path.route.vni == path.route.vni >> 4
        exabgp = msgspec.structs.replace(exabgp, announced=event.announced)
    assert event == exabgp
    [withdrawal] = _built([path], Action.WITHDRAW)
    event = _raw_event(withdrawal)
    assert event == _json_event(withdrawal)
    assert [r.key for r in event.withdrawn] == [path.route.key]


def test_many_routes_of_one_update() -> None:
    paths = [
        EvpnPath(
            PrefixRoute(rd="10.0.0.1:1", prefix=f"10.{i // 256}.{i % 256}.0/24", vni=42),
            nexthop="10.0.0.1",
            route_targets=("65000:42",),
        )
        for i in range(300)
    ]
    bodies = _built(paths)
    assert len(bodies) > 1  # ExaBGP splits them at 4,096 octets
    events = [_raw_event(b) for b in bodies]
    assert events == [_json_event(b) for b in bodies]
    assert [rp.path for e in events for rp in e.announced] == paths


def _with(body: bytes, extra: bytes) -> bytes:
    """The UPDATE with one more attribute (first: ExaBGP keeps the first of two)."""
    attributes = extra + body[4:]
    return _body(attributes)


def test_as_path_local_pref_and_originator() -> None:
    [body] = _built([PATHS[5]])
    body = _with(body, _attribute(0x40, 2, pack("!BBLLBBL", 2, 2, 65101, 4200000001, 1, 1, 65001)))
    event = _raw_event(body)
    assert event == _json_event(body)
    assert event.announced[0].as_path == (65101, 4200000001, 65001)


def test_odd_routes_give_the_json_paths_reasons() -> None:
    [imet] = _built([PATHS[3]])
    no_pmsi = _body(b"".join(_drop(imet[4:], 22)))
    other_tunnel = _body(
        b"".join(_drop(imet[4:], 22)) + _attribute(0xC0, 22, bytes([0, 3, 0, 0, 100]) + b"\1\2")
    )
    label_zero = _body(
        b"".join(_drop(imet[4:], 22)) + _attribute(0xC0, 22, bytes([0, 6, 0, 0, 0]) + b"\1\2\3\4")
    )
    [t5] = _built([PATHS[5]])
    vni_zero = t5[:-3] + b"\0\0\0"
    unknown = _mp_reach(b"\x09\x03abc" + b"\x01\x19" + bytes(25))  # type 9; type 1 (Ethernet A-D)
    for body in (no_pmsi, other_tunnel, label_zero, vni_zero, unknown):
        event = _raw_event(body)
        assert event == _json_event(body)
        assert not event.announced and event.skipped
    assert _raw_event(no_pmsi).skipped[0][0] == "IMET route without a PMSI tunnel attribute"


def _drop(attributes: bytes, code: int) -> list[bytes]:
    """The attributes, each with its header, but those of ``code``."""
    out, i = [], 0
    while i < len(attributes):
        flags, kind = attributes[i], attributes[i + 1]
        if flags & 0x10:
            end = i + 4 + int.from_bytes(attributes[i + 2 : i + 4], "big")
        else:
            end = i + 3 + attributes[i + 2]
        if kind != code:
            out.append(attributes[i:end])
        i = end
    return out


def _mp_reach(nlris: bytes, nexthop: bytes = b"\x0a\x00\x00\x01", extra: bytes = b"") -> bytes:
    value = pack("!HBB", 25, 70, len(nexthop)) + nexthop + b"\0" + nlris
    return _body(_attribute(0x40, 1, b"\0") + extra + _attribute(0x90, 14, value))


# ------------------------------------------------------------------ RFC 7606


@pytest.mark.parametrize(
    "attribute",
    [
        _attribute(0x40, 1, b"\0\0"),  # ORIGIN of 2 octets
        _attribute(0x40, 1, b"\7"),  # ORIGIN 7
        _attribute(0x40, 5, b"\0\0\1"),  # LOCAL_PREF of 3
        _attribute(0xC0, 16, bytes(7)),  # extended communities not 8 octets each
        _attribute(0x40, 2, b"\2\3\0\0\0\1"),  # AS_PATH overrunning itself
        _attribute(0x80, 9, b"\1\2\3"),  # ORIGINATOR_ID of 3
        # RFC 7606 3 (c): the Optional or Transitive bit in conflict
        _attribute(0xC0, 1, b"\0"),  # ORIGIN optional
        _attribute(0x00, 2, b""),  # AS_PATH not transitive
        _attribute(0x40, 4, bytes(4)),  # MED well-known
        _attribute(0x80, 5, b"\0\0\0\1"),  # LOCAL_PREF optional
        _attribute(0xC0, 9, b"\1\2\3\4"),  # ORIGINATOR_ID transitive
        _attribute(0x40, 16, bytes(8)),  # extended communities well-known
        _attribute(0x80, 22, bytes([0, 6, 0, 0, 100]) + b"\1\2\3\4"),  # PMSI not transitive
    ],
)
def test_a_malformed_attribute_withdraws_the_routes(attribute: bytes) -> None:
    """RFC 7606 treat-as-withdraw: the routes announced are withdrawn (as
    ExaBGP does), with a reason the controller logs and counts."""
    [t5] = _built([PATHS[5], *PATHS[:1]])
    body = _with(t5, attribute)
    event = _raw_event(body)
    assert not event.announced
    assert {r.key for r in event.withdrawn} == {PATHS[5].route.key, PATHS[0].route.key}
    [(reason, _)] = event.skipped
    assert reason.startswith("malformed attribute")
    # (ExaBGP 5.0.15 itself takes some of these as they are, and resets
    # the session for a short ORIGINATOR_ID: RFC 7606 7.9 says withdraw)


@pytest.mark.parametrize(
    ("body", "reset"),
    [
        (_mp_reach(b"\x02\x21" + bytes(20)), True),  # an NLRI overrunning MP_REACH_NLRI
        (_mp_reach(b"\x02\x21" + bytes(22) + b"\x18" + bytes(10)), True),  # MAC length 24
        (_mp_reach(b"\x05\x20" + bytes(32)), True),  # a prefix route of 32 octets
        (_mp_reach(b"\x03\x11" + bytes(12) + b"\x18" + bytes(4)), True),  # IMET, IP length 24
        (_mp_reach(b"\x05\x22" + bytes(34), nexthop=bytes(5)), True),  # next hop of 5
        # ORIGIN, then MP_REACH_NLRI, overrunning the UPDATE: ExaBGP withdraws
        (_body(_attribute(0x40, 1, b"\0")[:-1] + b"\x05\0"), False),
        (_body(_attribute(0x90, 14, b"\0\x19\x46\4\1\2\3\4\0\x05\x22" + bytes(34))[:-3]), False),
    ],
)
def test_broken_framing_is_left_to_exabgp(body: bytes, reset: bool) -> None:
    """Framing that RFC 7606 resets the session for (or where the NLRIs
    cannot be found): the extension hands it to ExaBGP, which sends its
    NOTIFICATION or withdraws; the decoder, given it all the same, raises
    nothing and finds no route."""
    assert ext._receive_raw(body, NEGOTIATED) is None
    if reset:
        with pytest.raises(Notify):
            ext.EXABGP_UNPACK_MESSAGE(Update, body, Direction.IN, NEGOTIATED)
    else:
        update = ext.EXABGP_UNPACK_MESSAGE(Update, body, Direction.IN, NEGOTIATED)
        assert not update.nlris
    event = decode_update_bytes("10.0.0.9", body)
    assert not event.announced and event.skipped


def test_what_stays_on_exabgps_path() -> None:
    [body] = _built([PATHS[0]])
    assert ext._receive_raw(body, NEGOTIATED) is not None
    assert ext._receive_raw(body, _negotiated(_neighbor(), asn4=False)) is None
    eor = _body(_attribute(0x90, 15, pack("!HB", 25, 70)))
    assert ext._receive_raw(eor, NEGOTIATED) is None
    assert ext._receive_raw(b"\0\0\0\0", NEGOTIATED) is None  # IPv4 End-of-RIB
    unicast = _body(_attribute(0x40, 1, b"\0") + _attribute(0x40, 3, b"\1\2\3\4")) + b"\x18\x0a\1\2"
    assert ext._receive_raw(unicast, NEGOTIATED) is None


def test_undecodable_lines() -> None:
    assert decode_update_bytes("p", b"\0").skipped
    event = decode_line('{"cnid-raw":{"peer":"p","update":"!!!"}}')
    assert isinstance(event, UpdateEvent) and event.skipped
    with pytest.raises(ValueError):
        decode_line('{"cnid-raw":{"peer":1}}')
    assert msgspec.json.decode(raw_line("10.0.0.1", b"\0\1"))["cnid-raw"]["asn4"] is True


# ------------------------------------------------- the raw adj-rib-in, replayed


class _Processes:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.silence = False
        self._encoder = {"svc": None}  # no route of ExaBGP's own to write

    def write(self, service: str, line: str, neighbor: Any = None) -> bool:
        self.lines.append(line)
        return True


def _reactor(neighbor: Neighbor) -> Any:
    reactor: Any = type("Reactor", (), {})()
    reactor.processes = _Processes()
    reactor._peers = {"k": type("Peer", (), {"neighbor": neighbor})()}
    reactor.established_peers = lambda: ["k"]
    return reactor


def _receive(negotiated: Negotiated, name: str) -> list[Any]:
    out = []
    for line in (FIXTURES / "evpn" / name).read_text().splitlines():
        if line.strip():
            for body in _captured_bodies(line)[1]:
                out.append(Update.unpack_message(body, Direction.IN, negotiated))
    return out


def _replayed(reactor: Any) -> tuple[set[Any], list[str]]:
    """The paths of the replay's update lines, and its other lines."""
    reactor.processes.lines.clear()
    count = ext.replay(reactor, "svc", ())
    paths, others = set(), []
    for line in reactor.processes.lines:
        event = decode_line(line)
        assert isinstance(event, UpdateEvent)
        if event.eor:
            others.append(line)
            continue
        assert line.startswith(RAW_PREFIX) and not event.skipped and not event.withdrawn
        paths.update(rp.path for rp in event.announced)
    assert count == len(paths)
    return paths, others


def test_the_replay_writes_the_raw_adj_rib_in_and_forgets_what_is_withdrawn() -> None:
    neighbor = _neighbor("10.99.0.1")
    negotiated = _negotiated(neighbor)
    reactor = _reactor(neighbor)
    received = _receive(negotiated, "from_frr.jsonl") + _receive(
        negotiated, "type5_from_frr_l3vni.jsonl"
    )
    assert all(isinstance(m, ext.RawEvpnUpdate) and not m.nlris for m in received)
    # ExaBGP's own adj-rib-in holds none of them
    assert list(neighbor.rib.incoming.cached_changes([(AFI.l2vpn, SAFI.evpn)])) == []
    sent = {rp.path for m in received for rp in _event_of(m).announced}
    paths, others = _replayed(reactor)
    assert paths == sent and len(paths) == 5 and others == []
    # FRR withdraws type-2 and type-5 routes with label 0: removed all the same
    withdrawn = _receive(negotiated, "withdraw_from_frr.jsonl")
    t5 = next(p for p in paths if isinstance(p.route, PrefixRoute) and p.route.rd == "10.99.0.3:1")
    [body] = _built(
        [msgspec.structs.replace(t5, route=msgspec.structs.replace(t5.route, vni=1))],
        Action.WITHDRAW,
    )
    body = body[:-3] + b"\0\0\0"  # its label zeroed
    assert _raw_event(body).withdrawn[0].vni == 0
    withdrawn.append(Update.unpack_message(body, Direction.IN, negotiated))
    assert all(isinstance(m, ext.RawEvpnUpdate) for m in withdrawn)
    paths, others = _replayed(reactor)
    assert sorted(type(p.route).__name__ for p in paths) == ["ImetRoute", "PrefixRoute"]
    assert t5 not in paths
    # its End-of-RIB, once received
    ext.EOR_RECEIVED.add("10.99.0.1")
    try:
        paths, others = _replayed(reactor)
    finally:
        ext.EOR_RECEIVED.discard("10.99.0.1")
    assert len(paths) == 2 and len(others) == 1
    # a session that comes up again (ExaBGP clears its adj-rib-in) starts empty
    neighbor.rib.incoming.clear()
    assert _replayed(reactor) == (set(), [])


def _event_of(message: Any) -> UpdateEvent:
    event = decode_line(message.line)
    assert isinstance(event, UpdateEvent)
    return event


def test_a_big_table_replays_in_updates_within_the_length_fields() -> None:
    neighbor = _neighbor("10.99.0.7")
    negotiated = _negotiated(neighbor)
    paths = [
        EvpnPath(
            PrefixRoute(rd="10.0.0.1:1", prefix=f"10.{i // 256}.{i % 256}.0/24", vni=42),
            nexthop="10.0.0.1",
            route_targets=("65000:42",),
        )
        for i in range(3000)
    ]
    for body in _built(paths):
        Update.unpack_message(body, Direction.IN, negotiated)
    rib = ext.raw_rib(neighbor.rib.incoming)
    assert rib is not None and len(rib.routes) == 3000
    assert len({id(a) for a, _ in rib.routes.values()}) == 1  # the attributes interned
    reactor = _reactor(neighbor)
    replayed, _ = _replayed(reactor)
    assert replayed == set(paths)
    # 3,000 routes of 36 octets: 65,535 octets of attributes at most each
    assert len(reactor.processes.lines) == 2


def test_the_api_gets_the_raw_line_and_a_closed_session_forgets() -> None:
    from exabgp.reactor.api.processes import Processes
    from exabgp.reactor.peer import Peer

    neighbor = _neighbor("10.99.0.8")
    [body] = _built([PATHS[0]])
    message = Update.unpack_message(body, Direction.IN, _negotiated(neighbor))
    processes = _Processes()
    api_neighbor: Any = type("N", (), {"api": {"receive-update": ["svc", "other"]}})()
    Processes.message(processes, 2, api_neighbor, "receive", message, None, b"", b"")
    assert processes.lines == [message.line, message.line]
    assert _event_of(message).announced[0].path == PATHS[0]
    processes.silence = True
    Processes.message(processes, 2, api_neighbor, "receive", message, None, b"", b"")
    assert len(processes.lines) == 2
    rib = ext.raw_rib(neighbor.rib.incoming)
    assert rib is not None and len(rib.routes) == 1
    peer: Any = Peer.__new__(Peer)
    peer.neighbor = neighbor
    peer.fsm = type("F", (), {})()
    peer.proto = None
    peer._restart = True
    try:
        Peer._close(peer, "test")
    except Exception:  # ExaBGP's own _close of a half-made Peer: its part is not tested here
        pass
    assert not rib.routes


def test_the_fuzz_target_reaches_routes_and_malformed_attributes() -> None:
    """bench/fuzz.py's ``evpn-update`` (tests/unit/test_fuzz.py runs it)
    gets past the framing: routes decoded, attributes treated as withdraw."""
    import itertools
    import random

    from bench import fuzz

    announced = malformed = handed = 0
    for body, asn4 in itertools.islice(fuzz.evpn_inputs(random.Random(13)), 2000):
        event = decode_update_bytes("10.0.0.1", body, asn4)
        announced += bool(event.announced)
        malformed += any(r.startswith("malformed attribute") for r, _ in event.skipped)
        handed += ext.evpn_parts(body) is not None
    assert announced > 100 and malformed > 100 and handed > 400


def test_many_sets_of_attributes_are_interned_in_linear_time() -> None:
    """A fabric of 500 VTEPs sends thousands of distinct sets of attributes
    (router MACs, PMSI tunnels): interning them must not walk the table at
    every UPDATE (it took 69% of ExaBGP's samples in the table benchmark)."""
    import time

    rib = ext.RawRib()
    start = time.process_time()
    for i in range(30_000):
        attributes = rib.intern((b"h", i.to_bytes(4, "big")))
        rib.routes[i.to_bytes(4, "big")] = (attributes, b"n")
    assert time.process_time() - start < 1.0
    assert rib.intern((b"h", (7).to_bytes(4, "big"))) is rib.routes[(7).to_bytes(4, "big")][0]
    rib.routes.clear()
    for i in range(10_000):  # the old sets, gone with their routes, are forgotten
        rib.intern((b"x", i.to_bytes(4, "big")))
    assert len(rib._interned) < 30_000


@pytest.mark.parametrize("iplen", [0, 7, 24, 26, 32, 33, 200])
def test_prefix_lengths_and_host_bits_as_the_json_path(iplen: int) -> None:
    [t5] = _built([PATHS[5]])
    i = t5.index(bytes.fromhex("1a0af40100"))  # length 26, 10.244.1.0: the NLRI's prefix
    body = t5[:i] + bytes([iplen]) + bytes.fromhex("0af40177") + t5[i + 5 :]  # host bits set
    event = _raw_event(body)
    assert event == _json_event(body)
    assert bool(event.announced) == (iplen <= 32)
