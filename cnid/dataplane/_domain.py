"""A VRF domain on the node: the VRF device, and per attachment a bridge and
a VXLAN device. Every object carries our alias; an object with the same name
but without it is someone else's and is refused, never touched."""

from __future__ import annotations

import errno
import socket

import msgspec

from ..core._domains import Domain, DomainLinks, VniAttachment
from ..core._errors import KernelError
from . import _netlink as nl
from ._names import (
    LINK_ALIAS_PREFIX,
    ROUTE_PROTO,
    ROUTE_PROTO_EVPN,
    bridge_alias,
    bridge_mac,
    bridge_name,
    vrf_alias,
    vrf_name,
    vrf_number,
    vxlan_alias,
    vxlan_name,
)
from ._netns import netlink_socket, write_sysctl
from ._run import in_thread
from ._underlay import Underlay

UNREACHABLE_METRIC = 4278198272
"""Metric of the VRF table's catch-all unreachable default (as iproute2's
VRF documentation recommends): lookups that miss stop in the VRF instead of
falling through to the main table."""


VXLAN_OVERHEAD = 50
"""What VXLAN adds to a frame over IPv4: outer IPv4 (20), UDP (8), VXLAN (8)
and the inner Ethernet header (14). Over IPv6 the outer header is 40: 70."""


def vxlan_overhead(underlay_address: str) -> int:
    """VXLAN's overhead over an underlay of this address's family."""
    return VXLAN_OVERHEAD + (20 if ":" in underlay_address else 0)


def pod_mtu(underlay: Underlay, *, mtu: int = 0, overhead: int = VXLAN_OVERHEAD) -> int:
    """The pods' MTU (the one owner of the decision): ``mtu`` when set
    (server.ini's ``mtu``), else the underlay's less ``overhead``
    (``mtu_overhead``), where the default, VXLAN's own over IPv4, stands
    for VXLAN's over the underlay's family: the VXLAN devices are that far
    below the underlay too."""
    if mtu:
        return mtu
    if overhead == VXLAN_OVERHEAD:
        overhead = vxlan_overhead(underlay.address)
    return underlay.mtu - overhead


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def _ensure_link(
    sock: nl.Netlink, name: str, alias: str, kind: str, data: bytes, extra: bytes = b""
) -> nl.Link:
    """Create the link, or adopt it when it exists with our alias."""
    link = sock.link_by_name(name)
    if link is None:
        linkinfo = nl.nla_nested(
            nl.IFLA_LINKINFO,
            nl.nla_str(nl.IFLA_INFO_KIND, kind),
            *([nl.nla_nested(nl.IFLA_INFO_DATA, data)] if data else []),
        )
        body = nl.ifinfo() + nl.nla_str(nl.IFLA_IFNAME, name) + extra + linkinfo
        flags = nl.NLM_F_CREATE | nl.NLM_F_EXCL
        sock.batch([nl.Request(nl.RTM_NEWLINK, flags, body, name)])
        # Only once the creation succeeded: the same batch would tag a
        # foreign link that won the race for the name.
        sock.batch([nl.alias_req(name, alias)])
        link = sock.link_by_name(name)
        if link is None:
            raise KernelError(f"{name} vanished right after its creation", errno=errno.ENODEV)
    elif link.alias != alias:
        raise KernelError(
            f"{name} exists and is not ours (alias {link.alias!r}, expected {alias!r})",
            errno=errno.EEXIST,
        )
    elif link.kind != kind:
        raise KernelError(f"{name} is a {link.kind}, expected a {kind}", errno=errno.EEXIST)
    return link


def _attachment(
    sock: nl.Netlink, domain: Domain, att: VniAttachment, vrf: nl.Link, underlay: Underlay
) -> tuple[nl.Link, nl.Link]:
    family = _family(underlay.address)
    bname, xname = bridge_name(att.vni), vxlan_name(att.vni)
    extra = nl.nla(nl.IFLA_ADDRESS, _mac_bytes(bridge_mac(att.vni))) if att.type == "l2vni" else b""
    bridge = _ensure_link(sock, bname, bridge_alias(att.vni), "bridge", b"", extra)
    local = socket.inet_pton(family, underlay.address)
    vdata = (
        nl.nla_u32(nl.IFLA_VXLAN_ID, att.vni)
        + nl.nla(nl.IFLA_VXLAN_LOCAL if family == socket.AF_INET else nl.IFLA_VXLAN_LOCAL6, local)
        + nl.nla_be16(nl.IFLA_VXLAN_PORT, att.port)
        + nl.nla_u8(nl.IFLA_VXLAN_LEARNING, 0)
    )
    vxlan = _ensure_link(sock, xname, vxlan_alias(att.vni), "vxlan", vdata)
    vxlan_mtu = underlay.mtu - vxlan_overhead(underlay.address)
    requests = [
        nl.up_req(bridge.index, bname, master=vrf.index),
        nl.up_req(vxlan.index, xname, master=bridge.index, mtu=vxlan_mtu),
    ]
    if att.type == "l2vni":
        gw = str(domain.anycast_gateway)
        gfam = _family(gw)
        raw = socket.inet_pton(gfam, gw)
        flags = nl.IFA_F_NODAD if gfam == socket.AF_INET6 else 0
        body = nl.ifaddr(gfam, domain.prefixlen, bridge.index, flags) + nl.nla(nl.IFA_LOCAL, raw)
        body += nl.nla(nl.IFA_ADDRESS, raw)
        requests.append(
            nl.Request(nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_REPLACE, body, f"{gw} on {bname}")
        )
    sock.batch(requests)
    return bridge, vxlan


def _unreachable_default(family: int, table: int) -> bytes:
    return (
        nl.rtmsg(family, 0, table, ROUTE_PROTO, nl.RT_SCOPE_UNIVERSE, nl.RTN_UNREACHABLE)
        + nl.nla_u32(nl.RTA_TABLE, table)
        + nl.nla_u32(nl.RTA_PRIORITY, UNREACHABLE_METRIC)
    )


def _ensure(domain: Domain, underlay: Underlay) -> DomainLinks:
    write_sysctl(None, "net/ipv4/ip_forward", "1")
    write_sysctl(None, "net/ipv6/conf/all/forwarding", "1", missing_ok=True)
    with nl.Netlink(netlink_socket(None)) as sock:
        vname = vrf_name(domain.vrf)
        vrf = _ensure_link(
            sock, vname, vrf_alias(domain.name), "vrf", nl.nla_u32(nl.IFLA_VRF_TABLE, domain.table)
        )
        sock.batch([nl.up_req(vrf.index, vname)])
        unreachable = [
            nl.Request(
                nl.RTM_NEWROUTE,
                nl.NLM_F_CREATE | nl.NLM_F_REPLACE,
                _unreachable_default(fam, domain.table),
                f"unreachable default table {domain.table}",
            )
            for fam in (socket.AF_INET, socket.AF_INET6)
        ]
        sock.batch(unreachable, ignore=(errno.EAFNOSUPPORT,))
        made = {
            att.vni: _attachment(sock, domain, att, vrf, underlay) for att in domain.attachments
        }
        pod = domain.pod_attachment
        router_mac = None
        for att in domain.attachments:
            if att.type == "l3vni":
                refreshed = sock.link_by_index(made[att.vni][0].index)
                router_mac = refreshed.mac if refreshed is not None else None
                break
        return DomainLinks(
            vrf=vname,
            table=domain.table,
            bridge=made[pod.vni][0].name,
            vxlan=made[pod.vni][1].name,
            router_mac=router_mac,
        )


async def ensure_domain(domain: Domain, underlay: Underlay) -> DomainLinks:
    """Idempotent: create or adopt the VRF, bridges and VXLAN devices."""
    return await in_thread(lambda: _ensure(domain, underlay))


def _attachment_links(vnis: list[int]) -> list[tuple[str, str]]:
    names = []
    for vni in vnis:
        names.append((vxlan_name(vni), vxlan_alias(vni)))
        names.append((bridge_name(vni), bridge_alias(vni)))
    return names


def _delete_tagged(sock: nl.Netlink, names: list[tuple[str, str]]) -> None:
    requests = []
    for name, alias in names:
        link = sock.link_by_name(name)
        if link is not None and link.alias == alias:
            requests.append(nl.Request(nl.RTM_DELLINK, 0, nl.ifinfo(link.index), name))
    sock.batch(requests, ignore=(errno.ENODEV,))


def _remove(domain: Domain) -> None:
    with nl.Netlink(netlink_socket(None)) as sock:
        names = [(vrf_name(domain.vrf), vrf_alias(domain.name))]
        names += _attachment_links([att.vni for att in domain.attachments])
        _delete_tagged(sock, names)
        gone = []
        for fam in (socket.AF_INET, socket.AF_INET6):
            for r in sock.routes(fam, domain.table):
                if r.proto not in (ROUTE_PROTO, ROUTE_PROTO_EVPN):
                    continue
                body = nl.rtmsg(fam, r.dst_len, domain.table, r.proto, r.scope, r.type)
                body += nl.nla_u32(nl.RTA_TABLE, domain.table)
                if r.dst is not None:
                    body += nl.nla(nl.RTA_DST, socket.inet_pton(fam, r.dst))
                gone.append(
                    nl.Request(
                        nl.RTM_DELROUTE, 0, body, f"{r.dst}/{r.dst_len} table {domain.table}"
                    )
                )
        sock.batch(gone, ignore=(errno.ESRCH, errno.ENOENT))


async def remove_domain(domain: Domain) -> None:
    """Idempotent: delete our tagged links of the domain and our routes in its
    table: the pods' (protocol 149) and those learned from EVPN (150)."""
    await in_thread(lambda: _remove(domain))


class KernelDomain(msgspec.Struct, frozen=True):
    """A domain as the kernel holds it: our tagged VRF and the tagged
    bridges enslaved to it (their VXLAN devices share the VNI)."""

    name: str
    vrf: int
    table: int
    vnis: tuple[int, ...]


def _tagged_number(alias: str | None, prefix: str) -> int | None:
    if alias is None or not alias.startswith(prefix):
        return None
    tail = alias[len(prefix) :]
    return int(tail) if tail.isdigit() else None


def _list_domains() -> list[KernelDomain]:
    with nl.Netlink(netlink_socket(None)) as sock:
        links = sock.links()
    vrf_prefix = vrf_alias("")
    found = []
    for link in links:
        if link.kind != "vrf" or link.alias is None or not link.alias.startswith(vrf_prefix):
            continue
        number = vrf_number(link.name)
        if number is None:
            continue
        info = nl.parse_attrs(link.attrs.get(nl.IFLA_LINKINFO, b""))
        table = nl.attr_u32(nl.parse_attrs(info.get(nl.IFLA_INFO_DATA, b"")), nl.IFLA_VRF_TABLE)
        vnis = tuple(
            sorted(
                vni
                for br in links
                if br.master == link.index
                and (vni := _tagged_number(br.alias, f"{LINK_ALIAS_PREFIX}br:")) is not None
            )
        )
        found.append(
            KernelDomain(
                name=link.alias[len(vrf_prefix) :],
                vrf=number,
                table=table or 0,
                vnis=vnis,
            )
        )
    return found


async def list_domains() -> list[KernelDomain]:
    """The domains whose VRF device is ours, as the kernel has them."""
    return await in_thread(_list_domains)


async def remove_attachments(vnis: list[int]) -> None:
    """Delete our bridges and VXLAN devices of these VNIs (attachments
    dropped from a domain that stays)."""

    def work() -> None:
        with nl.Netlink(netlink_socket(None)) as sock:
            _delete_tagged(sock, _attachment_links(vnis))

    await in_thread(work)


async def remove_kernel_domain(found: KernelDomain) -> None:
    """Remove a domain known only from the kernel (its VRFDomain is gone)."""
    domain = Domain(
        name=found.name,
        vrf=found.vrf,
        table=found.table,
        prefix="0.0.0.0",
        prefixlen=0,
        ipblocklen=0,
        attachments=tuple(VniAttachment(type="l3vni", vni=vni) for vni in found.vnis),
    )
    await remove_domain(domain)
