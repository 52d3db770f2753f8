"""Who this node peers with over BGP, from the cluster (the seeds: "If no
routeReflectors are given, the CNI builds a BGP mesh in the cluster").

* this node's VRFNodeConfig names ``routeReflectors``: those only;
* else server.ini's ``[bgp] route_reflectors``, if set;
* else a full iBGP mesh with every other Node. A node's BGP address is its
  VTEP: the ``local`` of the first interface of its VRFNodeConfig when it has
  one, else its InternalIP (the address of the default-route interface, which
  is what a node without VRFNodeConfig uses as its VTEP).

Nodes joining or leaving change the neighbour set; the speaker reloads
ExaBGP with the new set and the other sessions stay up. So does a change of
this node's ``routeReflectors``: it is applied at once (the rest of a
VRFNodeConfig, the router ID and the VTEP, takes a restart of the daemon).
"""

from __future__ import annotations

import ipaddress
import logging

import msgspec
import trio

from ..bgp import BgpOptions, Neighbor, Speaker, SpeakerConfig, mesh_neighbors, reflector_neighbors
from ..bgp._config import static_neighbors
from ..kube import Node, Reflector, VRFNodeConfig
from ._nodeconfig import NodeConfigController, NodeSettings, mine

log = logging.getLogger("cnid.cluster")


def node_address(node: Node, configs: list[VRFNodeConfig]) -> str:
    """A node's BGP/VTEP address ("" if it has none yet)."""
    config, _ = mine(configs, node.metadata.name)
    if config is not None and config.spec.underlay is not None:
        return config.spec.underlay.vtep_address  # the routed underlay's VTEP
    if config is not None and config.spec.interfaces and config.spec.interfaces[0].local:
        return config.spec.interfaces[0].local
    for kind in ("InternalIP", "ExternalIP"):
        for addr in node.status.addresses:
            if addr.type == kind:
                try:
                    return str(ipaddress.ip_address(addr.address))
                except ValueError:
                    continue
    return ""


def neighbors_for(
    node: str,
    local: str,
    settings: NodeSettings,
    options: BgpOptions,
    nodes: list[Node] | None,
    configs: list[VRFNodeConfig],
) -> tuple[Neighbor, ...]:
    """Route reflectors or the mesh, then ``[bgp] peers``."""
    base = _base_neighbors(node, local, settings, options, nodes, configs)
    return base + static_neighbors(options.static_peers, base)


def _base_neighbors(
    node: str,
    local: str,
    settings: NodeSettings,
    options: BgpOptions,
    nodes: list[Node] | None,
    configs: list[VRFNodeConfig],
) -> tuple[Neighbor, ...]:
    if settings.route_reflectors:
        return reflector_neighbors(settings.route_reflectors)
    if options.reflectors:
        return reflector_neighbors(options.reflectors)
    if nodes is None:
        return ()
    others = {}
    for n in nodes:
        if n.metadata.name == node:
            continue
        address = node_address(n, configs)
        if address:
            others[n.metadata.name] = address
    return mesh_neighbors(local, others)


def speaker_config(
    *,
    router_id: str,
    local: str,
    options: BgpOptions,
    neighbors: tuple[Neighbor, ...],
) -> SpeakerConfig:
    return SpeakerConfig(
        router_id=router_id,
        local_address=local,
        asn=options.asn,
        neighbors=neighbors,
        hold_time=options.hold_time,
        password=options.password(),
        ttl_security=options.ttl_security,
        graceful_restart=options.graceful_restart,
        port=options.port,
    )


class Peering:
    """Keeps the speaker's neighbours in step with the cluster's Nodes."""

    def __init__(
        self,
        *,
        speaker: Speaker,
        node: str,
        router_id: str,
        local: str,
        settings: NodeSettings,
        options: BgpOptions,
        nodes: Reflector[Node] | None,
        configs: Reflector[VRFNodeConfig] | None,
        nodeconfig: NodeConfigController | None = None,
    ) -> None:
        self.speaker = speaker
        self.node = node
        self.router_id = router_id
        self.local = local
        self.settings = settings
        self.options = options
        self.nodes = nodes
        self.configs = configs
        self.nodeconfig = nodeconfig

    def _settings(self) -> NodeSettings:
        """This node's settings, with a live change of its route reflectors."""
        nc = self.nodeconfig
        if nc is None or nc.running is None:
            return self.settings
        fresh, problem = nc.current()
        if problem:
            return nc.running
        if _rest(fresh) == _rest(nc.running) and fresh != nc.running:
            if fresh.route_reflectors != nc.running.route_reflectors:
                log.info(
                    "VRFNodeConfig %s: route reflectors now %s",
                    fresh.source or "(none)",
                    ", ".join(fresh.route_reflectors) or "none (full mesh)",
                )
            nc.running = fresh
        return nc.running

    def current(self) -> SpeakerConfig:
        self.settings = self._settings()
        nodes = list(self.nodes.items.values()) if self.nodes is not None else None
        configs = list(self.configs.items.values()) if self.configs is not None else []
        neighbors = neighbors_for(
            self.node, self.local, self.settings, self.options, nodes, configs
        )
        return speaker_config(
            router_id=self.router_id, local=self.local, options=self.options, neighbors=neighbors
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.speaker.configure(self.current())
        task_status.started()
        if self.nodes is None or self.configs is None:
            return
        while True:
            seen = (self.nodes.version, self.configs.version)
            with trio.move_on_after(30.0):
                async with trio.open_nursery() as nursery:

                    async def wait(r: Reflector[Node] | Reflector[VRFNodeConfig], v: int) -> None:
                        await r.wait_changed(v)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(wait, self.nodes, seen[0])
                    nursery.start_soon(wait, self.configs, seen[1])
            if not (self.nodes.synced.is_set() and self.nodes.connected):
                continue  # an outage is not a departure of every node
            self.speaker.configure(self.current())


def _rest(settings: NodeSettings) -> NodeSettings:
    """The settings that take a restart (all but the source and the RRs)."""
    return msgspec.structs.replace(settings, source="", route_reflectors=())
