"""Apply a host integration plan (``_hostplan.py``) to the node: sysctls,
interface groups, leak routes, policy rules, our nftables table. Every step
is idempotent and touches only what is ours (routes and rules of protocol
149 with our metric, links with our alias, the table ``inet cnid``)."""

from __future__ import annotations

import errno
import logging
import re
import socket

import msgspec

from ..core._errors import KernelError
from . import _netlink as nl
from ._hostplan import LEAK_METRIC, HostPlan, LeakRoute
from ._names import LINK_ALIAS_PREFIX, ROUTE_PROTO
from ._netns import netlink_socket, write_sysctls
from ._nft import apply_table, canonical, digest, flush_conntrack, list_table, table_digest
from ._rules import apply_rules, batches
from ._run import in_thread

log = logging.getLogger("cnid.dataplane")

RTN_THROW = 9

#: (sysctl, value, why): set in the node's namespace once per reconcile.
NODE_SYSCTLS: tuple[tuple[str, str, str], ...] = (
    (
        "net/ipv4/tcp_l3mdev_accept",
        "1",
        "a probe's TCP connection from the root namespace is answered from inside a VRF: "
        "its unbound socket must accept segments that arrive through a VRF device",
    ),
    (
        "net/ipv4/udp_l3mdev_accept",
        "1",
        "the same for UDP (a node-local DNS cache answering a pod, a UDP check)",
    ),
    (
        "net/ipv4/raw_l3mdev_accept",
        "1",
        "the same for raw sockets (ping from the node to a pod); the kernel's default, kept",
    ),
)

_POD_ALIAS = f"{LINK_ALIAS_PREFIX}pod:"
_DOMAIN_LINK = re.compile(rf"^{LINK_ALIAS_PREFIX}(br|vx):\d+$")


class HostState(msgspec.Struct):
    """What the applier remembers between reconciles."""

    #: canonical listing of our table right after we applied (or adopted) it
    baseline: str | None = None
    applied_digest: str | None = None
    #: the VRF tables the last plan put leak routes in
    tables: set[int] = msgspec.field(default_factory=set)


def _family(cidr: str) -> int:
    return socket.AF_INET6 if ":" in cidr else socket.AF_INET


def _route_body(r: LeakRoute) -> bytes:
    addr, _, length = r.dst.partition("/")
    rtype = RTN_THROW if r.kind == "throw" else nl.RTN_UNREACHABLE
    body = nl.rtmsg(r.family, int(length), r.table, ROUTE_PROTO, nl.RT_SCOPE_UNIVERSE, rtype)
    body += nl.nla_u32(nl.RTA_TABLE, r.table) + nl.nla_u32(nl.RTA_PRIORITY, LEAK_METRIC)
    if int(length):
        body += nl.nla(nl.RTA_DST, socket.inet_pton(r.family, addr))
    return body


def _current_leaks(sock: nl.Netlink, table: int) -> set[LeakRoute]:
    found = set()
    for fam in (socket.AF_INET, socket.AF_INET6):
        try:
            routes = sock.routes(fam, table, ROUTE_PROTO)
        except KernelError as exc:
            if exc.errno == errno.EAFNOSUPPORT:
                continue
            raise
        for r in routes:
            if r.priority != LEAK_METRIC or r.type not in (RTN_THROW, nl.RTN_UNREACHABLE):
                continue
            dst = r.dst or ("::" if fam == socket.AF_INET6 else "0.0.0.0")
            kind = "throw" if r.type == RTN_THROW else "unreachable"
            found.add(LeakRoute(fam, table, f"{dst}/{r.dst_len}", kind))
    return found


def _apply_routes(routes: dict[int, tuple[LeakRoute, ...]]) -> None:
    with nl.Netlink(netlink_socket(None), strict=True) as sock:
        for table, want in routes.items():
            have = _current_leaks(sock, table)
            add = sorted(set(want) - have)
            gone = sorted(have - set(want))
            flags = nl.NLM_F_CREATE | nl.NLM_F_REPLACE
            name = f"table {table}"
            batches(
                sock,
                [
                    nl.Request(nl.RTM_NEWROUTE, flags, _route_body(r), f"{r.kind} {r.dst} {name}")
                    for r in add
                ],
            )
            batches(
                sock,
                [
                    nl.Request(nl.RTM_DELROUTE, 0, _route_body(r), f"{r.kind} {r.dst} {name}")
                    for r in gone
                ],
                ignore=(errno.ESRCH, errno.ENOENT),
            )


def _apply_links(groups_by_vrf: dict[str, int]) -> int:
    """Interface groups of our pod veths, bridges and VXLAN devices (by the
    VRF they are in); ``arp_accept`` on our bridges; strict ``rp_filter`` on
    pod veths found without their group (wired before host integration).
    Returns how many links changed."""
    with nl.Netlink(netlink_socket(None)) as sock:
        links = sock.links()
        by_index = {link.index: link for link in links}

        def vrf_of(link: nl.Link) -> str | None:
            seen = 0
            while link.master and seen < 3:
                master = by_index.get(link.master)
                if master is None:
                    return None
                if master.kind == "vrf":
                    return master.name
                link, seen = master, seen + 1
            return None

        requests = []
        sysctls: list[tuple[str, str]] = []
        for link in links:
            alias = link.alias or ""
            pod = alias.startswith(_POD_ALIAS)
            if not pod and not _DOMAIN_LINK.match(alias):
                continue
            vrf = vrf_of(link)
            want = groups_by_vrf.get(vrf or "", 0)
            if alias.startswith(f"{LINK_ALIAS_PREFIX}br:"):
                sysctls.append((f"net/ipv4/conf/{link.name}/arp_accept", "1"))
            have = nl.attr_u32(link.attrs, nl.IFLA_GROUP) or 0
            if have == want:
                continue
            if pod:
                sysctls.append((f"net/ipv4/conf/{link.name}/rp_filter", "1"))
            body = nl.ifinfo(link.index) + nl.nla_u32(nl.IFLA_GROUP, want)
            requests.append(nl.Request(nl.RTM_NEWLINK, 0, body, f"group of {link.name}"))
        batches(sock, requests, ignore=(errno.ENODEV,))
    write_sysctls(None, sysctls, missing_ok=True)
    return len(requests)


def _sysctls() -> None:
    write_sysctls(None, [(path, value) for path, value, _ in NODE_SYSCTLS], missing_ok=True)


_MARK_CHAIN = re.compile(r"chain mark-(\d+) \{[^}]*?\| (0x[0-9a-f]+)", re.S)


def marks_in(listing: str | None) -> dict[int, int]:
    """VRF id -> conntrack mark, as our table (a listing of it) has them."""
    if not listing:
        return {}
    return {int(v): int(m, 16) for v, m in _MARK_CHAIN.findall(listing)}


async def apply_host(plan: HostPlan, state: HostState, mark_mask: int) -> bool:
    """Apply ``plan``; True when our nftables table was (re)written.
    Conntrack entries of marks our table had and the plan drops are
    flushed (a removed domain's connections must not steer replies into a
    domain that reuses its number)."""
    await in_thread(_sysctls)
    await in_thread(lambda: _apply_links(plan.devices))
    # tables of the last plan that this one lacks lose our leak routes
    routes: dict[int, tuple[LeakRoute, ...]] = {t: () for t in state.tables - set(plan.routes)}
    routes.update(plan.routes)
    await in_thread(lambda: _apply_routes(routes))
    state.tables = set(plan.routes)
    await apply_rules(list(plan.rules))
    current = await list_table()
    want = digest(plan.nft)
    fresh = current is not None and table_digest(current) == want
    if fresh and state.baseline is not None and canonical(current or "") != state.baseline:
        log.warning("host integration: table inet cnid was changed by someone; rewriting it")
        fresh = False
    if fresh:
        state.baseline = canonical(current or "")
        state.applied_digest = want
        return False
    old = marks_in(current)
    await apply_table(plan.nft)
    kept = set(plan.marks.values())
    for vrf, mark in sorted(old.items()):
        if mark not in kept:
            log.info("host integration: flushing the connections of vrf %d (mark %#x)", vrf, mark)
            await flush_conntrack(mark, mark_mask)
    listing = await list_table()
    state.baseline = canonical(listing or "")
    state.applied_digest = want
    return True
