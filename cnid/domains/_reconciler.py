"""The one domain reconciler: the kernel objects of the domains this node
should have, and none of ours that it should not.

Both modes feed it the domains they want: standalone, ``StaticDomains``
(server.ini's [default] domain, for the life of the process); with the
Kubernetes API, the VRFDomain controller (``cluster._domains``), with the
domains it accepted. A pass (``DomainReconciler.apply``):

* creates or adopts each wanted domain's VRF, bridges and VXLAN devices and
  records their names in the registry;
* removes the attachments (bridge and VXLAN device) a wanted domain no
  longer has;
* removes the kernel domains of ours that nobody wants (and the source
  does not ask to keep).

A domain the kernel refuses does not stop the others: its error comes back
by name, and the source decides what that means (a status, readiness).
``kernel`` is the seam to the kernel (the ``dataplane`` package by
default; a fake in the unit tests).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import NoReturn, Protocol

import trio

from .. import dataplane
from ..core import DomainLinks
from ..core._domains import Domain
from ..core._errors import CnidError, KernelError
from ..core._readiness import Readiness
from ..core._reconcile import reconcile_forever
from ..core._tenants import DomainRegistry
from ..dataplane import KernelDomain, Underlay

log = logging.getLogger("cnid.domains")


class DomainKernel(Protocol):
    """What the reconciler asks of the kernel."""

    async def ensure_domain(self, domain: Domain, underlay: Underlay) -> DomainLinks: ...

    async def list_domains(self) -> list[KernelDomain]: ...

    async def remove_attachments(self, vnis: list[int]) -> None: ...

    async def remove_kernel_domain(self, found: KernelDomain) -> None: ...


def failures(errors: dict[str, str]) -> str:
    """The domains that failed and why, as one line ("" if none did)."""
    return "; ".join(f"{n}: {e}" for n, e in sorted(errors.items()) if e)


class DomainReconciler:
    def __init__(
        self,
        *,
        registry: DomainRegistry,
        underlay: Underlay,
        kernel: DomainKernel = dataplane,
    ) -> None:
        self.registry = registry
        self.underlay = underlay
        self.kernel = kernel

    async def apply(self, wanted: list[Domain], keep: Collection[str] = ()) -> dict[str, str]:
        """One pass; each wanted domain's error ("" when it is in place).
        Kernel domains of ours named neither in ``wanted`` nor in ``keep``
        are removed. CnidError when the kernel cannot even be read."""
        errors = {d.name: await self._ensure(d) for d in wanted}
        found = await self.kernel.list_domains()
        by_name = {d.name: d for d in wanted}
        for kd in found:
            domain = by_name.get(kd.name)
            if domain is None:
                if kd.name not in keep:
                    log.info("domain %s is not wanted any more: removing vrf-%d", kd.name, kd.vrf)
                    await self.kernel.remove_kernel_domain(kd)
                continue
            have = {a.vni for a in domain.attachments}
            dropped = [vni for vni in kd.vnis if vni not in have]
            if dropped and not errors[domain.name]:
                log.info("domain %s: removing dropped attachments %s", domain.name, dropped)
                try:
                    await self.kernel.remove_attachments(dropped)
                except CnidError as exc:
                    log.error("domain %s: %s", domain.name, exc.msg)
                    errors[domain.name] = exc.msg
        return errors

    async def _ensure(self, domain: Domain) -> str:
        try:
            links = await self.kernel.ensure_domain(domain, self.underlay)
        except CnidError as exc:
            log.error("domain %s: %s", domain.name, exc.msg)
            return exc.msg
        if self.registry.links(domain.name) is None:
            log.info(
                "domain %s: vrf %d table %d ready on this node",
                domain.name,
                domain.vrf,
                domain.table,
            )
        self.registry.set_links(domain.name, links)
        return ""

    async def remove(self, name: str) -> None:
        """Remove the kernel objects of the domain of this name, if any."""
        for found in await self.kernel.list_domains():
            if found.name == name:
                await self.kernel.remove_kernel_domain(found)


class StaticDomains:
    """Standalone: the registry's domains (server.ini's), kept in place
    every ``interval`` seconds and retried with backoff while the kernel
    refuses them."""

    def __init__(
        self,
        *,
        reconciler: DomainReconciler,
        registry: DomainRegistry,
        readiness: Readiness,
        interval: float,
    ) -> None:
        self.reconciler = reconciler
        self.registry = registry
        self.readiness = readiness
        self.interval = interval

    async def reconcile(self) -> None:
        problem = failures(await self.reconciler.apply(self.registry.all()))
        if problem:
            raise KernelError(problem)

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Reports started after the first pass, successful or not."""
        await reconcile_forever(
            self.reconcile,
            name="domains",
            readiness=self.readiness,
            interval=self.interval,
            logger=log,
            task_status=task_status,
        )
