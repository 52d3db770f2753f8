"""The VRFRoutingPolicy controller on trio's virtual clock, against the
emulated API server in-process (tests/unit/clusterapi.py) and the real host
integration over its tests' fake kernel (FakeHost): which policies the node
applies, the ``Accepted`` condition and this node's entry of
``status.nodes`` it writes, and API errors. Without the CRD in the cluster
(older manifests) the node runs without policies."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from cnid.cluster import RoutingPolicyController
from cnid.core import Domain, DomainLinks, DomainRegistry, KernelError, Readiness, VniAttachment
from cnid.dataplane import HostSettings
from cnid.hostintegration import HostIntegration
from cnid.ipam import AddressPool, MemoryStore
from cnid.kube import VRF_DOMAINS, VRF_ROUTING_POLICIES, Reflector, VRFDomain
from testbed.kubeapi import InProcessKubeApi
from tests.unit.clusterapi import (
    CRDS,
    Admin,
    cluster,
    conditions,
    policy,
    status_writes,
    vrfdomain,
)
from tests.unit.test_host_integration_controller import FakeHost

NODE = "n1"
GROUP = "cni.pyroute2.org"


def domain(name: str, vrf: int, prefix: str) -> Domain:
    """The Domain the VRFDomain controller makes of clusterapi.vrfdomain()."""
    return Domain(
        name=name,
        vrf=vrf,
        table=vrf + 10000,
        prefix=prefix,
        prefixlen=16,
        ipblocklen=26,
        attachments=(VniAttachment(type="l3vni", vni=vrf),),
    )


BLUE = domain("blue", 7, "10.1.0.0")


class Env:
    def __init__(self, api: InProcessKubeApi, admin: Admin, kernel: FakeHost) -> None:
        self.api = api
        self.admin = admin
        self.kernel = kernel
        self.host: HostIntegration

    def conditions(self, name: str) -> dict[str, tuple[str, str]]:
        return conditions(self.api, "vrfroutingpolicies", name)

    def mine(self, name: str) -> tuple[str, str]:
        """This node's (state, message) in the policy's status."""
        obj = self.api.get_object(GROUP, "vrfroutingpolicies", name)
        assert obj is not None
        entry: dict[str, Any] = obj.get("status", {}).get("nodes", {}).get(NODE, {})
        return entry.get("state", ""), entry.get("message", "")

    def applied(self) -> list[str]:
        """The policies in the plan applied to the node."""
        assert self.host.plan is not None
        return sorted({p.name for p in self.host.planned_policies})


@asynccontextmanager
async def running(*programmed: Domain, crd_paths: tuple[Path, ...] = (CRDS,)) -> AsyncIterator[Env]:
    """The controller over node n1, whose kernel has ``programmed`` domains."""
    async with cluster(crd_paths=crd_paths) as (api, client, admin):
        env = Env(api, admin, FakeHost())
        registry = DomainRegistry(BLUE, static=False)
        registry.set_domains(list(programmed))
        for d in programmed:
            registry.set_links(
                d.name,
                DomainLinks(
                    vrf=f"vrf-{d.vrf}", table=d.table, bridge=None, vxlan=None, router_mac=None
                ),
            )
        readiness = Readiness()
        readiness.expect("domains")
        readiness.set_ready("domains")
        env.host = HostIntegration(
            node=NODE,
            registry=registry,
            pool=AddressPool(MemoryStore(), NODE),
            readiness=readiness,
            settings=HostSettings(),
            interval=30.0,
            apply=env.kernel.apply,
        )
        domains: Reflector[VRFDomain] = Reflector(client, VRF_DOMAINS, name="vrfdomains")
        controller = RoutingPolicyController(
            client=client, node=NODE, host=env.host, domains=domains
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(domains.run)
            await nursery.start(env.host.run)
            await nursery.start(controller.run)
            yield env
            nursery.cancel_scope.cancel()


async def test_a_policy_is_accepted_applied_and_reported_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(BLUE) as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await env.admin.create(VRF_ROUTING_POLICIES, policy("to-blue", "blue", dst="10.1.0.0/24"))
        await trio.sleep(0.1)
        assert env.conditions("to-blue") == {"Accepted": ("True", "Valid")}
        assert env.applied() == ["to-blue"]
        assert [r.table for r in env.kernel.rules if r.dst == "10.1.0.0/24"] == [BLUE.table]
        assert env.mine("to-blue") == ("Ready", "")
        # the host re-applies every 30 s: nothing changed, nothing written
        writes = status_writes(env.api, "vrfroutingpolicies")
        await trio.sleep(300)
        assert status_writes(env.api, "vrfroutingpolicies") == writes
        # deleted: withdrawn from the node
        await env.admin.delete(VRF_ROUTING_POLICIES, "to-blue")
        await trio.sleep(0.1)
        assert env.applied() == []
        assert [r for r in env.kernel.rules if r.dst == "10.1.0.0/24"] == []


async def test_a_policy_waits_for_its_domain_and_is_applied_as_soon_as_it_exists(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(BLUE) as env:
        await env.admin.create(VRF_ROUTING_POLICIES, policy("to-blue", "blue", dst="10.1.0.0/24"))
        await trio.sleep(60)
        assert env.conditions("to-blue") == {"Accepted": ("False", "DomainNotFound")}
        assert env.mine("to-blue") == (
            "Refused",
            "VRFDomain blue does not exist or is not accepted",
        )
        assert env.applied() == []
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await trio.sleep(0.1)
        assert env.conditions("to-blue") == {"Accepted": ("True", "Valid")}
        assert env.mine("to-blue") == ("Ready", "")


async def test_a_policy_of_the_other_family_than_its_domain_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(BLUE) as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await env.admin.create(VRF_ROUTING_POLICIES, policy("v6", "blue", dst="2001:db8::/64"))
        await trio.sleep(0.1)
        assert env.conditions("v6") == {"Accepted": ("False", "InvalidSpec")}
        assert env.mine("v6")[0] == "Refused"
        assert "2001:db8::/64 is not of the family of VRFDomain blue" in env.mine("v6")[1]
        assert env.applied() == []


async def test_a_domain_accepted_but_not_programmed_here_is_this_nodes_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as env:  # blue exists in the cluster, not on this node
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await env.admin.create(VRF_ROUTING_POLICIES, policy("to-blue", "blue", dst="10.1.0.0/24"))
        await trio.sleep(0.1)
        assert env.conditions("to-blue") == {"Accepted": ("True", "Valid")}
        assert env.mine("to-blue") == ("Error", "VRFDomain blue is not programmed on this node")


async def test_a_policy_stays_pending_while_the_kernel_refuses_the_plan(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(BLUE) as env:
        env.kernel.fail = KernelError("the kernel says no")
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await env.admin.create(VRF_ROUTING_POLICIES, policy("to-blue", "blue", dst="10.1.0.0/24"))
        await trio.sleep(10)
        assert env.conditions("to-blue") == {"Accepted": ("True", "Valid")}
        assert env.mine("to-blue") == ("Pending", "not applied on this node yet")
        env.kernel.fail = None
        await trio.sleep(2.1)  # the host integration retries every 2 s
        assert env.mine("to-blue") == ("Ready", "")


async def test_failed_status_writes_are_retried_every_second(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(BLUE) as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await trio.sleep(0.1)
        await env.admin.create(VRF_ROUTING_POLICIES, policy("to-blue", "blue", dst="10.1.0.0/24"))
        env.api.fail_next(2, status=503)
        with caplog.at_level(logging.WARNING, logger="cnid.policies"):
            await trio.sleep(1.5)
            assert env.conditions("to-blue") == {}
            await trio.sleep(1.0)
        assert env.mine("to-blue") == ("Ready", "")
        assert caplog.text.count("routing policies: ") == 2
        # the node applied the policy meanwhile: the API's trouble is the status's only
        assert env.applied() == ["to-blue"]


async def test_without_the_crd_the_node_runs_without_policies(
    autojump_clock: trio.testing.MockClock,
) -> None:
    older = (CRDS / "vrfdomains.yaml",)
    async with running(BLUE, crd_paths=older) as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await trio.sleep(600)
        assert env.host.plan is not None and env.applied() == []
        assert env.kernel.tables() == {BLUE.table}
        # listed again with backoff, not in a tight loop
        lists = [r for r in env.api.requests if r.resource == "vrfroutingpolicies"]
        assert {r.code for r in lists} == {404}
        assert 20 <= len(lists) <= 60
