"""The VRFNodeConfig of this node: router ID, AS, BGP neighbours, route
reflectors, the VTEP interface and its address, and the config's Accepted
and Ready conditions.

A node without a VRFNodeConfig uses server.ini's ``host_if``/``ipaddr`` if
set, else the interface of the default route and its primary address (the
seeds). The underlay is chosen once, at start-up: moving a node's VTEP
re-creates every VXLAN device and restarts its BGP sessions, so a changed
VRFNodeConfig is reported (Ready False, reason RestartRequired) and takes
effect when the daemon restarts (a DaemonSet rollout). Route reflectors and
neighbours are the exception: ``Peering`` applies them at once.

A neighbour's MD5 password is a key of a Secret in the daemon's namespace,
read through the API (``get`` on that Secret only: kube/deploy/rbac.yaml's
Role) when the config names it, and again every minute (a rotated password).
A config whose Secret cannot be read is not accepted (reason
SecretUnavailable): the node keeps the neighbours it runs with, as it does
for any invalid config.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import msgspec
import trio

from ..bgp import Neighbor, check_neighbor, password_problem
from ..core._errors import CnidError
from ..core._notify import Notifier
from ..kube import (
    SECRETS,
    VRF_NODE_CONFIGS,
    KubeClient,
    NotFound,
    Reflector,
    VRFNodeConfig,
)
from ._conditions import same_conditions, set_condition

log = logging.getLogger("cnid.nodeconfig")


class NodeSettings(msgspec.Struct, frozen=True):
    """What a VRFNodeConfig sets for a node ("" / () : not set)."""

    source: str = ""
    router_id: str = ""
    route_reflectors: tuple[str, ...] = ()
    host_if: str = ""
    local: str = ""
    #: The node's own AS (0: server.ini's ``[bgp] asn``).
    asn: int = 0
    #: Explicit neighbours, their passwords read from their Secrets.
    neighbors: tuple[Neighbor, ...] = ()
    #: spec.underlay.vtepAddress: the routed underlay's VTEP ("": off).
    vtep_address: str = ""


#: How often a Secret read is repeated (a rotated password), and retried
#: after a failure.
SECRET_REFRESH = 60.0
SECRET_RETRY = 5.0
#: Where a pod's service account says its namespace.
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def daemon_namespace() -> str:
    """The daemon's namespace: ``POD_NAMESPACE``, else its service
    account's, else the manifests' (pyroute2-cni)."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return _SA_NAMESPACE.read_text().strip() or "pyroute2-cni"
    except OSError:
        return "pyroute2-cni"


class SecretProblem(CnidError):
    """A neighbour's Secret cannot be read or holds no usable password
    (``transient``: the API did not answer; a password read before stays)."""

    def __init__(self, msg: str, transient: bool = False) -> None:
        super().__init__(msg)
        self.transient = transient


def settings_from(
    obj: VRFNodeConfig, passwords: Mapping[tuple[str, str], str | SecretProblem] | None = None
) -> NodeSettings:
    """The settings of a config; CnidError naming the bad field
    (SecretProblem: a password not (yet) read; ``passwords``: what was read
    of each (Secret, key), or why it could not be)."""
    spec = obj.spec
    name = obj.metadata.name
    if spec.asn and not 1 <= spec.asn < 2**32:
        raise CnidError(f"{name}: asn {spec.asn} out of range (1..4294967295)")
    neighbors = []
    seen = set()
    for nb in spec.neighbors:
        problem = check_neighbor(
            f"{name}: neighbor {nb.address}", nb.address, nb.asn, nb.multihop, nb.allow_as_in
        )
        if problem:
            raise CnidError(problem)
        address = str(ipaddress.ip_address(nb.address))
        if address in seen:
            raise CnidError(f"{name}: neighbor {address} is named twice")
        seen.add(address)
        password = ""
        ref = nb.password_secret_ref
        if ref is not None:
            got = (passwords or {}).get((ref.name, ref.key))
            if got is None:
                raise SecretProblem(f"{name}: neighbor {address}: Secret {ref.name} not read yet")
            if isinstance(got, SecretProblem):
                raise SecretProblem(f"{name}: neighbor {address}: {got.msg}")
            password = got
        neighbors.append(
            Neighbor(
                address,
                role="neighbor",
                asn=nb.asn,
                multihop=nb.multihop,
                password=password,
                bfd=nb.bfd,
                allow_as_in=nb.allow_as_in,
            )
        )
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
        asn=spec.asn,
        neighbors=tuple(sorted(neighbors)),
    )


def mine(objs: list[VRFNodeConfig], node: str) -> tuple[VRFNodeConfig | None, list[VRFNodeConfig]]:
    """This node's config (the oldest naming it) and the others naming it."""
    named = sorted(
        (o for o in objs if o.spec.node_ref.name == node),
        key=lambda o: (o.metadata.creation_timestamp or "", o.metadata.name),
    )
    return (named[0] if named else None), named[1:]


class NodeConfigController:
    def __init__(
        self,
        *,
        client: KubeClient,
        node: str,
        configs: Reflector[VRFNodeConfig],
        namespace: str = "",
    ) -> None:
        self.client = client
        self.node = node
        self.configs = configs
        #: Where the neighbours' Secrets are: the daemon's own namespace.
        self.namespace = namespace or daemon_namespace()
        #: What was read of each (Secret, key) named by this node's config,
        #: and when (trio's clock); bumps ``passwords_changed`` on a change.
        self._passwords: dict[tuple[str, str], str | SecretProblem] = {}
        self._read_at: dict[tuple[str, str], float] = {}
        self.passwords_changed = Notifier()
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
        settings, _, problem = self._current()
        return settings, problem

    def _current(self) -> tuple[NodeSettings, str, str]:
        """The settings, and the reason and message of a problem."""
        obj, _ = mine(list(self.configs.items.values()), self.node)
        if obj is None:
            return NodeSettings(), "", ""
        try:
            return settings_from(obj, self._passwords), "", ""
        except SecretProblem as exc:
            return NodeSettings(source=obj.metadata.name), "SecretUnavailable", exc.msg
        except CnidError as exc:
            return NodeSettings(source=obj.metadata.name), "InvalidSpec", exc.msg

    async def read_secrets(self) -> None:
        """Read the Secrets this node's config names that were not read, or
        not for a while; forget those it no longer names."""
        obj, _ = mine(list(self.configs.items.values()), self.node)
        refs = set()
        for nb in obj.spec.neighbors if obj is not None else ():
            if nb.password_secret_ref is not None:
                refs.add((nb.password_secret_ref.name, nb.password_secret_ref.key))
        changed = False
        for ref in set(self._passwords) - refs:
            del self._passwords[ref]
            self._read_at.pop(ref, None)
        now = trio.current_time()
        for ref in sorted(refs):
            old = self._passwords.get(ref)
            every = SECRET_REFRESH if isinstance(old, str) else SECRET_RETRY
            if old is not None and now - self._read_at.get(ref, now) < every:
                continue
            new = await self._read_secret(*ref)
            self._read_at[ref] = now
            if isinstance(new, SecretProblem) and new.transient and isinstance(old, str):
                log.warning("VRFNodeConfig: %s; keeping the password read before", new.msg)
                continue
            if isinstance(new, SecretProblem) and isinstance(old, SecretProblem):
                changed |= new.msg != old.msg
            else:
                changed |= new != old
            self._passwords[ref] = new
        if changed:
            self.passwords_changed.bump()

    async def _read_secret(self, name: str, key: str) -> str | SecretProblem:
        where = f"Secret {self.namespace}/{name}"
        try:
            secret = await self.client.get(SECRETS, name, namespace=self.namespace)
        except NotFound:
            return SecretProblem(f"{where} not found")
        except CnidError as exc:  # Forbidden (the Role), an outage...
            return SecretProblem(f"{where}: {exc.msg}", transient=True)
        if key not in secret.data:
            return SecretProblem(f"{where} has no key {key!r}")
        try:
            text = base64.b64decode(secret.data[key], validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            return SecretProblem(f"{where} key {key!r} is not UTF-8 text")
        problem = password_problem(text)
        if problem:
            return SecretProblem(f"{where} key {key!r}: an MD5 password has {problem}")
        return text

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
        await self.read_secrets()
        settings, reason, problem = self._current()
        if problem:
            await self._report(obj, (False, reason, problem), (False, reason, problem))
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
