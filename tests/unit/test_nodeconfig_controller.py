"""The VRFNodeConfig controller on trio's virtual clock, against the emulated
API server in-process (tests/unit/clusterapi.py): which config is this
node's, the ``Accepted`` and ``Ready`` conditions it writes as the daemon
starts, runs, and finds its config changed under it, and API errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from cnid.cluster import NodeConfigController, NodeSettings
from cnid.kube import VRF_NODE_CONFIGS, Reflector, VRFNodeConfig
from testbed.kubeapi import InProcessKubeApi
from tests.unit.clusterapi import CRDS, Admin, cluster, conditions, nodeconfig, status_writes

NODE = "n1"


class Env:
    def __init__(
        self,
        api: InProcessKubeApi,
        admin: Admin,
        configs: Reflector[VRFNodeConfig],
        controller: NodeConfigController,
    ) -> None:
        self.api = api
        self.admin = admin
        self.configs = configs
        self.controller = controller

    def conditions(self, name: str) -> dict[str, tuple[str, str]]:
        return conditions(self.api, "vrfnodeconfigs", name)

    def message(self, name: str, type_: str) -> str:
        obj = self.api.get_object("cni.pyroute2.org", "vrfnodeconfigs", name)
        assert obj is not None
        [cond] = [c for c in obj["status"]["conditions"] if c["type"] == type_]
        message: str = cond["message"]
        return message


@asynccontextmanager
async def running(
    *configs: VRFNodeConfig, crd_paths: tuple[Path, ...] = (CRDS,)
) -> AsyncIterator[Env]:
    async with cluster(crd_paths=crd_paths) as (api, client, admin):
        for obj in configs:
            await admin.create(VRF_NODE_CONFIGS, obj)
        reflector: Reflector[VRFNodeConfig] = Reflector(
            client, VRF_NODE_CONFIGS, name="vrfnodeconfigs"
        )
        controller = NodeConfigController(client=client, node=NODE, configs=reflector)
        async with trio.open_nursery() as nursery:
            await nursery.start(reflector.run)
            await nursery.start(controller.run)
            await reflector.synced.wait()
            yield Env(api, admin, reflector, controller)
            nursery.cancel_scope.cancel()


MINE = nodeconfig("n1-vtep", NODE, router_id="192.0.2.1", interface="eth1", local="192.0.2.1")


async def test_the_daemon_starting_then_running_with_its_config_is_reported(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(MINE, nodeconfig("n2-vtep", "n2", router_id="192.0.2.2")) as env:
        settings, problem = env.controller.current()
        assert (settings, problem) == (
            NodeSettings(
                source="n1-vtep", router_id="192.0.2.1", host_if="eth1", local="192.0.2.1"
            ),
            "",
        )
        await trio.sleep(0.1)
        assert env.conditions("n1-vtep") == {
            "Accepted": ("True", "Valid"),
            "Ready": ("False", "Starting"),
        }
        # another node's config is not this node's to report on
        assert env.conditions("n2-vtep") == {}
        # the daemon found its underlay: Ready within the 2 s re-check (no event says so)
        env.controller.started_with(settings)
        await trio.sleep(2.05)
        assert env.conditions("n1-vtep")["Ready"] == ("True", "Applied")
        assert env.message("n1-vtep", "Ready") == "VTEP eth1 192.0.2.1"
        writes = status_writes(env.api, "vrfnodeconfigs")
        await trio.sleep(600)  # re-checked every 2 s, rewritten only on a change
        assert status_writes(env.api, "vrfnodeconfigs") == writes == 2


async def test_a_changed_config_asks_for_a_restart_and_a_reverted_one_is_applied_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(MINE) as env:
        env.controller.started_with(env.controller.current()[0])
        await trio.sleep(2.05)
        assert env.conditions("n1-vtep")["Ready"] == ("True", "Applied")
        await env.admin.patch(VRF_NODE_CONFIGS, "n1-vtep", {"spec": {"routerId": "192.0.2.9"}})
        await trio.sleep(0.05)  # at once: the watch says so
        assert env.conditions("n1-vtep") == {
            "Accepted": ("True", "Valid"),
            "Ready": ("False", "RestartRequired"),
        }
        # the running settings did not move
        assert env.controller.running is not None
        assert env.controller.running.router_id == "192.0.2.1"
        await env.admin.patch(VRF_NODE_CONFIGS, "n1-vtep", {"spec": {"routerId": "192.0.2.1"}})
        await trio.sleep(0.05)
        assert env.conditions("n1-vtep")["Ready"] == ("True", "Applied")


async def test_an_underlay_the_node_cannot_use_is_reported_until_it_starts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(MINE) as env:
        env.controller.underlay_failed("eth1 does not exist")
        await trio.sleep(2.05)
        assert env.conditions("n1-vtep")["Ready"] == ("False", "InterfaceError")
        assert env.message("n1-vtep", "Ready") == "eth1 does not exist"
        env.controller.started_with(env.controller.current()[0])
        await trio.sleep(2.05)
        assert env.conditions("n1-vtep")["Ready"] == ("True", "Applied")


async def test_a_second_config_of_the_node_is_a_conflict_and_not_used(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(MINE) as env:
        await env.admin.create(
            VRF_NODE_CONFIGS, nodeconfig("z-n1-other", NODE, router_id="192.0.2.7")
        )
        await trio.sleep(0.05)
        assert env.controller.current()[0].source == "n1-vtep"
        assert env.conditions("z-n1-other") == {
            "Accepted": ("False", "Conflict"),
            "Ready": ("False", "Conflict"),
        }
        assert env.message("z-n1-other", "Accepted") == "VRFNodeConfig n1-vtep configures node n1"
        assert env.conditions("n1-vtep")["Accepted"] == ("True", "Valid")


async def test_a_config_the_schema_let_through_but_the_node_cannot_read_is_invalid(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # an older CRD without the routerId rule stored it
    crd = (CRDS / "vrfnodeconfigs.yaml").read_text()
    rule = 'rule: "isIP(self) && ip(self).family() == 4"'
    assert crd.count(rule) == 1
    (tmp_path / "old.yaml").write_text(crd.replace(rule, 'rule: "true"'))
    bad = nodeconfig("n1-vtep", NODE, router_id="2001:db8::1")
    async with running(bad, crd_paths=(tmp_path / "old.yaml",)) as env:
        await trio.sleep(0.1)
        assert env.conditions("n1-vtep") == {
            "Accepted": ("False", "InvalidSpec"),
            "Ready": ("False", "InvalidSpec"),
        }
        assert env.message("n1-vtep", "Ready") == (
            "n1-vtep: routerId '2001:db8::1' is not an IPv4 address"
        )
        assert env.controller.current() == (
            NodeSettings(source="n1-vtep"),
            "n1-vtep: routerId '2001:db8::1' is not an IPv4 address",
        )


async def test_failed_status_writes_are_retried_every_second(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running() as env:
        await trio.sleep(0.1)
        await env.admin.create(VRF_NODE_CONFIGS, MINE)
        env.api.fail_next(2, status=500)
        with caplog.at_level(logging.WARNING, logger="cnid.nodeconfig"):
            await trio.sleep(1.5)
            assert env.conditions("n1-vtep") == {}
            await trio.sleep(1.0)
        assert env.conditions("n1-vtep")["Accepted"] == ("True", "Valid")
        assert caplog.text.count("VRFNodeConfig: ") == 2
        codes = [
            r.code for r in env.api.requests if r.resource == "vrfnodeconfigs" and r.subresource
        ]
        assert codes == [500, 500, 200]
