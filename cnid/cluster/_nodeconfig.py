"""The VRFNodeConfig of this node: router ID, route reflectors, the VTEP
interface and its address, and the config's Accepted and Ready conditions.

A node without a VRFNodeConfig uses server.ini's ``host_if``/``ipaddr`` if
set, else the interface of the default route and its primary address (the
seeds). The underlay is chosen once, at start-up: moving a node's VTEP
re-creates every VXLAN device and restarts its BGP sessions, so a changed
VRFNodeConfig is reported (Ready False, reason RestartRequired) and takes
effect when the daemon restarts (a DaemonSet rollout).
"""

from __future__ import annotations

import ipaddress
import logging

import msgspec
import trio

from ..core._errors import CnidError
from ..kube import VRF_NODE_CONFIGS, KubeClient, NotFound, Reflector, VRFNodeConfig
from ._conditions import same_conditions, set_condition

log = logging.getLogger("cnid.nodeconfig")


class NodeSettings(msgspec.Struct, frozen=True):
    """What a VRFNodeConfig sets for a node ("" / () : not set)."""

    source: str = ""
    router_id: str = ""
    route_reflectors: tuple[str, ...] = ()
    host_if: str = ""
    local: str = ""
    #: spec.underlay.vtepAddress: the routed underlay's VTEP ("": off).
    vtep_address: str = ""


def settings_from(obj: VRFNodeConfig) -> NodeSettings:
    """The settings of a config; CnidError naming the bad field."""
    spec = obj.spec
    name = obj.metadata.name
    if spec.router_id:
        try:
            ipaddress.IPv4Address(spec.router_id)
        except ValueError:
            raise CnidError(f"{name}: routerId {spec.router_id!r} is not an IPv4 address") from None
    for rr in spec.route_reflectors:
        try:
            ipaddress.ip_address(rr)
        except ValueError:
            raise CnidError(f"{name}: route reflector {rr!r} is not an IP address") from None
    host_if = local = ""
    if spec.interfaces:
        first = spec.interfaces[0]
        host_if, local = first.name, first.local
        if local:
            try:
                ipaddress.ip_address(local)
            except ValueError:
                raise CnidError(
                    f"{name}: interface {host_if} local {local!r} is not an IP address"
                ) from None
    vtep = spec.underlay.vtep_address if spec.underlay is not None else ""
    if spec.underlay is not None:
        try:
            ipaddress.IPv4Address(vtep)
        except ValueError:
            raise CnidError(
                f"{name}: underlay.vtepAddress {vtep!r} is not an IPv4 address"
            ) from None
    return NodeSettings(
        vtep_address=vtep,
        source=name,
        router_id=spec.router_id,
        route_reflectors=tuple(spec.route_reflectors),
        host_if=host_if,
        local=local,
    )


def mine(objs: list[VRFNodeConfig], node: str) -> tuple[VRFNodeConfig | None, list[VRFNodeConfig]]:
    """This node's config (the oldest naming it) and the others naming it."""
    named = sorted(
        (o for o in objs if o.spec.node_ref.name == node),
        key=lambda o: (o.metadata.creation_timestamp or "", o.metadata.name),
    )
    return (named[0] if named else None), named[1:]


class NodeConfigController:
    def __init__(self, *, client: KubeClient, node: str, configs: Reflector[VRFNodeConfig]) -> None:
        self.client = client
        self.node = node
        self.configs = configs
        #: The settings the daemon started with (``started_with``).
        self.running: NodeSettings | None = None
        #: Why the running settings are not the config's, if they are not
        #: (``underlay_failed``).
        self.problem = ""

    def underlay_failed(self, why: str) -> None:
        """The underlay this config names cannot be used (yet): Ready says why."""
        self.problem = why

    def started_with(self, settings: NodeSettings) -> None:
        """The node found its underlay and runs with these settings."""
        self.running = settings
        self.problem = ""

    def current(self) -> tuple[NodeSettings, str]:
        """The settings of this node's config now, and the problem with it
        ("" if none)."""
        obj, _ = mine(list(self.configs.items.values()), self.node)
        if obj is None:
            return NodeSettings(), ""
        try:
            return settings_from(obj), ""
        except CnidError as exc:
            return NodeSettings(source=obj.metadata.name), exc.msg

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.configs.synced.wait()
        while True:
            seen = self.configs.version
            try:
                await self.reconcile()
            except CnidError as exc:
                log.warning("VRFNodeConfig: %s; retrying", exc.msg)
                await trio.sleep(1.0)
                continue
            # Also now and then: the daemon's own state (self.running,
            # self.problem) changes without an event.
            with trio.move_on_after(2.0):
                await self.configs.wait_changed(seen)

    async def reconcile(self) -> None:
        obj, others = mine(list(self.configs.items.values()), self.node)
        for other in others:
            assert obj is not None
            await self._report(
                other,
                accepted=(
                    False,
                    "Conflict",
                    f"VRFNodeConfig {obj.metadata.name} configures node {self.node}",
                ),
                ready=(False, "Conflict", "not used"),
            )
        if obj is None:
            return
        settings, problem = self.current()
        if problem:
            await self._report(
                obj, (False, "InvalidSpec", problem), (False, "InvalidSpec", problem)
            )
            return
        accepted = (True, "Valid", "")
        running = self.running
        if self.problem:
            ready = (False, "InterfaceError", self.problem)
        elif running is None:
            ready = (False, "Starting", "the daemon is starting")
        elif running != settings:
            ready = (
                False,
                "RestartRequired",
                "the node runs with the settings it started with; restart the daemon to apply",
            )
        else:
            ready = (
                True,
                "Applied",
                f"VTEP {running.host_if or 'default-route interface'} {running.local}".strip(),
            )
        await self._report(obj, accepted, ready)

    async def _report(
        self, obj: VRFNodeConfig, accepted: tuple[bool, str, str], ready: tuple[bool, str, str]
    ) -> None:
        gen = obj.metadata.generation
        conditions = set_condition(
            list(obj.status.conditions), "Accepted", *accepted, generation=gen
        )
        conditions = set_condition(conditions, "Ready", *ready, generation=gen)
        if same_conditions(conditions, list(obj.status.conditions)):
            return
        body = {"status": {"conditions": msgspec.to_builtins(conditions)}}
        try:
            await self.client.patch(VRF_NODE_CONFIGS, obj.metadata.name, body, status=True)
        except NotFound:
            pass
