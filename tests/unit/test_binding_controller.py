"""The VRFDomainBinding controller on trio's virtual clock, against the
emulated API server in-process (tests/unit/clusterapi.py): which domain a
namespace's pods get, the ``Resolved`` condition it writes, how fast it
follows the domains and namespaces, and how it rides out API errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from cnid.cluster import BindingController
from cnid.core import DomainRegistry, TryAgainLater
from cnid.kube import (
    NAMESPACES,
    VRF_DOMAIN_BINDINGS,
    VRF_DOMAINS,
    KubeClient,
    Namespace,
    Reflector,
    VRFDomain,
    VRFDomainBinding,
)
from testbed.domains import VRF42
from testbed.kubeapi import InProcessKubeApi
from tests.unit.clusterapi import (
    Admin,
    binding,
    cluster,
    conditions,
    meta,
    status_writes,
    vrfdomain,
)

DEFAULT = VRF42


class Env:
    def __init__(self, api: InProcessKubeApi, client: KubeClient, admin: Admin) -> None:
        self.api = api
        self.admin = admin
        self.client = client
        self.registry = DomainRegistry(DEFAULT, static=False)
        self.domains: Reflector[VRFDomain] = Reflector(client, VRF_DOMAINS, name="vrfdomains")
        self.bindings: Reflector[VRFDomainBinding] = Reflector(
            client, VRF_DOMAIN_BINDINGS, name="vrfdomainbindings"
        )
        self.namespaces: Reflector[Namespace] = Reflector(client, NAMESPACES, name="namespaces")
        self.controller = BindingController(
            client=client,
            registry=self.registry,
            bindings=self.bindings,
            domains=self.domains,
            namespaces=self.namespaces,
        )

    def resolved(self, name: str) -> tuple[str, str]:
        return conditions(self.api, "vrfdomainbindings", name)["Resolved"]

    def message(self, name: str) -> str:
        obj = self.api.get_object("cni.pyroute2.org", "vrfdomainbindings", name)
        assert obj is not None
        [cond] = obj["status"]["conditions"]
        message: str = cond["message"]
        return message


@asynccontextmanager
async def running() -> AsyncIterator[Env]:
    async with cluster() as (api, client, admin):
        env = Env(api, client, admin)
        async with trio.open_nursery() as nursery:
            for r in (env.domains, env.bindings, env.namespaces):
                await nursery.start(r.run)
            await nursery.start(env.controller.run)
            yield env
            nursery.cancel_scope.cancel()


async def test_a_binding_sends_its_namespace_to_its_domain_and_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await env.admin.create(NAMESPACES, Namespace(metadata=meta("shop")))
        await env.admin.create(VRF_DOMAIN_BINDINGS, binding("shop-blue", "shop", "blue"))
        await trio.sleep(0.1)
        assert env.registry.bindings() == {"shop": "blue"}
        assert env.resolved("shop-blue") == ("True", "Resolved")
        assert env.message("shop-blue") == "namespace shop -> VRFDomain blue"


async def test_a_binding_waits_for_its_domain_and_resolves_as_soon_as_it_appears(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as env:
        await env.admin.create(NAMESPACES, Namespace(metadata=meta("shop")))
        await env.admin.create(VRF_DOMAIN_BINDINGS, binding("shop-blue", "shop", "blue"))
        await trio.sleep(30)
        assert env.resolved("shop-blue") == ("False", "DomainNotFound")
        # the namespace's pods wait rather than land in the default domain
        env.registry.set_domains([DEFAULT])
        with pytest.raises(TryAgainLater, match="bound to VRFDomain blue"):
            env.registry.for_namespace("shop")
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await trio.sleep(0.05)  # at once, not at a poll
        assert env.resolved("shop-blue") == ("True", "Resolved")
        # and back when the domain goes
        await env.admin.delete(VRF_DOMAINS, "blue")
        await trio.sleep(0.05)
        assert env.resolved("shop-blue") == ("False", "DomainNotFound")
        assert env.registry.bindings() == {"shop": "blue"}


async def test_a_missing_namespace_is_mentioned_until_it_is_created(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await env.admin.create(VRF_DOMAIN_BINDINGS, binding("shop-blue", "shop", "blue"))
        await trio.sleep(0.1)
        assert env.resolved("shop-blue") == ("True", "Resolved")
        assert env.message("shop-blue").endswith("(namespace shop does not exist yet)")
        await env.admin.create(NAMESPACES, Namespace(metadata=meta("shop")))
        await trio.sleep(0.05)
        assert env.message("shop-blue") == "namespace shop -> VRFDomain blue"


async def test_a_second_binding_of_a_namespace_is_a_conflict_and_the_first_keeps_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await env.admin.create(VRF_DOMAINS, vrfdomain("red", 8, prefix="10.2.0.0"))
        await env.admin.create(NAMESPACES, Namespace(metadata=meta("shop")))
        await env.admin.create(VRF_DOMAIN_BINDINGS, binding("a-blue", "shop", "blue"))
        await env.admin.create(VRF_DOMAIN_BINDINGS, binding("b-red", "shop", "red"))
        await trio.sleep(0.1)
        assert env.registry.bindings() == {"shop": "blue"}
        assert env.resolved("a-blue") == ("True", "Resolved")
        assert env.resolved("b-red") == ("False", "Conflict")
        assert env.message("b-red") == "namespace shop is bound by a-blue already"
        # the winner goes: the other one takes the namespace
        await env.admin.delete(VRF_DOMAIN_BINDINGS, "a-blue")
        await trio.sleep(0.05)
        assert env.registry.bindings() == {"shop": "red"}
        assert env.resolved("b-red") == ("True", "Resolved")


async def test_an_unchanged_verdict_is_not_written_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await env.admin.create(NAMESPACES, Namespace(metadata=meta("shop")))
        await env.admin.create(VRF_DOMAIN_BINDINGS, binding("shop-blue", "shop", "blue"))
        await trio.sleep(0.1)
        assert status_writes(env.api, "vrfdomainbindings") == 1
        # changes that do not change the verdict: no write (its own status
        # write comes back through the watch too)
        for name in ("a", "b", "c"):
            await env.admin.create(NAMESPACES, Namespace(metadata=meta(name)))
        await env.admin.create(VRF_DOMAINS, vrfdomain("red", 8, prefix="10.2.0.0"))
        await trio.sleep(600)
        assert status_writes(env.api, "vrfdomainbindings") == 1


async def test_a_failed_status_write_is_retried_every_second_until_the_api_answers(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with running() as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await env.admin.create(NAMESPACES, Namespace(metadata=meta("shop")))
        await trio.sleep(0.1)
        await env.admin.create(VRF_DOMAIN_BINDINGS, binding("shop-blue", "shop", "blue"))
        # the watches stay open: the next requests are the controller's writes
        env.api.fail_next(3, status=503)
        start = trio.current_time()
        with caplog.at_level(logging.WARNING, logger="cnid.bindings"):
            await trio.sleep(2.5)
            assert "Resolved" not in conditions(env.api, "vrfdomainbindings", "shop-blue")
            await trio.sleep(1)
        assert env.resolved("shop-blue") == ("True", "Resolved")
        failed = [
            r for r in env.api.requests if r.resource == "vrfdomainbindings" and r.code == 503
        ]
        assert len(failed) == 3
        assert trio.current_time() - start == pytest.approx(3.5)
        assert caplog.text.count("bindings: ") == 3 and "retrying" in caplog.text
        # the registry was set before the writes failed: pods were not held back
        assert env.registry.bindings() == {"shop": "blue"}


async def test_a_binding_gone_before_its_status_is_written_is_not_an_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running() as env:
        await env.admin.create(VRF_DOMAINS, vrfdomain("blue", 7))
        await trio.sleep(0.1)
        # the cache still has a binding the server deleted meanwhile
        ghost = binding("ghost", "other", "blue")
        env.bindings.items["ghost"] = ghost
        env.bindings.changes.bump()
        await trio.sleep(0.1)
        [request] = [r for r in env.api.requests if r.name == "ghost"]
        assert request.code == 404
        # and the controller goes on
        await env.admin.create(VRF_DOMAIN_BINDINGS, binding("shop-blue", "shop", "blue"))
        await trio.sleep(0.1)
        assert env.resolved("shop-blue") == ("True", "Resolved")
