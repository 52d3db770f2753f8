"""eBGP neighbours per node (issue 14, item 1), without I/O: ExaBGP's
configuration of an eBGP neighbour, who the node peers with, server.ini's
``[neighbor ADDRESS]`` sections, and AS_PATH loop detection (ExaBGP has
none) from ExaBGP's JSON to the speaker's events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
from exabgp.protocol.family import AFI, SAFI

from cnid.bgp import (
    BgpOptions,
    EvpnPath,
    MacIpRoute,
    Neighbor,
    ReceivedPath,
    Speaker,
    SpeakerConfig,
    SpeakerEvent,
    UpdateEvent,
    as_path_numbers,
    decode_line,
    drop_loops,
    loops,
    render,
)
from cnid.cluster import NodeSettings, neighbors_for
from cnid.core import ConfigError
from cnid.daemon import parse_config
from tests.unit.clusterapi import node, nodeconfig

LEAF1 = Neighbor("10.1.1.0", role="neighbor", asn=65101)
LEAF2 = Neighbor("10.1.2.0", role="neighbor", asn=65102, multihop=3, allow_as_in=1, bfd=True)


def _config(*neighbors: Neighbor, **kw: object) -> SpeakerConfig:
    return SpeakerConfig("10.255.0.11", "10.1.1.1", 65001, neighbors, **kw)  # type: ignore[arg-type]


def _block(text: str, address: str) -> str:
    """One neighbour's block of a rendered configuration."""
    start = text.index(f"neighbor {address} {{")
    return text[start : text.index("\n}\n", start)]


# -- ExaBGP's configuration ------------------------------------------------------


def test_an_ebgp_neighbour_has_its_own_peer_as_and_ttl_1_an_ibgp_one_the_nodes_as() -> None:
    ibgp = Neighbor("10.255.0.1", role="route-reflector")
    text = render(_config(LEAF1, ibgp), "/run/api.sock")
    leaf = _block(text, "10.1.1.0")
    assert "local-as 65001;" in leaf and "peer-as 65101;" in leaf
    # directly connected eBGP: TTL 1, like FRR without ebgp-multihop
    assert "outgoing-ttl 1;" in leaf and "incoming-ttl" not in leaf
    rr = _block(text, "10.255.0.1")
    assert "local-as 65001;" in rr and "peer-as 65001;" in rr
    assert "outgoing-ttl" not in rr  # iBGP: the kernel's default TTL
    assert "family {\n        l2vpn evpn;\n    }" in leaf


def test_multihop_password_and_families_are_per_neighbour() -> None:
    underlay = msgspec.structs.replace(LEAF1, families=("l2vpn evpn", "ipv4 unicast"))
    secret = msgspec.structs.replace(LEAF2, password="leaf2-key")
    text = render(_config(underlay, secret, password="global"), "s")
    one, two = _block(text, "10.1.1.0"), _block(text, "10.1.2.0")
    assert "family {\n        l2vpn evpn;\n        ipv4 unicast;\n    }" in one
    assert 'md5-password "global";' in one  # [bgp] password_file's, by default
    assert 'md5-password "leaf2-key";' in two and "global" not in two
    assert "outgoing-ttl 3;" in two and "peer-as 65102;" in two


def test_gtsm_accepts_as_many_hops_as_the_multihop_ttl_says() -> None:
    text = render(_config(LEAF1, LEAF2, ttl_security=True), "s")
    assert "outgoing-ttl 255;\n    incoming-ttl 255;" in _block(text, "10.1.1.0")
    assert "outgoing-ttl 255;\n    incoming-ttl 253;" in _block(text, "10.1.2.0")


def test_the_rendered_ebgp_configuration_parses_in_exabgp(tmp_path: Path) -> None:
    """ExaBGP 5.0's own parser: keywords and values it accepts."""
    from exabgp.configuration.configuration import Configuration
    from exabgp.environment import getenv
    from exabgp.logger import log

    log.init(getenv())  # the parser logs
    secret = msgspec.structs.replace(LEAF2, password="leaf2-key")
    path = tmp_path / "exabgp.conf"
    path.write_text(render(_config(LEAF1, secret), str(tmp_path / "api.sock")))
    conf = Configuration([str(path)])
    assert conf.reload(), conf.error
    got = {str(n["peer-address"]): n for n in conf.neighbors.values()}
    assert int(got["10.1.1.0"]["peer-as"]) == 65101
    assert int(got["10.1.1.0"]["local-as"]) == 65001
    assert got["10.1.1.0"]["outgoing-ttl"] == 1
    assert got["10.1.2.0"]["outgoing-ttl"] == 3
    assert got["10.1.2.0"]["md5-password"] == "leaf2-key"


# -- who the node peers with -----------------------------------------------------

ME, LOCAL = "k1", "192.168.0.1"
NODES = [node(ME, LOCAL), node("k2", "192.168.0.2")]


def _addresses(neighbors: tuple[Neighbor, ...]) -> list[tuple[str, str]]:
    return [(n.address, n.role) for n in neighbors]


def test_the_mesh_only_without_reflectors_or_neighbours() -> None:
    mesh = neighbors_for(ME, LOCAL, NodeSettings(), BgpOptions(), NODES, [])
    assert _addresses(mesh) == [("192.168.0.2", "mesh:k2")]
    ebgp = NodeSettings(source="k1-cfg", asn=65001, neighbors=(LEAF1, LEAF2))
    got = neighbors_for(ME, LOCAL, ebgp, BgpOptions(), NODES, [])
    assert got == (LEAF1, LEAF2)
    both = msgspec.structs.replace(ebgp, route_reflectors=("10.255.0.1", "10.1.1.0"))
    got = neighbors_for(ME, LOCAL, both, BgpOptions(peers="172.16.0.1"), NODES, [])
    # a reflector that is also an explicit neighbour: the neighbour's settings
    assert _addresses(got) == [
        ("10.1.1.0", "neighbor"),
        ("10.1.2.0", "neighbor"),
        ("10.255.0.1", "route-reflector"),
        ("172.16.0.1", "static"),
    ]
    assert got[0] == LEAF1


def test_server_ini_neighbours_unless_the_config_names_some() -> None:
    ini = (Neighbor("10.9.9.9", role="neighbor", asn=65200),)
    got = neighbors_for(ME, LOCAL, NodeSettings(), BgpOptions(), NODES, [], ini)
    assert got == ini  # no mesh either
    cr = NodeSettings(source="k1-cfg", neighbors=(LEAF1,))
    assert neighbors_for(ME, LOCAL, cr, BgpOptions(), NODES, [], ini) == (LEAF1,)


def test_a_node_with_explicit_neighbours_is_in_no_other_nodes_mesh() -> None:
    configs = [nodeconfig("k2-cfg", "k2")]
    configs[0].spec.neighbors = [msgspec.convert({"address": "10.1.1.0", "asn": 65101}, _spec())]
    nodes = [*NODES, node("k3", "192.168.0.3")]
    got = neighbors_for(ME, LOCAL, NodeSettings(), BgpOptions(), nodes, configs)
    assert _addresses(got) == [("192.168.0.3", "mesh:k3")]


def _spec() -> type:
    from cnid.kube import BgpNeighborSpec

    return BgpNeighborSpec


# -- server.ini ------------------------------------------------------------------


def test_neighbor_sections_of_server_ini(tmp_path: Path) -> None:
    secret = tmp_path / "leaf2"
    secret.write_text("leaf2-key\n")
    cfg = parse_config(
        "[bgp]\nasn = 65001\n"
        "[neighbor 10.1.1.0]\nasn = 65101\n"
        f"[neighbor 10.1.2.0]\nasn = 65102\npassword_file = {secret}\nmultihop = 3\n"
        "bfd = yes\nallow_as_in = 1\n"
    )
    assert cfg.bgp.asn == 65001
    assert cfg.bgp.explicit_neighbors() == (
        Neighbor("10.1.1.0", role="neighbor", asn=65101),
        Neighbor(
            "10.1.2.0",
            role="neighbor",
            asn=65102,
            multihop=3,
            password="leaf2-key",
            bfd=True,
            allow_as_in=1,
        ),
    )
    assert parse_config("").bgp.explicit_neighbors() == ()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[neighbor leaf1]\nasn = 65101\n", r"\[neighbor leaf1\]: 'leaf1' is not an IP address"),
        ("[neighbor 10.1.1.0]\nmultihop = 2\n", r"\[neighbor 10.1.1.0\] asn: required"),
        ("[neighbor 10.1.1.0]\nasn = 0\n", r"\[neighbor 10.1.1.0\]: asn 0 out of range"),
        ("[neighbor 10.1.1.0]\nasn = 2**32\n", r"\[neighbor 10.1.1.0\] asn = '2\*\*32'"),
        (
            "[neighbor 10.1.1.0]\nasn = 1\nmultihop = 1\n",
            r"\[neighbor 10.1.1.0\]: multihop 1 out of range \(2..255",
        ),
        (
            "[neighbor 10.1.1.0]\nasn = 1\nallow_as_in = 11\n",
            r"\[neighbor 10.1.1.0\]: allow_as_in 11 out of range",
        ),
        ("[neighbor 10.1.1.0]\nasn = 1\nbfd = maybe\n", r"\[neighbor 10.1.1.0\] bfd = 'maybe'"),
        (
            "[neighbor 10.1.1.0]\nasn = 1\nallowas_in = 1\n",
            r"\[neighbor 10.1.1.0\] allowas_in: unknown key",
        ),
        (
            "[neighbor 2001:db8::1]\nasn = 1\n[neighbor 2001:db8:0::1]\nasn = 2\n",
            r"\[neighbor 2001:db8:0::1\]: neighbor 2001:db8::1 given twice",
        ),
    ],
)
def test_bad_neighbor_sections_name_the_file_section_and_key(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=r"^server\.ini: " + error):
        parse_config(text)


def test_a_missing_password_file_is_named(tmp_path: Path) -> None:
    cfg = parse_config(f"[neighbor 10.1.1.0]\nasn = 1\npassword_file = {tmp_path}/none\n")
    with pytest.raises(ConfigError, match=r"\[neighbor 10.1.1.0\] password_file .*/none"):
        cfg.bgp.explicit_neighbors()


# -- AS_PATH loop detection -------------------------------------------------------


def test_exabgps_as_path_json_is_the_numbers_in_order() -> None:
    exa = {
        "0": {"element": "as-sequence", "value": [65101, 65001]},
        "1": {"element": "as-set", "value": [1, 2]},
    }
    assert as_path_numbers(exa) == (65101, 65001, 1, 2)
    assert as_path_numbers([65101, [3, 4]]) == (65101, 3, 4)
    assert as_path_numbers(None) == as_path_numbers("junk") == as_path_numbers({}) == ()


def _update_line(as_path: str) -> str:
    attrs = '"origin": "igp"' + (f', "as-path": {as_path}' if as_path else "")
    return (
        '{ "exabgp": "5.0.0", "type": "update", "neighbor": { "address": { "local": '
        '"10.1.1.1", "peer": "10.1.1.0" }, "asn": { "local": 65001, "peer": 65101 }, '
        '"direction": "receive", "message": { "update": { "attribute": { ' + attrs + " }, "
        '"announce": { "l2vpn evpn": { "10.255.0.12": [ { "code": 2, "parsed": true, '
        '"raw": "", "rd": "10.255.0.12:2", "esi": "-", "ethernet-tag": 0, '
        '"mac": "02:00:00:00:02:01", "label": [ [6, 100] ] } ] } } } } } }'
    )


def test_an_update_carries_each_routes_as_path() -> None:
    exa = '{ "0": { "element": "as-sequence", "value": [ 65101, 65001 ] } }'
    event = decode_line(_update_line(exa))
    assert isinstance(event, UpdateEvent)
    (rp,) = event.announced
    assert rp.as_path == (65101, 65001) and rp.path.nexthop == "10.255.0.12"
    event = decode_line(_update_line(""))  # iBGP: no AS_PATH
    assert isinstance(event, UpdateEvent) and event.announced[0].as_path == ()


def test_the_own_as_more_often_than_allowed_is_a_loop() -> None:
    assert not loops((65101, 65002), 65001)
    assert loops((65101, 65001), 65001)
    assert not loops((65101, 65001), 65001, allow_as_in=1)
    assert loops((65101, 65001, 65102, 65001), 65001, allow_as_in=1)
    assert not loops((), 65001)


def _received(mac: str, as_path: tuple[int, ...]) -> ReceivedPath:
    route = MacIpRoute(rd="10.255.0.12:2", mac=mac, vni=100)
    return ReceivedPath("10.1.1.0", EvpnPath(route, "10.255.0.12"), as_path=as_path)


def test_a_looping_path_is_withdrawn_and_skipped_as_an_as_loop() -> None:
    good = _received("02:00:00:00:00:01", (65101, 65002))
    bad = _received("02:00:00:00:00:02", (65101, 65001))
    event = UpdateEvent("10.1.1.0", announced=(good, bad))
    out = drop_loops(event, 65001)
    assert out.announced == (good,)
    # it replaces what the peer sent before for that route (RFC 4271)
    assert out.withdrawn == (bad.path.route,)
    [(reason, what)] = out.skipped
    assert reason == "as-loop" and "AS_PATH 65101 65001, own AS 65001" in what
    assert drop_loops(event, 65001, allow_as_in=1) is event


async def test_the_speaker_checks_updates_against_the_neighbours_allow_as_in(
    tmp_path: Path,
) -> None:
    seen: list[SpeakerEvent] = []
    speaker = Speaker(run_dir=tmp_path, listener=seen.append)
    allow = Neighbor("10.1.1.0", role="neighbor", asn=65101, allow_as_in=1)
    strict = Neighbor("10.1.2.0", role="neighbor", asn=65102)
    speaker.configure(_config(allow, strict))
    rack = (65101, 65001)  # another node of the rack, same AS, through the leaf
    for peer in ("10.1.1.0", "10.1.2.0"):
        rp = msgspec.structs.replace(_received("02:00:00:00:00:03", rack), peer=peer)
        speaker._event(UpdateEvent(peer, announced=(rp,)))
    first, second = seen
    assert isinstance(first, UpdateEvent) and len(first.announced) == 1
    assert isinstance(second, UpdateEvent) and second.announced == ()
    assert [r for r, _ in second.skipped] == ["as-loop"]
    # the session view shows each neighbour's AS, type and BFD flag
    peer = speaker.peers["10.1.2.0"]
    assert (peer.asn, peer.ebgp, peer.bfd) == (65102, True, False)


def test_the_extension_asks_established_neighbours_for_a_route_refresh() -> None:
    from cnid.bgp import Command
    from cnid.bgp import _extension as ext

    peers = [
        f"neighbor {a} local-ip 10.1.1.1 local-as 65001 peer-as 1" for a in ("10.1.1.0", "10.1.2.0")
    ]

    class Configuration:
        asked: list[tuple[list[str], list[Any]]] = []

        def inject_refresh(self, to: list[str], refreshes: list[Any]) -> bool:
            self.asked.append((to, refreshes))
            return True

    class Reactor:
        configuration = Configuration()

        def established_peers(self) -> set[str]:
            return {peers[0]}

    reactor = Reactor()
    ack = ext.execute(reactor, "cnid", Command(7, "refresh", ("10.1.1.0",)))
    assert (ack.id, ack.ok, ack.done) == (7, True, 1)
    [(to, [refresh])] = reactor.configuration.asked
    assert to == [peers[0]]
    assert (refresh.afi, refresh.safi) == (AFI.l2vpn, SAFI.evpn)
    # a session that is not up: nothing to ask (it sends everything when it comes up)
    ack = ext.execute(reactor, "cnid", Command(8, "refresh", ("10.1.2.0",)))
    assert (ack.ok, ack.done) == (True, 0) and len(reactor.configuration.asked) == 1


def test_cnictl_bgp_shows_each_neighbours_as_type_and_bfd_flag() -> None:
    from cnid.ctl import render as ctl_render

    def peer(address: str, asn: int, type_: str, bfd: bool) -> dict[str, Any]:
        return {
            "address": address, "asn": asn, "type": type_, "bfd": bfd, "role": "neighbor",
            "state": "established", "uptime_seconds": 65.0, "received": 3, "sent": 2,
            "flaps": 0, "last_error": "",
        }  # fmt: skip

    data = {
        "router_id": "10.255.0.11", "asn": 65001, "local_address": "10.1.1.1",
        "mode": "neighbors + route-reflector",
        "speaker": {"running": True, "pid": 42, "restarts": 0},
        "announced": {"2": 1, "3": 1, "5": 1}, "received": {"2": 3, "3": 1, "5": 2},
        "adopting": False, "problems": [],
        "peers": [peer("10.1.1.0", 65101, "ebgp", True), peer("10.255.0.1", 65001, "ibgp", False)],
    }  # fmt: skip
    lines = ctl_render("bgp-summary", data).splitlines()
    assert "local AS number 65001" in lines[0] and "(neighbors + route-reflector)" in lines[0]
    header = next(line for line in lines if line.startswith("NEIGHBOR"))
    assert header.split()[:5] == ["NEIGHBOR", "AS", "TYPE", "BFD", "ROLE"]
    rows = [line.split() for line in lines if line.startswith(("10.1.1.0", "10.255.0.1"))]
    assert [r[:5] for r in rows] == [
        ["10.1.1.0", "65101", "ebgp", "yes", "neighbor"],
        ["10.255.0.1", "65001", "ibgp", "no", "neighbor"],
    ]
