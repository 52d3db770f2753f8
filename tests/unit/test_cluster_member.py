"""The node as a cluster member, at start-up, on trio's virtual clock
against the emulated API server in-process (tests/unit/clusterapi.py):
the settings it starts with come from this node's VRFNodeConfig once the
watches have listed (server.ini's when it has none or a bad one)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio
import trio.testing

from cnid.cluster import ClusterMember, MemberTimings, NodeSettings
from cnid.core import DomainRegistry, Journal, Readiness
from cnid.ipam import AddressPool, MemoryStore
from cnid.kube import VRF_NODE_CONFIGS
from testbed.domains import VRF42
from tests.unit.clusterapi import CRDS, cluster, conditions, nodeconfig

NODE = "n1"
DEFAULT = VRF42


async def start(
    tmp: Path, crd_paths: tuple[Path, ...], *configs: object, faults: int = 0
) -> NodeSettings:
    """The settings ``start_watches`` gives; the first ``faults`` requests
    of the watches fail (503)."""
    async with cluster(crd_paths=crd_paths) as (api, client, admin):
        for obj in configs:
            await admin.create(VRF_NODE_CONFIGS, obj)  # type: ignore[arg-type]
        api.fail_next(faults, status=503)
        member = ClusterMember(
            client=client,
            timings=MemberTimings(
                default_domain=DEFAULT, domain_interval=30.0, gc_interval=10.0, gc_grace=120.0
            ),
            node=NODE,
            readiness=Readiness(),
            registry=DomainRegistry(DEFAULT, static=False),
            pool=AddressPool(MemoryStore(), NODE),
            journal=Journal(tmp),
        )
        async with trio.open_nursery() as nursery:
            settings = await member.start_watches(nursery)
            await trio.sleep(0.1)
            if api.get_object("cni.pyroute2.org", "vrfnodeconfigs", "n1-vtep"):
                # the VRFNodeConfig controller runs: the daemon is starting
                assert conditions(api, "vrfnodeconfigs", "n1-vtep")["Ready"] == (
                    "False",
                    "Starting" if settings.source else "InvalidSpec",
                )
            nursery.cancel_scope.cancel()
    return settings


async def test_the_nodes_config_gives_its_start_up_settings(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    mine = nodeconfig("n1-vtep", NODE, router_id="192.0.2.1", interface="eth1", local="192.0.2.1")
    other = nodeconfig("n2-vtep", "n2", router_id="192.0.2.2")
    expected = NodeSettings(
        source="n1-vtep", router_id="192.0.2.1", host_if="eth1", local="192.0.2.1"
    )
    assert await start(tmp_path, (CRDS,), mine, other) == expected
    # the API answers late: the settings wait for the list
    assert await start(tmp_path, (CRDS,), mine, other, faults=12) == expected
    assert await start(tmp_path, (CRDS,), other) == NodeSettings()


async def test_a_bad_config_falls_back_to_server_ini_and_says_so(
    autojump_clock: trio.testing.MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crd = (CRDS / "vrfnodeconfigs.yaml").read_text()
    (tmp_path / "old.yaml").write_text(
        crd.replace('rule: "isIP(self) && ip(self).family() == 4"', 'rule: "true"')
    )
    bad = nodeconfig("n1-vtep", NODE, router_id="2001:db8::1")
    with caplog.at_level(logging.ERROR, logger="cnid.cluster"):
        settings = await start(tmp_path, (tmp_path / "old.yaml",), bad)
    assert settings == NodeSettings()
    assert "VRFNodeConfig n1-vtep: n1-vtep: routerId '2001:db8::1'" in caplog.text
    assert "using server.ini" in caplog.text
