"""What the node's root namespace needs so that kubelet reaches the pods,
pods reach out, and Services work, without a path between two tenants: the
policy rules, the leak routes in each VRF table and our nftables table.
Pure: the same inputs give the same plan, byte for byte (a restarted daemon
finds its objects as it left them). ``_hostpath.py`` applies it; the README
("Host integration") draws the packet paths.

Per domain with VRF id ``v`` (1..65535), table ``T``, prefix ``P``:

* its interfaces (pod veths, bridges, VXLAN devices) are in interface group
  ``0x0c1d0000 | v``; its connections carry ``v`` in the conntrack mark
  (under ``mark_mask``, 0xffff0000 by default: kube-proxy's 0x4000 and 0x8000
  are never touched), and a connection from a pod to outside ``P`` has the
  conntrack zone ``v`` in its original direction (so two tenants with the
  same addresses and ports are two connections; the NAT engine then picks
  distinct reply tuples in the shared zone 0);
* rules (all ``proto 149``): replies marked ``v`` -> T; locally generated
  traffic to this node's blocks of the domain -> T (probes); traffic from
  ``P`` that the VRF table threw out (service CIDR, egress) -> local (service
  CIDR only), then main, then unreachable: nothing after that rule ever sees
  a tenant's packet, whatever rules others add later;
* routes in T (``proto 149``, metric LEAK_METRIC: any route the fabric
  announces for the same prefix wins): ``throw`` the service CIDRs,
  ``unreachable P`` (an address of the domain that T lacks never leaves the
  VRF), ``throw default`` when egress is on;
* tenant-to-node policy (``node_protect``, on by default): in nft's
  ``input`` hook, what arrives through the domain's VRF device (or, as IPv6
  neighbour discovery does, on one of its devices) for the node's own
  addresses passes only when it belongs to a connection the node opened or
  accepted (probes' replies), was DNATed (kube-proxy: a ClusterIP or
  NodePort whose endpoint is this node), is addressed to a ClusterIP (IPVS
  rewrites it after this hook), is ICMP echo, an ICMP error or neighbour
  discovery, or matches ``node_allow`` (a node-local DNS cache); anything
  else that would open a connection is dropped. Every domain gets it, a
  domain limited to probes too.
"""

from __future__ import annotations

import ipaddress
import socket

import msgspec

from ._names import vrf_name
from ._rules import FR_ACT_UNREACHABLE, FibRule

GROUP_BASE = 0x0C1D0000
"""Interface group of a domain's devices: GROUP_BASE | VRF id."""
GROUP_MASK = 0xFFFF0000
LEAK_METRIC = 4278198271
"""Metric of our leak routes in a VRF table: just before the table's
unreachable catch-all (4278198272), after anything the fabric announces."""

PRIO_REPLY = 1500
PRIO_PROBE = 2000
PRIO_EGRESS = 10000
PRIO_POLICY = 11000
RT_TABLE_LOCAL = 255
RT_TABLE_MAIN = 254
#: Most domains that get distinct probe and policy priorities.
MAX_RANK = 7999


def host_group(vrf: int) -> int:
    """The interface group of a domain's devices; 0 (the default group) for
    a VRF id that does not fit 16 bits (such a domain gets probes only)."""
    return GROUP_BASE | vrf if 1 <= vrf <= 0xFFFF else 0


class NodePorts(msgspec.Struct, frozen=True, order=True):
    """Ports of the node a tenant may open connections to: ``first`` to
    ``last`` (inclusive) of ``proto`` (tcp, udp or sctp)."""

    proto: str
    first: int
    last: int

    def __str__(self) -> str:
        ports = str(self.first) if self.first == self.last else f"{self.first}-{self.last}"
        return f"{self.proto}/{ports}"


class HostSettings(msgspec.Struct, frozen=True):
    service_cidrs: tuple[str, ...] = ("10.96.0.0/12",)
    masquerade: bool = True
    mark_mask: int = 0xFFFF0000
    #: tenant-to-node policy: tenants open no connection to the node's own
    #: addresses beyond the DNATed ones, ICMP and ``node_allow``
    node_protect: bool = True
    node_allow: tuple[NodePorts, ...] = ()

    @property
    def shift(self) -> int:
        return (self.mark_mask & -self.mark_mask).bit_length() - 1

    @property
    def width(self) -> int:
        return bin(self.mark_mask).count("1")

    def mark(self, vrf: int) -> int | None:
        """The conntrack/packet mark of a domain, None when it does not fit."""
        if not 1 <= vrf <= 0xFFFF or vrf >> self.width:
            return None
        return vrf << self.shift


class HostDomain(msgspec.Struct, frozen=True):
    """A domain programmed on this node, with this node's blocks in it."""

    name: str
    vrf: int
    table: int
    prefix: str  # CIDR
    blocks: tuple[str, ...] = ()

    @property
    def family(self) -> int:
        return _family(self.prefix)

    @property
    def device(self) -> str:
        return vrf_name(self.vrf)


class PolicyMatch(msgspec.Struct, frozen=True, omit_defaults=True):
    dst: str | None = None
    src: str | None = None
    iifname: str | None = None
    oifname: str | None = None


class HostPolicy(msgspec.Struct, frozen=True):
    """A VRFRoutingPolicy: traffic matching any of ``matches`` is looked up
    in ``domain``'s table."""

    name: str
    domain: str
    matches: tuple[PolicyMatch, ...]


class LeakRoute(msgspec.Struct, frozen=True, order=True):
    family: int
    table: int
    dst: str  # CIDR
    kind: str  # "throw" | "unreachable"


class HostPlan(msgspec.Struct, frozen=True):
    rules: tuple[FibRule, ...]
    routes: dict[int, tuple[LeakRoute, ...]]
    nft: str
    #: domain name -> conntrack mark (domains with egress and services)
    marks: dict[str, int]
    #: domain name -> interface group
    groups: dict[str, int]
    #: VRF device -> the interface group of the devices in it
    devices: dict[str, int]
    #: domain or policy name -> why it is (partly) left out
    problems: dict[str, str]


def _family(cidr: str) -> int:
    return socket.AF_INET6 if ":" in cidr else socket.AF_INET


def _net(cidr: str) -> str:
    return str(ipaddress.ip_network(cidr, strict=False))


def _default(family: int) -> str:
    return "::/0" if family == socket.AF_INET6 else "0.0.0.0/0"


def plan(domains: list[HostDomain], policies: list[HostPolicy], settings: HostSettings) -> HostPlan:
    """The plan for ``domains`` in rank order (the first wins an address
    two domains hold: the older domain, as for VRF, table and VNI clashes)."""
    rules: set[FibRule] = set()
    routes: dict[int, tuple[LeakRoute, ...]] = {}
    marks: dict[str, int] = {}
    groups: dict[str, int] = {}
    problems: dict[str, str] = {}
    chains: list[str] = []
    by_name = {}
    for rank, d in enumerate(domains[: MAX_RANK + 1]):
        by_name[d.name] = (rank, d)
        fam = d.family
        prefix = _net(d.prefix)
        svcs = [_net(s) for s in settings.service_cidrs if _family(s) == fam]
        for block in d.blocks:
            rules.add(FibRule(fam, PRIO_PROBE + rank, table=d.table, dst=_net(block), iifname="lo"))
        rules.add(FibRule(fam, PRIO_EGRESS + 2, action=FR_ACT_UNREACHABLE, src=prefix))
        leak = [LeakRoute(fam, d.table, prefix, "unreachable")]
        mark = settings.mark(d.vrf)
        if mark is None:
            # Without a mark its replies could not find their way back: no
            # egress and no services, rather than unanswered packets outside.
            routes[d.table] = tuple(leak)
            problems[d.name] = (
                f"VRF id {d.vrf} does not fit the {settings.width}-bit mark of "
                f"fwmark_mask {settings.mark_mask:#010x}: probes only, no egress or services"
            )
            continue
        for svc in svcs:
            rules.add(FibRule(fam, PRIO_EGRESS, table=RT_TABLE_LOCAL, src=prefix, dst=svc))
        if settings.masquerade:
            rules.add(FibRule(fam, PRIO_EGRESS + 1, table=RT_TABLE_MAIN, src=prefix))
        else:
            for svc in svcs:
                rules.add(FibRule(fam, PRIO_EGRESS + 1, table=RT_TABLE_MAIN, src=prefix, dst=svc))
        leak += [LeakRoute(fam, d.table, svc, "throw") for svc in svcs]
        if settings.masquerade:
            leak.append(LeakRoute(fam, d.table, _default(fam), "throw"))
        routes[d.table] = tuple(sorted(set(leak)))
        marks[d.name] = mark
        groups[d.name] = host_group(d.vrf)
        rules.add(FibRule(fam, PRIO_REPLY, table=d.table, fwmark=mark, fwmask=settings.mark_mask))
        chains.append(_domain_chains(d, mark, groups[d.name], settings))
    if len(domains) > MAX_RANK + 1:
        for d in domains[MAX_RANK + 1 :]:
            problems[d.name] = f"more than {MAX_RANK + 1} domains: no host integration"
    for policy in policies:
        found = by_name.get(policy.domain)
        if found is None:
            problems[policy.name] = f"VRFDomain {policy.domain} is not programmed on this node"
            continue
        rank, d = found
        for match in policy.matches:
            rule = _policy_rule(match, d, rank)
            if isinstance(rule, str):
                problems[policy.name] = rule
                continue
            rules.add(rule)
    nft = _base_chains(domains, marks, groups, settings, chains)
    if settings.node_protect:
        nft += _node_chains(domains[: MAX_RANK + 1], settings)
    return HostPlan(
        rules=tuple(sorted(rules, key=_rule_key)),
        routes=routes,
        nft=nft,
        marks=marks,
        groups=groups,
        devices={d.device: groups[d.name] for d in domains if d.name in groups},
        problems=problems,
    )


def _rule_key(r: FibRule) -> tuple[object, ...]:
    return tuple("" if x is None else x for x in r)


def _policy_rule(match: PolicyMatch, d: HostDomain, rank: int) -> FibRule | str:
    families = {_family(x) for x in (match.dst, match.src) if x}
    if len(families) > 1:
        return "dst and src of one match must be of one family"
    fam = families.pop() if families else d.family
    if not (match.dst or match.src or match.iifname or match.oifname):
        return "a match needs at least one of dst, src, iifname, oifname"
    return FibRule(
        fam,
        PRIO_POLICY + rank,
        table=d.table,
        dst=_net(match.dst) if match.dst else None,
        src=_net(match.src) if match.src else None,
        iifname=match.iifname,
        oifname=match.oifname,
    )


def _hex(value: int) -> str:
    return f"{value:#010x}"


def _domain_chains(d: HostDomain, mark: int, group: int, s: HostSettings) -> str:
    keep = _hex(0xFFFFFFFF & ~s.mark_mask)
    ip = "ip6" if d.family == socket.AF_INET6 else "ip"
    v = d.vrf
    lines = [
        f"\tchain zone-{v} {{",
        f'\t\tcomment "{d.name}: connections from its pods to outside {_net(d.prefix)}"',
        f"\t\t{ip} daddr {_net(d.prefix)} return",
        f"\t\tct original zone set {v}",
        "\t}",
        f"\tchain mark-{v} {{",
        f'\t\tcomment "{d.name}: new connections from its devices"',
        f"\t\tct state new ct mark set ct mark & {keep} | {_hex(mark)}",
        "\t}",
        f"\tchain reply-{v} {{",
        f'\t\tcomment "{d.name}: replies, routed by fwmark into table {d.table}"',
        f"\t\tmeta mark set meta mark & {keep} | {_hex(mark)}",
        "\t}",
        f"\tchain into-{v} {{",
        f'\t\tcomment "{d.name}: what may be forwarded to its devices"',
        f'\t\tiifname "{d.device}" return',
        f"\t\tmeta iifgroup {_hex(group)} return",
        f"\t\tct direction reply ct mark & {_hex(s.mark_mask)} == {_hex(mark)} return",
        f"\t\tmeta iifgroup & {_hex(GROUP_MASK)} == {_hex(GROUP_BASE)} drop",
        '\t\tmeta iifkind "vrf" drop',
        "\t}",
    ]
    if s.masquerade:
        lines += [
            f"\tchain snat-{v} {{",
            f'\t\tcomment "{d.name}: egress, source NAT to the node address"',
            "\t\tmasquerade",
            "\t}",
        ]
    return "\n".join(lines) + "\n"


def _vmap(key: str, items: list[tuple[int, str]]) -> str:
    elements = ", ".join(f"{_hex(k)} : goto {chain}" for k, chain in items)
    return f"\t\t{key} vmap {{ {elements} }}"


def _base_chains(
    domains: list[HostDomain],
    marks: dict[str, int],
    groups: dict[str, int],
    s: HostSettings,
    chains: list[str],
) -> str:
    """The nft body: per-domain chains, then the base chains dispatching to
    them by interface group or conntrack mark (verdict maps: one lookup
    whatever the number of domains)."""
    ds = [d for d in domains if d.name in marks]
    if not ds:
        return ""
    mask = _hex(s.mark_mask)
    by_group = [(groups[d.name], d.vrf) for d in ds]
    by_mark = [(marks[d.name], d.vrf) for d in ds]
    reply = f"ct direction reply ct mark & {mask}"
    out = list(chains)
    out.append(
        "\n".join(
            [
                "\tchain raw-prerouting {",
                "\t\ttype filter hook prerouting priority raw; policy accept;",
                _vmap("meta iifgroup", [(g, f"zone-{v}") for g, v in by_group]),
                "\t}",
                "\tchain mangle-prerouting {",
                "\t\ttype filter hook prerouting priority mangle; policy accept;",
                _vmap("meta iifgroup", [(g, f"mark-{v}") for g, v in by_group]),
                '\t\tmeta iifkind "vrf" return',
                _vmap(reply, [(m, f"reply-{v}") for m, v in by_mark]),
                "\t}",
                "\tchain mangle-output {",
                "\t\ttype route hook output priority mangle; policy accept;",
                _vmap(reply, [(m, f"reply-{v}") for m, v in by_mark]),
                "\t}",
                "\tchain forward {",
                "\t\ttype filter hook forward priority filter; policy accept;",
                _vmap("meta oifgroup", [(g, f"into-{v}") for g, v in by_group]),
                "\t}",
            ]
        )
        + "\n"
    )
    if s.masquerade:
        out.append(
            "\n".join(
                [
                    "\tchain nat-postrouting {",
                    "\t\ttype nat hook postrouting priority srcnat; policy accept;",
                    f"\t\tmeta oifgroup & {_hex(GROUP_MASK)} == {_hex(GROUP_BASE)} return",
                    '\t\tmeta oifkind "vrf" return',
                    '\t\toifname "lo" return',
                    _vmap(
                        f"ct direction original ct mark & {mask}",
                        [(m, f"snat-{v}") for m, v in by_mark],
                    ),
                    "\t}",
                ]
            )
            + "\n"
        )
    return "".join(out)


#: ICMP a tenant may send the node unasked: echo (ping the gateway) and
#: errors (path MTU discovery); IPv6 adds neighbour and multicast listener
#: discovery, which the kernel delivers on the pod's device, not the VRF's.
ICMP_ALLOWED = "echo-request, destination-unreachable, time-exceeded, parameter-problem"
ICMPV6_ALLOWED = (
    "echo-request, destination-unreachable, packet-too-big, time-exceeded, "
    "parameter-problem, nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, "
    "mld-listener-report, mld2-listener-report"
)


def _node_chains(domains: list[HostDomain], s: HostSettings) -> str:
    """The tenant-to-node policy: a chain that lets through what a tenant
    may send the node's own addresses and drops the rest, entered from the
    ``input`` hook for packets of our VRF devices and domain groups."""
    if not domains:
        return ""
    lines = [
        "\tchain from-tenants {",
        '\t\tcomment "tenant-to-node policy: what pods may send the node\'s own addresses"',
        "\t\tct state established,related return",
        "\t\tct status dnat return",
    ]
    for fam, ip in ((socket.AF_INET, "ip"), (socket.AF_INET6, "ip6")):
        svcs = sorted({_net(c) for c in s.service_cidrs if _family(c) == fam})
        if svcs:
            lines.append(f"\t\t{ip} daddr {{ {', '.join(svcs)} }} return")
    lines.append(f"\t\ticmp type {{ {ICMP_ALLOWED} }} return")
    lines.append(f"\t\ticmpv6 type {{ {ICMPV6_ALLOWED} }} return")
    for proto in ("tcp", "udp", "sctp"):
        ports = [
            str(p.first) if p.first == p.last else f"{p.first}-{p.last}"
            for p in sorted(set(s.node_allow))
            if p.proto == proto
        ]
        if ports:
            lines.append(f"\t\t{proto} dport {{ {', '.join(ports)} }} return")
    lines += ["\t\tdrop", "\t}"]
    devices = ", ".join(f'"{vrf_name(v)}"' for v in sorted({d.vrf for d in domains}))
    lines += [
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
        f"\t\tiifname {{ {devices} }} goto from-tenants",
        f"\t\tmeta iifgroup & {_hex(GROUP_MASK)} == {_hex(GROUP_BASE)} goto from-tenants",
        "\t}",
    ]
    return "\n".join(lines) + "\n"
