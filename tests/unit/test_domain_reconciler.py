"""The one domain reconciler and its standalone source, against a fake
kernel on trio's virtual clock."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from cnid.core import Domain, DomainLinks, DomainRegistry, KernelError, Readiness, VniAttachment
from cnid.dataplane import KernelDomain, Underlay
from cnid.domains import DomainReconciler, StaticDomains

UNDERLAY = Underlay(ifname="eth0", mtu=1500, address="192.0.2.1")


def domain(name: str = "vrf-42", vrf: int = 42, vnis: tuple[int, ...] = (4242, 4200)) -> Domain:
    return Domain(
        name=name,
        vrf=vrf,
        table=vrf,
        prefix="10.42.0.0",
        prefixlen=16,
        ipblocklen=26,
        attachments=(
            VniAttachment(type="l2vni", vni=vnis[0]),
            *(VniAttachment(type="l3vni", vni=v) for v in vnis[1:]),
        ),
    )


class FakeKernel:
    """The kernel's domains of ours, by name; ``refuse`` names the domains
    whose creation fails (with the message), ``calls`` what was asked."""

    def __init__(self) -> None:
        self.domains: dict[str, KernelDomain] = {}
        self.refuse: dict[str, str] = {}
        self.calls: list[tuple[str, float]] = []

    async def ensure_domain(self, d: Domain, underlay: Underlay) -> DomainLinks:
        self.calls.append((f"ensure {d.name}", trio.current_time()))
        if d.name in self.refuse:
            raise KernelError(self.refuse[d.name])
        old = self.domains.get(d.name)
        vnis = {a.vni for a in d.attachments} | set(old.vnis if old else ())
        self.domains[d.name] = KernelDomain(d.name, d.vrf, d.table, tuple(sorted(vnis)))
        pod = d.attachments[0].vni
        return DomainLinks(f"vrf-{d.vrf}", d.table, f"br-{pod}", f"vxlan-{pod}", None)

    async def list_domains(self) -> list[KernelDomain]:
        return list(self.domains.values())

    async def remove_attachments(self, vnis: list[int]) -> None:
        self.calls.append((f"remove attachments {vnis}", trio.current_time()))
        for name, kd in self.domains.items():
            self.domains[name] = KernelDomain(
                kd.name, kd.vrf, kd.table, tuple(v for v in kd.vnis if v not in vnis)
            )

    async def remove_kernel_domain(self, found: KernelDomain) -> None:
        self.calls.append((f"remove {found.name}", trio.current_time()))
        self.domains.pop(found.name, None)

    def ensured(self, name: str) -> list[float]:
        return [t for what, t in self.calls if what == f"ensure {name}"]


def setup(*domains: Domain) -> tuple[FakeKernel, DomainRegistry, DomainReconciler]:
    kernel = FakeKernel()
    registry = DomainRegistry(domains[0], static=True)
    registry.set_domains(list(domains))
    return kernel, registry, DomainReconciler(registry=registry, underlay=UNDERLAY, kernel=kernel)


async def test_apply_programs_records_links_and_reports_each_domains_error() -> None:
    a, b = domain(), domain("blue", 7, (700, 701))
    kernel, registry, reconciler = setup(a, b)
    kernel.refuse["blue"] = "vrf-7 exists and is not ours"
    errors = await reconciler.apply([a, b])
    assert errors == {"vrf-42": "", "blue": "vrf-7 exists and is not ours"}
    links = registry.links("vrf-42")
    assert links is not None and links.bridge == "br-4242"
    assert registry.links("blue") is None
    assert set(kernel.domains) == {"vrf-42"}


async def test_apply_removes_dropped_attachments_and_unwanted_domains_but_keeps_kept_ones() -> None:
    a = domain()
    kernel, _, reconciler = setup(a)
    kernel.domains["old"] = KernelDomain("old", 9, 9, (900,))
    kernel.domains["refused-now"] = KernelDomain("refused-now", 8, 8, (800,))
    kernel.domains["vrf-42"] = KernelDomain("vrf-42", 42, 42, (4200, 4242, 4299))
    assert await reconciler.apply([a], keep={"refused-now"}) == {"vrf-42": ""}
    assert kernel.domains == {
        "vrf-42": KernelDomain("vrf-42", 42, 42, (4200, 4242)),
        "refused-now": KernelDomain("refused-now", 8, 8, (800,)),
    }
    assert [what for what, _ in kernel.calls] == [
        "ensure vrf-42",
        "remove old",
        "remove attachments [4299]",
    ]


async def test_a_refused_domain_keeps_its_attachments() -> None:
    a = domain()
    kernel, _, reconciler = setup(a)
    kernel.domains["vrf-42"] = KernelDomain("vrf-42", 42, 42, (4200, 4242, 4299))
    kernel.refuse["vrf-42"] = "no"
    assert await reconciler.apply([a]) == {"vrf-42": "no"}
    assert kernel.domains["vrf-42"].vnis == (4200, 4242, 4299)


async def test_remove_takes_a_domain_by_name() -> None:
    kernel, _, reconciler = setup(domain())
    kernel.domains["gone"] = KernelDomain("gone", 9, 9, (900,))
    await reconciler.remove("gone")
    await reconciler.remove("never-there")
    assert "gone" not in kernel.domains


# -- standalone: the static source ------------------------------------------------------


async def test_standalone_retries_with_backoff_while_the_kernel_refuses_then_keeps_the_interval(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    a = domain()
    kernel, registry, reconciler = setup(a)
    readiness = Readiness()
    readiness.expect("domains")
    kernel.refuse["vrf-42"] = "RTNETLINK: Operation not supported"
    static = StaticDomains(
        reconciler=reconciler, registry=registry, readiness=readiness, interval=10.0
    )
    with caplog.at_level(logging.ERROR, logger="cnid.domains"):
        async with trio.open_nursery() as nursery:
            await nursery.start(static.run)
            # started after the first (failed) attempt; not ready, saying why
            assert kernel.ensured("vrf-42") == [0.0]
            assert readiness.snapshot()["domains"] == "vrf-42: RTNETLINK: Operation not supported"
            await trio.sleep(1 + 2 + 4 - 0.5)
            del kernel.refuse["vrf-42"]
            await trio.sleep(0.5 + 30.25)
            nursery.cancel_scope.cancel()
    assert kernel.ensured("vrf-42") == pytest.approx([0, 1, 3, 7, 17, 27, 37])
    assert readiness.snapshot()["domains"] == "ready"
    assert registry.links("vrf-42") is not None
    assert "domains: vrf-42: RTNETLINK: Operation not supported; retrying in 4.0s" in caplog.text


async def test_standalone_repairs_the_kernel_each_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = domain()
    kernel, registry, reconciler = setup(a)
    readiness = Readiness()
    static = StaticDomains(
        reconciler=reconciler, registry=registry, readiness=readiness, interval=5.0
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(static.run)
        # Someone deletes the VRF and leaves a stray domain of ours behind.
        kernel.domains.clear()
        kernel.domains["stray"] = KernelDomain("stray", 9, 9, (900,))
        await trio.sleep(5.5)
        assert set(kernel.domains) == {"vrf-42"}
        nursery.cancel_scope.cancel()
    assert readiness.ready


async def test_standalone_drops_an_attachment_removed_from_the_config() -> None:
    """server.ini edited across a restart: the attachment it no longer has goes."""
    kernel, registry, reconciler = setup(domain(vnis=(4242, 4200)))
    kernel.domains["vrf-42"] = KernelDomain("vrf-42", 42, 42, (4200, 4242, 4300))
    static = StaticDomains(
        reconciler=reconciler, registry=registry, readiness=Readiness(), interval=5.0
    )
    await static.reconcile()
    assert kernel.domains["vrf-42"].vnis == (4200, 4242)
