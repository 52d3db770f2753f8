"""What cnid's own netlink encoder wrote, read back by an independent
decoder: pyroute2 (a ``dev`` dependency for exactly this; README, "Dependencies
and why"). cnid's ``dump_evpn`` shares the encoder's constants and
assumptions, so a wrong flag or attribute would round-trip unnoticed through
it; pyroute2 decodes the kernel's messages with its own definitions.

FDB entries (the VXLAN driver's and the bridge's), neighbour entries and
EVPN routes (single path, ECMP, RTA_VIA, via an IPv4-mapped next hop) as
``apply_evpn`` writes them, in a namespace of their own. No VRF: a plain
table stands for the VRF's.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pyroute2 import IPRoute

from cnid import dataplane as dp
from testbed.netns import Netns, netns

TABLE = 60
ZERO = "00:00:00:00:00:00"
# linux/neighbour.h, linux/rtnetlink.h
NTF_SELF, NTF_EXT_LEARNED = 0x02, 0x10
NUD_REACHABLE, NUD_NOARP, NUD_PERMANENT = 0x02, 0x40, 0x80
RTNH_F_ONLINK = 0x04

WRITTEN = dp.KernelEvpn(
    fdb=frozenset(
        {
            dp.FdbEntry(100, "02:00:00:00:01:01", "192.0.2.2"),
            dp.FdbEntry(100, "02:00:00:00:01:02", "192.0.2.3"),
            dp.FdbEntry(100, ZERO, "192.0.2.2"),
            dp.FdbEntry(100, ZERO, "192.0.2.3"),
            dp.FdbEntry(600, "02:00:00:00:06:01", "2001:db8::2"),
            dp.FdbEntry(600, ZERO, "2001:db8::2"),
        }
    ),
    neigh=frozenset(
        {
            dp.NeighEntry(100, "10.1.0.7", "02:00:00:00:01:01"),
            dp.NeighEntry(100, "fd00:1::7", "02:00:00:00:01:01"),
            dp.NeighEntry(100, "::ffff:192.0.2.2", "02:00:00:00:01:02"),
            dp.NeighEntry(600, "2001:db8::2", "02:00:00:00:06:01"),
        }
    ),
    routes=frozenset(
        {
            dp.EvpnRoute(TABLE, "10.8.0.0/26", "192.0.2.2", 100),
            dp.EvpnRoute(TABLE, "10.8.1.0/24", "192.0.2.2", 100),  # ECMP
            dp.EvpnRoute(TABLE, "10.8.1.0/24", "192.0.2.3", 100),
            dp.EvpnRoute(TABLE, "10.8.3.7/32", "2001:db8::2", 600),  # RTA_VIA
            dp.EvpnRoute(TABLE, "fd00:9::/64", "2001:db8::2", 600),
            dp.EvpnRoute(TABLE, "fd00:a::/48", "192.0.2.2", 100),  # via ::ffff:192.0.2.2
            dp.EvpnRoute(TABLE, "0.0.0.0/0", "192.0.2.3", 100),
        }
    ),
)


@pytest.fixture
def node() -> Iterator[Netns]:
    """A namespace with the domains 100 (IPv4 VTEP) and 600 (IPv6 VTEP), as
    ensure_domain makes them (bridge, VXLAN port, our aliases), but no VRF."""
    with netns("indep") as ns:
        for vni, local in ((100, "192.0.2.1"), (600, "2001:db8::1")):
            br, vx = f"br-{vni}", f"vx-{vni}"
            ns.ip("link", "add", br, "type", "bridge")
            ns.ip(
                "link", "add", vx, "type", "vxlan", "id", str(vni), "local", local,
                "dstport", "4789", "nolearning",
            )  # fmt: skip
            ns.ip("link", "set", vx, "master", br)
            ns.ip("link", "set", br, "alias", f"cnid:br:{vni}", "up")
            ns.ip("link", "set", vx, "alias", f"cnid:vx:{vni}", "up")
        dp.set_node_netns(ns.fd)
        try:
            yield ns
        finally:
            dp.set_node_netns(None)


def _vtep(gateway: str) -> str:
    """The VTEP of a next hop: an IPv4-mapped IPv6 next hop is its IPv4 VTEP."""
    ip = ipaddress.ip_address(gateway)
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return str(mapped or ip)


def _path(gateway: Any, oif: int, flags: int, ifname: dict[int, str]) -> tuple[str, int, int]:
    """(gateway, VNI of the device, nexthop flags) of a route or a multipath hop;
    ``gateway`` is RTA_GATEWAY, else RTA_VIA's address."""
    device = ifname[oif]
    assert device.startswith("br-"), device
    return gateway, int(device[3:]), flags


def _paths(m: Any, ifname: dict[int, str]) -> list[tuple[str, int, int]]:
    multipath = m.get("RTA_MULTIPATH")
    if multipath:
        return [
            _path(h.get("RTA_GATEWAY") or h.get("RTA_VIA")["addr"], h["oif"], h["flags"], ifname)
            for h in multipath
        ]
    gateway = m.get("RTA_GATEWAY") or m.get("RTA_VIA")["addr"]
    return [_path(gateway, m.get("RTA_OIF"), m["flags"], ifname)]


def read_independently(ns: Netns, vnis: tuple[int, ...], table: int) -> dp.KernelEvpn:
    """The EVPN state in ``ns`` as pyroute2 decodes it, checked against the
    forms cnid promises (docs/evpn.md, dataplane/_evpn.py's docstrings)."""
    fdb: set[dp.FdbEntry] = set()
    neigh: set[dp.NeighEntry] = set()
    routes: set[dp.EvpnRoute] = set()
    with IPRoute(netns=ns.name) as ipr:
        ifname = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
        index = {name: i for i, name in ifname.items()}
        for vni in vnis:
            vx, br = index[f"vx-{vni}"], index[f"br-{vni}"]
            bridge_side: set[str] = set()
            for m in ipr.get_neighbours(family=socket.AF_BRIDGE, ifindex=vx):
                if m["ifindex"] != vx or not m["flags"] & NTF_EXT_LEARNED:
                    continue  # the kernel's own entries (the port's MAC)
                mac = m.get("NDA_LLADDR")
                if m.get("NDA_MASTER") is not None:
                    # the bridge's entry on the VXLAN port, of our bridge; not
                    # static, so that MAC mobility can move it to a local port
                    assert m.get("NDA_MASTER") == br and m["state"] == NUD_REACHABLE, m
                    bridge_side.add(mac)
                    continue
                assert m["flags"] & NTF_SELF, m
                assert m["state"] & (NUD_NOARP | NUD_PERMANENT) == NUD_NOARP | NUD_PERMANENT, m
                fdb.add(dp.FdbEntry(vni, mac, m.get("NDA_DST")))
            unicast = {e.mac for e in fdb if e.vni == vni and e.mac != ZERO}
            assert bridge_side == unicast  # flood entries: the driver's only
            for family in (socket.AF_INET, socket.AF_INET6):
                for m in ipr.get_neighbours(family=family, ifindex=br):
                    if m["ifindex"] != br or m.get("NDA_PROTOCOL") != dp.ROUTE_PROTO_EVPN:
                        continue
                    assert m["flags"] & NTF_EXT_LEARNED and m["state"] == NUD_NOARP, m
                    neigh.add(dp.NeighEntry(vni, m.get("NDA_DST"), m.get("NDA_LLADDR")))
        for family, any_ in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            for m in ipr.get_routes(family=family, table=table):
                if m.get("RTA_TABLE") != table or m["proto"] != dp.ROUTE_PROTO_EVPN:
                    continue
                prefix = f"{m.get('RTA_DST') or any_}/{m['dst_len']}"
                for gateway, vni, flags in _paths(m, ifname):
                    # the VTEP is on no subnet of the bridge: every path is onlink
                    assert flags & RTNH_F_ONLINK, m
                    routes.add(dp.EvpnRoute(table, prefix, _vtep(gateway), vni))
    return dp.KernelEvpn(fdb=frozenset(fdb), neigh=frozenset(neigh), routes=frozenset(routes))


async def test_pyroute2_reads_what_cnids_encoder_wrote(node: Netns) -> None:
    result = await dp.apply_evpn(WRITTEN, dp.KernelEvpn())
    assert result.failed == ()
    seen = read_independently(node, (100, 600), TABLE)
    assert seen.fdb == WRITTEN.fdb
    assert seen.neigh == WRITTEN.neigh
    assert seen.routes == WRITTEN.routes
    # and cnid's own reader agrees with the independent one
    assert await dp.dump_evpn([100, 600], [TABLE]) == seen

    result = await dp.apply_evpn(dp.KernelEvpn(), WRITTEN)
    assert result.failed == ()
    assert read_independently(node, (100, 600), TABLE) == dp.KernelEvpn()
