"""The node daemon: every service started from one nursery, in order.

health (liveness from the first moment) -> node state (journal, address
store) -> [with the Kubernetes API: the watches, this node's VRFNodeConfig]
-> underlay -> domains (kernel objects of every tenant; with the API, the
VRFDomain and VRFDomainBinding controllers) -> recovery of what a previous
run left -> the CNI socket -> the control socket [-> garbage collection].
Readiness is the conjunction of the services' own reports.

Each step marks its milestone on the start-up timeline (``Startup``):
``cnictl status`` shows it, and the log says where the start went once
the node is ready, and when its first BGP session and announcement came.

Standalone (no API: ``[kubernetes] enabled = no``, or ``auto`` outside a
pod without a kubeconfig) the node serves the [default] domain of
server.ini with a node-local address store.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import trio

from . import dataplane
from ._config import Config
from ._control import ControlServer
from ._errors import CnidError
from ._health import HealthServer
from ._hostintegration import HostIntegration
from ._metrics import Metrics
from ._readiness import Readiness
from ._sockets import serve_unix
from ._startup import Startup
from ._tenants import DomainRegistry
from .bgp import Speaker
from .cluster import ClusterMember, KubeStore, NodeConfigController, NodeSettings, Peering
from .cluster._policies import RoutingPolicyController
from .cni._journal import Journal
from .cni._server import CniServer
from .cni._service import CniService
from .evpn import EvpnController, Identity, router_id_for
from .ipam import AddressPool, FileStore
from .kube import KubeClient
from .kube import load_config as load_kube_config

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
        cfg = self.config
        health = HealthServer(self.readiness, self.metrics)
        async with trio.open_nursery() as nursery:
            self.health_port = await nursery.start(
                health.run, cfg.readiness.host, cfg.readiness.port
            )
            for problem in self.journal.load():
                log.error("state: unreadable attachment record moved aside: %s", problem)
            member = settings = None
            if client is not None:
                member = ClusterMember(
                    client=client,
                    config=cfg,
                    node=self.node,
                    readiness=self.readiness,
                    registry=self.domains,
                    pool=self.pool,
                    journal=self.journal,
                )
                settings = await member.start_watches(nursery)
                self.startup.mark("api")
            underlay = await self._discover_underlay(
                settings or NodeSettings(), member.nodeconfig if member else None
            )
            self.startup.mark("underlay")
            overhead = cfg.network.mtu_overhead
            if ":" in underlay.address and overhead == 50:
                overhead = 70  # VXLAN over IPv6: the VXLAN devices are 70 below the underlay too
            mtu = cfg.network.mtu or underlay.mtu - overhead
            log.info(
                "node %s: underlay %s (%s, mtu %d), pod mtu %d",
                self.node,
                underlay.ifname,
                underlay.address,
                underlay.mtu,
                mtu,
            )
            service = CniService(
                pool=self.pool,
                journal=self.journal,
                dataplane=dataplane,
                domains=self.domains,
                readiness=self.readiness,
                metrics=self.metrics,
                mtu=mtu,
            )
            if member is None:
                await nursery.start(self._run_domains, underlay)
                self.startup.mark("domains")
                await service.recover()
            else:
                await member.start_controllers(nursery, underlay, settings or NodeSettings())
                self.startup.mark("domains")
                await self._recover(service)
            self.startup.mark("recovery")
            self.readiness.set_ready("recovery")
            self.host = HostIntegration(
                node=self.node,
                registry=self.domains,
                pool=self.pool,
                readiness=self.readiness,
                settings=cfg.network.host_settings(),
                interval=max(cfg.default.fw_interval_seconds, 1),
            )
            await nursery.start(self.host.run)
            self.startup.mark("host-integration")
            if member is not None and client is not None:
                policies = RoutingPolicyController(
                    client=client, node=self.node, host=self.host, domains=member.watches.domains
                )
                await nursery.start(policies.run)
            self.evpn = await self._start_evpn(
                nursery, underlay, settings or NodeSettings(), member
            )
            cni = CniServer(service, self.metrics)
            await nursery.start(serve_unix, cfg.api.socket_path_api, cni.handle_connection)
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
                startup=self.startup,
            )
            await nursery.start(serve_unix, cfg.api.socket_path_ctl, control.handle_connection)
            log.info(
                "serving CNI on %s, control on %s", cfg.api.socket_path_api, cfg.api.socket_path_ctl
            )
            if member is not None:
                await member.start_gc(nursery, service)
            task_status.started(self)

    async def _start_evpn(
        self,
        nursery: trio.Nursery,
        underlay: dataplane.Underlay,
        settings: NodeSettings,
        member: ClusterMember | None,
    ) -> EvpnController:
        """The BGP speaker, the EVPN controller, and the peering that gives
        the speaker its neighbours (in that order: the controller listens
        before the first session can come up)."""
        opts = self.config.bgp
        router_id = router_id_for(settings.router_id, underlay.address)
        speaker = Speaker(
            run_dir=Path(self.config.api.socket_path_ctl).parent / "bgp",
            log_level=opts.log_level,
            on_restart=self.metrics.exabgp_restarts.inc,
            startup=self.startup,
        )
        await nursery.start(speaker.run)
        self.startup.mark("speaker")
        evpn = EvpnController(
            speaker=speaker,
            identity=Identity(router_id, opts.asn, underlay.address),
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
        )
        await nursery.start(evpn.run)
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
        log.info("node %s: BGP router-id %s, AS %d", self.node, router_id, opts.asn)
        return evpn

    async def _recover(self, service: CniService) -> None:
        """Recovery needs the address store: retried until the API answers."""
        delay = 0.5
        while True:
            try:
                await service.recover()
                return
            except CnidError as exc:
                self.readiness.set_not_ready("recovery", exc.msg)
                log.error("recovery: %s; retrying in %.1fs", exc.msg, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    async def _discover_underlay(
        self, settings: NodeSettings, nodeconfig: NodeConfigController | None
    ) -> dataplane.Underlay:
        delay = 0.5
        host_if = settings.host_if or self.config.network.host_if
        ipaddr = settings.local or self.config.network.ipaddr
        while True:
            try:
                underlay = await dataplane.discover_underlay(host_if, ipaddr)
            except CnidError as exc:
                self.readiness.set_not_ready("underlay", exc.msg)
                if nodeconfig is not None and settings.source:
                    nodeconfig.problem = exc.msg
                log.error("underlay: %s; retrying in %.1fs", exc.msg, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            self.readiness.set_ready("underlay")
            if nodeconfig is not None:
                nodeconfig.problem = ""
            return underlay

    async def _run_domains(
        self, underlay: dataplane.Underlay, *, task_status: trio.TaskStatus[None]
    ) -> None:
        """Keep every domain's kernel objects in place. Reports started after
        the first attempt, successful or not: a node whose kernel refuses a
        VRF stays up, says why it is not ready, and keeps trying."""
        delay = 1.0
        started = False
        while True:
            try:
                for domain in self.domains.all():
                    links = await dataplane.ensure_domain(domain, underlay)
                    self.domains.set_links(domain.name, links)
            except CnidError as exc:
                self.readiness.set_not_ready("domains", exc.msg)
                log.error("domains: %s; retrying in %.0fs", exc.msg, delay)
                if not started:
                    task_status.started()
                    started = True
                await trio.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)
                continue
            delay = 1.0
            self.readiness.set_ready("domains")
            if not started:
                task_status.started()
                started = True
            await trio.sleep(max(self.config.default.fw_interval_seconds, 1))


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
