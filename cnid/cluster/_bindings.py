"""The VRFDomainBinding controller: namespace -> domain, and the binding's
``Resolved`` condition.

Pods of a namespace without a binding go to the default domain. A binding
whose domain is missing (or refused) is reported, never crashed on, and its
namespace's pods wait (TryAgainLater) rather than land in another tenant's
network. Two bindings of one namespace: the older wins, the other is
reported as a conflict.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import trio

from ..core._errors import CnidError
from ..core._tenants import DomainRegistry
from ..kube import (
    VRF_DOMAIN_BINDINGS,
    KubeClient,
    Namespace,
    NotFound,
    Reflector,
    VRFDomain,
    VRFDomainBinding,
)
from ._conditions import same_conditions, set_condition
from ._domains import accept

log = logging.getLogger("cnid.bindings")


def resolve(
    bindings: list[VRFDomainBinding], accepted: set[str]
) -> tuple[dict[str, str], dict[str, tuple[bool, str, str]]]:
    """Namespace -> domain for the bindings that win, and per binding its
    (resolved, reason, message)."""
    table: dict[str, str] = {}
    verdicts: dict[str, tuple[bool, str, str]] = {}
    owner: dict[str, str] = {}
    for b in sorted(bindings, key=lambda b: (b.metadata.creation_timestamp or "", b.metadata.name)):
        name = b.metadata.name
        ns, dom = b.spec.namespace_ref.name, b.spec.vrf_domain_ref.name
        if not ns or not dom:
            verdicts[name] = (
                False,
                "InvalidSpec",
                "namespaceRef.name and vrfDomainRef.name are required",
            )
            continue
        if ns in owner:
            verdicts[name] = (False, "Conflict", f"namespace {ns} is bound by {owner[ns]} already")
            continue
        owner[ns] = name
        table[ns] = dom
        if dom in accepted:
            verdicts[name] = (True, "Resolved", f"namespace {ns} -> VRFDomain {dom}")
        else:
            verdicts[name] = (
                False,
                "DomainNotFound",
                f"VRFDomain {dom} does not exist or is not accepted; pods of {ns} wait for it",
            )
    return table, verdicts


class BindingController:
    def __init__(
        self,
        *,
        client: KubeClient,
        registry: DomainRegistry,
        bindings: Reflector[VRFDomainBinding],
        domains: Reflector[VRFDomain],
        namespaces: Reflector[Namespace],
    ) -> None:
        self.client = client
        self.registry = registry
        self.bindings = bindings
        self.domains = domains
        self.namespaces = namespaces

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.bindings.synced.wait()
        await self.domains.synced.wait()
        while True:
            seen = (self.bindings.version, self.domains.version, self.namespaces.version)
            try:
                await self.reconcile()
            except CnidError as exc:
                log.warning("bindings: %s; retrying", exc.msg)
                await trio.sleep(1.0)
                continue
            async with trio.open_nursery() as nursery:
                # Whichever changes first; the domains matter because a
                # binding resolves when its domain appears.
                async def wait(r: Reflector[Any], v: int) -> None:
                    await r.wait_changed(v)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(wait, self.bindings, seen[0])
                nursery.start_soon(wait, self.domains, seen[1])
                nursery.start_soon(wait, self.namespaces, seen[2])

    async def reconcile(self) -> None:
        live = [o for o in self.domains.items.values() if o.metadata.deletion_timestamp is None]
        accepted = {d.name for d in accept(live)[0]}
        objs = list(self.bindings.items.values())
        table, verdicts = resolve(objs, accepted)
        self.registry.set_bindings(table)
        for obj in objs:
            ok, reason, message = verdicts[obj.metadata.name]
            ns = obj.spec.namespace_ref.name
            if ok and self.namespaces.synced.is_set() and ns not in self.namespaces.items:
                message += f" (namespace {ns} does not exist yet)"
            await self._report(obj, ok, reason, message)

    async def _report(self, obj: VRFDomainBinding, ok: bool, reason: str, message: str) -> None:
        conditions = set_condition(
            list(obj.status.conditions), "Resolved", ok, reason, message, obj.metadata.generation
        )
        if same_conditions(conditions, list(obj.status.conditions)):
            return
        if not ok:
            log.warning("VRFDomainBinding %s: %s", obj.metadata.name, message)
        body = {"status": {"conditions": msgspec.to_builtins(conditions)}}
        try:
            await self.client.patch(VRF_DOMAIN_BINDINGS, obj.metadata.name, body, status=True)
        except NotFound:
            pass
