"""ExaBGP's configuration and environment, rendered from the node's settings.

Who the node peers with is decided by the cluster (``cnid.bgp.neighbors``):
route reflectors when the node's VRFNodeConfig names some (the node
connects, the reflectors listen), else every other node (a full iBGP mesh:
of each pair, the node with the higher address connects and the other one
listens, so two speakers never race two sessions into a collision).

ExaBGP has no runtime neighbour API: a change of the neighbour set is a new
configuration file and SIGUSR1 (a reload keeps the other sessions and the
routes announced to them).
"""

from __future__ import annotations

import ipaddress
import shlex
import sys
from pathlib import Path

import msgspec

from ..core._errors import ConfigError

FAMILY = "l2vpn evpn"
#: The routed underlay's family (RFC 7938): the node's VTEP /32 announced,
#: the other nodes' VTEPs learned (cnid.evpn._underlay).
UNICAST = "ipv4 unicast"
PROCESS = "cnid"
#: The log levels ExaBGP accepts (exabgp.logger.handler.levels); another one
#: makes it exit at start, over and over.
EXABGP_LOG_LEVELS = ("FATAL", "CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")


class BgpOptions(msgspec.Struct, frozen=True):
    """server.ini's ``[bgp]`` section (cnid's own; pyroute2-cni ran FRR)."""

    #: The AS of the cluster: every node and its route reflectors (iBGP).
    asn: int = 65000
    #: Hold time in seconds (keepalives every third of it). 0: no keepalives.
    hold_time: int = 30
    #: A file with the TCP MD5 password (a Secret mounted in the pod); empty: none.
    password_file: str = ""
    #: GTSM (RFC 5082): send with TTL 255, accept only TTL 255 (one hop).
    ttl_security: bool = False
    #: Graceful restart time advertised to peers (seconds; 0: off).
    graceful_restart: int = 120
    #: The TCP port of BGP, ours and the peers'.
    port: int = 179
    #: Route reflectors for a node whose VRFNodeConfig names none (standalone
    #: nodes, or a default for every node); comma-separated addresses.
    route_reflectors: str = ""
    #: Further iBGP peers of every node, whatever the mode (e.g. the fabric's
    #: leaf or border routers); comma-separated addresses. The node connects.
    peers: str = ""
    #: How long after (re)start the daemon waits for each peer's End-of-RIB
    #: before it sweeps the kernel entries of routes not re-learned.
    stale_timeout: float = 120.0
    #: ExaBGP's log level (its log goes to the daemon's log).
    log_level: str = "WARNING"
    #: FRR's ``maximum-prefix``: the most EVPN routes one peer may send
    #: (0: no limit).
    max_prefix: int = 0
    #: Past the limit: ``warning`` (logged once, counted, the session kept,
    #: the routes beyond the limit held back) or ``restart`` (the session
    #: torn down, its routes removed, no session for ``max_prefix_restart``
    #: seconds: FRR's ``maximum-prefix N restart M``, in seconds).
    max_prefix_action: str = "warning"
    max_prefix_restart: int = 60
    #: Who runs the speaker process (ExaBGP): ``detached`` (the daemon starts
    #: it once and leaves it running: a restart of the daemon keeps every
    #: session), ``external`` (someone else: the pod's ``speaker`` container,
    #: a systemd unit), ``child`` (it ends with the daemon: its sessions too).
    speaker: str = "detached"
    #: The ``[neighbor ADDRESS]`` sections (address, settings), sorted.
    neighbor_sections: tuple[tuple[str, NeighborOptions], ...] = ()

    def validated(self) -> BgpOptions:
        if not 1 <= self.asn < 2**32:
            raise ConfigError(f"[bgp] asn = {self.asn}: allowed 1..4294967295")
        if self.hold_time != 0 and not 3 <= self.hold_time <= 65535:
            raise ConfigError(f"[bgp] hold_time = {self.hold_time}: allowed 0 or 3..65535")
        if not 0 <= self.graceful_restart <= 4095:
            raise ConfigError(
                f"[bgp] graceful_restart = {self.graceful_restart}: allowed 0..4095 seconds"
            )
        if not 0 <= self.stale_timeout <= 86400:
            raise ConfigError(
                f"[bgp] stale_timeout = {self.stale_timeout}: allowed 0..86400 seconds"
            )
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"[bgp] port = {self.port}: allowed 1..65535")
        if self.log_level.upper() not in EXABGP_LOG_LEVELS:
            raise ConfigError(
                f"[bgp] log_level = {self.log_level!r}: allowed {', '.join(EXABGP_LOG_LEVELS)}"
                " (ExaBGP's levels)"
            )
        if not 0 <= self.max_prefix <= 2**32 - 1:
            raise ConfigError("[bgp] max_prefix must be 0..4294967295 (0: no limit)")
        if self.max_prefix_action not in ("warning", "restart"):
            action = self.max_prefix_action
            raise ConfigError(f"[bgp] max_prefix_action must be warning or restart, not {action!r}")
        if not 1 <= self.max_prefix_restart <= 65535:
            raise ConfigError("[bgp] max_prefix_restart must be 1..65535 seconds")
        if self.speaker not in ("detached", "external", "child"):
            raise ConfigError(
                f"[bgp] speaker = {self.speaker!r}: allowed detached, external, child"
            )
        self.reflectors  # noqa: B018 - raises ConfigError on a bad address
        self.static_peers  # noqa: B018
        return self

    @property
    def reflectors(self) -> tuple[str, ...]:
        return _addresses("route_reflectors", self.route_reflectors)

    @property
    def static_peers(self) -> tuple[str, ...]:
        return _addresses("peers", self.peers)

    def password(self) -> str:
        return _read_password("[bgp] password_file", self.password_file)

    def explicit_neighbors(self) -> tuple[Neighbor, ...]:
        """The ``[neighbor ADDRESS]`` sections' neighbours, passwords read."""
        return tuple(sorted(o.neighbor(a) for a, o in self.neighbor_sections))


def _read_password(key: str, path: str) -> str:
    if not path:
        return ""
    try:
        secret = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{key} {path}: {exc.strerror}") from None
    problem = password_problem(secret)
    if problem:
        raise ConfigError(f"{key} {path}: {problem}")
    return secret


def password_problem(secret: str) -> str:
    """Why ``secret`` cannot be a TCP MD5 password in ExaBGP's
    configuration ("" if it can)."""
    if not secret or len(secret) > 80 or '"' in secret or "\\" in secret:
        return "1-80 characters, no quotes or backslashes"
    if not secret.isprintable():
        return "printable characters only"
    return ""


def _addresses(key: str, text: str) -> tuple[str, ...]:
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            out.append(str(ipaddress.ip_address(item)))
        except ValueError:
            raise ConfigError(f"[bgp] {key}: {item!r} is not an address") from None
    return tuple(out)


#: What a neighbour's ``allow_as_in`` and ``multihop`` may be (FRR's ranges).
ALLOW_AS_IN_MAX = 10
MULTIHOP_MIN, MULTIHOP_MAX = 2, 255
#: A neighbour's BFD timers: 300 ms x 3 by default, FRR's ranges (its
#: ``transmit-interval``/``receive-interval`` 10..60000 ms, ``detect-multiplier``
#: 2..255).
BFD_INTERVAL_MS, BFD_MULTIPLIER = 300, 3
BFD_INTERVAL_MIN, BFD_INTERVAL_MAX = 10, 60000
BFD_MULTIPLIER_MIN, BFD_MULTIPLIER_MAX = 2, 255


class Neighbor(msgspec.Struct, frozen=True, order=True):
    address: str
    passive: bool = False
    #: Why this neighbour: "mesh:<node>", "route-reflector", "static" or
    #: "neighbor" (an explicit one: VRFNodeConfig or ``[neighbor ADDRESS]``).
    role: str = ""
    #: The neighbour's AS; 0: the node's own (iBGP).
    asn: int = 0
    #: eBGP multihop: the TTL the node sends with (2..255); 0: directly
    #: connected (TTL 1 for eBGP, the kernel's default for iBGP).
    multihop: int = 0
    #: This neighbour's TCP MD5 password (overrides ``[bgp] password_file``).
    password: str = ""
    #: BFD for this session (``cnid.evpn``'s ``BfdGuard``): single hop, or
    #: multihop (RFC 5883) with ``multihop``; its interval (our Desired Min
    #: TX and Required Min RX, ms) and detect multiplier.
    bfd: bool = False
    bfd_interval_ms: int = BFD_INTERVAL_MS
    bfd_multiplier: int = BFD_MULTIPLIER
    #: How many times the node's own AS may be in the AS_PATH of a route
    #: from this neighbour (FRR's ``allowas-in``); beyond: skipped (as-loop).
    allow_as_in: int = 0
    families: tuple[str, ...] = (FAMILY,)
    #: The node's address for this session (the routed underlay: the node's
    #: end of the point-to-point link to the leaf); "": SpeakerConfig.local_address.
    local_address: str = ""

    def peer_as(self, local_as: int) -> int:
        return self.asn or local_as

    def ebgp(self, local_as: int) -> bool:
        return self.peer_as(local_as) != local_as


class NeighborOptions(msgspec.Struct, frozen=True):
    """One ``[neighbor ADDRESS]`` section of server.ini (a standalone node's
    explicit neighbour; a VRFNodeConfig's ``neighbors`` replace them)."""

    asn: int = 0
    password_file: str = ""
    multihop: int = 0
    bfd: bool = False
    bfd_interval_ms: int = BFD_INTERVAL_MS
    bfd_multiplier: int = BFD_MULTIPLIER
    allow_as_in: int = 0

    def neighbor(self, address: str) -> Neighbor:
        """The neighbour (its password read now); ConfigError naming the key."""
        return Neighbor(
            address,
            role="neighbor",
            asn=self.asn,
            multihop=self.multihop,
            password=_read_password(f"[neighbor {address}] password_file", self.password_file),
            bfd=self.bfd,
            bfd_interval_ms=self.bfd_interval_ms,
            bfd_multiplier=self.bfd_multiplier,
            allow_as_in=self.allow_as_in,
        )


def check_neighbor(
    where: str,
    address: str,
    asn: int,
    multihop: int,
    allow_as_in: int,
    allow_key: str = "allowAsIn",
    *,
    bfd_interval_ms: int = BFD_INTERVAL_MS,
    bfd_multiplier: int = BFD_MULTIPLIER,
    bfd_keys: tuple[str, str] = ("bfdIntervalMs", "bfdMultiplier"),
) -> str:
    """Why these neighbour settings are bad ("" if they are not); ``where``
    starts the message (a file's section, a config's name), ``allow_key``
    and ``bfd_keys`` name the fields as the source spells them. The BFD
    timers are checked whether or not ``bfd`` is on (kept for when it is)."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return f"{where}: {address!r} is not an IP address"
    if not 1 <= asn < 2**32:
        return f"{where}: asn {asn} out of range (1..4294967295)"
    if multihop and not MULTIHOP_MIN <= multihop <= MULTIHOP_MAX:
        return (
            f"{where}: multihop {multihop} out of range "
            f"({MULTIHOP_MIN}..{MULTIHOP_MAX}; absent: directly connected)"
        )
    if not 0 <= allow_as_in <= ALLOW_AS_IN_MAX:
        return f"{where}: {allow_key} {allow_as_in} out of range (0..{ALLOW_AS_IN_MAX})"
    if not BFD_INTERVAL_MIN <= bfd_interval_ms <= BFD_INTERVAL_MAX:
        return (
            f"{where}: {bfd_keys[0]} {bfd_interval_ms} out of range "
            f"({BFD_INTERVAL_MIN}..{BFD_INTERVAL_MAX} ms; absent: {BFD_INTERVAL_MS})"
        )
    if not BFD_MULTIPLIER_MIN <= bfd_multiplier <= BFD_MULTIPLIER_MAX:
        return (
            f"{where}: {bfd_keys[1]} {bfd_multiplier} out of range "
            f"({BFD_MULTIPLIER_MIN}..{BFD_MULTIPLIER_MAX}; absent: {BFD_MULTIPLIER})"
        )
    return ""


class SpeakerConfig(msgspec.Struct, frozen=True):
    """Everything ExaBGP's configuration depends on."""

    router_id: str
    local_address: str
    asn: int
    neighbors: tuple[Neighbor, ...]
    hold_time: int = 30
    password: str = ""
    ttl_security: bool = False
    graceful_restart: int = 120
    port: int = 179
    #: The routed underlay's VTEP address: announced as ``<vtep>/32`` with
    #: next-hop self to every neighbour with the ``ipv4 unicast`` family
    #: (a static route of ExaBGP's configuration); "": none.
    vtep: str = ""


def with_underlay(config: SpeakerConfig, vtep: str, local_for: dict[str, str]) -> SpeakerConfig:
    """The routed underlay on ``config``: every eBGP neighbour over IPv4 (an
    AS other than the node's) gets the ``ipv4 unicast`` family and, when
    ``local_for`` knows it (neighbour -> the node's address on the link to
    it), that local address, which is also the next hop of the VTEP /32."""
    out = []
    for n in config.neighbors:
        # IPv4 sessions only: the VTEP route's next hop is the session's address
        if n.ebgp(config.asn) and ":" not in n.address:
            families = n.families if UNICAST in n.families else (*n.families, UNICAST)
            local = n.local_address or local_for.get(n.address, "")
            n = msgspec.structs.replace(n, families=families, local_address=local)
        out.append(n)
    return msgspec.structs.replace(config, neighbors=tuple(out), vtep=vtep)


def mesh_neighbors(local: str, others: dict[str, str]) -> tuple[Neighbor, ...]:
    """Full mesh: a neighbour per other node (name -> address). Of each pair
    the higher address connects; this node listens for the lower ones."""
    me = ipaddress.ip_address(local)
    out = []
    for name, address in others.items():
        ip = ipaddress.ip_address(address)
        if ip == me or ip.version != me.version:
            continue
        higher = int(ip) > int(me)
        out.append(Neighbor(str(ip), passive=higher, role=f"mesh:{name}"))
    return tuple(sorted(set(out)))


def reflector_neighbors(reflectors: tuple[str, ...]) -> tuple[Neighbor, ...]:
    return tuple(sorted({Neighbor(rr, passive=False, role="route-reflector") for rr in reflectors}))


def static_neighbors(peers: tuple[str, ...], taken: tuple[Neighbor, ...]) -> tuple[Neighbor, ...]:
    """``[bgp] peers`` not already neighbours for another reason."""
    known = {n.address for n in taken}
    return tuple(sorted(Neighbor(p, passive=False, role="static") for p in set(peers) - known))


def relay_command(socket_path: str) -> str:
    """ExaBGP's API helper: stdlib-only, started with -I -S (fast, isolated)."""
    relay = Path(__file__).with_name("_relay.py")
    return shlex.join([sys.executable, "-I", "-S", str(relay), socket_path])


def render(config: SpeakerConfig, api_socket: str) -> str:
    """ExaBGP's configuration file."""
    lines = [
        f"process {PROCESS} {{",
        f"    run {relay_command(api_socket)};",
        "    encoder json;",
        "}",
        "",
    ]
    for n in config.neighbors:
        lines += [
            f"neighbor {n.address} {{",
            f"    description {shlex.quote(n.role or 'peer')};",
            f"    router-id {config.router_id};",
            f"    local-address {n.local_address or config.local_address};",
            f"    local-as {config.asn};",
            f"    peer-as {n.peer_as(config.asn)};",
            f"    hold-time {config.hold_time};",
            f"    passive {'true' if n.passive else 'false'};",
            f"    connect {config.port};",
            "    group-updates true;",
            "    adj-rib-out true;",
            # what a daemon that attaches to a running ExaBGP asks for again
            # (the extension's ``replay``)
            "    adj-rib-in true;",
            "    manual-eor true;",
        ]
        password = n.password or config.password
        if password:
            lines.append(f'    md5-password "{password}";')
        lines += _ttl_lines(config, n)
        lines += ["    family {", *(f"        {f};" for f in n.families), "    }"]
        if config.vtep and UNICAST in n.families:
            lines += ["    static {", f"        route {config.vtep}/32 next-hop self;", "    }"]
        lines.append("    capability {")
        lines.append(
            f"        graceful-restart {config.graceful_restart};"
            if config.graceful_restart
            else "        graceful-restart disable;"
        )
        lines += [
            "        route-refresh enable;",
            "    }",
            "    api {",
            f"        processes [ {PROCESS} ];",
            "        neighbor-changes;",
            "        receive {",
            "            parsed;",
            "            update;",
            "            notification;",
            "        }",
            "    }",
            "}",
            "",
        ]
    return "\n".join(lines)


def _ttl_lines(config: SpeakerConfig, n: Neighbor) -> list[str]:
    """GTSM (``ttl_security``: send 255, accept 256 - hops); else eBGP's
    TTL: the multihop TTL, or 1 for a directly connected eBGP neighbour
    (ExaBGP 5.0 has no ``multi-hop`` keyword: ``outgoing-ttl`` it is); iBGP
    without either: the kernel's default."""
    if config.ttl_security:
        return ["    outgoing-ttl 255;", f"    incoming-ttl {256 - max(n.multihop, 1)};"]
    if n.multihop:
        return [f"    outgoing-ttl {n.multihop};"]
    if n.ebgp(config.asn):
        return ["    outgoing-ttl 1;"]
    return []


def environment(config: SpeakerConfig, log_level: str) -> dict[str, str]:
    """ExaBGP's settings, as the environment variables it reads."""
    listens = any(n.passive for n in config.neighbors)
    return {
        "exabgp.daemon.user": "root",
        "exabgp.daemon.daemonize": "false",
        "exabgp.daemon.drop": "false",
        "exabgp.log.destination": "stdout",
        "exabgp.log.level": log_level,
        "exabgp.log.short": "true",
        # Our command answers with its own ack lines (matched by id).
        "exabgp.api.ack": "false",
        "exabgp.api.cli": "false",
        "exabgp.api.respawn": "true",
        "exabgp.api.encoder": "json",
        "exabgp.tcp.bind": config.local_address if listens else "",
        "exabgp.tcp.port": str(config.port),
        "exabgp.tcp.attempts": "0",
        "exabgp.bgp.passive": "false",
        "exabgp.cache.attributes": "true",
        # ExaBGP's loop polls its sockets with a timeout of speed/100 s and
        # wakes at once for any I/O: 1.0 (its default) is 100 idle wake-ups a
        # second (2% of a core on a server, a fifth of an emulated one), 5.0 is
        # 20; its timers count whole seconds.
        "exabgp.reactor.speed": "5.0",
        # read by cnid's extension (GTSM on the sessions peers open)
        "CNID_GTSM": "1" if config.ttl_security else "0",
    }
