"""EVPN-learned kernel state (cnid/dataplane/_evpn.py) on the real kernel, in
namespaces the tests create: round trips, idempotency, ownership, refused
entries, and the real packet path over VXLAN between two "nodes".

No VRF here (the host kernel has none): a plain routing table plus
``ip rule`` stands for the VRF table. Bridges and VXLAN devices are made
with ``ip`` and our aliases, as ensure_domain would make them.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import trio

from cnid import dataplane as dp
from cnid.core import Domain, VniAttachment
from cnid.dataplane import _evpn, _evpn_apply, _evpn_values, bridge_alias, vxlan_alias
from cnid.dataplane import _netlink as nl
from cnid.dataplane._netns import netlink_socket
from testbed.netns import Netns, netns

EMPTY = dp.KernelEvpn()
ZERO = _evpn.ZERO_MAC
TABLE = 50

UNDERLAY = {
    4: ("192.0.2.1", "192.0.2.2", "24", "192.0.2.99"),
    6: ("2001:db8::1", "2001:db8::2", "64", "2001:db8::99"),
}
"""Per underlay family: node a's VTEP, node b's, the prefix length, and a
VTEP that answers nobody (a second flood entry)."""


@contextmanager
def on(ns: Netns) -> Iterator[None]:
    """The dataplane's node side runs in ``ns`` for the block."""
    dp.set_node_netns(ns.fd)
    try:
        yield
    finally:
        dp.set_node_netns(None)


def make_domain(ns: Netns, vni: int, local: str, mac: str | None = None, ours: bool = True) -> None:
    """br-<vni> with vx-<vni> as its port, as ensure_domain makes them (but no VRF)."""
    br, vx = f"br-{vni}", f"vx-{vni}"
    ns.ip("link", "add", br, *(("address", mac) if mac else ()), "type", "bridge")
    ns.ip(
        "link", "add", vx, "type", "vxlan", "id", str(vni), "local", local,
        "dstport", "4789", "nolearning",
    )  # fmt: skip
    ns.ip("link", "set", vx, "master", br)
    if ours:
        ns.ip("link", "set", br, "alias", bridge_alias(vni))
        ns.ip("link", "set", vx, "alias", vxlan_alias(vni))
    ns.ip("link", "set", br, "up")
    ns.ip("link", "set", vx, "up")


@pytest.fixture
def node() -> Iterator[Netns]:
    """One node namespace running the dataplane, with an IPv4 domain 100
    and an IPv6 one 600."""
    with netns("evnode") as ns, on(ns):
        make_domain(ns, 100, "192.0.2.1")
        make_domain(ns, 600, "2001:db8::1")
        yield ns


def fdb_text(ns: Netns, dev: str) -> str:
    return ns.run("bridge", "-d", "fdb", "show", "dev", dev).stdout


def sample() -> dp.KernelEvpn:
    """One of each kind and form, on the IPv4 domain 100 and the IPv6 one 600."""
    return dp.KernelEvpn(
        fdb=frozenset(
            {
                dp.FdbEntry(100, "02:00:00:00:01:01", "192.0.2.2"),
                dp.FdbEntry(100, "02:00:00:00:01:02", "192.0.2.3"),
                dp.FdbEntry(100, ZERO, "192.0.2.2"),
                dp.FdbEntry(100, ZERO, "192.0.2.3"),
                dp.FdbEntry(100, ZERO, "192.0.2.4"),
                dp.FdbEntry(600, "02:00:00:00:06:01", "2001:db8::2"),
                dp.FdbEntry(600, ZERO, "2001:db8::2"),
                dp.FdbEntry(600, ZERO, "2001:db8::3"),
            }
        ),
        neigh=frozenset(
            {
                dp.NeighEntry(100, "10.1.0.7", "02:00:00:00:01:01"),
                dp.NeighEntry(100, "fd00:1::7", "02:00:00:00:01:01"),
                dp.NeighEntry(100, "192.0.2.2", "02:00:00:00:01:02"),
                dp.NeighEntry(100, "::ffff:192.0.2.2", "02:00:00:00:01:02"),
                dp.NeighEntry(600, "2001:db8::2", "02:00:00:00:06:01"),
            }
        ),
        routes=frozenset(
            {
                dp.EvpnRoute(TABLE, "10.8.0.0/26", "192.0.2.2", 100),
                dp.EvpnRoute(TABLE, "10.8.1.0/24", "192.0.2.2", 100),  # ECMP, IPv4
                dp.EvpnRoute(TABLE, "10.8.1.0/24", "192.0.2.3", 100),
                dp.EvpnRoute(TABLE, "10.8.2.0/24", "192.0.2.2", 100),  # ECMP, mixed families
                dp.EvpnRoute(TABLE, "10.8.2.0/24", "2001:db8::2", 600),
                dp.EvpnRoute(TABLE, "10.8.3.7/32", "2001:db8::2", 600),  # RTA_VIA
                dp.EvpnRoute(TABLE, "fd00:8::/64", "2001:db8::2", 600),
                dp.EvpnRoute(TABLE, "fd00:9::/64", "2001:db8::2", 600),  # ECMP, IPv6
                dp.EvpnRoute(TABLE, "fd00:9::/64", "2001:db8::3", 600),
                dp.EvpnRoute(TABLE, "fd00:a::/48", "192.0.2.2", 100),  # via ::ffff:192.0.2.2
                dp.EvpnRoute(TABLE + 1, "0.0.0.0/0", "192.0.2.3", 100),
            }
        ),
    )


def count(state: dp.KernelEvpn) -> int:
    return len(state.fdb) + len(state.neigh) + len(state.routes)


async def dump(
    vnis: tuple[int, ...] = (100, 600), tables: tuple[int, ...] = (TABLE, TABLE + 1)
) -> dp.KernelEvpn:
    return await dp.dump_evpn(vnis, tables)


# ---------------------------------------------------------------- round trips


async def test_round_trip_idempotent_and_removed_exactly(node: Netns) -> None:
    x = sample()
    for _ in range(2):  # the second time: replace, no error, same state
        result = await dp.apply_evpn(x, EMPTY)
        assert result.failed == ()
        assert result.applied == count(x)
        assert await dump() == x

    # what the kernel holds, as iproute2 shows it
    fdb = fdb_text(node, "vx-100")
    assert "02:00:00:00:01:01 dst 192.0.2.2 self extern_learn permanent" in fdb
    assert "02:00:00:00:01:01 extern_learn master br-100" in fdb  # the bridge's entry
    for vtep in ("192.0.2.2", "192.0.2.3", "192.0.2.4"):
        assert f"00:00:00:00:00:00 dst {vtep} self extern_learn permanent" in fdb
    assert "00:00:00:00:00:00 extern_learn master" not in fdb  # flood entries: driver only
    neigh = node.ip("-d", "neigh", "show", "dev", "br-100")
    assert "10.1.0.7 lladdr 02:00:00:00:01:01 extern_learn NOARP proto 150" in neigh
    assert "::ffff:192.0.2.2 lladdr 02:00:00:00:01:02 extern_learn NOARP proto 150" in neigh
    v4 = node.ip("route", "show", "table", str(TABLE))
    assert "10.8.0.0/26 via 192.0.2.2 dev br-100 proto 150 onlink" in v4
    assert "10.8.3.7 via inet6 2001:db8::2 dev br-600 proto 150 onlink" in v4
    assert "10.8.1.0/24 proto 150 \n\tnexthop via 192.0.2.2 dev br-100 weight 1 onlink" in v4
    assert "nexthop via inet6 2001:db8::2 dev br-600 weight 1 onlink" in v4
    v6 = node.ip("-6", "route", "show", "table", str(TABLE))
    assert "fd00:a::/48 via ::ffff:192.0.2.2 dev br-100 proto 150" in v6
    assert "fd00:9::/64 proto 150" in v6 and "nexthop via 2001:db8::3 dev br-600" in v6
    assert "default via 192.0.2.3 dev br-100 proto 150 onlink" in node.ip(
        "route", "show", "table", str(TABLE + 1)
    )

    # only what was asked: another table or VNI is not in the dump
    part = await dp.dump_evpn([600], [TABLE + 1])
    assert part.fdb == {e for e in x.fdb if e.vni == 600}
    assert part.routes == {r for r in x.routes if r.table == TABLE + 1}

    for _ in range(2):  # removing what is gone is done too
        result = await dp.apply_evpn(EMPTY, x)
        assert result.failed == ()
        assert result.applied == count(x)
        assert await dump() == EMPTY
    assert "extern_learn" not in fdb_text(node, "vx-100") + fdb_text(node, "vx-600")
    assert "proto 150" not in node.ip("-d", "neigh", "show")
    assert node.ip("route", "show", "table", "all", "proto", "150") == ""
    assert node.ip("-6", "route", "show", "table", "all", "proto", "150") == ""


async def test_ecmp_paths_change_as_a_whole_and_macs_move(node: Netns) -> None:
    a, b, c = (dp.EvpnRoute(TABLE, "10.9.0.0/24", f"192.0.2.{i}", 100) for i in (2, 3, 4))
    v6a, v6b = (dp.EvpnRoute(TABLE, "fd00:99::/64", f"2001:db8::{i}", 600) for i in (2, 3))
    assert (
        await dp.apply_evpn(dp.KernelEvpn(routes=frozenset({a, b, v6a, v6b})), EMPTY)
    ).failed == ()
    # one path goes: the route is rewritten with the others (and IPv6 with the one left)
    assert (await dp.apply_evpn(EMPTY, dp.KernelEvpn(routes=frozenset({a, v6a})))).failed == ()
    assert (await dump()).routes == {b, v6b}
    assert "10.9.0.0/24 via 192.0.2.3 dev br-100 proto 150 onlink" in node.ip(
        "route", "show", "table", str(TABLE)
    )
    # a path is added to a prefix that has one: both are there
    assert (await dp.apply_evpn(dp.KernelEvpn(routes=frozenset({c})), EMPTY)).failed == ()
    assert (await dump()).routes == {b, c, v6b}
    # removing a path that is not there changes nothing
    assert (await dp.apply_evpn(EMPTY, dp.KernelEvpn(routes=frozenset({a})))).failed == ()
    assert (await dump()).routes == {b, c, v6b}

    # a MAC moves to another VTEP, an IP to another MAC: removal + addition in one call
    m1 = dp.FdbEntry(100, "02:00:00:00:09:01", "192.0.2.2")
    m2 = dp.FdbEntry(100, "02:00:00:00:09:01", "192.0.2.3")
    n1 = dp.NeighEntry(100, "10.9.9.9", "02:00:00:00:09:01")
    n2 = dp.NeighEntry(100, "10.9.9.9", "02:00:00:00:09:02")
    await dp.apply_evpn(dp.KernelEvpn(fdb=frozenset({m1}), neigh=frozenset({n1})), EMPTY)
    moved = await dp.apply_evpn(
        dp.KernelEvpn(fdb=frozenset({m2}), neigh=frozenset({n2})),
        dp.KernelEvpn(fdb=frozenset({m1}), neigh=frozenset({n1})),
    )
    assert moved == dp.ApplyResult(applied=4, failed=())
    got = await dump()
    assert got.fdb == {m2} and got.neigh == {n2}
    assert "02:00:00:00:09:01 extern_learn master br-100" in fdb_text(node, "vx-100")
    # a stale removal (the MAC is at another VTEP now) leaves the current entry alone
    assert (await dp.apply_evpn(EMPTY, dp.KernelEvpn(fdb=frozenset({m1})))).failed == ()
    assert (await dump()).fdb == {m2}
    assert "02:00:00:00:09:01 extern_learn master br-100" in fdb_text(node, "vx-100")


async def test_bridge_entries_are_never_aged(node: Netns) -> None:
    """NTF_EXT_LEARNED bridge entries are not static, yet the bridge does
    not age them (a dynamic entry beside them does go)."""
    node.ip("link", "set", "br-100", "type", "bridge", "ageing_time", "100")  # 1 s
    node.run("bridge", "fdb", "add", "02:00:00:00:0d:01", "dev", "vx-100", "master", "dynamic")
    entry = dp.FdbEntry(100, "02:00:00:00:0a:01", "192.0.2.2")
    assert (await dp.apply_evpn(dp.KernelEvpn(fdb=frozenset({entry})), EMPTY)).failed == ()
    with trio.fail_after(10):
        while "02:00:00:00:0d:01" in fdb_text(node, "vx-100"):
            await trio.sleep(0.2)
    await trio.sleep(1.5)
    assert "02:00:00:00:0a:01 extern_learn master br-100" in fdb_text(node, "vx-100")
    assert (await dump()).fdb == {entry}


async def test_strict_dumps_are_filtered_by_the_kernel(node: Netns) -> None:
    assert (await dp.apply_evpn(sample(), EMPTY)).failed == ()
    node.ip("route", "add", "10.7.0.0/24", "via", "192.0.2.9", "dev", "br-100", "onlink",
            "table", str(TABLE))  # fmt: skip
    with on(node), nl.Netlink(_evpn.netlink_socket(None), strict=True) as sock:
        ours = sock.routes(socket.AF_INET, TABLE, dp.ROUTE_PROTO_EVPN)
        everything = sock.routes(socket.AF_INET, TABLE)
        br = sock.link_by_name("br-100")
        assert br is not None
        neigh = sock.neighbours(socket.AF_INET, br.index)
    assert {r.dst for r in ours} == {"10.8.0.0", "10.8.1.0", "10.8.2.0", "10.8.3.7"}
    assert {r.proto for r in ours} == {dp.ROUTE_PROTO_EVPN}
    assert "10.7.0.0" in {r.dst for r in everything}
    assert {n.ifindex for n in neigh} == {br.index}
    assert {n.dst for n in neigh if n.protocol == dp.ROUTE_PROTO_EVPN} == {"10.1.0.7", "192.0.2.2"}
    kernels = {n.dst for n in neigh if n.protocol is None}  # the kernel's own (IGMP: 224.0.0.22)
    assert all(ip is not None and ip.startswith("224.") for ip in kernels)
    ecmp = next(r for r in ours if r.dst == "10.8.1.0")
    assert sorted(h.gateway for h in ecmp.nexthops) == ["192.0.2.2", "192.0.2.3"]


# ---------------------------------------------------------------- ownership


async def test_foreign_state_is_never_touched(node: Netns) -> None:
    # someone else's entries on our devices and in our table
    node.run("bridge", "fdb", "add", "02:00:00:00:ff:01", "dev", "vx-100", "self", "dst",
             "198.51.100.9", "permanent")  # fmt: skip
    node.run("bridge", "fdb", "add", "02:00:00:00:ff:01", "dev", "vx-100", "master", "static")
    node.ip("neigh", "add", "10.1.0.99", "lladdr", "02:00:00:00:ff:02", "dev", "br-100",
            "nud", "permanent")  # fmt: skip
    node.ip("neigh", "add", "10.1.0.98", "lladdr", "02:00:00:00:ff:03", "dev", "br-100",
            "nud", "noarp", "extern_learn", "proto", "186")  # fmt: skip
    node.ip("route", "add", "10.7.0.0/24", "via", "192.0.2.9", "dev", "br-100", "onlink",
            "table", str(TABLE))  # fmt: skip
    node.ip("route", "add", "10.7.1.0/24", "via", "192.0.2.9", "dev", "br-100", "onlink",
            "table", str(TABLE), "proto", "149")  # fmt: skip
    # a same-named domain without our aliases
    make_domain(node, 300, "192.0.2.1", ours=False)
    before = (
        fdb_text(node, "vx-100"),
        node.ip("-d", "neigh", "show"),
        node.ip("route", "show", "table", str(TABLE)),
    )
    assert await dump((100, 300), (TABLE,)) == EMPTY  # nothing of that is ours

    x = sample()
    foreign = dp.KernelEvpn(
        fdb=frozenset({dp.FdbEntry(300, "02:00:00:00:03:01", "192.0.2.2")}),
        neigh=frozenset({dp.NeighEntry(300, "10.3.0.1", "02:00:00:00:03:01")}),
        routes=frozenset(
            {
                dp.EvpnRoute(TABLE, "10.3.0.0/24", "192.0.2.2", 300),
                # the prefix is held by a route of another protocol: refused, not replaced
                dp.EvpnRoute(TABLE, "10.7.1.0/24", "192.0.2.2", 100),
            }
        ),
    )
    both = dp.KernelEvpn(fdb=x.fdb | foreign.fdb, neigh=x.neigh | foreign.neigh,
                         routes=x.routes | foreign.routes)  # fmt: skip
    result = await dp.apply_evpn(both, EMPTY)
    assert result.applied == count(x)
    failed = dict(result.failed)
    assert len(failed) == count(foreign)
    assert (
        "br-300 is not ours (alias None, expected 'cnid:br:300')"
        in failed["add neigh vni 300 10.3.0.1 lladdr 02:00:00:00:03:01"]
    )
    assert "vx-300 is not ours" in failed["add fdb vni 300 02:00:00:00:03:01 dst 192.0.2.2"]
    assert "br-300 is not ours" in failed["add route table 50 10.3.0.0/24 via 192.0.2.2 vni 300"]
    assert "File exists" in failed["add route table 50 10.7.1.0/24 via 192.0.2.2 vni 100"]
    assert "02:00:00:00:03:01" not in fdb_text(node, "vx-300")
    assert node.ip("neigh", "show", "dev", "br-300") == ""
    assert "10.3.0.0" not in node.ip("route", "show", "table", str(TABLE))
    assert await dump((100, 600, 300), (TABLE, TABLE + 1)) == x

    # the foreign entries' keys in a removal: nothing of theirs goes
    theirs = dp.KernelEvpn(
        fdb=frozenset(
            {
                dp.FdbEntry(100, "02:00:00:00:ff:01", "198.51.100.9"),
            }
        ),
        neigh=frozenset(
            {
                dp.NeighEntry(100, "10.1.0.99", "02:00:00:00:ff:02"),
                dp.NeighEntry(100, "10.1.0.98", "02:00:00:00:ff:03"),
            }
        ),
        routes=frozenset({dp.EvpnRoute(TABLE, "10.7.1.0/24", "192.0.2.9", 100)}),
    )
    result = await dp.apply_evpn(EMPTY, dp.KernelEvpn(fdb=x.fdb | theirs.fdb,
                                                     neigh=x.neigh | theirs.neigh,
                                                     routes=x.routes | theirs.routes))  # fmt: skip
    assert result.failed == ()
    after = (
        fdb_text(node, "vx-100"),
        node.ip("-d", "neigh", "show"),
        node.ip("route", "show", "table", str(TABLE)),
    )
    assert after == before
    assert await dump((100, 600, 300), (TABLE, TABLE + 1)) == EMPTY


async def test_flood_remotes_belong_to_our_device(node: Netns) -> None:
    """The driver has one flags field for all the remotes of the all-zeros
    MAC, and an append without NTF_EXT_LEARNED clears it for all of them:
    the flag cannot say whose a flood remote is. So every flood remote on our
    device is ours, whoever appended it, and none of them is lost."""
    ours = {dp.FdbEntry(100, ZERO, "192.0.2.2"), dp.FdbEntry(100, ZERO, "192.0.2.3")}
    assert (await dp.apply_evpn(dp.KernelEvpn(fdb=frozenset(ours)), EMPTY)).failed == ()
    assert "00:00:00:00:00:00 dst 192.0.2.2 self extern_learn" in fdb_text(node, "vx-100")
    node.run("bridge", "fdb", "append", ZERO, "dev", "vx-100", "self", "dst", "198.51.100.9")
    assert "extern_learn" not in fdb_text(node, "vx-100")  # the kernel's behaviour
    assert (await dump()).fdb == ours | {dp.FdbEntry(100, ZERO, "198.51.100.9")}
    assert (await dp.apply_evpn(EMPTY, dp.KernelEvpn(fdb=frozenset(ours)))).failed == ()
    assert "dst 198.51.100.9" in fdb_text(node, "vx-100")
    assert "dst 192.0.2." not in fdb_text(node, "vx-100")
    # the kernel's own default remote (a device made with `remote`) is not ours
    node.ip("link", "add", "vx-700", "type", "vxlan", "id", "700", "local", "192.0.2.1",
            "remote", "192.0.2.7", "dstport", "4789", "nolearning")  # fmt: skip
    node.ip("link", "set", "vx-700", "alias", vxlan_alias(700))
    assert "00:00:00:00:00:00 dst 192.0.2.7 self permanent" in fdb_text(node, "vx-700")
    assert (await dump((700,), ())).fdb == frozenset()


async def test_domain_removal_deletes_evpn_routes_too(node: Netns) -> None:
    x = sample()
    assert (await dp.apply_evpn(x, EMPTY)).failed == ()
    node.ip("route", "add", "10.7.0.0/24", "via", "192.0.2.9", "dev", "br-100", "onlink",
            "table", str(TABLE))  # fmt: skip
    domain = Domain(
        name="d", vrf=TABLE, table=TABLE, prefix="10.8.0.0", prefixlen=16, ipblocklen=24,
        attachments=(VniAttachment(type="l3vni", vni=4242),),
    )  # fmt: skip
    await dp.remove_domain(domain)  # no VRF device here: only the table is concerned
    assert (await dump()).routes == {r for r in x.routes if r.table != TABLE}
    assert node.ip("route", "show", "table", str(TABLE)).startswith("10.7.0.0/24 via 192.0.2.9")
    assert node.ip("-6", "route", "show", "table", str(TABLE)) == ""


# ---------------------------------------------------------------- refused entries


async def test_bad_entries_are_reported_and_do_not_stop_the_others(node: Netns) -> None:
    good = dp.KernelEvpn(
        fdb=frozenset({dp.FdbEntry(100, "02:00:00:00:01:01", "192.0.2.2")}),
        neigh=frozenset({dp.NeighEntry(100, "10.1.0.7", "02:00:00:00:01:01")}),
        routes=frozenset({dp.EvpnRoute(TABLE, "10.8.0.0/26", "192.0.2.2", 100)}),
    )
    bad = {
        dp.FdbEntry(999, "02:00:00:00:01:01", "192.0.2.2"): "vx-999 does not exist",
        dp.FdbEntry(100, "02:00:00:00:01:AA", "192.0.2.2"): "is not of the form",
        dp.FdbEntry(100, "02:00:00:00:01", "192.0.2.2"): "is not of the form",
        dp.FdbEntry(100, "03:00:00:00:01:01", "192.0.2.2"): "not a unicast address",
        dp.FdbEntry(100, "02:00:00:00:01:03", "2001:db8::2"): "must be IPv4",
        dp.FdbEntry(100, "02:00:00:00:01:04", "::ffff:192.0.2.2"): "IPv4-mapped",
        dp.FdbEntry(100, "02:00:00:00:01:05", "192.0.2.2"): "several VTEPs",
        dp.FdbEntry(100, "02:00:00:00:01:05", "192.0.2.3"): "several VTEPs",
        dp.FdbEntry(0, "02:00:00:00:01:05", "192.0.2.3"): "VNI 0 is not in",
        dp.NeighEntry(999, "10.1.0.8", "02:00:00:00:01:01"): "br-999 does not exist",
        dp.NeighEntry(100, "2001:DB8::8", "02:00:00:00:01:01"): "write 2001:db8::8",
        dp.NeighEntry(100, "10.1.0.9", ZERO): "not a unicast address",
        dp.EvpnRoute(TABLE, "10.8.1.1/24", "192.0.2.2", 100): "host bits set",
        dp.EvpnRoute(TABLE, "10.8.2.0/33", "192.0.2.2", 100): "length over 32",
        dp.EvpnRoute(TABLE, "10.8.3.0/24", "192.0.2.2", 999): "br-999 does not exist",
        dp.EvpnRoute(255, "10.8.4.0/24", "192.0.2.2", 100): "not local",
        # refused by the kernel itself, in the middle of the batch
        dp.EvpnRoute(TABLE, "10.8.5.0/24", "127.0.0.1", 100): "Invalid argument",
    }
    mixed = dp.KernelEvpn(
        fdb=good.fdb | {e for e in bad if isinstance(e, dp.FdbEntry)},
        neigh=good.neigh | {e for e in bad if isinstance(e, dp.NeighEntry)},
        routes=good.routes | {e for e in bad if isinstance(e, dp.EvpnRoute)},
    )
    result = await dp.apply_evpn(mixed, EMPTY)
    failed = dict(result.failed)
    assert result.applied == 3
    assert [w for w, _ in result.failed] == sorted(failed)
    assert len(failed) == len(bad), failed
    for entry, reason in bad.items():
        assert reason in failed[_evpn_values._what("add", entry)], (entry, failed)
    assert await dump((100, 999), (TABLE, 255)) == good


async def _apply_here(
    add: dp.KernelEvpn, bufsize: int = _evpn_apply.SOCKET_BUFFER
) -> dp.ApplyResult:
    """The batch planned and sent in this process, not in the worker
    process ``apply_evpn`` hands it to: the encoder's chunking, spied on and
    squeezed here, is the same code."""

    def run() -> dp.ApplyResult:
        with nl.Netlink(netlink_socket(None), strict=True, bufsize=bufsize) as sock:
            return _evpn_apply.apply_batch(sock, add, EMPTY)

    return await trio.to_thread.run_sync(run)


async def test_errors_map_to_their_entries_across_chunks(
    node: Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small chunks (as if the receive buffer were small): 2,000 routes go
    in many send() calls; the few the kernel refuses are the ones reported."""
    monkeypatch.setattr(nl.Netlink, "ERROR_ACK_TRUESIZE", 40_000)  # about 400 per chunk
    sends: list[int] = []
    real_encode = nl.Netlink._encode_chunk

    def spy(self: nl.Netlink, requests: list[nl.Request], start: int) -> tuple[int, bytes]:
        end, data = real_encode(self, requests, start)
        sends.append(end - start)
        return end, data

    monkeypatch.setattr(nl.Netlink, "_encode_chunk", spy)
    routes = {dp.EvpnRoute(TABLE, f"10.{i // 256}.{i % 256}.0/24", "192.0.2.2", 100)
              for i in range(2000)}  # fmt: skip
    refused = {dp.EvpnRoute(TABLE, f"10.200.{i}.0/24", "127.0.0.1", 100) for i in range(7)}
    result = await _apply_here(dp.KernelEvpn(routes=frozenset(routes | refused)))
    assert len(sends) > 3 and sum(sends) == 2007
    assert {w for w, _ in result.failed} == {_evpn_values._what("add", r) for r in refused}
    assert result.applied == 2000
    assert (await dump()).routes == routes


async def test_lost_error_acks_are_reported_not_waited_for(
    node: Netns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the error ACKs overflow the receive buffer (here: 128 KiB buffers,
    chunks sized as if an ACK cost nothing), the kernel drops some and says
    ENOBUFS: the call returns, and every entry of the chunk whose answer is
    not known is reported as such (the reconciler's next dump tells)."""
    monkeypatch.setattr(nl.Netlink, "ERROR_ACK_TRUESIZE", 1)
    refused = {dp.EvpnRoute(TABLE, f"10.{i // 256}.{i % 256}.0/24", "127.0.0.1", 100)
               for i in range(2000)}  # fmt: skip
    fine = dp.EvpnRoute(TABLE + 1, "10.250.0.0/24", "192.0.2.2", 100)
    with trio.fail_after(20):
        # 64 KiB buffers (the kernel doubles them)
        result = await _apply_here(dp.KernelEvpn(routes=frozenset(refused | {fine})), 64 << 10)
    failed = dict(result.failed)
    assert len(failed) == 2001 and result.applied == 0
    assert "outcome unknown" in failed[_evpn_values._what("add", fine)]
    assert any("Invalid argument" in r for r in failed.values())
    assert (await dump()).routes == {fine}  # it was done, all the same


# ---------------------------------------------------------------- packet path


def _set_forwarding(ns: Netns) -> None:
    ns.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
    ns.run("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")


def _counter(ns: Netns, dev: str, name: str) -> int:
    return int(ns.run("cat", f"/sys/class/net/{dev}/statistics/{name}").stdout)


@pytest.fixture(params=[4, 6], ids=["ipv4-underlay", "ipv6-underlay"])
def fabric(request: pytest.FixtureRequest) -> Iterator[tuple[int, Netns, Netns]]:
    """Two nodes joined by a veth underlay (IPv4 or IPv6 VTEPs).

    The underlay's routes are in a table of their own (200, with a rule),
    not in main: in production the l3vni bridge is in the VRF, and the
    kernel checks an onlink IPv6 next hop against the table of the device's
    VRF, where no underlay route is; here the bridge is in no VRF, so the
    check is against main, and a VTEP routed there through ul0 is refused
    ("Nexthop has invalid gateway or device mismatch")."""
    family = request.param
    local_a, local_b, plen, _ = UNDERLAY[family]
    subnet = "192.0.2.0/24" if family == 4 else "2001:db8::/64"
    with netns("evfa") as a, netns("evfb") as b:
        a.ip("link", "add", "ul0", "type", "veth", "peer", "name", "ul0", "netns", b.name)
        for ns, local in ((a, local_a), (b, local_b)):
            flags = ("noprefixroute", *(("nodad",) if family == 6 else ()))
            ns.ip("addr", "add", f"{local}/{plen}", "dev", "ul0", *flags)
            ns.ip("link", "set", "ul0", "up")
            ns.ip(f"-{family}", "route", "add", subnet, "dev", "ul0", "table", "200")
            ns.ip(f"-{family}", "rule", "add", "to", subnet, "lookup", "200", "pref", "100")
            _set_forwarding(ns)
        yield family, a, b


def _pod(
    node: Netns, pod: Netns, host_if: str, mac: str, addrs: list[str], master: str | None
) -> None:
    node.ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod.name)
    pod.ip("link", "set", "eth0", "address", mac)
    for addr in addrs:
        pod.ip("addr", "add", addr, "dev", "eth0", *(("nodad",) if ":" in addr else ()))
    pod.ip("link", "set", "eth0", "up")
    if master:
        node.ip("link", "set", host_if, "master", master)
    node.ip("link", "set", host_if, "up")


async def _apply_on(ns: Netns, add: dp.KernelEvpn, remove: dp.KernelEvpn = EMPTY) -> None:
    with on(ns):
        result = await dp.apply_evpn(add, remove)
    assert result.failed == ()


def _ping(pod: Netns, target: str) -> None:
    out = pod.run("ping", "-c", "2", "-i", "0.2", "-W", "2", target, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


async def test_l2vni_packets_cross_over_vxlan(fabric: tuple[int, Netns, Netns]) -> None:
    family, a, b = fabric
    vtep = {a.name: UNDERLAY[family][0], b.name: UNDERLAY[family][1]}
    nobody = UNDERLAY[family][3]
    macs = {a.name: "02:00:00:00:aa:01", b.name: "02:00:00:00:bb:01"}
    ips = {a.name: "10.30.0.1", b.name: "10.30.0.2"}
    with netns("evpa") as pa, netns("evpb") as pb:
        pods = {a.name: pa, b.name: pb}
        for ns in (a, b):
            make_domain(ns, 100, vtep[ns.name])
            _pod(ns, pods[ns.name], "pod0", macs[ns.name], [f"{ips[ns.name]}/24"], "br-100")
            ns.run("bridge", "link", "set", "dev", "vx-100", "neigh_suppress", "on")
        # 1. type-2 routes only (no flood entries): the remote MAC's FDB entries, and the
        #    remote IP -> MAC on the bridge, which answers the pods' ARP (neigh_suppress)
        for ns, other in ((a, b), (b, a)):
            await _apply_on(
                ns,
                dp.KernelEvpn(
                    fdb=frozenset({dp.FdbEntry(100, macs[other.name], vtep[other.name])}),
                    neigh=frozenset({dp.NeighEntry(100, ips[other.name], macs[other.name])}),
                ),
            )
        tx, rx = _counter(a, "vx-100", "tx_packets"), _counter(b, "vx-100", "rx_packets")
        _ping(pa, ips[b.name])
        assert _counter(a, "vx-100", "tx_packets") >= tx + 2
        assert _counter(b, "vx-100", "rx_packets") >= rx + 2
        assert macs[b.name] in pa.ip("neigh", "show", "dev", "eth0")  # answered by the bridge

        # 2. BUM over the flood entries (several per device): ARP goes across
        for ns, other in ((a, b), (b, a)):
            ns.run("bridge", "link", "set", "dev", "vx-100", "neigh_suppress", "off")
            await _apply_on(
                ns,
                dp.KernelEvpn(
                    fdb=frozenset(
                        {dp.FdbEntry(100, ZERO, vtep[other.name]), dp.FdbEntry(100, ZERO, nobody)}
                    )
                ),
                dp.KernelEvpn(
                    neigh=frozenset({dp.NeighEntry(100, ips[other.name], macs[other.name])})
                ),
            )
            pods[ns.name].ip("neigh", "flush", "dev", "eth0")
        tx = _counter(a, "vx-100", "tx_packets")
        _ping(pa, ips[b.name])
        assert _counter(a, "vx-100", "tx_packets") >= tx + 3  # ARP request, 2 echo requests
        with on(a):
            got = await dp.dump_evpn([100], [])
        assert got.fdb == {
            dp.FdbEntry(100, macs[b.name], vtep[b.name]),
            dp.FdbEntry(100, ZERO, vtep[b.name]),
            dp.FdbEntry(100, ZERO, nobody),
        }
        assert got.neigh == frozenset()


async def test_l3vni_type5_routes_carry_traffic_over_vxlan(
    fabric: tuple[int, Netns, Netns],
) -> None:
    """Each node: an l3vni bridge br-50 (its MAC is the router MAC) with
    vx-50, a pod routed behind it, table 50 standing for the VRF (ip rules
    from the pod's link and from the bridge). The type-5 route, the next
    hop's neighbour entry and the router MAC's FDB entry take the traffic
    across; IPv4 and IPv6 prefixes over the one underlay family."""
    family, a, b = fabric
    vtep = {a.name: UNDERLAY[family][0], b.name: UNDERLAY[family][1]}
    rmac = {a.name: "02:00:00:00:50:0a", b.name: "02:00:00:00:50:0b"}
    net = {a.name: ("10.10.1", "fd00:a:1:"), b.name: ("10.20.1", "fd00:b:1:")}
    with netns("evpa") as pa, netns("evpb") as pb:
        pods = {a.name: pa, b.name: pb}
        for ns in (a, b):
            v4, v6 = net[ns.name]
            make_domain(ns, 50, vtep[ns.name], mac=rmac[ns.name])
            pod = pods[ns.name]
            _pod(ns, pod, "pod0", "02:00:00:00:00:01", [f"{v4}.2/24", f"{v6}:2/64"], None)
            ns.ip("addr", "add", f"{v4}.1/24", "dev", "pod0")
            ns.ip("addr", "add", f"{v6}:1/64", "dev", "pod0", "nodad")
            pod.ip("route", "add", "default", "via", f"{v4}.1")
            pod.ip("-6", "route", "add", "default", "via", f"{v6}:1")
            for ip in ("-4", "-6"):
                for iif in ("pod0", "br-50"):
                    ns.ip(ip, "rule", "add", "iif", iif, "lookup", str(TABLE))
            ns.ip("route", "add", f"{v4}.0/24", "dev", "pod0", "table", str(TABLE))
            ns.ip("-6", "route", "add", f"{v6}:/64", "dev", "pod0", "table", str(TABLE))
        for ns, other in ((a, b), (b, a)):
            remote, v4, v6 = vtep[other.name], *net[other.name]
            # an IPv6 prefix via an IPv4 VTEP goes via its IPv4-mapped address
            hops = {remote, f"::ffff:{remote}"} if family == 4 else {remote}
            await _apply_on(
                ns,
                dp.KernelEvpn(
                    fdb=frozenset({dp.FdbEntry(50, rmac[other.name], remote)}),
                    neigh=frozenset(dp.NeighEntry(50, h, rmac[other.name]) for h in hops),
                    routes=frozenset(
                        {
                            dp.EvpnRoute(TABLE, f"{v4}.0/24", remote, 50),
                            dp.EvpnRoute(TABLE, f"{v6}:/64", remote, 50),
                        }
                    ),
                ),
            )
        for target in (f"{net[b.name][0]}.2", f"{net[b.name][1]}:2"):
            tx, rx = _counter(a, "vx-50", "tx_packets"), _counter(b, "vx-50", "rx_packets")
            _ping(pa, target)
            assert _counter(a, "vx-50", "tx_packets") >= tx + 2, target
            assert _counter(b, "vx-50", "rx_packets") >= rx + 2, target

        # withdrawn: the traffic stops (the table has no route left for it)
        with on(a):
            have = await dp.dump_evpn([50], [TABLE])
        assert len(have.routes) == 2
        await _apply_on(a, EMPTY, have)
        out = pa.run("ping", "-c", "1", "-W", "1", f"{net[b.name][0]}.2", check=False)
        assert out.returncode != 0


def test_nda_protocol_is_supported_here() -> None:
    """This kernel tags neighbours with NDA_PROTOCOL (ownership relies on it)."""
    assert _evpn_values.nda_protocol_supported()


async def test_ecmp_merged_with_the_callers_record(node: Netns) -> None:
    """With ``routes_now`` the tables are not read back; a wrong record fails
    (EEXIST) rather than overwriting what the kernel holds."""
    r1 = dp.EvpnRoute(TABLE, "10.8.5.0/24", "192.0.2.2", 100)
    r2 = dp.EvpnRoute(TABLE, "10.8.5.0/24", "192.0.2.3", 100)
    r3 = dp.EvpnRoute(TABLE, "10.8.5.0/24", "192.0.2.4", 100)
    key = (TABLE, "10.8.5.0/24")
    done = await dp.apply_evpn(dp.KernelEvpn(routes=frozenset({r1})), EMPTY, {key: frozenset()})
    assert done.failed == ()
    done = await dp.apply_evpn(dp.KernelEvpn(routes=frozenset({r2})), EMPTY, {key: {r1}})
    assert done.failed == ()
    assert (await dump()).routes == {r1, r2}
    # a record that forgot r1 and r2: refused, the kernel keeps both
    done = await dp.apply_evpn(dp.KernelEvpn(routes=frozenset({r3})), EMPTY, {key: frozenset()})
    assert len(done.failed) == 1 and "exists" in done.failed[0][1].lower()
    assert (await dump()).routes == {r1, r2}
    done = await dp.apply_evpn(EMPTY, dp.KernelEvpn(routes=frozenset({r1, r2})), {key: {r1, r2}})
    assert done.failed == () and (await dump()).routes == set()
