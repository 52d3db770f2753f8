"""The node daemon: every service started from one nursery, in order.

health (liveness from the first moment) -> node state (journal, address
store) -> the BGP speaker (attached, or restored from its journal) ->
[with the Kubernetes API: the watches, this node's VRFNodeConfig] ->
underlay -> domains (kernel objects of every tenant; with the API, the
VRFDomain and VRFDomainBinding controllers) -> recovery of what a previous
run left -> host integration -> BGP (the speaker, BFD, the EVPN controller,
the peering) -> the CNI socket -> the control socket [-> garbage collection].
Readiness is the conjunction of the services' own reports.

Each step marks its milestone on the start-up timeline (``Startup``):
``cnictl status`` shows it, and the log says where the start went once
the node is ready, and when its first BGP session and announcement came.

Standalone (no API: ``[kubernetes] enabled = no``, or ``auto`` outside a
pod without a kubeconfig) the node serves the [default] domain of
server.ini with a node-local address store: a static source feeding the
same domain reconciler (``cnid.domains``) as the VRFDomain controller.

``_run`` is the composition root: each group of services is built by one
``_start_*`` method, with what it needs passed in (constructor arguments
and callbacks), in the order above.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import trio

from .. import dataplane
from ..bgp import Speaker
from ..cluster import ClusterMember, KubeStore, MemberTimings, NodeSettings, Peering
from ..cluster._policies import RoutingPolicyController
from ..cni._server import CniServer
from ..cni._service import CniService
from ..core._journal import Journal
from ..core._metrics import Metrics
from ..core._readiness import Readiness
from ..core._reconcile import Backoff, retry
from ..core._sockets import serve_unix
from ..core._startup import Startup
from ..core._tenants import DomainRegistry
from ..domains._reconciler import DomainReconciler, StaticDomains
from ..evpn import EvpnController, Identity, UnderlayController, UnderlayPolicy, router_id_for
from ..hostintegration._controller import HostIntegration
from ..ipam import AddressPool, FileStore
from ..kube import KubeClient
from ..kube import load_config as load_kube_config
from ._config import Config
from ._control import ControlServer
from ._health import HealthServer

log = logging.getLogger("cnid")

_BACKOFF_MAX = 30.0


class Daemon:
    def __init__(self, config: Config, startup: Startup | None = None) -> None:
        self.config = config
        self.node = config.node_name
        self.startup = startup or Startup()
        self.metrics = Metrics()
        self.readiness = Readiness(on_ready=self._became_ready)
        for component in ("underlay", "domains", "recovery", "cni-socket"):
            self.readiness.expect(component)
        self.kube = config.kubernetes.wanted()
        self.domains = DomainRegistry(config.default.domain(), static=not self.kube)
        state_dir = Path(config.network.state_dir)
        self.journal = Journal(state_dir)
        self.pool = AddressPool(FileStore(state_dir / "ipam.json"), self.node)
        self.health_port = 0
        self.evpn: EvpnController | None = None
        self.underlay: UnderlayController | None = None
        self.host: HostIntegration | None = None

    def _became_ready(self) -> None:
        if self.startup.mark("ready"):
            log.info("node %s %s", self.node, self.startup.summary("ready"))

    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        if not self.kube:
            log.info("node %s: standalone, no Kubernetes API ([kubernetes] enabled)", self.node)
            await self._run(None, task_status)
            return
        kcfg = load_kube_config(self.config.kubernetes.kubeconfig or None)
        log.info("node %s: Kubernetes API at %s", self.node, kcfg.server)
        async with KubeClient(kcfg) as client:
            self.pool = AddressPool(KubeStore(client), self.node)
            await self._run(client, task_status)

    async def _run(self, client: KubeClient | None, task_status: trio.TaskStatus[Daemon]) -> None:
        """The service graph, group by group, in dependency order."""
        async with trio.open_nursery() as nursery:
            await self._start_health(nursery)
            speaker = await self._start_speaker(nursery)
            member, settings = await self._start_cluster_view(nursery, client)
            underlay = await self._discover_underlay(settings, member)
            service = CniService(
                pool=self.pool,
                journal=self.journal,
                dataplane=dataplane,
                domains=self.domains,
                readiness=self.readiness,
                metrics=self.metrics,
                mtu=self._pod_mtu(underlay),
            )
            await self._start_domains(nursery, underlay, settings, member, service)
            self.host = await self._start_host_integration(nursery, client, member)
            self.evpn = await self._start_evpn(nursery, speaker, underlay, settings, member)
            await self._start_sockets(nursery, service)
            if member is not None:
                await member.start_gc(nursery, service)
            task_status.started(self)

    async def _start_health(self, nursery: trio.Nursery) -> None:
        """Liveness from the first moment; then the node's own state."""
        cfg = self.config.readiness
        health = HealthServer(self.readiness, self.metrics)
        self.health_port = await nursery.start(health.run, cfg.host, cfg.port)
        for problem in self.journal.load():
            log.error("state: unreadable attachment record moved aside: %s", problem)

    async def _start_speaker(self, nursery: trio.Nursery) -> Speaker:
        """The BGP speaker first, from its journal: when the speaker process
        restarted with the daemon (a pod replaced), the previous run's
        neighbours and paths are announced again, End-of-RIB after them,
        before anything waits on the API server; when it kept running, the
        daemon attaches to it and nothing changes on the wire."""
        opts = self.config.bgp
        speaker = Speaker(
            run_dir=Path(self.config.api.socket_path_ctl).parent / "bgp",
            log_level=opts.log_level,
            on_restart=self.metrics.exabgp_restarts.inc,
            startup=self.startup,
            mode=opts.speaker,
            journal=Path(self.config.network.state_dir) / "bgp.json",
        )
        speaker.restore()
        await nursery.start(speaker.run)
        self.startup.mark("speaker")
        return speaker

    async def _start_cluster_view(
        self, nursery: trio.Nursery, client: KubeClient | None
    ) -> tuple[ClusterMember | None, NodeSettings]:
        """With the API: the watches and this node's VRFNodeConfig."""
        if client is None:
            return None, NodeSettings()
        kc = self.config.kubernetes
        member = ClusterMember(
            client=client,
            timings=MemberTimings(
                default_domain=self.config.default.domain(),
                domain_interval=max(self.config.default.fw_interval_seconds, 1),
                gc_interval=kc.gc_interval_seconds or self.config.default.gc_interval_seconds,
                gc_grace=kc.gc_grace_seconds,
            ),
            node=self.node,
            readiness=self.readiness,
            registry=self.domains,
            pool=self.pool,
            journal=self.journal,
        )
        settings = await member.start_watches(nursery)
        self.startup.mark("api")
        return member, settings

    async def _discover_underlay(
        self, settings: NodeSettings, member: ClusterMember | None
    ) -> dataplane.Underlay:
        """The underlay, retried until it is there. A VRFNodeConfig that
        names it hears why it is not (its Ready condition says so)."""
        host_if = settings.host_if or self.config.network.host_if
        ipaddr = settings.local or self.config.network.ipaddr
        named = member.nodeconfig if member is not None and settings.source else None
        vtep = self._vtep(settings)
        if vtep:
            # The routed underlay: the VTEP is cnid-vtep's /32 (made here,
            # before any VXLAN device needs it as its local address).
            ipaddr = vtep
            await retry(
                lambda: dataplane.ensure_vtep(vtep),
                name="underlay",
                readiness=self.readiness,
                backoff=Backoff(0.5, _BACKOFF_MAX, jitter=False),
                on_error=(lambda exc: named.underlay_failed(exc.msg)) if named else None,
            )
        underlay = await retry(
            lambda: dataplane.discover_underlay(host_if, ipaddr),
            name="underlay",
            readiness=self.readiness,
            backoff=Backoff(0.5, _BACKOFF_MAX, jitter=False),
            on_error=(lambda exc: named.underlay_failed(exc.msg)) if named else None,
        )
        self.startup.mark("underlay")
        return underlay

    def _vtep(self, settings: NodeSettings) -> str:
        """The routed underlay's VTEP: the VRFNodeConfig's
        ``underlay.vtepAddress``, else server.ini's ``[underlay]
        vtep_address``; "" when the underlay is not routed."""
        return settings.vtep_address or self.config.underlay.vtep_address

    def _pod_mtu(self, underlay: dataplane.Underlay) -> int:
        net = self.config.network
        mtu = dataplane.pod_mtu(underlay, mtu=net.mtu, overhead=net.mtu_overhead)
        log.info(
            "node %s: underlay %s (%s, mtu %d), pod mtu %d",
            self.node,
            underlay.ifname,
            underlay.address,
            underlay.mtu,
            mtu,
        )
        return mtu

    async def _start_domains(
        self,
        nursery: trio.Nursery,
        underlay: dataplane.Underlay,
        settings: NodeSettings,
        member: ClusterMember | None,
        service: CniService,
    ) -> None:
        """Every domain's kernel objects (standalone: server.ini's, a static
        source; with the API: the VRFDomain and VRFDomainBinding
        controllers), then the recovery of what a previous run left."""
        if member is None:
            static = StaticDomains(
                reconciler=DomainReconciler(registry=self.domains, underlay=underlay),
                registry=self.domains,
                readiness=self.readiness,
                interval=max(self.config.default.fw_interval_seconds, 1),
            )
            await nursery.start(static.run)
        else:
            await member.start_controllers(nursery, underlay, settings)
        self.startup.mark("domains")
        # Recovery needs the address store: with the API, retried until it answers.
        await retry(
            service.recover,
            name="recovery",
            readiness=self.readiness,
            backoff=Backoff(0.5, _BACKOFF_MAX, jitter=False),
        )
        self.startup.mark("recovery")

    async def _start_host_integration(
        self, nursery: trio.Nursery, client: KubeClient | None, member: ClusterMember | None
    ) -> HostIntegration:
        host = HostIntegration(
            node=self.node,
            registry=self.domains,
            pool=self.pool,
            readiness=self.readiness,
            settings=self.config.network.host_settings(),
            interval=max(self.config.default.fw_interval_seconds, 1),
        )
        await nursery.start(host.run)
        self.startup.mark("host-integration")
        if member is not None and client is not None:
            policies = RoutingPolicyController(
                client=client, node=self.node, host=host, domains=member.watches.domains
            )
            await nursery.start(policies.run)
        return host

    async def _start_sockets(self, nursery: trio.Nursery, service: CniService) -> None:
        """The CNI socket (the node takes pods from here on), then the
        control socket."""
        api = self.config.api
        cni = CniServer(service, self.metrics)
        await nursery.start(serve_unix, api.socket_path_api, cni.handle_connection)
        self.startup.mark("cni-socket")
        self.readiness.set_ready("cni-socket")
        control = ControlServer(
            node=self.node,
            readiness=self.readiness,
            journal=self.journal,
            pool=self.pool,
            domains=self.domains,
            metrics=self.metrics,
            evpn=self.evpn,
            underlay=self.underlay,
            startup=self.startup,
        )
        await nursery.start(serve_unix, api.socket_path_ctl, control.handle_connection)
        log.info("serving CNI on %s, control on %s", api.socket_path_api, api.socket_path_ctl)

    async def _start_evpn(
        self,
        nursery: trio.Nursery,
        speaker: Speaker,
        underlay: dataplane.Underlay,
        settings: NodeSettings,
        member: ClusterMember | None,
    ) -> EvpnController:
        """BFD, the EVPN controller (with the BFD sessions of the neighbours
        that ask for them), and the peering that gives the speaker its
        neighbours (the speaker hands the controller what it heard before the
        controller listened)."""
        opts = self.config.bgp
        router_id = router_id_for(settings.router_id, underlay.address)
        # the BFD sessions run beside ExaBGP, in the speaker process (they
        # outlive the daemon: its end sends no AdminDown); the guard follows them
        bfd = speaker.bfd
        evpn = EvpnController(
            speaker=speaker,
            identity=Identity(router_id, settings.asn or opts.asn, underlay.address),
            registry=self.domains,
            journal=self.journal,
            pool=self.pool,
            node=self.node,
            metrics=self.metrics,
            stale_timeout=opts.stale_timeout,
            service_cidrs=self.config.network.host_settings().service_cidrs,
            max_prefix=opts.max_prefix,
            max_prefix_action=opts.max_prefix_action,
            max_prefix_restart=opts.max_prefix_restart,
            dup_max_moves=self.config.evpn.dup_max_moves,
            dup_time=self.config.evpn.dup_time,
            bfd=bfd,
        )
        await nursery.start(evpn.run)
        vtep = self._vtep(settings)
        if vtep:
            # before the peering: the speaker's first configuration already
            # has the ipv4 unicast family and the VTEP route
            ucfg = self.config.underlay
            self.underlay = UnderlayController(
                speaker=speaker,
                policy=UnderlayPolicy(
                    vtep=vtep,
                    asn=settings.asn or opts.asn,
                    accept_default=ucfg.accept_default,
                    max_routes=ucfg.max_routes,
                ),
                metrics=self.metrics,
                stale_timeout=opts.stale_timeout,
                pod_prefixes=lambda: [str(d.network) for d in self.domains.all()],
            )
            await nursery.start(self.underlay.run)
            if evpn.bfd is not None:  # a BFD failure takes the ECMP member out too
                evpn.bfd.on_failure(self.underlay.peer_down)
            self.startup.mark("underlay-routes")
        peering = Peering(
            speaker=speaker,
            node=self.node,
            router_id=router_id,
            local=underlay.address,
            settings=settings,
            options=opts,
            nodes=member.watches.nodes if member else None,
            configs=member.watches.nodeconfigs if member else None,
            nodeconfig=member.nodeconfig if member else None,
        )
        await nursery.start(peering.run)
        speaker.subscribed()  # the EVPN controller's, BFD's and the underlay's
        log.info("node %s: BGP router-id %s, AS %d", self.node, router_id, evpn.identity.asn)
        return evpn


async def serve(config: Config, startup: Startup | None = None) -> None:
    """Run the daemon until SIGTERM or SIGINT, then shut down cleanly."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            daemon = Daemon(config, startup)
            nursery.start_soon(daemon.run)

            async def stop_on_signal() -> None:
                async for signum in signals:
                    log.info("%s: shutting down", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
    log.info("stopped (pid %d)", os.getpid())


def level_of(name: str) -> int:
    level = logging.getLevelName(name.upper())
    return level if isinstance(level, int) else logging.INFO
