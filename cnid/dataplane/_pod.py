"""Pods: a veth pair from the node (host end, ours by alias) into the pod's
namespace, received as an open descriptor.

One operation runs entirely in one worker thread with its own two netlink
sockets (node and pod side); the steps of each side go to the kernel as one
batch. See docs/dataplane.md for the sequence, the sysctls and the timings.
"""

from __future__ import annotations

import errno
import socket

import msgspec

from ..core._domains import Domain
from ..core._errors import CniCode, CnidError, KernelError
from . import _netlink as nl
from ._names import POD_ALIAS_PREFIX, ROUTE_PROTO, host_ifname, pod_alias
from ._netns import NetnsFd, netlink_socket, write_sysctls
from ._podspec import PodSpec
from ._run import in_thread


class CheckFailed(CnidError):
    """CHECK found the pod's wiring missing or different from what ADD made."""

    code = CniCode.INTERNAL


class PodWiring(msgspec.Struct, frozen=True):
    host_ifname: str
    host_mac: str
    pod_ifname: str
    pod_mac: str
    mtu: int


class PodLink(msgspec.Struct, frozen=True):
    host_ifname: str
    container_id: str
    ifname: str
    master: str | None


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _host_len(family: int) -> int:
    return 32 if family == socket.AF_INET else 128


def _addr_req(index: int, ip: str, prefixlen: int, what: str) -> nl.Request:
    fam = _family(ip)
    raw = socket.inet_pton(fam, ip)
    flags = nl.IFA_F_NODAD if fam == socket.AF_INET6 else 0
    body = (
        nl.ifaddr(fam, prefixlen, index, flags)
        + nl.nla(nl.IFA_LOCAL, raw)
        + nl.nla(nl.IFA_ADDRESS, raw)
    )
    return nl.Request(nl.RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, what)


def _route_body(
    fam: int, dst: str | None, dst_len: int, table: int, oif: int | None, gateway: str | None = None
) -> bytes:
    scope = nl.RT_SCOPE_LINK if gateway is None else nl.RT_SCOPE_UNIVERSE
    body = nl.rtmsg(fam, dst_len, table, ROUTE_PROTO, scope) + nl.nla_u32(nl.RTA_TABLE, table)
    if dst is not None:
        body += nl.nla(nl.RTA_DST, socket.inet_pton(fam, dst))
    if oif is not None:
        body += nl.nla_u32(nl.RTA_OIF, oif)
    if gateway is not None:
        body += nl.nla(nl.RTA_GATEWAY, socket.inet_pton(fam, gateway))
    return body


def _route_req(
    fam: int, dst: str | None, dst_len: int, table: int, oif: int, gateway: str | None = None
) -> nl.Request:
    what = f"{dst or 'default'}/{dst_len} table {table}" + (f" via {gateway}" if gateway else "")
    body = _route_body(fam, dst, dst_len, table, oif, gateway)
    return nl.Request(nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, what)


def _veth_req(host: str, pod: str, netns_fd: NetnsFd, mtu: int, mac: str | None) -> nl.Request:
    peer = (
        nl.ifinfo()
        + nl.nla_str(nl.IFLA_IFNAME, pod)
        + nl.nla_u32(nl.IFLA_MTU, mtu)
        + nl.nla_u32(nl.IFLA_NET_NS_FD, netns_fd)
    )
    if mac is not None:  # the pod's end: its MAC follows its address (pod_mac)
        peer += nl.nla(nl.IFLA_ADDRESS, bytes.fromhex(mac.replace(":", "")))
    info = nl.nla_nested(
        nl.IFLA_LINKINFO,
        nl.nla_str(nl.IFLA_INFO_KIND, "veth"),
        nl.nla_nested(nl.IFLA_INFO_DATA, nl.nla(nl.VETH_INFO_PEER, peer)),
    )
    body = nl.ifinfo() + nl.nla_str(nl.IFLA_IFNAME, host) + nl.nla_u32(nl.IFLA_MTU, mtu) + info
    return nl.Request(nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, f"veth {host}/{pod}")


def _pod_sysctls(ifname: str) -> list[tuple[str, str]]:
    """Set on the pod interface before it goes up (docs/dataplane.md)."""
    return [
        # the kernel sends a gratuitous ARP when the interface goes up (and
        # on address changes): neighbours and bridges learn the pod at once
        (f"net/ipv4/conf/{ifname}/arp_notify", "1"),
        # the gateway is configured, never learnt: no router advertisements
        (f"net/ipv6/conf/{ifname}/accept_ra", "0"),
    ]


def _wire(netns: NetnsFd, spec: PodSpec) -> PodWiring:
    fam = _family(spec.address)
    hname, ifname = spec.host_ifname, spec.ifname
    with nl.Netlink(netlink_socket(None)) as host, nl.Netlink(netlink_socket(netns)) as pod:
        if pod.link_by_name(ifname) is not None:
            raise KernelError(f"{ifname} exists already in the pod's namespace", errno=errno.EEXIST)
        master = host.link_by_name(spec.master)
        if master is None:
            raise KernelError(f"domain device {spec.master} is missing", errno=errno.ENODEV)
        host.batch([_veth_req(hname, ifname, netns, spec.mtu, spec.mac)])
        try:
            hlink = host.link_by_name(hname)
            plink = pod.link_by_name(ifname)
            if hlink is None or plink is None:
                raise KernelError(
                    f"veth {hname}/{ifname} vanished after creation", errno=errno.ENODEV
                )
            write_sysctls(netns, _pod_sysctls(ifname), missing_ok=True)
            # strict reverse-path filtering on the host end: a pod cannot
            # send from an address that is not routed back to it
            write_sysctls(None, [(f"net/ipv4/conf/{hname}/rp_filter", "1")], missing_ok=True)
            # the domain's interface group: host integration's nftables
            # table finds the domain of a packet by it (_hostplan.py)
            steps = [
                nl.alias_req(hname, spec.alias),
                nl.up_req(hlink.index, hname, master=master.index, group=spec.group),
            ]
            host_len = spec.host_prefixlen
            if spec.routed:
                steps.append(
                    _addr_req(hlink.index, spec.gateway, host_len, f"{spec.gateway} on {hname}")
                )
                steps.append(_route_req(fam, spec.address, host_len, spec.table, hlink.index))
            host.batch(steps)
            steps = [
                nl.up_req(1, "lo"),
                _addr_req(plink.index, spec.address, spec.prefixlen, f"{spec.address} on {ifname}"),
                nl.up_req(plink.index, ifname),
            ]
            if spec.routed:
                steps.append(_route_req(fam, spec.gateway, host_len, nl.RT_TABLE_MAIN, plink.index))
            steps.append(_route_req(fam, None, 0, nl.RT_TABLE_MAIN, plink.index, spec.gateway))
            pod.batch(steps)
        except BaseException:
            host.batch(
                [
                    nl.Request(
                        nl.RTM_DELLINK, 0, nl.ifinfo() + nl.nla_str(nl.IFLA_IFNAME, hname), hname
                    )
                ],
                ignore=(errno.ENODEV,),
            )
            raise
        return PodWiring(
            host_ifname=hname,
            host_mac=hlink.mac or "",
            pod_ifname=ifname,
            pod_mac=plink.mac or "",
            mtu=spec.mtu,
        )


async def wire_pod(netns: NetnsFd, spec: PodSpec) -> PodWiring:
    """Wire one pod interface as planned; on failure undo what this call created."""
    return await in_thread(lambda: _wire(netns, spec))


def _unwire(container_id: str, ifname: str, address: str | None, domain: Domain | None) -> None:
    hname = host_ifname(container_id, ifname)
    with nl.Netlink(netlink_socket(None)) as host:
        link = host.link_by_name(hname)
        if link is None or link.alias != pod_alias(container_id, ifname):
            return
        steps = []
        if address and domain is not None and domain.pod_attachment.type == "l3vni":
            fam = _family(address)
            body = _route_body(fam, address, _host_len(fam), domain.table, link.index)
            steps.append(nl.Request(nl.RTM_DELROUTE, 0, body, f"{address} table {domain.table}"))
        steps.append(nl.Request(nl.RTM_DELLINK, 0, nl.ifinfo(link.index), hname))
        host.batch(steps, ignore=(errno.ENODEV, errno.ESRCH, errno.ENOENT))


async def unwire_pod(
    *, container_id: str, ifname: str, address: str | None, domain: Domain | None
) -> None:
    """Idempotent: delete our host veth (the pod end goes with it) and our host route."""
    await in_thread(lambda: _unwire(container_id, ifname, address, domain))


def _check(netns: NetnsFd, spec: PodSpec) -> None:
    fam = _family(spec.address)
    hname, ifname = spec.host_ifname, spec.ifname
    with nl.Netlink(netlink_socket(None)) as host, nl.Netlink(netlink_socket(netns)) as pod:
        plink = pod.link_by_name(ifname)
        if plink is None:
            raise CheckFailed(f"pod interface {ifname} is missing")
        if not plink.up:
            raise CheckFailed(f"pod interface {ifname} is down")
        have = [
            (a.local or a.address, a.prefixlen) for a in pod.addrs(fam) if a.index == plink.index
        ]
        if (spec.address, spec.prefixlen) not in have:
            raise CheckFailed(
                f"pod interface {ifname} lacks {spec.address}/{spec.prefixlen} (has {have})"
            )
        defaults = [
            r
            for r in pod.routes(fam, nl.RT_TABLE_MAIN)
            if r.dst_len == 0 and r.gateway == spec.gateway and r.oif == plink.index
        ]
        if not defaults:
            raise CheckFailed(f"pod has no default route via {spec.gateway} dev {ifname}")
        hlink = host.link_by_name(hname)
        if hlink is None or hlink.alias != spec.alias:
            raise CheckFailed(f"host interface {hname} is missing or not ours")
        if not hlink.up:
            raise CheckFailed(f"host interface {hname} is down")
        master = host.link_by_index(hlink.master) if hlink.master else None
        if master is None or master.name != spec.master:
            raise CheckFailed(f"host interface {hname} is not enslaved to {spec.master}")
        if spec.routed:
            routes = [
                r
                for r in host.routes(fam, spec.table)
                if r.dst == spec.address
                and r.dst_len == spec.host_prefixlen
                and r.oif == hlink.index
            ]
            if not routes:
                raise CheckFailed(f"no route to {spec.address} via {hname} in table {spec.table}")


async def check_pod(netns: NetnsFd, spec: PodSpec) -> None:
    """Raise CheckFailed naming the first thing missing or wrong."""
    await in_thread(lambda: _check(netns, spec))


def _list() -> list[PodLink]:
    with nl.Netlink(netlink_socket(None)) as host:
        links = host.links()
    names = {link.index: link.name for link in links}
    out = []
    for link in links:
        if link.alias is None or not link.alias.startswith(POD_ALIAS_PREFIX):
            continue
        cid, sep, ifname = link.alias[len(POD_ALIAS_PREFIX) :].rpartition(":")
        if not sep:
            continue
        master = names.get(link.master) if link.master else None
        out.append(PodLink(host_ifname=link.name, container_id=cid, ifname=ifname, master=master))
    return out


async def list_pod_links() -> list[PodLink]:
    """Every host veth tagged as ours (for GC and restart reconciliation)."""
    return await in_thread(_list)
