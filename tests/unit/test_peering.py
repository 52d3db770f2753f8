"""Peering on trio's virtual clock, against the emulated API server
in-process (tests/unit/clusterapi.py) and a fake speaker: which neighbours
the speaker is given from the Nodes, the VRFNodeConfigs and server.ini's
``[bgp]``, how it follows their changes, and what an API outage does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
import trio.testing

from cnid.bgp import BgpOptions, SpeakerConfig
from cnid.cluster import NodeConfigController, NodeSettings, Peering
from cnid.kube import NODES, VRF_NODE_CONFIGS, Node, Reflector, VRFNodeConfig
from testbed.kubeapi import InProcessKubeApi
from tests.unit.clusterapi import Admin, cluster, node, nodeconfig

DEFAULTS = BgpOptions()
ME = "k1"
LOCAL = "192.168.0.1"


class FakeSpeaker:
    """What Peering drives of the speaker: its configuration."""

    def __init__(self) -> None:
        self.configs: list[tuple[float, SpeakerConfig]] = []

    def configure(self, config: SpeakerConfig) -> None:
        self.configs.append((trio.current_time(), config))

    def neighbors(self) -> list[tuple[str, bool, str]]:
        """The last configuration's (address, passive, role)."""
        return [(n.address, n.passive, n.role) for n in self.configs[-1][1].neighbors]

    def addresses(self) -> list[str]:
        return [n.address for n in self.configs[-1][1].neighbors]


class Env:
    def __init__(self, api: InProcessKubeApi, admin: Admin, speaker: FakeSpeaker) -> None:
        self.api = api
        self.admin = admin
        self.speaker = speaker
        self.nodes: Reflector[Node] | None = None
        self.nodeconfig: NodeConfigController | None = None


@asynccontextmanager
async def running(
    *objects: Any,
    options: BgpOptions = DEFAULTS,
    watch: bool = True,
) -> AsyncIterator[Env]:
    """Peering for node k1 over ``objects`` (Nodes and VRFNodeConfigs), with
    the settings k1's own config gives at start-up."""
    async with cluster() as (api, client, admin):
        for obj in objects:
            await admin.create(NODES if isinstance(obj, Node) else VRF_NODE_CONFIGS, obj)
        env = Env(api, admin, FakeSpeaker())
        async with trio.open_nursery() as nursery:
            nodes: Reflector[Node] | None = None
            configs: Reflector[VRFNodeConfig] | None = None
            settings = NodeSettings()
            if watch:
                nodes = Reflector(client, NODES, name="nodes")
                configs = Reflector(client, VRF_NODE_CONFIGS, name="vrfnodeconfigs")
                await nursery.start(nodes.run)
                await nursery.start(configs.run)
                await nodes.synced.wait()
                await configs.synced.wait()
                env.nodes = nodes
                env.nodeconfig = NodeConfigController(client=client, node=ME, configs=configs)
                settings = env.nodeconfig.current()[0]
                env.nodeconfig.started_with(settings)
            peering = Peering(
                speaker=env.speaker,  # type: ignore[arg-type]
                node=ME,
                router_id=LOCAL,
                local=LOCAL,
                settings=settings,
                options=options,
                nodes=nodes,
                configs=configs,
                nodeconfig=env.nodeconfig,
            )
            await nursery.start(peering.run)
            yield env
            nursery.cancel_scope.cancel()


async def test_a_full_mesh_with_every_other_node_follows_nodes_joining_and_leaving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(
        node(ME, LOCAL), node("k0", "192.168.0.0"), node("k2", "192.168.0.2")
    ) as env:
        # of each pair the higher address connects
        assert env.speaker.neighbors() == [
            ("192.168.0.0", False, "mesh:k0"),
            ("192.168.0.2", True, "mesh:k2"),
        ]
        await env.admin.create(NODES, node("k3", "192.168.0.3"))
        await trio.sleep(0.05)  # at once
        assert env.speaker.addresses() == ["192.168.0.0", "192.168.0.2", "192.168.0.3"]
        await env.admin.delete(NODES, "k0")
        await trio.sleep(0.05)
        assert env.speaker.addresses() == ["192.168.0.2", "192.168.0.3"]
        # a node without an address yet joins once it has one
        await env.admin.create(NODES, node("k4"))
        await trio.sleep(0.05)
        assert env.speaker.addresses() == ["192.168.0.2", "192.168.0.3"]
        body = {"status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.4"}]}}
        await env.admin.patch(NODES, "k4", body, subresource="status")
        await trio.sleep(0.05)
        assert env.speaker.addresses() == ["192.168.0.2", "192.168.0.3", "192.168.0.4"]


async def test_a_nodes_vtep_from_its_config_is_its_bgp_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(node(ME, LOCAL), node("k2", "192.168.0.2")) as env:
        await env.admin.create(
            VRF_NODE_CONFIGS, nodeconfig("k2-vtep", "k2", interface="eth1", local="10.9.0.2")
        )
        await trio.sleep(0.05)
        assert env.speaker.addresses() == ["10.9.0.2"]


async def test_route_reflectors_replace_the_mesh_and_follow_the_config_live(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mine = nodeconfig("k1-cfg", ME, reflectors=("10.0.0.253",))
    async with running(node(ME, LOCAL), node("k2", "192.168.0.2"), mine) as env:
        assert env.speaker.neighbors() == [("10.0.0.253", False, "route-reflector")]
        # another reflector: applied at once, no restart needed
        body = {"spec": {"routeReflectors": ["10.0.0.253", "10.0.0.254"]}}
        await env.admin.patch(VRF_NODE_CONFIGS, "k1-cfg", body)
        await trio.sleep(0.05)
        assert env.speaker.addresses() == ["10.0.0.253", "10.0.0.254"]
        assert env.nodeconfig is not None and env.nodeconfig.running is not None
        assert env.nodeconfig.running.route_reflectors == ("10.0.0.253", "10.0.0.254")
        # none: back to the full mesh
        await env.admin.patch(VRF_NODE_CONFIGS, "k1-cfg", {"spec": {"routeReflectors": None}})
        await trio.sleep(0.05)
        assert env.speaker.addresses() == ["192.168.0.2"]


async def test_a_change_that_takes_a_restart_leaves_the_reflectors_as_they_run(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mine = nodeconfig("k1-cfg", ME, router_id="192.168.0.1", reflectors=("10.0.0.253",))
    async with running(node(ME, LOCAL), mine) as env:
        body = {"spec": {"routerId": "192.168.0.99", "routeReflectors": ["10.0.0.254"]}}
        await env.admin.patch(VRF_NODE_CONFIGS, "k1-cfg", body)
        await trio.sleep(0.05)
        assert env.speaker.addresses() == ["10.0.0.253"]
        assert env.speaker.configs[-1][1].router_id == LOCAL


async def test_server_ini_reflectors_unless_the_config_names_some_and_peers_in_either_mode(
    autojump_clock: trio.testing.MockClock,
) -> None:
    options = BgpOptions(route_reflectors="10.0.0.250", peers="172.16.0.1,10.0.0.250")
    async with running(node(ME, LOCAL), node("k2", "192.168.0.2"), options=options) as env:
        assert env.speaker.neighbors() == [
            ("10.0.0.250", False, "route-reflector"),
            ("172.16.0.1", False, "static"),
        ]
        await env.admin.create(VRF_NODE_CONFIGS, nodeconfig("k1-cfg", ME, reflectors=("10.0.0.9",)))
        await trio.sleep(0.05)
        assert env.speaker.neighbors() == [
            ("10.0.0.9", False, "route-reflector"),
            ("10.0.0.250", False, "static"),
            ("172.16.0.1", False, "static"),
        ]


async def test_without_watches_the_speaker_is_configured_once_from_server_ini(
    autojump_clock: trio.testing.MockClock,
) -> None:
    options = BgpOptions(route_reflectors="10.0.0.250")
    async with running(options=options, watch=False) as env:
        await trio.sleep(300)
        assert [t for t, _ in env.speaker.configs] == [0.0]
        assert env.speaker.addresses() == ["10.0.0.250"]


async def test_the_speaker_is_reconfigured_every_30_s_without_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(node(ME, LOCAL), node("k2", "192.168.0.2")) as env:
        await trio.sleep(95)
        start = env.speaker.configs[0][0]
        assert [t - start for t, _ in env.speaker.configs] == [0, 30, 60, 90]
        assert {c for _, c in env.speaker.configs} == {env.speaker.configs[0][1]}


async def test_an_api_outage_is_not_every_node_leaving_and_changes_meanwhile_are_caught_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    nodes = (node(ME, LOCAL), node("k2", "192.168.0.2"), node("k3", "192.168.0.3"))
    async with running(*nodes) as env:
        assert env.speaker.addresses() == ["192.168.0.2", "192.168.0.3"]
        env.api.down = True
        calls = len(env.speaker.configs)
        await env.admin.delete(NODES, "k3")  # unseen: the watches are broken
        await trio.sleep(600)
        assert env.nodes is not None and not env.nodes.connected
        # the speaker is left alone, with the last neighbours known
        assert len(env.speaker.configs) == calls
        assert {tuple(n.address for n in c.neighbors) for _, c in env.speaker.configs} == {
            ("192.168.0.2", "192.168.0.3")
        }
        env.api.down = False
        await trio.sleep(31)
        assert env.nodes.connected
        assert env.speaker.addresses() == ["192.168.0.2"]
