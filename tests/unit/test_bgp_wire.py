"""The EVPN routes on the wire: ExaBGP's JSON of real FRR and GoBGP updates
decoded into typed routes, and the extension's encoding of those routes,
byte for byte against what the real peers sent."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from exabgp.bgp.message.update.attribute.community.extended.community import ExtendedCommunity
from exabgp.configuration.core.format import formated
from exabgp.protocol.family import AFI, SAFI, Family
from exabgp.reactor.api import API

from cnid.bgp import (
    Ack,
    AckEvent,
    Command,
    EvpnPath,
    ImetRoute,
    MacIpRoute,
    PrefixRoute,
    StateEvent,
    Undecodable,
    UpdateEvent,
    ack_line,
    check_path,
    decode_command,
    decode_line,
    encode_command,
)
from cnid.bgp import _extension as ext

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "evpn"


def lines(name: str) -> list[str]:
    return [line for line in (FIXTURES / name).read_text().splitlines() if line.strip()]


def raw_nlris(line: str) -> list[dict[str, Any]]:
    update = json.loads(line)["neighbor"]["message"]["update"]
    out = []
    for by_nh in update.get("announce", {}).values():
        for nlris in by_nh.values():
            out.extend(nlris)
    return out


@pytest.mark.parametrize(
    "name", ["from_frr.jsonl", "from_gobgp.jsonl", "type5_from_frr_l3vni.jsonl"]
)
def test_captured_routes_reencode_byte_for_byte(name: str) -> None:
    seen = 0
    for line in lines(name):
        event = decode_line(line)
        assert isinstance(event, UpdateEvent)
        assert not event.skipped
        raws = [n["raw"] for n in raw_nlris(line)]
        assert len(raws) == len(event.announced)
        for rp, raw in zip(event.announced, raws, strict=True):
            assert ext.packed_nlri(rp.path).hex().upper() == raw
            seen += 1
    assert seen == sum(len(raw_nlris(line)) for line in lines(name)) > 0


def test_decoded_fields_of_frr_and_gobgp_routes() -> None:
    frr = [decode_line(x) for x in lines("from_frr.jsonl")]
    assert isinstance(frr[0], UpdateEvent)
    mac_ip = frr[0].announced[1]
    assert mac_ip.path.route == MacIpRoute(
        rd="10.99.0.3:2", mac="02:00:00:00:02:01", ip="10.99.100.21", vni=100
    )
    assert mac_ip.path.nexthop == "10.99.0.3"
    assert mac_ip.path.route_targets == ("65000:100",)
    assert mac_ip.path.encap_vxlan
    assert mac_ip.originator == "10.99.0.3"
    assert isinstance(frr[1], UpdateEvent)
    imet = frr[1].announced[0].path.route
    assert imet == ImetRoute(rd="10.99.0.3:2", ip="10.99.0.3", vni=100)  # VNI from the PMSI label
    (t5,) = [decode_line(x) for x in lines("type5_from_frr_l3vni.jsonl")]
    assert isinstance(t5, UpdateEvent)
    p = t5.announced[0].path
    assert p.route == PrefixRoute(rd="10.99.0.3:1", prefix="10.99.230.0/24", vni=5000)
    assert p.router_mac == "7a:d2:c3:5d:a5:05"  # from the community's value, "string" is empty
    gobgp = [decode_line(x) for x in lines("from_gobgp.jsonl")]
    assert isinstance(gobgp[2], UpdateEvent)
    assert gobgp[2].announced[0].path.router_mac == "02:00:00:00:00:04"


def test_withdrawals_decode_to_route_keys() -> None:
    first, second = (decode_line(x) for x in lines("withdraw_from_frr.jsonl"))
    assert isinstance(first, UpdateEvent) and isinstance(second, UpdateEvent)
    assert [type(r).__name__ for r in first.withdrawn] == ["MacIpRoute", "PrefixRoute", "ImetRoute"]
    # a withdrawal carries label 0: the key, not the VNI, names the route
    announced = MacIpRoute(rd="10.99.0.2:100", mac="02:00:00:00:01:01", ip="10.99.100.11", vni=7)
    assert first.withdrawn[0].key == announced.key
    assert len(second.withdrawn) == 2


def test_a_second_label_is_read_from_raw() -> None:
    path = EvpnPath(
        MacIpRoute(rd="10.0.0.1:100", mac="02:00:00:00:00:01", ip="10.1.0.5", vni=100, l3vni=4242),
        nexthop="10.0.0.1",
    )
    raw = ext.packed_nlri(path).hex().upper()
    line = _update_line(
        {
            "code": 2,
            "parsed": True,
            "raw": raw,
            "rd": "10.0.0.1:100",
            "esi": "-",
            "ethernet-tag": 0,
            "mac": "02:00:00:00:00:01",
            "label": [[6, 100]],
            "ip": "10.1.0.5",
        }
    )
    event = decode_line(line)
    assert isinstance(event, UpdateEvent)
    route = event.announced[0].path.route
    assert isinstance(route, MacIpRoute) and route.l3vni == 4242


def _update_line(nlri: Any, nexthop: str = "10.0.0.1", attrs: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "type": "update",
            "neighbor": {
                "address": {"local": "10.0.0.2", "peer": "10.0.0.9"},
                "message": {
                    "update": {
                        "attribute": attrs or {"origin": "igp"},
                        "announce": {"l2vpn evpn": {nexthop: [nlri]}},
                    }
                },
            },
        }
    )


@pytest.mark.parametrize(
    ("nlri", "reason"),
    [
        ({"code": 1, "parsed": True, "rd": "1.1.1.1:1"}, "unsupported EVPN route type 1"),
        ({"code": 4, "parsed": True, "rd": "1.1.1.1:1"}, "unsupported EVPN route type 4"),
        ({"code": 2, "parsed": False, "raw": "00"}, "not parsed"),
        ({"code": 2, "parsed": True, "rd": "1.1.1.1:1", "mac": "02:00:00:00:00:01"}, "label"),
        (
            {"code": 5, "parsed": True, "rd": "1.1.1.1:1", "ip": "10.0.0.0", "label": [[1, 5]]},
            "length",
        ),
        ({"code": 3, "parsed": True, "rd": "1.1.1.1:1", "ip": "10.0.0.1"}, "PMSI"),
        (
            {"code": 2, "parsed": True, "mac": "02:00:00:00:00:01", "label": [[6, 100]]},
            "distinguisher",
        ),
        ("garbage", "malformed"),
    ],
)
def test_odd_routes_are_skipped_with_a_reason(nlri: Any, reason: str) -> None:
    event = decode_line(_update_line(nlri))
    assert isinstance(event, UpdateEvent)
    assert event.announced == ()
    assert len(event.skipped) == 1 and reason in event.skipped[0][0]


def test_one_odd_route_does_not_cost_the_others() -> None:
    good = raw_nlris(lines("from_gobgp.jsonl")[0])[0]
    data = json.loads(_update_line(good, nexthop="10.99.0.4"))
    data["neighbor"]["message"]["update"]["announce"]["l2vpn evpn"]["10.99.0.4"].insert(
        0, {"code": 9, "parsed": True, "rd": "1.1.1.1:1"}
    )
    data["neighbor"]["message"]["update"]["announce"]["ipv6 unicast"] = {"::1": []}
    event = decode_line(json.dumps(data))
    assert isinstance(event, UpdateEvent)
    assert len(event.announced) == 1
    assert {r for r, _ in event.skipped} == {
        "unsupported EVPN route type 9",
        "unsupported address family",
    }


def test_other_lines() -> None:
    with pytest.raises(Undecodable):
        decode_line(b"not json")
    with pytest.raises(Undecodable):
        decode_line(b"[1, 2]")
    state = decode_line(
        json.dumps(
            {
                "type": "state",
                "neighbor": {"address": {"peer": "10.0.0.9"}, "state": "down", "reason": "x"},
            }
        )
    )
    assert state == StateEvent("10.0.0.9", "down", "x")
    assert decode_line(ack_line(Ack(7, True, 3))) == AckEvent(7, True, 3, ())
    assert decode_line(json.dumps({"type": "keepalive"})) is None
    eor = decode_line(
        json.dumps(
            {
                "type": "update",
                "neighbor": {
                    "address": {"peer": "10.0.0.9"},
                    "message": {"eor": {"afi": "l2vpn", "safi": "evpn"}},
                },
            }
        )
    )
    assert isinstance(eor, UpdateEvent) and eor.eor


# ------------------------------------------------------------ the extension


PATHS = [
    EvpnPath(
        MacIpRoute(rd="10.0.0.1:100", mac="02:aa:00:00:00:01", ip="10.1.0.5", vni=100, l3vni=42),
        nexthop="10.0.0.1",
        route_targets=("65000:100", "65000:42"),
        router_mac="02:11:22:33:44:55",
    ),
    EvpnPath(
        ImetRoute(rd="10.0.0.1:100", ip="10.0.0.1", vni=100),
        nexthop="10.0.0.1",
        route_targets=("65000:100",),
    ),
    EvpnPath(
        PrefixRoute(rd="10.0.0.1:42", prefix="10.244.0.0/26", vni=42),
        nexthop="10.0.0.1",
        route_targets=("65000:42",),
        router_mac="02:11:22:33:44:55",
    ),
    EvpnPath(
        PrefixRoute(rd="10.0.0.1:42", prefix="2001:db8:1::/64", vni=42),
        nexthop="2001:db8::1",
        route_targets=("4200000000:42", "10.0.0.1:7"),
        router_mac="02:11:22:33:44:55",
    ),
    EvpnPath(ImetRoute(rd="10.0.0.1:100", ip="2001:db8::1", vni=100), nexthop="2001:db8::1"),
]


def test_the_command_line_survives_exabgps_reformatting() -> None:
    command = Command(5, "announce", ("10.0.0.2",), tuple(PATHS))
    line = encode_command(command)
    assert formated(line) == line
    assert decode_command(formated(line)) == command


def test_attributes_of_built_routes() -> None:
    for path in PATHS:
        check_path(path)
    change = ext.build_change(PATHS[0], 1)
    text = change.extensive()
    assert "target:65000:100" in text and "target:65000:42" in text
    assert "encap:VXLAN" in text and "router-mac:02:11:22:33:44:55" in text
    # MPLS label 1 carries the L2 VNI (100), label 2 the L3 VNI (42); ExaBGP
    # prints each as an MPLS label (the field's top 20 bits) and, in brackets,
    # the whole 24-bit field: the VNI (RFC 8365 section 5.1.3)
    assert "label [ 6 (100) 2 (42) ]" in text
    imet = ext.build_change(PATHS[1], 1)
    assert "pmsi:ingressreplication:0:6(100):10.0.0.1" in imet.extensive()
    community = ext.RouterMac("02:11:22:33:44:55")
    packed = community.pack()
    assert packed[:2] == b"\x06\x03" and packed[2:] == bytes.fromhex("021122334455")
    back = ExtendedCommunity.unpack(packed)
    assert isinstance(back, ext.RouterMac) and back.mac == "02:11:22:33:44:55"
    assert 16 in Family.size[(AFI.l2vpn, SAFI.evpn)][0]


class FakeProcesses:
    def __init__(self) -> None:
        self.written: list[str] = []

    def write(self, service: str, line: str) -> bool:
        self.written.append(line)
        return True


class FakeConfiguration:
    def __init__(self) -> None:
        self.changes: list[tuple[list[str], Any]] = []
        self.eors: list[list[str]] = []
        self.neighbors: dict[str, Any] = {}

    def inject_change(self, peers: list[str], change: Any) -> bool:
        self.changes.append((peers, change))
        return True

    def inject_eor(self, peers: list[str], family: Any) -> bool:
        self.eors.append(peers)
        return True


class FakeReactor:
    PEERS = [
        "neighbor 10.0.0.2 local-ip 10.0.0.1 local-as 65000 peer-as 65000 router-id 10.0.0.1",
        "neighbor 10.0.0.3 local-ip 10.0.0.1 local-as 65000 peer-as 65000 router-id 10.0.0.1",
    ]

    def __init__(self) -> None:
        self.processes = FakeProcesses()
        self.configuration = FakeConfiguration()
        self._peers: dict[str, object] = {}

    def peers(self, service: str = "") -> list[str]:
        return list(self.PEERS)

    def established_peers(self) -> set[str]:
        return {self.PEERS[0]}


def test_exabgps_command_table_dispatches_to_the_extension() -> None:
    reactor = FakeReactor()
    api = API(reactor)
    line = encode_command(Command(9, "announce", ("10.0.0.3",), tuple(PATHS[:3])))
    assert api.process(reactor, "cnid", formated(line))
    ack = json.loads(reactor.processes.written[-1])["cnid-ack"]
    assert ack == {"id": 9, "ok": True, "done": 3, "errors": [], "state": None}
    peers, change = reactor.configuration.changes[0]
    assert peers == [FakeReactor.PEERS[1]]
    assert ext.packed_nlri(PATHS[0])[2:] == change.nlri._packed
    # every neighbour when none is named; End-of-RIB to the established ones only
    api.process(reactor, "cnid", encode_command(Command(10, "withdraw", (), (PATHS[2],))))
    assert reactor.configuration.changes[-1][0] == FakeReactor.PEERS
    api.process(reactor, "cnid", encode_command(Command(11, "eor")))
    assert reactor.configuration.eors == [[FakeReactor.PEERS[0]]]
    # a neighbour nobody knows, and garbage
    api.process(reactor, "cnid", encode_command(Command(12, "announce", ("10.9.9.9",), ())))
    assert json.loads(reactor.processes.written[-1])["cnid-ack"]["ok"] is False
    api.process(reactor, "cnid", "cnid !!!notbase64")
    assert json.loads(reactor.processes.written[-1])["cnid-ack"]["id"] == -1


def test_the_extension_keeps_what_is_announced_to_every_neighbour_for_a_daemon_that_attaches() -> (
    None
):
    reactor = FakeReactor()
    api = API(reactor)
    ext.ANNOUNCED.clear()
    api.process(reactor, "cnid", encode_command(Command(1, "announce", (), tuple(PATHS[:3]))))
    api.process(reactor, "cnid", encode_command(Command(2, "withdraw", (), (PATHS[1],))))
    # one peer's refresh (a session that came up) changes nothing
    api.process(reactor, "cnid", encode_command(Command(3, "announce", ("10.0.0.3",), (PATHS[3],))))
    api.process(reactor, "cnid", encode_command(Command(4, "state")))
    event = decode_line(reactor.processes.written[-1])
    assert isinstance(event, AckEvent) and event.id == 4 and event.state is not None
    assert set(event.state.paths) == {PATHS[0], PATHS[2]}
    assert event.state.pid == os.getpid() and event.state.started <= time.time()
    ext.ANNOUNCED.clear()


def test_a_bad_path_fails_alone() -> None:
    reactor = FakeReactor()
    bad = EvpnPath(PrefixRoute(rd="nonsense", prefix="10.0.0.0/24", vni=5), nexthop="10.0.0.1")
    line = encode_command(Command(3, "announce", (), (bad, PATHS[2])))
    API(reactor).process(reactor, "cnid", line)
    ack = json.loads(reactor.processes.written[-1])["cnid-ack"]
    assert ack["ok"] is False and ack["done"] == 1 and len(ack["errors"]) == 1


@pytest.mark.parametrize(
    "path",
    [
        EvpnPath(PrefixRoute(rd="1.2.3.4:70000", prefix="10.0.0.0/24", vni=5), nexthop="1.2.3.4"),
        EvpnPath(PrefixRoute(rd="1.2.3.4:7", prefix="10.0.0.1/24", vni=5), nexthop="1.2.3.4"),
        EvpnPath(PrefixRoute(rd="1.2.3.4:7", prefix="10.0.0.0/24", vni=0), nexthop="1.2.3.4"),
        EvpnPath(MacIpRoute(rd="1.2.3.4:7", mac="02:00:00", vni=5), nexthop="1.2.3.4"),
        EvpnPath(ImetRoute(rd="1.2.3.4:7", ip="x", vni=5), nexthop="1.2.3.4"),
        EvpnPath(
            ImetRoute(rd="1.2.3.4:7", ip="1.2.3.4", vni=5),
            nexthop="1.2.3.4",
            route_targets=("a:b",),
        ),
    ],
)
def test_check_path_refuses_what_the_wire_cannot_carry(path: EvpnPath) -> None:
    with pytest.raises(ValueError):
        check_path(path)


def _nlris(name: str, kind: str) -> list[Any]:
    """The EVPN NLRIs of a capture, as ExaBGP reads them off the wire."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.nlri.evpn.nlri import EVPN

    action = Action.ANNOUNCE if kind == "announce" else Action.WITHDRAW
    out = []
    for line in lines(name):
        update = json.loads(line)["neighbor"]["message"]["update"]
        section = update.get(kind, {})
        for value in section.values():
            items = value if isinstance(value, list) else [x for v in value.values() for x in v]
            for item in items:
                nlri, rest = EVPN.unpack_nlri(
                    AFI.l2vpn, SAFI.evpn, bytes.fromhex(item["raw"]), action, None
                )
                assert rest == b""
                out.append(nlri)
    return out


def test_the_adj_rib_in_forgets_what_frr_withdraws_with_label_zero() -> None:
    """FRR withdraws type-2 and type-5 routes with label 0: the replay's
    adj-rib-in must forget them all the same (else a restarted daemon gets
    them back from the replay, for good)."""
    from exabgp.bgp.message import Action
    from exabgp.bgp.message.update.attribute import Attributes
    from exabgp.bgp.message.update.nlri.evpn.nlri import EVPN
    from exabgp.rib.change import Change
    from exabgp.rib.incoming import IncomingRIB

    rib = IncomingRIB(True, {(AFI.l2vpn, SAFI.evpn)})
    announced = _nlris("from_frr.jsonl", "announce") + _nlris(
        "type5_from_frr_l3vni.jsonl", "announce"
    )
    for nlri in announced:
        rib.update_cache(Change(nlri, Attributes()))
    assert len(list(rib.cached_changes())) == len(announced) == 5
    # the type-5 route withdrawn as FRR does it: its label zeroed
    t5 = next(n for n in announced if n.CODE == 5 and n.rd._str() == "10.99.0.3:1")
    t5_withdrawn, _ = EVPN.unpack_nlri(
        AFI.l2vpn, SAFI.evpn, t5.pack_nlri()[:-3] + b"\0\0\0", Action.WITHDRAW, None
    )
    for nlri in [*_nlris("withdraw_from_frr.jsonl", "withdraw"), t5_withdrawn]:
        rib.update_cache(Change(nlri, Attributes()))
    left = sorted(str(c.nlri) for c in rib.cached_changes())
    # what 10.99.0.3 withdrew is gone (both type-2, the type-5); its type-3
    # and the other type-5, never withdrawn, stay
    assert [n.CODE for n in (c.nlri for c in rib.cached_changes())] == [3, 5], left
    # too short for its type (ExaBGP refused it before, in any case): whole
    assert ext.evpn_route_key(2, b"\0" * 29) == b"\x02" + b"\0" * 29
    assert ext.evpn_route_key(7, b"ab") == b"\x07ab"
