"""MAC mobility (RFC 7432 section 15): the MAC Mobility community on the wire,
local sequence numbers, selection among received copies, and duplicate
detection, pure and in the controller on trio's virtual clock.

The scenarios: a pod deleted on node 1 and its address (hence its MAC)
reused on node 2; a MAC flapping between two VTEPs; a real duplicate (the
MAC local on two nodes at once)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
import trio
import trio.testing
from exabgp.bgp.message.update.attribute.community.extended.community import ExtendedCommunity

from cnid.bgp import EvpnPath, MacIpRoute, ReceivedPath, UpdateEvent, check_path, decode_line
from cnid.bgp import _extension as ext
from cnid.core import ConfigError
from cnid.ctl import ctl_request, render
from cnid.daemon import evpn_duplicates, evpn_routes, parse_config
from cnid.dataplane import FdbEntry, NeighEntry
from cnid.evpn import (
    Copy,
    LocalDomain,
    LocalPod,
    LocalState,
    Mobility,
    RouteTable,
    local_paths,
    node_view,
)
from testbed.domains import VRF300
from tests.unit.test_evpn_controller import ME, OTHER, PEER, POD_IP, POD_MAC, Node, pod, until

MAC = "0a:00:00:00:01:01"
IP = "10.3.0.9"
FDB = ("fdb", 300, MAC)
NEIGH = ("neigh", 300, IP)
VTEP_A, VTEP_B, VTEP_C = "192.168.77.12", "192.168.77.13", "192.168.77.14"
RT = "65000:300"  # VRF300's, as FRR derives it


def t2(
    vtep: str, seq: int | None = None, *, mac: str = MAC, ip: str = IP, sticky: bool = False
) -> EvpnPath:
    route = MacIpRoute(rd=f"{vtep}:300", mac=mac, ip=ip, vni=300)
    return EvpnPath(route, nexthop=vtep, route_targets=(RT,), mac_mobility_seq=seq, sticky=sticky)


def rx(path: EvpnPath, peer: str = "rr1", originator: str = "") -> ReceivedPath:
    return ReceivedPath(peer=peer, path=path, originator=originator)


VIEW = node_view(ME, ME, [VRF300], asn=65000)


# -- the community on the wire -------------------------------------------------


def test_the_extension_announces_the_community_on_type2_routes_only_when_set() -> None:
    def communities(path: EvpnPath) -> list[bytes]:
        change = ext.build_change(path, 1)
        ecs = change.attributes[0x10]  # EXTENDED_COMMUNITY
        return [c.pack() for c in ecs.communities]

    moved = t2(VTEP_A, 7)
    check_path(moved)
    packed = communities(moved)
    # type 0x06 (EVPN), sub-type 0x00, flags 0, reserved, sequence 7
    assert bytes.fromhex("0600000000000007") in packed
    assert "mac-mobility:7" in ext.build_change(moved, 1).extensive()
    assert not [c for c in communities(t2(VTEP_A)) if c[:2] == b"\x06\x00"]
    sticky = communities(t2(VTEP_A, 0, sticky=True))
    assert bytes.fromhex("0600010000000000") in sticky
    big = t2(VTEP_A, 2**32 - 1)
    check_path(big)
    assert bytes.fromhex("06000000ffffffff") in communities(big)
    with pytest.raises(ValueError, match="sequence"):
        check_path(t2(VTEP_A, 2**32))


def _update_line(community: dict[str, object]) -> str:
    """ExaBGP 5.0.15's JSON of a type-2 update with one extra community
    (shape as in tests/fixtures/evpn/from_frr.jsonl)."""
    nlri = {
        "code": 2,
        "parsed": True,
        "raw": "",
        "rd": f"{VTEP_A}:300",
        "esi": "-",
        "etag": 0,
        "mac": MAC.upper(),
        "label": [[18, 300]],
        "ip": IP,
    }
    update = {
        "attribute": {
            "origin": "igp",
            "local-preference": 100,
            "extended-community": [
                {"value": 0x0002FDE80000012C, "string": "target:65000:300"},
                community,
            ],
        },
        "announce": {"l2vpn evpn": {VTEP_A: [nlri]}},
    }
    return json.dumps(
        {
            "exabgp": "5.0.0",
            "type": "update",
            "neighbor": {
                "address": {"local": ME, "peer": VTEP_A},
                "message": {"update": update},
            },
        }
    )


def test_received_communities_decode_from_exabgps_value_and_its_string() -> None:
    # the value, exactly as ExaBGP renders a community it unpacked
    for seq, sticky in ((7, False), (0, True), (2**32 - 1, False)):
        raw = bytes([0x06, 0x00, int(sticky), 0]) + seq.to_bytes(4, "big")
        shown = json.loads(ExtendedCommunity.unpack(raw, None).json())
        assert shown["string"] == f"mac-mobility:{seq}" + (":sticky" if sticky else "")
        event = decode_line(_update_line(shown))
        assert isinstance(event, UpdateEvent)
        (rp,) = event.announced
        assert (rp.path.mac_mobility_seq, rp.path.sticky) == (seq, sticky)
        assert rp.path.route_targets == ("65000:300",)
    # only the text (a renderer without the number)
    event = decode_line(_update_line({"string": "mac-mobility:9:sticky"}))
    assert isinstance(event, UpdateEvent)
    assert (event.announced[0].path.mac_mobility_seq, event.announced[0].path.sticky) == (9, True)
    # none: no community
    event = decode_line(_update_line({"value": 0x030C00000000_0008, "string": "encap:VXLAN"}))
    assert isinstance(event, UpdateEvent)
    assert event.announced[0].path.mac_mobility_seq is None
    assert not event.announced[0].path.sticky


def test_captured_frr_and_gobgp_updates_decode_and_reencode_byte_for_byte() -> None:
    """Real updates (tests/fixtures/mobility/mac_mobility.jsonl): the sequence
    FRR 8.4 and GoBGP 3.10 sent, and cnid's encoding of the same route and
    community, byte for byte."""
    fixture = (
        Path(__file__).resolve().parent.parent / "fixtures" / "mobility" / "mac_mobility.jsonl"
    )
    lines = fixture.read_text().splitlines()
    seen = []
    for line in lines:
        event = decode_line(line)
        assert isinstance(event, UpdateEvent) and not event.skipped
        (rp,) = event.announced
        seen.append((rp.path.nexthop, rp.path.mac_mobility_seq, rp.path.sticky))
        update = json.loads(line)["neighbor"]["message"]["update"]
        (nlri,) = next(iter(update["announce"]["l2vpn evpn"].values()))
        assert ext.packed_nlri(rp.path).hex().upper() == nlri["raw"]
        (sent,) = [
            c["value"]
            for c in update["attribute"]["extended-community"]
            if c["string"].startswith("mac-mobility")
        ]
        ecs = ext.build_change(rp.path, 1).attributes[0x10].communities
        assert sent.to_bytes(8, "big") in [c.pack() for c in ecs]
    assert seen == [("192.168.84.4", 1, False), ("192.168.84.20", 2, False)]


# -- local sequence numbers ----------------------------------------------------


def test_local_paths_carry_the_sequence_of_moved_macs_only() -> None:
    base = LocalState(
        router_id=ME,
        asn=65000,
        vtep=ME,
        domains=(LocalDomain(VRF300),),
        pods=(LocalPod("vrf-300", POD_MAC, POD_IP), LocalPod("vrf-300", MAC, IP)),
    )
    state = msgspec.structs.replace(base, mac_seqs={(300, POD_MAC): 3, (300, MAC): 0})
    paths, _ = local_paths(state)
    seqs = {p.route.mac: p.mac_mobility_seq for p in paths if isinstance(p.route, MacIpRoute)}
    assert seqs == {POD_MAC: 3, MAC: None}  # 0: never seen elsewhere, no community


def test_a_mac_new_here_takes_the_highest_remote_sequence_plus_one() -> None:
    m = Mobility(ME, ME)
    key = (300, MAC)
    m.set_local([key], {key: [Copy(VTEP_A, 0)]}, now=0.0)
    assert m.local_seqs() == {key: 1}
    m.set_local([key], {key: [Copy(VTEP_A, 4), Copy(VTEP_B, 6)]}, now=1.0)
    assert m.local_seqs() == {key: 1}  # already local: raised by remote_changed only
    assert m.remote_changed(key, [Copy(VTEP_A, 0)], now=2.0) is False  # lower: we keep it
    assert m.remote_changed(key, [Copy(VTEP_A, 1)], now=3.0) is True  # equal: raised past it
    assert m.local_seqs() == {key: 2}
    assert m.remote_changed(key, [Copy(VTEP_A, 1), Copy(VTEP_B, 6)], now=4.0) is True
    assert m.local_seqs() == {key: 7}
    # never seen elsewhere: no sequence
    other = (300, POD_MAC)
    m.set_local([key, other], {}, now=5.0)
    assert m.local_seqs() == {key: 7}
    assert m.seq(other) == (0, "local")
    m.set_local([], {}, now=6.0)
    assert m.local_seqs() == {}


def test_our_own_routes_reflected_back_are_not_remote_copies() -> None:
    m = Mobility(ME, ME)
    mine = [rx(t2(ME, 3)), rx(t2("10.9.9.9", 3), originator=ME)]
    assert m.copies(mine) == []
    assert m.copies([rx(t2(VTEP_A, 3))]) == [Copy(VTEP_A, 3)]


def test_a_local_macs_copy_names_its_ip_or_none() -> None:
    """A pod's MAC is derived from its IPv4 address: a route with the MAC
    and another IP is a conflict, not the pod moved (refused, not outbid)."""
    m = Mobility(ME, ME)
    paths = [rx(t2(VTEP_A, 3, ip="10.3.66.66")), rx(t2(VTEP_B, 1, ip="")), rx(t2(VTEP_C, 2))]
    assert m.copies(paths, local_ip=IP) == [Copy(VTEP_B, 1), Copy(VTEP_C, 2)]
    assert len(m.copies(paths)) == 3  # a MAC that is not ours: every copy counts


# -- selection among received copies ------------------------------------------


def test_the_highest_sequence_wins_whatever_the_order() -> None:
    for order in ((t2(VTEP_A), t2(VTEP_B, 1)), (t2(VTEP_B, 1), t2(VTEP_A))):
        table = RouteTable(VIEW)
        for path in order:
            table.announce("rr1", rx(path))
        assert table.chosen(FDB) == FdbEntry(vni=300, mac=MAC, vtep=VTEP_B)
    # the newer copy with a lower sequence does not win
    table.announce("rr1", rx(t2(VTEP_C, 0)))
    assert table.chosen(FDB) == FdbEntry(vni=300, mac=MAC, vtep=VTEP_B)
    # the winner withdrawn: the best of the rest
    table.withdraw("rr1", t2(VTEP_B).route)
    assert table.chosen(FDB) == FdbEntry(vni=300, mac=MAC, vtep=VTEP_C)


def test_equal_sequences_go_to_the_lowest_vtep_and_sticky_beats_all() -> None:
    table = RouteTable(VIEW)
    table.announce("rr1", rx(t2(VTEP_A, 2)))
    table.announce("rr1", rx(t2(VTEP_C, 2)))
    table.announce("rr1", rx(t2(VTEP_B, 2)))
    assert table.chosen(FDB) == FdbEntry(vni=300, mac=MAC, vtep=VTEP_A)
    table.announce("rr1", rx(t2(VTEP_C, 0, sticky=True)))
    assert table.chosen(FDB) == FdbEntry(vni=300, mac=MAC, vtep=VTEP_C)
    table.withdraw("rr1", t2(VTEP_C).route)
    assert table.chosen(FDB) == FdbEntry(vni=300, mac=MAC, vtep=VTEP_A)


def test_the_ip_follows_the_mac_of_the_highest_sequence() -> None:
    table = RouteTable(VIEW)
    moved_mac = "0a:00:00:00:01:02"
    table.announce("rr1", rx(t2(VTEP_A, 5)))
    table.announce("rr1", rx(t2(VTEP_B, 4, mac=moved_mac)))
    assert table.chosen(NEIGH) == NeighEntry(vni=300, ip=IP, mac=MAC)
    table.announce("rr1", rx(t2(VTEP_B, 6, mac=moved_mac)))  # the same route, higher sequence
    assert table.chosen(NEIGH) == NeighEntry(vni=300, ip=IP, mac=moved_mac)


def test_the_type2_paths_of_a_mac_are_indexed_and_touched() -> None:
    table = RouteTable(VIEW)
    table.announce("rr1", rx(t2(VTEP_A, 1)))
    table.announce("rr2", rx(t2(VTEP_A, 1), peer="rr2"))
    table.announce("rr1", rx(t2(VTEP_B, 0, mac="0a:00:00:00:01:02")))
    assert table.take_touched_macs() == {(300, MAC), (300, "0a:00:00:00:01:02")}
    assert len(table.mac_paths((300, MAC))) == 2
    table.make_stale("rr1")
    assert table.take_touched_macs() == {(300, MAC), (300, "0a:00:00:00:01:02")}
    assert len(table.mac_paths((300, MAC))) == 2  # rr2's and rr1's stale copy
    table.drop_stale()
    table.withdraw("rr2", t2(VTEP_A).route)
    assert table.mac_paths((300, MAC)) == []
    assert (300, MAC) in table.take_touched_macs()


# -- duplicate detection -------------------------------------------------------


def flap(m: Mobility, key: tuple[int, str], times: list[float]) -> None:
    """The MAC won by A, B, A, ... each with a higher sequence (both
    announcing it, the loser with its last sequence)."""
    seqs: dict[str, int] = {}
    for i, now in enumerate(times):
        seqs[(VTEP_A, VTEP_B)[i % 2]] = i
        m.remote_changed(key, [Copy(vtep, seq) for vtep, seq in seqs.items()], now)


def test_five_moves_within_the_window_flag_a_duplicate(caplog: pytest.LogCaptureFixture) -> None:
    m = Mobility(ME, ME)
    key = (300, MAC)
    flap(m, key, [0, 10, 20, 30, 40])  # the first copy is no move: 4 moves
    assert m.duplicates() == [] and m.new_moves == 4
    with caplog.at_level(logging.WARNING, "cnid.evpn"):
        m.remote_changed(key, [Copy(VTEP_B, 5)], 50.0)
    (dup,) = m.duplicates()
    assert (dup.vni, dup.mac, dup.moves, dup.seq) == (300, MAC, 5, 5)
    assert set(dup.vteps) == {VTEP_A, VTEP_B}
    assert m.new_duplicates == [dup]
    (line,) = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert MAC in line and "VNI 300" in line and VTEP_A in line and VTEP_B in line
    # traffic follows the moves still (flagged only): the table is not involved
    # the flag clears once no move happened for the window
    assert m.expire(50.0 + 180.0) == []
    assert m.expire(50.0 + 180.5) == [key]
    assert m.duplicates() == []


def test_moves_spread_over_more_than_the_window_are_no_duplicate() -> None:
    m = Mobility(ME, ME)
    key = (300, MAC)
    flap(m, key, [0, 50, 100, 150, 200, 250, 300, 350])  # 7 moves, never 5 within 180 s
    assert m.new_moves == 7
    assert m.duplicates() == []
    m2 = Mobility(ME, ME, max_moves=0)  # detection off
    flap(m2, key, [0, 1, 2, 3, 4, 5, 6, 7])
    assert m2.duplicates() == []


def test_nothing_is_kept_of_a_mac_that_never_moved() -> None:
    m = Mobility(ME, ME)
    key = (300, MAC)
    assert m.remote_changed(key, [Copy(VTEP_A, 0)], 0.0) is False
    assert m.seq(key) is None  # most MACs of a fabric: no memory spent on them
    m.remote_changed(key, [Copy(VTEP_A, 0), Copy(VTEP_B, 1)], 1.0)  # node 2 outbids node 1
    assert m.new_moves == 1 and m.seq(key) == (1, VTEP_B)


def test_a_withdrawal_or_a_lower_sequence_is_no_move() -> None:
    m = Mobility(ME, ME)
    key = (300, MAC)
    m.remote_changed(key, [Copy(VTEP_A, 1)], 0.0)
    m.remote_changed(key, [Copy(VTEP_A, 1), Copy(VTEP_B, 0)], 1.0)  # stale, lower
    m.remote_changed(key, [Copy(VTEP_B, 0)], 2.0)  # the winner withdrawn
    m.remote_changed(key, [Copy(VTEP_A, 1), Copy(VTEP_B, 0)], 3.0)  # back
    assert m.new_moves == 0
    m.remote_changed(key, [Copy(VTEP_B, 2)], 4.0)
    assert m.new_moves == 1 and m.seq(key) == (2, VTEP_B)


def test_a_flagged_local_mac_is_no_longer_raised() -> None:
    m = Mobility(ME, ME)
    key = (300, MAC)
    m.set_local([key], {}, 0.0)
    seq = 0
    for i in range(5):  # another node holds it too and outbids us each time
        assert m.remote_changed(key, [Copy(VTEP_A, seq)], float(i)) is True
        seq = m.local_seqs()[key]
    assert m.flagged(key) and seq == 5
    assert m.remote_changed(key, [Copy(VTEP_A, 6)], 6.0) is False
    assert m.local_seqs() == {key: 5} and m.held == 1


# -- the controller, on the virtual clock --------------------------------------


def announced_seq(node: Node, mac: str = POD_MAC) -> int | None:
    (path,) = [
        p for p in node.speaker.announced if isinstance(p.route, MacIpRoute) and p.route.mac == mac
    ]
    return path.mac_mobility_seq


def raised_past(node: Node, seq: int) -> Callable[[], bool]:
    return lambda: (announced_seq(node) or 0) > seq


def fdb_at(node: Node, vtep: str) -> Callable[[], bool]:
    return lambda: node.kernel.entries.get(FDB) == FdbEntry(vni=300, mac=MAC, vtep=vtep)


def remote_pod(vtep: str, seq: int | None) -> EvpnPath:
    return t2(vtep, seq, mac=POD_MAC, ip=POD_IP)


def send(node: Node, *paths: EvpnPath, peer: str = PEER) -> None:
    announced = tuple(ReceivedPath(peer=peer, path=p) for p in paths)
    node.speaker.send(UpdateEvent(peer, announced=announced, eor=True))


async def test_a_pod_reusing_an_address_announces_the_remote_sequence_plus_one(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path)
    async with node.running():
        # node 1 (PEER) still announces the pod's MAC: the address is reused here
        send(node, remote_pod(PEER, None))
        await until("received", lambda: bool(node.evpn.table.mac_paths((300, POD_MAC))))
        node.journal.put(pod("p1"))
        await until("announced", lambda: node.speaker.announced_by_type()[2] == 1)
        assert announced_seq(node) == 1
        assert node.metric("cnid_evpn_mac_moves_total") == 1
        # the pod's own entries stay: the remote copy is not programmed
        assert not node.has(("fdb", 300, POD_MAC))
        # a copy with our sequence appears (the other node saw us late): raised past it
        send(node, remote_pod(OTHER, 1), peer=PEER)
        took = await until("raised", lambda: announced_seq(node) == 2)
        assert took < 0.1
        # node 1 withdraws: nothing changes
        node.speaker.send(UpdateEvent(PEER, withdrawn=(remote_pod(PEER, None).route,)))
        await trio.sleep(1)
        assert announced_seq(node) == 2
        # the pod gone and back: not seen elsewhere any more... OTHER's copy is
        node.journal.delete(pod("p1").attachment)
        await until("withdrawn", lambda: node.speaker.announced_by_type()[2] == 0)
        node.journal.put(pod("p1"))
        await until("announced again", lambda: node.speaker.announced_by_type()[2] == 1)
        assert announced_seq(node) == 2  # OTHER's 1 + 1
    rows = [r for r in evpn_routes(node.evpn, rtype=2) if r["from"] == "local"]
    assert [r["mac_mobility_seq"] for r in rows] == [2]


async def test_a_hijack_of_a_pods_mac_with_another_ip_is_not_outbid(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path)
    async with node.running():
        node.journal.put(pod("p1"))
        await until("announced", lambda: node.speaker.announced_by_type()[2] == 1)
        send(node, t2(PEER, 4, mac=POD_MAC, ip="10.3.66.66"))
        await until("received", lambda: bool(node.evpn.table.mac_paths((300, POD_MAC))))
        await trio.sleep(1)
        assert announced_seq(node) is None
        assert node.metric("cnid_evpn_mac_moves_total") == 0
        assert node.metric("cnid_evpn_routes_skipped_total", reason="local-mac") == 1


async def test_a_mac_that_moved_away_and_back_five_times_is_flagged(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path)
    async with node.running():
        node.journal.put(pod("p1"))
        await until("announced", lambda: node.speaker.announced_by_type()[2] == 1)
        assert announced_seq(node) is None
        # another node holds the same MAC and outbids us every 10 s
        for i in range(8):
            seq = announced_seq(node) or 0
            send(node, remote_pod(PEER, seq))
            await until(f"raised {i}", raised_past(node, seq), 2.0)
            if node.evpn.mobility.flagged((300, POD_MAC)):
                break
            await trio.sleep(10)
        assert i == 4  # the fifth move
        assert node.metric("cnid_evpn_mac_duplicates_total") == 1
        assert node.metric("cnid_evpn_mac_duplicates_flagged") == 1
        # flagged: no longer raised (the two nodes would outbid each other for ever)
        send(node, remote_pod(PEER, 10))
        await trio.sleep(1)
        assert announced_seq(node) == 5
        view = evpn_duplicates(node.evpn)
        assert [(d["mac"], d["vni"], d["moves"]) for d in view["duplicates"]] == [(POD_MAC, 300, 5)]
        assert POD_MAC in render("evpn-duplicates", view)
        assert ctl_request(["evpn", "duplicates"]) == ("evpn-duplicates", {})
        # no move for the window: the flag clears
        await trio.sleep(181)
        assert node.metric("cnid_evpn_mac_duplicates_flagged") == 0
        assert node.metric("cnid_evpn_mac_duplicates_total") == 1


async def test_a_remote_mac_flapping_between_two_vteps_is_flagged_and_followed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    node = Node(tmp_path, dup_max_moves=3, dup_time=60.0)
    async with node.running():
        for i in range(4):
            vtep = (PEER, OTHER)[i % 2]
            send(node, t2(vtep, i))
            await until(f"move {i}", fdb_at(node, vtep))
            await trio.sleep(5)
        assert node.metric("cnid_evpn_mac_moves_total") == 3
        assert node.metric("cnid_evpn_mac_duplicates_total") == 1
        (dup,) = node.evpn.mobility.duplicates()
        assert set(dup.vteps) == {PEER, OTHER}


def test_the_evpn_section_of_server_ini() -> None:
    config = parse_config("[evpn]\ndup_max_moves = 3\ndup_time = 60\n")
    assert (config.evpn.dup_max_moves, config.evpn.dup_time) == (3, 60.0)
    assert parse_config("").evpn.dup_max_moves == 5
    assert parse_config("").evpn.dup_time == 180.0
    assert parse_config("[evpn]\ndup_max_moves = 0\n").evpn.dup_max_moves == 0
    with pytest.raises(ConfigError, match="dup_max_moves"):
        parse_config("[evpn]\ndup_max_moves = 1\n")
    with pytest.raises(ConfigError, match="dup_time"):
        parse_config("[evpn]\ndup_time = 1\n")
