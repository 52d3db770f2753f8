"""The node as a cluster member: the watches and every controller, started
in the daemon's order (watches and this node's VRFNodeConfig before the
underlay is chosen; domains and bindings once the underlay is known; the
garbage collector once the CNI service serves)."""

from __future__ import annotations

import logging

import msgspec
import trio

from .. import dataplane
from ..cni._service import CniService
from ..core._domains import Domain
from ..core._journal import Journal
from ..core._readiness import Readiness
from ..core._tenants import DomainRegistry
from ..domains._reconciler import DomainKernel, DomainReconciler
from ..ipam import AddressPool
from ..kube import KubeClient
from ._bindings import BindingController
from ._domains import DomainController
from ._gc import GarbageCollector
from ._nodeconfig import NodeConfigController, NodeSettings
from ._watches import Watches

log = logging.getLogger("cnid.cluster")


class MemberTimings(msgspec.Struct, frozen=True):
    """What the controllers take from server.ini: the default domain, and
    how often they re-check (seconds)."""

    default_domain: Domain
    domain_interval: float
    gc_interval: float
    gc_grace: float


class ClusterMember:
    def __init__(
        self,
        *,
        client: KubeClient,
        timings: MemberTimings,
        node: str,
        readiness: Readiness,
        registry: DomainRegistry,
        pool: AddressPool,
        journal: Journal,
        kernel: DomainKernel = dataplane,
    ) -> None:
        self.client = client
        self.timings = timings
        self.node = node
        self.readiness = readiness
        self.registry = registry
        self.pool = pool
        self.journal = journal
        self.kernel = kernel
        self.watches = Watches(client, node, readiness)
        self.nodeconfig = NodeConfigController(
            client=client, node=node, configs=self.watches.nodeconfigs
        )

    async def start_watches(self, nursery: trio.Nursery) -> NodeSettings:
        """Start the watches and the VRFNodeConfig controller; this node's
        settings once its VRFNodeConfig is known (server.ini's when it has
        none or a bad one)."""
        await nursery.start(self.watches.run)
        await self.watches.nodeconfigs.synced.wait()
        await self.nodeconfig.read_secrets()  # its neighbours' passwords
        settings, problem = self.nodeconfig.current()
        if problem:
            log.error("VRFNodeConfig %s: %s; using server.ini", settings.source, problem)
            settings = NodeSettings()
        await nursery.start(self.nodeconfig.run)
        return settings

    async def start_controllers(
        self, nursery: trio.Nursery, underlay: dataplane.Underlay, settings: NodeSettings
    ) -> None:
        """The domain and binding controllers; returns once every watch has
        listed (recovery needs the cluster's view)."""
        self.nodeconfig.started_with(settings)
        w = self.watches
        reconciler = DomainReconciler(registry=self.registry, underlay=underlay, kernel=self.kernel)
        domains = DomainController(
            client=self.client,
            node=self.node,
            default=self.timings.default_domain,
            registry=self.registry,
            pool=self.pool,
            readiness=self.readiness,
            domains=w.domains,
            nodes=w.nodes,
            reconciler=reconciler,
            interval=self.timings.domain_interval,
        )
        await nursery.start(domains.run)
        bindings = BindingController(
            client=self.client,
            registry=self.registry,
            bindings=w.bindings,
            domains=w.domains,
            namespaces=w.namespaces,
        )
        await nursery.start(bindings.run)
        await w.wait_synced()

    async def start_gc(self, nursery: trio.Nursery, service: CniService) -> None:
        gc = GarbageCollector(
            node=self.node,
            service=service,
            pool=self.pool,
            journal=self.journal,
            pods=self.watches.pods,
            nodes=self.watches.nodes,
            domains=self.watches.domains,
            interval=self.timings.gc_interval,
            grace=self.timings.gc_grace,
        )
        await nursery.start(gc.run)
