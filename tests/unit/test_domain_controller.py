"""The VRFDomain controller (the Kubernetes source of the domain
reconciler) against a fake API server and a fake kernel, on trio's
virtual clock: the reflector's cache is filled by the test."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trio.testing

from cnid.cluster import DomainController, node_finalizer
from cnid.core import DomainRegistry, Readiness
from cnid.daemon import parse_config
from cnid.dataplane import KernelDomain
from cnid.domains import DomainReconciler
from cnid.ipam import AddressPool, MemoryStore
from cnid.kube import (
    NODES,
    VRF_DOMAINS,
    AttachmentSpec,
    KubeClient,
    KubeConfig,
    Node,
    ObjectMeta,
    Reflector,
    VRFDomain,
    VRFDomainSpec,
)
from tests.unit.test_domain_reconciler import UNDERLAY, FakeKernel

NODE = "n1"


def vrfdomain(name: str, vrf: int, *vnis: int, rv: str = "1") -> VRFDomain:
    return VRFDomain(
        metadata=ObjectMeta(
            name=name, creation_timestamp="2026-01-01T00:00:00Z", resource_version=rv
        ),
        spec=VRFDomainSpec(
            vrf=vrf,
            table=vrf + 10000,
            prefix="10.1.0.0",
            prefixlen=16,
            ipblocklen=26,
            attachments=[
                AttachmentSpec(type="l2vni" if i == 0 else "l3vni", vni=v)
                for i, v in enumerate(vnis)
            ],
        ),
    )


class FakeApi:
    """Answers the controller's writes: merge patches applied to the
    objects it was given, creations recorded."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.rstrip("/").split("/")
        body = json.loads(request.content) if request.content else {}
        if request.method == "POST":
            self.created.append(body["metadata"]["name"])
            return httpx.Response(201, json=body)
        if request.method == "PATCH":
            name = parts[-2] if parts[-1] == "status" else parts[-1]
            self.patches.append((name, body))
            obj = self.objects[name]
            for key, value in body.get("metadata", {}).items():
                if key != "resourceVersion":
                    obj["metadata"][key] = value
            if "status" in body:
                obj["status"] = body["status"]
            return httpx.Response(200, json=obj)
        return httpx.Response(404, json={"kind": "Status", "code": 404, "reason": "NotFound"})


class Env:
    def __init__(self, client: KubeClient, api: FakeApi) -> None:
        self.api = api
        self.kernel = FakeKernel()
        self.readiness = Readiness()
        self.registry = DomainRegistry(parse_config("").default.domain(), static=False)
        self.domains: Reflector[VRFDomain] = Reflector(client, VRF_DOMAINS, name="vrfdomains")
        self.nodes: Reflector[Node] = Reflector(client, NODES, name="nodes")
        self.controller = DomainController(
            client=client,
            node=NODE,
            default=parse_config("").default.domain(),
            registry=self.registry,
            pool=AddressPool(MemoryStore(), NODE),
            readiness=self.readiness,
            domains=self.domains,
            nodes=self.nodes,
            reconciler=DomainReconciler(
                registry=self.registry, underlay=UNDERLAY, kernel=self.kernel
            ),
            interval=30.0,
        )

    def put(self, obj: VRFDomain) -> None:
        """The watch delivers ``obj`` (the cache changes and the API has it)."""
        self.api.objects[obj.metadata.name] = msgspec.to_builtins(obj)
        self.domains.items[obj.metadata.name] = obj
        self.domains.synced.set()
        self.domains.changes.bump()


@pytest.fixture
async def env() -> Any:
    api = FakeApi()
    async with KubeClient(
        KubeConfig(server="https://k8s.test"),
        retry_deadline=0,
        transport=httpx.MockTransport(api),
    ) as client:
        yield Env(client, api)


async def test_domains_are_programmed_reported_and_reprogrammed_on_change(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    env.put(vrfdomain("blue", 7, 700, 701))
    async with trio.open_nursery() as nursery:
        await nursery.start(env.controller.run)
        await trio.sleep(0.5)
        assert env.kernel.domains["blue"].vnis == (700, 701)
        assert [d.name for d in env.registry.all()] == ["blue"]
        assert env.readiness.snapshot()["domains"] == "ready"
        assert env.api.objects["blue"]["metadata"]["finalizers"] == [node_finalizer(NODE)]
        assert env.api.objects["blue"]["status"]["nodes"][NODE]["state"] == "Ready"
        # An attachment dropped from the spec: reprogrammed at once, not at the interval.
        edited = vrfdomain("blue", 7, 700, rv="2")
        env.put(
            msgspec.structs.replace(
                edited,
                metadata=msgspec.structs.replace(
                    edited.metadata, finalizers=env.domains.items["blue"].metadata.finalizers
                ),
            )
        )
        await trio.sleep(0.5)
        assert env.kernel.domains["blue"].vnis == (700,)
        assert env.kernel.ensured("blue") == [0.0, pytest.approx(0.5)]
        nursery.cancel_scope.cancel()


async def test_a_refused_domain_is_retried_with_backoff_and_reported(
    env: Env, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    env.put(vrfdomain("blue", 7, 700))
    env.kernel.refuse["blue"] = "vrf-7 exists and is not ours"
    with caplog.at_level(logging.ERROR, logger="cnid.domains"):
        async with trio.open_nursery() as nursery:
            await nursery.start(env.controller.run)
            await trio.sleep(3.5)
            assert env.readiness.snapshot()["domains"] == "blue: vrf-7 exists and is not ours"
            assert env.registry.all() == []
            mine = env.api.objects["blue"]["status"]["nodes"][NODE]
            assert (mine["state"], mine["message"]) == ("Error", "vrf-7 exists and is not ours")
            del env.kernel.refuse["blue"]
            await trio.sleep(4.5)
            assert env.readiness.snapshot()["domains"] == "ready"
            nursery.cancel_scope.cancel()
    # 1 s, 2 s, 4 s after the first refusal, then the interval
    assert env.kernel.ensured("blue") == pytest.approx([0, 1, 3, 7])
    assert "domains: blue: vrf-7 exists and is not ours; retrying in 2.0s" in caplog.text


async def test_a_kernel_domain_nobody_wants_goes_and_no_domain_at_all_creates_the_default(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    env.kernel.domains["old"] = KernelDomain("old", 9, 9, (900,))
    env.domains.synced.set()
    async with trio.open_nursery() as nursery:
        await nursery.start(env.controller.run)
        await trio.sleep(0.5)
        # Nothing listed: the default is created, the node waits for it.
        assert env.api.created == ["vrf-42"]
        assert "being created" in env.readiness.snapshot()["domains"]
        env.put(vrfdomain("blue", 7, 700))
        await trio.sleep(0.5)
        assert set(env.kernel.domains) == {"blue"}
        assert env.readiness.snapshot()["domains"] == "ready"
        nursery.cancel_scope.cancel()
