"""Who this node peers with over BGP, from the cluster (the seeds: "If no
routeReflectors are given, the CNI builds a BGP mesh in the cluster").

* the route reflectors: this node's VRFNodeConfig's ``routeReflectors``, else
  server.ini's ``[bgp] route_reflectors``;
* the explicit neighbours (eBGP to the rack's leaves, or extra iBGP ones):
  this node's VRFNodeConfig's ``neighbors``, else server.ini's
  ``[neighbor ADDRESS]`` sections;
* a full iBGP mesh with every other Node only when the node has neither
  reflectors nor explicit neighbours.

Then server.ini's ``[bgp] peers``, whatever the mode. The node's AS is its
VRFNodeConfig's ``asn``, else ``[bgp] asn``: the mesh and the reflectors are
iBGP in it, each explicit neighbour has its own ``peer-as``. A node's BGP address is its
  VTEP: the ``local`` of the first interface of its VRFNodeConfig when it has
  one, else its InternalIP (the address of the default-route interface, which
  is what a node without VRFNodeConfig uses as its VTEP).

Nodes joining or leaving change the neighbour set; the speaker reloads
ExaBGP with the new set and the other sessions stay up. So does a change of
this node's ``routeReflectors`` or ``neighbors`` (their passwords
included): applied at once (the rest of a VRFNodeConfig, the router ID, the
AS and the VTEP, takes a restart of the daemon). An invalid VRFNodeConfig
changes nothing: the node keeps the neighbours it runs with.
"""

from __future__ import annotations

import ipaddress
import logging

import msgspec
import trio

from ..bgp import BgpOptions, Neighbor, Speaker, SpeakerConfig, mesh_neighbors, reflector_neighbors
from ..bgp._config import static_neighbors
from ..core._notify import ChangeSignal, snapshot, wait_any
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
    explicit: tuple[Neighbor, ...] = (),
) -> tuple[Neighbor, ...]:
    """Route reflectors and explicit neighbours, or else the mesh; then
    ``[bgp] peers``. ``explicit``: server.ini's ``[neighbor]`` sections (a
    VRFNodeConfig's ``neighbors`` replace them)."""
    base = _base_neighbors(node, local, settings, options, nodes, configs, explicit)
    return base + static_neighbors(options.static_peers, base)


def _base_neighbors(
    node: str,
    local: str,
    settings: NodeSettings,
    options: BgpOptions,
    nodes: list[Node] | None,
    configs: list[VRFNodeConfig],
    explicit: tuple[Neighbor, ...],
) -> tuple[Neighbor, ...]:
    reflectors = settings.route_reflectors or options.reflectors
    chosen = settings.neighbors or explicit
    if reflectors or chosen:
        # an explicit neighbour that is also a reflector: its own settings
        named = {n.address for n in chosen}
        rrs = tuple(n for n in reflector_neighbors(reflectors) if n.address not in named)
        return tuple(sorted(rrs + chosen))
    if nodes is None:
        return ()
    others = {}
    for n in nodes:
        if n.metadata.name == node:
            continue
        config, _ = mine(configs, n.metadata.name)
        if config is not None and config.spec.neighbors:
            continue  # a node with explicit neighbours is in no mesh
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
    asn: int = 0,
) -> SpeakerConfig:
    """``asn``: the node's own AS (0: ``[bgp] asn``)."""
    return SpeakerConfig(
        router_id=router_id,
        local_address=local,
        asn=asn or options.asn,
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
        #: server.ini's ``[neighbor]`` sections (their password files read
        #: once, at start).
        self.explicit = options.explicit_neighbors()

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
                    ", ".join(fresh.route_reflectors) or "none",
                )
            if fresh.neighbors != nc.running.neighbors:
                log.info(
                    "VRFNodeConfig %s: neighbours now %s",
                    fresh.source or "(none)",
                    ", ".join(f"{n.address} (AS {n.asn})" for n in fresh.neighbors) or "none",
                )
            nc.running = fresh
        return nc.running

    def current(self) -> SpeakerConfig:
        self.settings = self._settings()
        nodes = list(self.nodes.items.values()) if self.nodes is not None else None
        configs = list(self.configs.items.values()) if self.configs is not None else []
        neighbors = neighbors_for(
            self.node, self.local, self.settings, self.options, nodes, configs, self.explicit
        )
        return speaker_config(
            router_id=self.router_id,
            local=self.local,
            options=self.options,
            neighbors=neighbors,
            asn=self.settings.asn,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.speaker.configure(self.current())
        task_status.started()
        if self.nodes is None or self.configs is None:
            return
        signals: list[ChangeSignal] = [self.nodes, self.configs]
        if self.nodeconfig is not None:
            signals.append(self.nodeconfig.passwords_changed)  # a Secret read
        while True:
            seen = snapshot(signals)
            with trio.move_on_after(30.0):
                await wait_any(seen)
            if not (self.nodes.synced.is_set() and self.nodes.connected):
                continue  # an outage is not a departure of every node
            self.speaker.configure(self.current())


def _rest(settings: NodeSettings) -> NodeSettings:
    """The settings that take a restart (all but the source, the RRs and
    the explicit neighbours)."""
    return msgspec.structs.replace(settings, source="", route_reflectors=(), neighbors=())
