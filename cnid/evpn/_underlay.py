"""The routed underlay (RFC 7938): the node's VTEP announced to its leaves,
the other nodes' VTEPs learned from them and installed with ECMP.

* ``UnderlayPolicy`` + ``UnderlayRib`` (pure): the IPv4 unicast paths each
  neighbour sent, per prefix ``{neighbour: next hop}``; what may not be
  installed is refused at the door with a counted reason (``SKIP_*``): the
  node's own VTEP, the default route unless ``[underlay] default_route``,
  the pods' prefixes, link-local, loopback, multicast and reserved space,
  prefixes covering one of the node's own links, an AS path with the node's
  AS (beyond ``allow_as_in``), a bad next hop, more than ``max_routes``
  prefixes from one neighbour. ``wanted()`` is the kernel's target:
  prefix -> next hops (one per neighbour that sent it: ECMP).
* ``UnderlayController.run``: ``cnid-vtep`` with the VTEP /32 first, then
  the routes the previous run left are adopted (dumped, kept as they are),
  then the speaker's events feed the RIB and every change is written to the
  kernel as one replace per changed prefix (no delete and re-add). A
  session that goes down takes its next hops out at once. Adopted routes
  stay (merged with what is learned, so nothing flaps) until every
  neighbour of the family has sent its End-of-RIB or ``stale_timeout``
  passed; then what was not learned again is removed. Every
  ``REPAIR_INTERVAL`` the kernel's routes of ours are read again, so a route
  someone deleted or changed is written back; a pass the kernel fails is
  retried with backoff (``reconcile_forever``).
* ``adjust`` (installed as the speaker's ``adjust``): the ``ipv4 unicast``
  family, the local address facing each eBGP neighbour and the VTEP route
  in ExaBGP's configuration.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import msgspec
import trio

from .. import dataplane
from ..bgp import (
    AS_LOOP,
    SpeakerConfig,
    SpeakerDown,
    UnicastPath,
    UpdateEvent,
    loops,
    with_underlay,
)
from ..bgp._config import UNICAST
from ..bgp._events import StateEvent
from ..core._metrics import Metrics
from ..core._notify import Notifier
from ..core._reconcile import Backoff, reconcile_forever

log = logging.getLogger("cnid.underlay")

SKIP_OWN_VTEP = "own-vtep"
SKIP_DEFAULT = "default-route"
SKIP_POD_PREFIX = "pod-prefix"
SKIP_LINK_LOCAL = "link-local"
SKIP_MULTICAST = "multicast"
SKIP_RESERVED = "reserved"
SKIP_CONNECTED = "connected"
SKIP_AS_LOOP = AS_LOOP  # the speaker's reason for EVPN paths, the same rule
SKIP_BAD_NEXTHOP = "bad-nexthop"
SKIP_MAX_ROUTES = "max-routes"
SKIP_MALFORMED = "malformed"
SKIP_KERNEL = "kernel-refused"

#: How often the kernel's routes of ours are read again (drift repaired).
REPAIR_INTERVAL = 30.0

_RESERVED = tuple(ipaddress.IPv4Network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "240.0.0.0/4"))
_LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")
_MULTICAST = ipaddress.IPv4Network("224.0.0.0/4")


class UnderlayPolicy(msgspec.Struct, frozen=True):
    """What may be installed."""

    vtep: str
    asn: int = 0
    #: Pod CIDRs and blocks (never routed through the underlay).
    pod_prefixes: tuple[str, ...] = ()
    #: The node's own interface addresses (``a.b.c.d/len``): a prefix
    #: covering one of them would take over a connected route.
    connected: tuple[str, ...] = ()
    accept_default: bool = False
    max_routes: int = 4096
    #: neighbour -> how often the node's AS may be in a path (allowas-in).
    allow_as_in: Mapping[str, int] = {}


def _overlaps(net: ipaddress.IPv4Network, others: Iterable[str]) -> bool:
    for text in others:
        try:
            other = ipaddress.ip_network(text, strict=False)
        except ValueError:
            continue
        if other.version == 4 and net.overlaps(other):
            return True
    return False


def refusal(policy: UnderlayPolicy, peer: str, path: UnicastPath) -> str | None:
    """Why ``path`` may not be installed; None when it may."""
    try:
        net = ipaddress.IPv4Network(path.prefix)
        hop = ipaddress.IPv4Address(path.nexthop)
    except ValueError:
        return SKIP_MALFORMED
    vtep = ipaddress.IPv4Address(policy.vtep)
    default = net.prefixlen == 0
    if default:
        if not policy.accept_default:
            return SKIP_DEFAULT
    else:
        reason = _prefix_refusal(policy, net, vtep)
        if reason is not None:
            return reason
    if (
        hop.is_unspecified
        or hop.is_loopback
        or hop.is_multicast
        or hop == vtep
        or (hop in net and not default)
        or any(hop in r for r in _RESERVED)
    ):
        return SKIP_BAD_NEXTHOP
    if policy.asn and loops(path.as_path, policy.asn, policy.allow_as_in.get(peer, 0)):
        return SKIP_AS_LOOP
    return None


def _prefix_refusal(
    policy: UnderlayPolicy, net: ipaddress.IPv4Network, vtep: ipaddress.IPv4Address
) -> str | None:
    """Why a prefix other than the default route may not be installed."""
    if vtep in net:
        return SKIP_OWN_VTEP
    if net.subnet_of(_LINK_LOCAL) or net.supernet_of(_LINK_LOCAL):
        return SKIP_LINK_LOCAL
    if net.overlaps(_MULTICAST):
        return SKIP_MULTICAST
    if any(net.overlaps(r) for r in _RESERVED):
        return SKIP_RESERVED
    if _overlaps(net, policy.pod_prefixes):
        return SKIP_POD_PREFIX
    if any(
        ipaddress.IPv4Interface(c).ip in net for c in policy.connected if ":" not in c
    ) or _covers_link(net, policy.connected):
        return SKIP_CONNECTED
    return None


def _covers_link(net: ipaddress.IPv4Network, connected: Iterable[str]) -> bool:
    """``net`` is one of the node's own subnets or inside one (a leaf's
    link /31 announced back, or a more specific route into a link)."""
    for c in connected:
        if ":" in c:
            continue
        link = ipaddress.IPv4Interface(c).network
        if link.prefixlen < 32 and net.subnet_of(link):
            return True
    return False


class UnderlayRib:
    """IPv4 unicast paths by prefix and neighbour; the hostile-input gate."""

    def __init__(self, policy: UnderlayPolicy, on_skip: Callable[[str], None] | None = None):
        self.policy = policy
        self.on_skip = on_skip
        #: prefix -> neighbour -> next hop
        self.paths: dict[str, dict[str, str]] = {}
        self._by_peer: dict[str, set[str]] = {}
        self.skipped: dict[str, int] = {}

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if self.on_skip is not None:
            self.on_skip(reason)

    def skip(self, reason: str, count: int = 1) -> None:
        for _ in range(count):
            self._skip(reason)

    def announce(self, peer: str, path: UnicastPath) -> str | None:
        """Take one path (replacing ``peer``'s earlier one of that prefix);
        the reason when it is refused (an earlier path of the prefix from
        that neighbour is then withdrawn: its newest word is unusable)."""
        reason = refusal(self.policy, peer, path)
        mine = self._by_peer.setdefault(peer, set())
        if reason is None and path.prefix not in mine and len(mine) >= self.policy.max_routes:
            reason = SKIP_MAX_ROUTES
        if reason is not None:
            self.withdraw(peer, path.prefix)
            self._skip(reason)
            return reason
        mine.add(path.prefix)
        self.paths.setdefault(path.prefix, {})[peer] = path.nexthop
        return None

    def withdraw(self, peer: str, prefix: str) -> bool:
        hops = self.paths.get(prefix)
        if hops is None or peer not in hops:
            return False
        del hops[peer]
        if not hops:
            del self.paths[prefix]
        self._by_peer.get(peer, set()).discard(prefix)
        return True

    def drop_peer(self, peer: str) -> int:
        """Every path of ``peer`` (its session ended): how many."""
        prefixes = self._by_peer.pop(peer, set())
        for prefix in prefixes:
            hops = self.paths.get(prefix)
            if hops is not None:
                hops.pop(peer, None)
                if not hops:
                    del self.paths[prefix]
        return len(prefixes)

    def wanted(self) -> dict[str, frozenset[str]]:
        return {p: frozenset(h.values()) for p, h in self.paths.items()}

    def peers(self) -> list[str]:
        """The neighbours with paths."""
        return [p for p, prefixes in self._by_peer.items() if prefixes]

    def entries(self) -> list[dict[str, Any]]:
        """``cnictl underlay routes``: prefix, next hops, neighbours."""
        return [
            {
                "prefix": prefix,
                "nexthops": sorted(set(hops.values())),
                "neighbors": sorted(hops),
            }
            for prefix, hops in sorted(self.paths.items(), key=lambda kv: _sort_key(kv[0]))
        ]


def _sort_key(prefix: str) -> tuple[int, int]:
    net = ipaddress.IPv4Network(prefix)
    return int(net.network_address), net.prefixlen


def merged(
    learned: Mapping[str, frozenset[str]], adopted: Mapping[str, frozenset[str]]
) -> dict[str, frozenset[str]]:
    """While routes of a previous run are adopted: what is learned, with the
    adopted next hops of each prefix kept too (a restart changes nothing in
    the kernel while the neighbours send their routes again)."""
    out = dict(learned)
    for prefix, hops in adopted.items():
        out[prefix] = out.get(prefix, frozenset()) | hops
    return out


class _Speaker(Protocol):
    config: SpeakerConfig | None
    adjust: Callable[[SpeakerConfig], SpeakerConfig] | None

    def subscribe(self, listener: Callable[[Any], None]) -> None: ...
    def reconfigure(self) -> None: ...


class UnderlayKernel(Protocol):
    """The dataplane seam (``cnid.dataplane``'s functions; fakes in tests)."""

    def ensure_vtep(self, address: str) -> Awaitable[int]: ...
    def dump_underlay_routes(self) -> Awaitable[dict[str, frozenset[str]]]: ...
    def apply_underlay_routes(
        self, wanted: Mapping[str, frozenset[str]], current: Mapping[str, frozenset[str]] | None
    ) -> Awaitable[dataplane.RoutesApplied]: ...
    def connected_addresses(self) -> Awaitable[list[str]]: ...


class UnderlayController:
    def __init__(
        self,
        *,
        speaker: _Speaker,
        policy: UnderlayPolicy,
        metrics: Metrics | None = None,
        kernel: UnderlayKernel = dataplane,
        stale_timeout: float = 120.0,
        refresh: float = 10.0,
        pod_prefixes: Callable[[], Iterable[str]] | None = None,
    ) -> None:
        self.speaker = speaker
        self.pod_prefixes = pod_prefixes
        self.metrics = metrics
        self.kernel = kernel
        self.rib = UnderlayRib(policy, self._count_skip)
        self.stale_timeout = stale_timeout
        self.refresh = refresh
        #: What the kernel holds of ours (prefix -> next hops).
        self.installed: dict[str, frozenset[str]] = {}
        #: Routes of a previous run kept until the neighbours re-sent theirs.
        self.adopted: dict[str, frozenset[str]] = {}
        self._eor: set[str] = set()
        self._work = Notifier()
        self._deadline = 0.0
        self._next_repair = 0.0
        self.errors: dict[str, str] = {}
        self.applied = 0

    @property
    def policy(self) -> UnderlayPolicy:
        return self.rib.policy

    def _count_skip(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.underlay_skipped.labels(reason).inc()

    # -- the speaker's configuration -------------------------------------------

    def adjust(self, config: SpeakerConfig) -> SpeakerConfig:
        """The speaker's configuration with the underlay; the node's AS and
        each neighbour's ``allow_as_in`` taken from it for the as-loop rule
        (the same as the speaker's for EVPN paths)."""
        allow = {n.address: n.allow_as_in for n in config.neighbors if n.allow_as_in}
        if allow != dict(self.policy.allow_as_in) or config.asn != self.policy.asn:
            self.rib.policy = msgspec.structs.replace(
                self.policy, asn=config.asn, allow_as_in=allow
            )
        connected = list(self.policy.connected)
        local_for = {
            n.address: dataplane.address_facing(n.address, connected)
            for n in config.neighbors
            if ":" not in n.address
        }
        return with_underlay(config, self.policy.vtep, {k: v for k, v in local_for.items() if v})

    def _unicast_peers(self) -> set[str]:
        config = self.speaker.config
        if config is None:
            return set()
        return {n.address for n in config.neighbors if UNICAST in n.families}

    # -- events ------------------------------------------------------------------

    def _event(self, event: Any) -> None:
        if isinstance(event, UpdateEvent):
            update = event.unicast
            if update is None:
                return
            for reason, what in update.skipped:
                log.debug("underlay: route from %s skipped (%s): %s", event.peer, reason, what)
                self.rib.skip(reason if reason in (SKIP_BAD_NEXTHOP,) else SKIP_MALFORMED)
            for prefix in update.withdrawn:
                self.rib.withdraw(event.peer, prefix)
            for path in update.announced:
                refused = self.rib.announce(event.peer, path)
                if refused is not None:
                    log.info(
                        "underlay: %s via %s from %s not installed: %s",
                        path.prefix,
                        path.nexthop,
                        event.peer,
                        refused,
                    )
            if update.eor:
                self._eor.add(event.peer)
            self._work.bump()
        elif isinstance(event, StateEvent):
            if event.state == "down":
                self.peer_down(event.peer, "BGP peer")
        elif isinstance(event, SpeakerDown):
            for peer in self.rib.peers():
                self.rib.drop_peer(peer)
            self._eor.clear()
            self._work.bump()

    def peer_down(self, peer: str, why: str = "BFD to") -> None:
        """``peer``'s next hops out of every ECMP route at once: its BGP
        session went down, or its BFD session did (``BfdGuard``: before the
        session's own end is even reported)."""
        if self.rib.drop_peer(peer):
            log.info("underlay: %s %s down: its next hops removed", why, peer)
        self._eor.discard(peer)
        self._work.bump()

    # -- the service ---------------------------------------------------------------

    def wanted(self) -> dict[str, frozenset[str]]:
        learned = self.rib.wanted()
        return merged(learned, self.adopted) if self.adopted else learned

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.kernel.ensure_vtep(self.policy.vtep)
        self._set_connected(await self.kernel.connected_addresses())
        self.installed = dict(await self.kernel.dump_underlay_routes())
        self.adopted = dict(self.installed)
        if self.adopted:
            log.info("underlay: %d routes of the previous run adopted", len(self.adopted))
        self.speaker.adjust = self.adjust
        self.speaker.reconfigure()  # the policy's AS and allowas-in first: the
        self.speaker.subscribe(self._event)  # routes heard since the start follow
        self._publish()
        self._deadline = trio.current_time() + self.stale_timeout
        self._next_repair = trio.current_time() + REPAIR_INTERVAL
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_addresses)
            await reconcile_forever(
                self._pass,
                name="underlay: routes",
                interval=1.0,  # the adoption's end and the repair are timers
                changes=(self._work,),
                backoff=Backoff(1.0, 30.0, jitter=False),
                logger=log,
            )

    async def _pass(self) -> None:
        now = trio.current_time()
        if self.adopted and (
            now >= self._deadline or (self._unicast_peers() and self._unicast_peers() <= self._eor)
        ):
            log.info("underlay: adoption over; routes not learned again are removed")
            self.adopted = {}
        if now >= self._next_repair:
            # what the kernel holds of ours, read again: a route someone
            # deleted (or changed) is written back
            self._next_repair = now + REPAIR_INTERVAL
            self.installed = dict(await self.kernel.dump_underlay_routes())
        await self._apply()

    async def _apply(self) -> None:
        wanted = self.wanted()
        if not dataplane.plan_routes(self.installed, wanted):
            self._publish()
            return  # nothing to write: no worker thread
        result = await self.kernel.apply_underlay_routes(wanted, self.installed)
        failed = dict(result.errors)
        for prefix in [p for p in self.errors if p not in wanted]:
            del self.errors[prefix]  # no longer wanted: nothing refused
        for change in result.changes:
            if change.prefix in failed:
                continue
            if change.op == "delete":
                self.installed.pop(change.prefix, None)
            else:
                self.installed[change.prefix] = frozenset(change.nexthops)
            self.errors.pop(change.prefix, None)
        for prefix, msg in failed.items():
            if self.errors.get(prefix) != msg:
                log.error("underlay: route %s: %s", prefix, msg)
                self._count_skip(SKIP_KERNEL)
            self.errors[prefix] = msg
        self.applied += len(result.changes)
        self._publish()

    def _publish(self) -> None:
        if self.metrics is not None:
            self.metrics.underlay_routes.set(len(self.installed))

    def _set_connected(self, addresses: list[str]) -> bool:
        """The node's link addresses (and the pods' prefixes) into the
        policy; True when the addresses changed."""
        if self.pod_prefixes is not None:
            pods = tuple(sorted(set(self.pod_prefixes())))
            if pods != self.policy.pod_prefixes:
                self.rib.policy = msgspec.structs.replace(self.policy, pod_prefixes=pods)
        connected = tuple(sorted(a for a in addresses if not a.startswith(self.policy.vtep + "/")))
        if connected == self.policy.connected:
            return False
        self.rib.policy = msgspec.structs.replace(self.policy, connected=connected)
        return True

    async def _watch_addresses(self) -> None:
        """The node's link addresses, read again every ``refresh`` seconds:
        a new uplink gets its local address in ExaBGP's configuration."""
        while True:
            await trio.sleep(self.refresh)
            if self._set_connected(await self.kernel.connected_addresses()):
                self.speaker.reconfigure()

    def routes(self) -> list[dict[str, Any]]:
        """``cnictl underlay routes``: the RIB, with what the kernel holds."""
        out = self.rib.entries()
        for entry in out:
            entry["installed"] = sorted(self.installed.get(entry["prefix"], frozenset()))
            if entry["prefix"] in self.errors:
                entry["error"] = self.errors[entry["prefix"]]
        learned = {e["prefix"] for e in out}
        for prefix, hops in sorted(self.adopted.items()):
            if prefix not in learned:
                out.append(
                    {
                        "prefix": prefix,
                        "nexthops": sorted(hops),
                        "neighbors": [],
                        "installed": sorted(self.installed.get(prefix, frozenset())),
                        "adopted": True,
                    }
                )
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "vtep": self.policy.vtep,
            "routes": len(self.installed),
            "adopting": bool(self.adopted),
            "skipped": dict(sorted(self.rib.skipped.items())),
        }
