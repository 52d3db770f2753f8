"""Host integration as a service: keeps the node's rules, leak routes and
nftables table equal to what the domains, this node's blocks and the
VRFRoutingPolicies ask for (``dataplane._hostplan``), on every change of
them and every ``interval`` seconds (which also repairs what someone else
changed). Readiness component ``host``.

The domains come from the registry in its order (the order the VRFDomain
controller accepted them: the older first), only once their kernel objects
exist on this node. This node's blocks come from the address store; when it
cannot be read (the API is away) the last blocks read are kept: probes keep
working.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ..core._errors import CnidError
from ..core._notify import Notifier
from ..core._readiness import Readiness
from ..core._reconcile import Backoff, reconcile_forever
from ..core._tenants import DomainRegistry
from ..dataplane._hostpath import HostState, apply_host
from ..dataplane._hostplan import HostDomain, HostPlan, HostPolicy, HostSettings, plan
from ..ipam import AddressPool

log = logging.getLogger("cnid.host")

COMPONENT = "host"

#: What applies a plan to the node (``apply_host``; a fake in the unit
#: tests): True when our nftables table was (re)written.
Applier = Callable[[HostPlan, HostState, int], Awaitable[bool]]


class PolicySource:
    """The VRFRoutingPolicies this node applies (set by their controller)."""

    def __init__(self) -> None:
        self.notifier = Notifier()
        self.policies: list[HostPolicy] = []

    def set(self, policies: list[HostPolicy]) -> None:
        if policies != self.policies:
            self.policies = list(policies)
            self.notifier.bump()


class HostIntegration:
    def __init__(
        self,
        *,
        node: str,
        registry: DomainRegistry,
        pool: AddressPool,
        readiness: Readiness,
        settings: HostSettings,
        policies: PolicySource | None = None,
        interval: float = 30.0,
        apply: Applier = apply_host,
    ) -> None:
        self.node = node
        self.registry = registry
        self.pool = pool
        self.readiness = readiness
        self.settings = settings
        self.policies = policies or PolicySource()
        self.interval = interval
        self._apply = apply
        self.state = HostState()
        self.blocks: dict[int, tuple[str, ...]] = {}
        #: The last plan applied (None before the first success), and the
        #: policies it was made from.
        self.plan: HostPlan | None = None
        self.planned_policies: list[HostPolicy] = []
        #: Called with each plan applied (the policy controller's status).
        self.on_applied: list[Callable[[HostPlan], None]] = []
        self.applied = Notifier()
        readiness.expect(COMPONENT)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # The first plan waits for every domain to be programmed: a plan
        # made from a half-filled registry would delete (then restore) the
        # rules of a restarted node's domains.
        # A domain the kernel keeps refusing must not hold the others back
        # for ever: after a while, the plan is made from what is programmed.
        task_status.started()
        with trio.move_on_after(max(2 * self.interval, 60.0)):
            while self.readiness.snapshot().get("domains") != "ready":
                self.readiness.set_not_ready(COMPONENT, "waiting for the domains")
                await self.readiness.wait_changed(self.readiness.version)
        await reconcile_forever(
            self.reconcile,
            name="host integration",
            readiness=self.readiness,
            key=COMPONENT,
            interval=self.interval,
            changes=(self.registry.notifier, self.pool.notifier, self.policies.notifier),
            # a kernel refusal is retried every 2 s, as long as it lasts
            backoff=Backoff(2.0, 2.0, jitter=False),
            logger=log,
        )

    async def _read_blocks(self) -> None:
        try:
            records = await self.pool.store.list_blocks(node=self.node)
        except CnidError as exc:
            log.warning("host integration: blocks not read (%s); keeping the last ones", exc.msg)
            return
        found: dict[int, list[str]] = {}
        for rec in records:
            found.setdefault(rec.vrf, []).append(rec.cidr)
        self.blocks = {vrf: tuple(sorted(cidrs)) for vrf, cidrs in found.items()}

    def domains(self) -> list[HostDomain]:
        out = []
        for d in self.registry.all():
            if self.registry.links(d.name) is None:
                continue  # not programmed on this node (yet)
            out.append(
                HostDomain(
                    name=d.name,
                    vrf=d.vrf,
                    table=d.table,
                    prefix=str(d.network),
                    blocks=self.blocks.get(d.vrf, ()),
                )
            )
        return out

    async def reconcile(self) -> HostPlan:
        await self._read_blocks()
        policies = list(self.policies.policies)
        wanted = plan(self.domains(), policies, self.settings)
        if self.plan is None or wanted.problems != self.plan.problems:
            for name, why in sorted(wanted.problems.items()):
                log.warning("host integration: %s: %s", name, why)
        rewritten = await self._apply(wanted, self.state, self.settings.mark_mask)
        if rewritten:
            log.info(
                "host integration: table inet cnid written for %d domain(s), %d rule(s)",
                len(wanted.marks),
                len(wanted.rules),
            )
        self.plan = wanted
        self.planned_policies = policies
        for fn in self.on_applied:
            fn(wanted)
        self.applied.bump()
        return wanted
