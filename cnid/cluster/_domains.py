"""The VRFDomain controller: the Kubernetes source of the node's domain
reconciler (``cnid.domains._reconciler``), which standalone mode feeds from
server.ini instead.

Level-triggered: on every change of the VRFDomains (and at least every
``interval`` seconds, to repair the kernel) it compares what the cluster
wants with what the node has, retrying with backoff while the kernel
refuses a domain:

* a domain that is valid and does not clash with an older one is
  *accepted*: this node adds its finalizer first, then creates or adopts the
  kernel objects, then reports ``status.nodes.<node>``;
* a domain being deleted: this node removes its kernel objects, releases
  its IP blocks in the domain's VRF, then drops its finalizer; finalizers
  of nodes that left the cluster are dropped by any node;
* kernel domains of ours that no VRFDomain wants any more (deleted while
  the daemon was down) are removed;
* no VRFDomain at all: the default one of server.ini is created, as the
  seeds say.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..core._domains import Domain, VniAttachment
from ..core._errors import ConfigError, KernelError
from ..core._readiness import Readiness
from ..core._reconcile import Pending, reconcile_forever
from ..core._tenants import DomainRegistry
from ..domains._reconciler import DomainReconciler, failures
from ..ipam import AddressPool
from ..kube import (
    VRF_DOMAINS,
    AlreadyExists,
    AttachmentSpec,
    Conflict,
    KubeClient,
    Node,
    NotFound,
    ObjectMeta,
    Reflector,
    VRFDomain,
    VRFDomainSpec,
)
from ._conditions import (
    finalizer_node,
    is_node_finalizer,
    node_finalizer,
    set_condition,
    status_body,
)

log = logging.getLogger("cnid.domains")


def domain_from(obj: VRFDomain) -> Domain:
    """The validated domain of a CR; ConfigError naming the problem."""
    spec = obj.spec
    attachments = []
    for att in spec.attachments:
        if att.type not in ("l2vni", "l3vni"):
            raise ConfigError(
                f"domain {obj.metadata.name}: attachment type {att.type!r} is not l2vni or l3vni"
            )
        attachments.append(VniAttachment(type=att.type, vni=att.vni, port=att.port))  # type: ignore[arg-type]
    return Domain(
        name=obj.metadata.name,
        vrf=spec.vrf,
        table=spec.table,
        prefix=spec.prefix,
        prefixlen=spec.prefixlen,
        ipblocklen=spec.ipblocklen,
        attachments=tuple(attachments),
        import_route_targets=tuple(spec.import_route_targets),
        export_route_targets=tuple(spec.export_route_targets),
        route_target_derivation=spec.route_target_derivation,  # type: ignore[arg-type]
    ).validated()


def resource_from(domain: Domain) -> VRFDomain:
    return VRFDomain(
        metadata=ObjectMeta(name=domain.name),
        spec=VRFDomainSpec(
            vrf=domain.vrf,
            table=domain.table,
            prefix=domain.prefix,
            prefixlen=domain.prefixlen,
            ipblocklen=domain.ipblocklen,
            attachments=[
                AttachmentSpec(type=a.type, vni=a.vni, port=a.port) for a in domain.attachments
            ],
            import_route_targets=list(domain.import_route_targets),
            export_route_targets=list(domain.export_route_targets),
            route_target_derivation=domain.route_target_derivation,
        ),
    )


def _age_key(obj: VRFDomain) -> tuple[str, str]:
    return (obj.metadata.creation_timestamp or "", obj.metadata.name)


def accept(objs: list[VRFDomain]) -> tuple[list[Domain], dict[str, tuple[str, str]]]:
    """The accepted domains, and for each other one the reason (InvalidSpec
    or Conflict) and why. Two domains must not share a VRF, a table or a
    VNI; the older one keeps it."""
    accepted: list[Domain] = []
    refused: dict[str, tuple[str, str]] = {}
    vrfs: dict[int, str] = {}
    tables: dict[int, str] = {}
    vnis: dict[int, str] = {}
    for obj in sorted(objs, key=_age_key):
        name = obj.metadata.name
        try:
            domain = domain_from(obj)
        except ConfigError as exc:
            refused[name] = ("InvalidSpec", exc.msg)
            continue
        clash = (
            (f"vrf {domain.vrf}", vrfs.get(domain.vrf)),
            (f"table {domain.table}", tables.get(domain.table)),
            *((f"vni {a.vni}", vnis.get(a.vni)) for a in domain.attachments),
        )
        taken = [(what, owner) for what, owner in clash if owner is not None]
        if taken:
            what, owner = taken[0]
            refused[name] = ("Conflict", f"{what} is VRFDomain {owner}'s already")
            continue
        vrfs[domain.vrf] = tables[domain.table] = name
        for a in domain.attachments:
            vnis[a.vni] = name
        accepted.append(domain)
    return accepted, refused


class DomainController:
    def __init__(
        self,
        *,
        client: KubeClient,
        node: str,
        default: Domain,
        registry: DomainRegistry,
        pool: AddressPool,
        readiness: Readiness,
        domains: Reflector[VRFDomain],
        nodes: Reflector[Node],
        reconciler: DomainReconciler,
        interval: float,
    ) -> None:
        self.client = client
        self.node = node
        self.default = default
        self.registry = registry
        self.pool = pool
        self.readiness = readiness
        self.domains = domains
        self.nodes = nodes
        self.interval = interval
        self.reconciler = reconciler
        self.finalizer = node_finalizer(node)
        #: Last error per domain on this node ("" when programmed).
        self.errors: dict[str, str] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.readiness.set_not_ready("domains", "waiting for the VRFDomains from the API")
        task_status.started()
        await self.domains.synced.wait()
        await reconcile_forever(
            self.reconcile,
            name="domains",
            readiness=self.readiness,
            interval=self.interval,
            changes=[self.domains],
            logger=log,
        )

    async def reconcile(self) -> None:
        """One pass. CnidError naming the domains this node could not
        program (or the API's error); Pending while there is no VRFDomain
        at all and the default one is on its way."""
        objs = list(self.domains.items.values())
        if not objs and not self.domains.invalid:
            await self._create_default()
            raise Pending(f"no VRFDomain yet: the default {self.default.name} is being created")
        live = [o for o in objs if o.metadata.deletion_timestamp is None]
        accepted, refused = accept(live)
        for obj in objs:
            if obj.metadata.deletion_timestamp is not None:
                await self._finalize(obj)
        by_name = {o.metadata.name: o for o in live}
        wanted: list[tuple[Domain, VRFDomain]] = []
        for domain in accepted:
            obj = by_name[domain.name]
            if self.finalizer not in obj.metadata.finalizers:
                patched = await self._add_finalizer(obj)
                if patched is None:
                    continue  # changed under us: the next pass reads it again
                obj = patched
            wanted.append((domain, obj))
        # A domain refused now (edited into an invalid spec) keeps its kernel
        # objects: its pods stay up until it is fixed or deleted.
        known = set(self.domains.items) | set(self.domains.invalid)
        errors = await self.reconciler.apply([d for d, _ in wanted], keep=known)
        self.registry.set_domains([d for d, _ in wanted if not errors[d.name]])
        self.errors = errors
        for domain, obj in wanted:
            await self._report(obj, None, errors[domain.name])
        for name, why in refused.items():
            await self._report(by_name[name], why, "")
        problem = failures(errors)
        if problem:
            raise KernelError(problem)

    # -- steps ------------------------------------------------------------

    async def _create_default(self) -> None:
        try:
            await self.client.create(VRF_DOMAINS, resource_from(self.default))
            log.info("no VRFDomain in the cluster: created the default %s", self.default.name)
        except AlreadyExists:
            pass

    async def _patch_finalizers(self, obj: VRFDomain, finalizers: list[str]) -> VRFDomain | None:
        """Set the finalizers, based on the version we read (409: the next
        pass re-reads)."""
        body: dict[str, Any] = {
            "metadata": {
                "resourceVersion": obj.metadata.resource_version,
                "finalizers": finalizers,
            }
        }
        try:
            return await self.client.patch(VRF_DOMAINS, obj.metadata.name, body)
        except (Conflict, NotFound):
            return None

    async def _add_finalizer(self, obj: VRFDomain) -> VRFDomain | None:
        return await self._patch_finalizers(obj, [*obj.metadata.finalizers, self.finalizer])

    async def _finalize(self, obj: VRFDomain) -> None:
        name = obj.metadata.name
        keep = list(obj.metadata.finalizers)
        if self.finalizer in keep:
            await self.reconciler.remove(name)
            self.registry.set_domains([d for d in self.registry.all() if d.name != name])
            vrf = obj.spec.vrf
            await self.pool.release_domain(vrf)
            log.info("domain %s deleted: kernel objects and blocks of vrf %d released", name, vrf)
            keep.remove(self.finalizer)
        if self.nodes.synced.is_set() and self.nodes.connected:
            members = [*self.nodes.items, self.node]
            for f in list(keep):
                if is_node_finalizer(f) and finalizer_node(f, members) is None:
                    log.info("domain %s: dropping %s, its node left the cluster", name, f)
                    keep.remove(f)
        if keep != obj.metadata.finalizers:
            await self._patch_finalizers(obj, keep)

    async def _report(self, obj: VRFDomain, refused: tuple[str, str] | None, error: str) -> None:
        """Accepted (the spec, the same verdict on every node) and this
        node's state, written only when they change."""
        gen = obj.metadata.generation
        status = obj.status
        reason, why = refused or ("Valid", "")
        conditions = set_condition(
            list(status.conditions), "Accepted", refused is None, reason, why, gen
        )
        state = "Refused" if refused else ("Error" if error else "Ready")
        mine = {"state": state, "message": why or error, "observedGeneration": gen}
        body = status_body(
            conditions, list(status.conditions), status.nodes.get(self.node), self.node, mine
        )
        if not body:
            return
        try:
            await self.client.patch(VRF_DOMAINS, obj.metadata.name, {"status": body}, status=True)
        except NotFound:
            pass
