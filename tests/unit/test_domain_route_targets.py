"""A VRFDomain's route targets through the VRFDomain controller, on trio's
virtual clock against the emulated API server in-process (with the
project's CRDs, so admission runs the schema) and a fake kernel: a target
the schema lets through but no node can use (AS 0, a number too large for
its layout) gets ``Accepted=False`` naming the domain and the value, and
nothing of the domain reaches the kernel or the registry (which is what the
EVPN controller announces and imports for); fixing the CR clears it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import trio
import trio.testing

from cnid.cluster import DomainController
from cnid.core import ConfigError, DomainRegistry, Readiness
from cnid.daemon import parse_config
from cnid.domains import DomainReconciler
from cnid.ipam import AddressPool, MemoryStore
from cnid.kube import NODES, VRF_DOMAINS, Node, Reflector, VRFDomain
from testbed.kubeapi import InProcessKubeApi
from tests.unit.clusterapi import CNI_GROUP, Admin, cluster, vrfdomain
from tests.unit.test_domain_reconciler import UNDERLAY, FakeKernel

NODE = "n1"


class Env:
    def __init__(self, api: InProcessKubeApi, admin: Admin) -> None:
        self.api = api
        self.admin = admin
        self.kernel = FakeKernel()
        self.registry = DomainRegistry(parse_config("").default.domain(), static=False)

    def accepted(self, name: str) -> dict[str, Any]:
        obj = self.api.get_object(CNI_GROUP, "vrfdomains", name)
        assert obj is not None
        (cond,) = [c for c in obj["status"]["conditions"] if c["type"] == "Accepted"]
        return {k: cond[k] for k in ("status", "reason", "message")}

    async def set_targets(self, name: str, **spec: Any) -> None:
        await self.admin.patch(VRF_DOMAINS, name, {"spec": spec})


@asynccontextmanager
async def running(*objs: VRFDomain, ini: str = "") -> AsyncIterator[Env]:
    """The controller of node n1 (server.ini ``ini``), started once ``objs``
    are stored."""
    async with cluster() as (api, client, admin):
        env = Env(api, admin)
        for obj in objs:
            await admin.create(VRF_DOMAINS, obj)
        domains: Reflector[VRFDomain] = Reflector(client, VRF_DOMAINS, name="vrfdomains")
        nodes: Reflector[Node] = Reflector(client, NODES, name="nodes")
        controller = DomainController(
            client=client,
            node=NODE,
            default=parse_config(ini).default.domain(),
            registry=env.registry,
            pool=AddressPool(MemoryStore(), NODE),
            readiness=Readiness(),
            domains=domains,
            nodes=nodes,
            reconciler=DomainReconciler(
                registry=env.registry, underlay=UNDERLAY, kernel=env.kernel
            ),
            interval=30.0,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(domains.run)
            await nursery.start(nodes.run)
            await nursery.start(controller.run)
            yield env
            nursery.cancel_scope.cancel()


def with_targets(obj: VRFDomain, **spec: Any) -> VRFDomain:
    return msgspec.structs.replace(obj, spec=msgspec.structs.replace(obj.spec, **spec))


async def test_an_unusable_route_target_is_refused_and_reaches_nothing_until_fixed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    green = vrfdomain("green", 8)  # a valid domain next to it is not affected
    # "0:42" and "65000L:70000" pass the schema's pattern; no node can use
    # them (RFC 7607: AS 0; a 4-octet AS leaves 2 octets for 70000)
    bad = with_targets(
        vrfdomain("blue", 7),
        import_route_targets=["65000:42", "0:42"],
        export_route_targets=["65000:42"],
    )
    async with running(green, bad) as env:
        await trio.sleep(1)
        assert env.accepted("blue") == {
            "status": "False",
            "reason": "InvalidSpec",
            "message": "domain blue: importRouteTargets: route target '0:42': "
            "AS 0 is reserved (RFC 7607)",
        }
        assert set(env.kernel.domains) == {"green"}
        assert [d.name for d in env.registry.all()] == ["green"]

        await env.set_targets("blue", importRouteTargets=["65000:42"])
        await trio.sleep(1)
        assert env.accepted("blue")["status"] == "True"
        assert set(env.kernel.domains) == {"blue", "green"}
        (blue,) = [d for d in env.registry.all() if d.name == "blue"]
        assert blue.import_route_targets == ("65000:42",)
        assert blue.export_route_targets == ("65000:42",)
        assert [str(t) for t in blue.targets(65000).imports] == ["65000:42"]

        # edited into an unusable export target: refused again, gone from
        # the registry (so from BGP); its kernel objects stay for its pods
        await env.set_targets("blue", exportRouteTargets=["65000L:70000"])
        await trio.sleep(1)
        refused = env.accepted("blue")
        assert (refused["status"], refused["reason"]) == ("False", "InvalidSpec")
        assert "exportRouteTargets" in refused["message"]
        assert "65000L:70000" in refused["message"]
        assert [d.name for d in env.registry.all()] == ["green"]
        assert set(env.kernel.domains) == {"blue", "green"}
        await env.set_targets("blue", exportRouteTargets=[], routeTargetDerivation="rfc8365")
        await trio.sleep(1)
        assert env.accepted("blue")["status"] == "True"
        (blue,) = [d for d in env.registry.all() if d.name == "blue"]
        assert blue.route_target_derivation == "rfc8365"


def test_domain_validation_names_the_domain_the_field_and_the_value() -> None:
    base = parse_config("").default.domain()
    for field, value, words in (
        ("import_route_targets", ("65000:42", "blue:42"), ("importRouteTargets", "'blue:42'")),
        ("import_route_targets", ("*:4294967296",), ("importRouteTargets", "*:4294967296")),
        ("export_route_targets", ("*:42",), ("exportRouteTargets", "'*:42'")),
        ("export_route_targets", ("10.0.0.1:65536",), ("exportRouteTargets", "65536")),
        ("route_target_derivation", "cisco", ("routeTargetDerivation", "'cisco'")),
    ):
        domain = msgspec.structs.replace(base, **{field: value})
        with pytest.raises(ConfigError) as info:
            domain.validated()
        assert info.value.msg.startswith("domain vrf-42: "), info.value.msg
        assert all(w in info.value.msg for w in words), info.value.msg
    ok = msgspec.structs.replace(
        base, import_route_targets=("*:42", "192.0.2.1:7"), export_route_targets=("65000:42",)
    )
    assert ok.validated() is ok


def test_the_default_domain_of_server_ini_takes_route_targets() -> None:
    config = parse_config(
        "[default]\nimport_route_targets = 65000:42, *:4242\n"
        "export_route_targets = 65000:42\nroute_target_derivation = rfc8365\n"
    )
    domain = config.default.domain()
    assert domain.import_route_targets == ("65000:42", "*:4242")
    assert domain.export_route_targets == ("65000:42",)
    assert domain.route_target_derivation == "rfc8365"
    assert parse_config("").default.domain().import_route_targets == ()
    with pytest.raises(ConfigError, match=r"\[default\] route_target_derivation = 'x'"):
        parse_config("[default]\nroute_target_derivation = x\n")
    with pytest.raises(ConfigError, match="importRouteTargets: route target '0:1'"):
        parse_config("[default]\nimport_route_targets = 0:1\n")


async def test_the_default_domain_is_created_with_the_route_targets_of_server_ini(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ini = "[default]\nimport_route_targets = 65000:42 *:42\nexport_route_targets = 65000:42\n"
    async with running(ini=ini) as env:
        await trio.sleep(1)
        obj = env.api.get_object(CNI_GROUP, "vrfdomains", "vrf-42")
        assert obj is not None
        assert obj["spec"]["importRouteTargets"] == ["65000:42", "*:42"]
        assert obj["spec"]["exportRouteTargets"] == ["65000:42"]
        assert env.accepted("vrf-42")["status"] == "True"
        (domain,) = env.registry.all()
        assert domain.import_route_targets == ("65000:42", "*:42")
