"""The VRFRoutingPolicy controller: pyroute2-cni's routing-policy selectors
(``dst``, ``src``, ``iifname``, ``oifname``) that leak traffic of the node's
root namespace into a domain's table, as ``ip rule``s (protocol 149, at
priority 11000 + the domain's rank: after the rules that keep tenants'
traffic in their VRF, so a policy can never move a tenant's packets into
another tenant; before the main table).

Status, as for VRFDomains: ``Accepted`` (the spec is usable and its domain
exists and is accepted: the same verdict on every node; False with
InvalidSpec or DomainNotFound) and ``status.nodes.<node>`` (Ready once this
node's rules are in place, Error with the reason).

The watch of this kind does not gate the node's readiness: a cluster
without the CRD (an older release of the manifests) runs without policies.
"""

from __future__ import annotations

import ipaddress
import logging
import re

import trio

from ..core._errors import CnidError
from ..core._notify import snapshot, wait_any
from ..dataplane._hostplan import HostPlan, HostPolicy, PolicyMatch
from ..hostintegration._controller import HostIntegration, PolicySource
from ..kube import (
    VRF_ROUTING_POLICIES,
    KubeClient,
    NotFound,
    Reflector,
    VRFDomain,
    VRFRoutingPolicy,
)
from ._conditions import set_condition, status_body
from ._domains import accept

log = logging.getLogger("cnid.policies")

_IFNAME = re.compile(r"^[^/\s:]{1,15}$")


def policy_from(obj: VRFRoutingPolicy) -> HostPolicy:
    """The validated policy; ValueError naming the problem."""
    name = obj.metadata.name
    domain = obj.spec.vrf_domain_ref.name
    if not domain:
        raise ValueError("vrfDomainRef.name is required")
    if not obj.spec.match:
        raise ValueError("match needs at least one selector")
    matches = []
    for i, m in enumerate(obj.spec.match):
        where = f"match[{i}]"
        if not (m.dst or m.src or m.iifname or m.oifname):
            raise ValueError(f"{where}: needs at least one of dst, src, iifname, oifname")
        nets = {}
        for field in ("dst", "src"):
            value = getattr(m, field)
            if value:
                try:
                    nets[field] = ipaddress.ip_network(value, strict=True)
                except ValueError as exc:
                    raise ValueError(f"{where}.{field}: {exc}") from None
        if len({n.version for n in nets.values()}) > 1:
            raise ValueError(f"{where}: dst and src are of different families")
        for field in ("iifname", "oifname"):
            value = getattr(m, field)
            if value and (not _IFNAME.match(value) or value in (".", "..")):
                raise ValueError(f"{where}.{field}: {value!r} is not an interface name")
        matches.append(
            PolicyMatch(
                dst=str(nets["dst"]) if "dst" in nets else None,
                src=str(nets["src"]) if "src" in nets else None,
                iifname=m.iifname or None,
                oifname=m.oifname or None,
            )
        )
    return HostPolicy(name=name, domain=domain, matches=tuple(matches))


def _family_of(domain_prefix: str, policy: HostPolicy) -> str:
    """Why ``policy`` cannot apply to a domain of ``domain_prefix`` ("" if it can)."""
    version = ipaddress.ip_network(domain_prefix).version
    for m in policy.matches:
        for net in (m.dst, m.src):
            if net and ipaddress.ip_network(net).version != version:
                return f"{net} is not of the family of VRFDomain {policy.domain} ({domain_prefix})"
    return ""


class RoutingPolicyController:
    def __init__(
        self,
        *,
        client: KubeClient,
        node: str,
        host: HostIntegration,
        domains: Reflector[VRFDomain],
    ) -> None:
        self.client = client
        self.node = node
        self.host = host
        self.source: PolicySource = host.policies
        self.domains = domains
        self.policies: Reflector[VRFRoutingPolicy] = Reflector(
            client, VRF_ROUTING_POLICIES, name="vrfroutingpolicies"
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.policies.run)
            task_status.started()
            await self.policies.synced.wait()
            await self.domains.synced.wait()
            while True:
                seen = snapshot([self.policies, self.domains, self.host.applied])
                try:
                    await self.reconcile()
                except CnidError as exc:
                    log.warning("routing policies: %s; retrying", exc.msg)
                    await trio.sleep(1.0)
                    continue
                await wait_any(seen)

    async def reconcile(self) -> None:
        live = [o for o in self.domains.items.values() if o.metadata.deletion_timestamp is None]
        accepted = {d.name: d for d in accept(live)[0]}
        objs = sorted(self.policies.items.values(), key=lambda o: o.metadata.name)
        usable: list[HostPolicy] = []
        verdicts: dict[str, tuple[bool, str, str]] = {}
        for obj in objs:
            name = obj.metadata.name
            if obj.metadata.deletion_timestamp is not None:
                continue
            try:
                policy = policy_from(obj)
            except ValueError as exc:
                verdicts[name] = (False, "InvalidSpec", str(exc))
                continue
            domain = accepted.get(policy.domain)
            if domain is None:
                verdicts[name] = (
                    False,
                    "DomainNotFound",
                    f"VRFDomain {policy.domain} does not exist or is not accepted",
                )
                continue
            why = _family_of(str(domain.network), policy)
            if why:
                verdicts[name] = (False, "InvalidSpec", why)
                continue
            verdicts[name] = (True, "Valid", f"into the table {domain.table} of {domain.name}")
            usable.append(policy)
        self.source.set(usable)
        applied = self.host.plan
        for obj in objs:
            if obj.metadata.name in verdicts:
                await self._report(obj, verdicts[obj.metadata.name], applied)

    async def _report(
        self,
        obj: VRFRoutingPolicy,
        verdict: tuple[bool, str, str],
        applied: HostPlan | None,
    ) -> None:
        ok, reason, message = verdict
        name = obj.metadata.name
        gen = obj.metadata.generation
        status = obj.status
        conditions = set_condition(list(status.conditions), "Accepted", ok, reason, message, gen)
        if not ok:
            state, why = "Refused", message
        elif applied is None or not any(p.name == name for p in self.host.planned_policies):
            state, why = "Pending", "not applied on this node yet"
        elif name in applied.problems:
            state, why = "Error", applied.problems[name]
        else:
            state, why = "Ready", ""
        mine = {"state": state, "message": why, "observedGeneration": gen}
        body = status_body(
            conditions, list(status.conditions), status.nodes.get(self.node), self.node, mine
        )
        if not body:
            return
        if not ok:
            log.warning("VRFRoutingPolicy %s: %s", name, message)
        try:
            await self.client.patch(VRF_ROUTING_POLICIES, name, {"status": body}, status=True)
        except NotFound:
            pass
