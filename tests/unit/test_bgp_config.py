"""ExaBGP's configuration from the node's settings; who peers with whom."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from cnid.bgp import (
    BgpOptions,
    Neighbor,
    SpeakerConfig,
    environment,
    mesh_neighbors,
    reflector_neighbors,
    render,
)
from cnid.cluster import NodeSettings, neighbors_for, node_address
from cnid.core import ConfigError
from cnid.daemon import parse_config
from cnid.kube import (
    Node,
    NodeAddress,
    NodeInterface,
    NodeStatus,
    ObjectMeta,
    ObjectRef,
    VRFNodeConfig,
    VRFNodeConfigSpec,
)


def test_a_full_mesh_has_one_active_side_per_pair() -> None:
    nodes = {"a": "10.0.0.1", "b": "10.0.0.2", "c": "10.0.0.3"}
    sessions = {}
    for name, address in nodes.items():
        others = {n: a for n, a in nodes.items() if n != name}
        for nb in mesh_neighbors(address, others):
            sessions[(address, nb.address)] = nb.passive
    for (me, peer), passive in sessions.items():
        # exactly one side of each pair listens: the lower address
        assert sessions[(peer, me)] != passive
        assert passive == (int(peer.split(".")[-1]) > int(me.split(".")[-1]))
    assert len(sessions) == 6


def test_mesh_skips_itself_and_the_other_family() -> None:
    got = mesh_neighbors("10.0.0.1", {"me": "10.0.0.1", "v6": "2001:db8::2", "b": "10.0.0.9"})
    assert got == (Neighbor("10.0.0.9", passive=True, role="mesh:b"),)


def test_rendered_config_and_environment() -> None:
    cfg = SpeakerConfig(
        router_id="10.0.0.1",
        local_address="10.0.0.1",
        asn=65010,
        neighbors=(*reflector_neighbors(("10.0.0.254",)), Neighbor("10.0.0.9", passive=True)),
        hold_time=9,
        password="s3cret",
        ttl_security=True,
        graceful_restart=60,
    )
    text = render(cfg, "/run/cnid/bgp/api.sock")
    assert "neighbor 10.0.0.254 {" in text and "neighbor 10.0.0.9 {" in text
    assert text.count("local-as 65010;") == 2 and text.count("peer-as 65010;") == 2
    assert "passive true;" in text and "passive false;" in text
    assert 'md5-password "s3cret";' in text
    assert "outgoing-ttl 255;" in text and "incoming-ttl 255;" in text
    assert "graceful-restart 60;" in text and "l2vpn evpn;" in text
    assert "manual-eor true;" in text and "_relay.py /run/cnid/bgp/api.sock" in text
    env = environment(cfg, "WARNING")
    assert env["exabgp.tcp.bind"] == "10.0.0.1"  # a passive neighbour: we listen
    assert env["exabgp.api.ack"] == "false" and env["exabgp.daemon.user"] == "root"
    active_only = environment(
        SpeakerConfig("10.0.0.1", "10.0.0.1", 1, reflector_neighbors(("10.0.0.254",))), "INFO"
    )
    assert active_only["exabgp.tcp.bind"] == ""
    off = render(
        SpeakerConfig("10.0.0.1", "10.0.0.1", 1, (Neighbor("10.0.0.2"),), graceful_restart=0), "s"
    )
    assert "graceful-restart disable;" in off and "md5-password" not in off


def test_bgp_section_of_server_ini(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("topsecret\n")
    cfg = parse_config(
        f"[bgp]\nasn = 4200000001\nhold_time = 9\nttl_security = true\n"
        f"route_reflectors = 10.0.0.254, 10.0.0.253\npassword_file = {secret}\n"
    )
    assert cfg.bgp.asn == 4200000001 and cfg.bgp.hold_time == 9 and cfg.bgp.ttl_security
    assert cfg.bgp.reflectors == ("10.0.0.254", "10.0.0.253")
    assert cfg.bgp.password() == "topsecret"
    assert parse_config("").bgp == BgpOptions()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[bgp]\nasn = 0\n", "asn"),
        ("[bgp]\nhold_time = 2\n", "hold_time"),
        ("[bgp]\nroute_reflectors = 10.0.0.1, nope\n", "route_reflectors"),
        ("[bgp]\ngraceful_restart = 5000\n", "graceful_restart"),
        ("[bgp]\nstale_timeout = -1\n", "stale_timeout"),
        ("[bgp]\nasn = many\n", "asn"),
    ],
)
def test_bad_bgp_settings_are_named(text: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config(text)


def test_password_file_problems(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="password_file"):
        BgpOptions(password_file=str(tmp_path / "missing")).password()
    bad = tmp_path / "bad"
    bad.write_text('has "quotes"')
    with pytest.raises(ConfigError, match="no quotes"):
        BgpOptions(password_file=str(bad)).password()


def _node(name: str, ip: str) -> Node:
    return Node(
        metadata=ObjectMeta(name=name),
        status=NodeStatus(addresses=[NodeAddress(type="InternalIP", address=ip)]),
    )


def _config(name: str, node: str, local: str = "", rrs: list[str] | None = None) -> VRFNodeConfig:
    return VRFNodeConfig(
        metadata=ObjectMeta(name=name),
        spec=VRFNodeConfigSpec(
            node_ref=ObjectRef(name=node),
            route_reflectors=rrs or [],
            interfaces=[NodeInterface(name="eth1", local=local)] if local else [],
        ),
    )


def test_neighbours_from_the_cluster() -> None:
    nodes = [_node("k1", "192.168.0.1"), _node("k2", "192.168.0.2"), _node("k3", "192.168.0.3")]
    configs = [_config("k3-cfg", "k3", local="10.9.0.3")]
    assert node_address(nodes[2], configs) == "10.9.0.3"  # the VRFNodeConfig's VTEP wins
    assert node_address(nodes[1], configs) == "192.168.0.2"
    mesh = neighbors_for("k1", "192.168.0.1", NodeSettings(), BgpOptions(), nodes, configs)
    assert [n.address for n in mesh] == ["10.9.0.3", "192.168.0.2"]
    assert all(n.role.startswith("mesh:") for n in mesh)
    rr = neighbors_for(
        "k1",
        "192.168.0.1",
        NodeSettings(route_reflectors=("192.168.0.254",)),
        BgpOptions(route_reflectors="10.0.0.1"),
        nodes,
        configs,
    )
    assert rr == (Neighbor("192.168.0.254", passive=False, role="route-reflector"),)
    ini_rr = neighbors_for(
        "k1", "192.168.0.1", NodeSettings(), BgpOptions(route_reflectors="10.0.0.1"), None, []
    )
    assert [n.address for n in ini_rr] == ["10.0.0.1"]
    assert neighbors_for("k1", "192.168.0.1", NodeSettings(), BgpOptions(), None, []) == ()


def test_static_peers_join_either_mode() -> None:
    opts = BgpOptions(peers="192.168.0.4, 192.168.0.254")
    rr = neighbors_for(
        "k1", "192.168.0.1", NodeSettings(route_reflectors=("192.168.0.254",)), opts, None, []
    )
    # a peer that is a reflector already is not listed twice
    assert [(n.address, n.role) for n in rr] == [
        ("192.168.0.254", "route-reflector"),
        ("192.168.0.4", "static"),
    ]
    mesh = neighbors_for(
        "k1", "192.168.0.1", NodeSettings(), opts, [_node("k2", "192.168.0.2")], []
    )
    assert [(n.address, n.role, n.passive) for n in mesh] == [
        ("192.168.0.2", "mesh:k2", True),
        ("192.168.0.254", "static", False),
        ("192.168.0.4", "static", False),
    ]
    with pytest.raises(ConfigError, match="peers"):
        parse_config("[bgp]\npeers = nope\n")


class FakeReflector:
    """What Peering reads of a Reflector: items, version, wait_changed, synced."""

    def __init__(self, items: dict[str, object]) -> None:
        self.items = items
        self.version = 0
        self.connected = True
        self.synced = trio.Event()
        self.synced.set()
        self._changed = trio.Event()

    def change(self, items: dict[str, object]) -> None:
        self.items = items
        self.version += 1
        self._changed.set()
        self._changed = trio.Event()

    async def wait_changed(self, seen: int) -> int:
        while self.version == seen:
            await self._changed.wait()
        return self.version


class FakeSpeaker:
    def __init__(self) -> None:
        self.configs: list[SpeakerConfig] = []

    def configure(self, config: SpeakerConfig) -> None:
        self.configs.append(config)


async def test_peering_follows_nodes_joining_and_leaving() -> None:
    from cnid.cluster import Peering

    nodes = FakeReflector({"k1": _node("k1", "192.168.0.1"), "k2": _node("k2", "192.168.0.2")})
    configs = FakeReflector({})
    speaker = FakeSpeaker()
    peering = Peering(
        speaker=speaker,  # type: ignore[arg-type]
        node="k1",
        router_id="192.168.0.1",
        local="192.168.0.1",
        settings=NodeSettings(),
        options=BgpOptions(),
        nodes=nodes,  # type: ignore[arg-type]
        configs=configs,  # type: ignore[arg-type]
    )

    def addresses() -> list[str]:
        return [n.address for n in speaker.configs[-1].neighbors]

    async with trio.open_nursery() as nursery:
        await nursery.start(peering.run)
        assert addresses() == ["192.168.0.2"]
        nodes.change({**nodes.items, "k3": _node("k3", "192.168.0.3")})
        await trio.sleep(0.01)
        assert addresses() == ["192.168.0.2", "192.168.0.3"]
        # an outage of the API is not every node leaving
        nodes.connected = False
        nodes.change({})
        await trio.sleep(0.01)
        assert addresses() == ["192.168.0.2", "192.168.0.3"]
        nodes.connected = True
        nodes.change({"k3": _node("k3", "192.168.0.3")})
        await trio.sleep(0.01)
        assert addresses() == ["192.168.0.3"]
        # a VRFNodeConfig of k3 moves its VTEP: the mesh follows
        configs.change({"k3-cfg": _config("k3-cfg", "k3", local="10.9.0.3")})
        await trio.sleep(0.01)
        assert addresses() == ["10.9.0.3"]
        nursery.cancel_scope.cancel()
