"""The two pure translations of cnid/evpn: local state to the paths a node
announces, and received paths to kernel entries (with the RouteTable that
keeps them)."""

from __future__ import annotations

import msgspec
import pytest

from cnid.bgp import EvpnPath, ImetRoute, MacIpRoute, PrefixRoute, ReceivedPath
from cnid.core import Domain, VniAttachment
from cnid.dataplane import EvpnRoute, FdbEntry, NeighEntry
from cnid.evpn import (
    LocalBlock,
    LocalDomain,
    LocalPod,
    LocalState,
    RouteTable,
    Skip,
    kernel_entries,
    local_paths,
    node_view,
    rd_indexes,
)
from testbed.domains import VRF42, VRF300

L3 = VRF42
IRB = Domain(
    name="vrf-200",
    vrf=200,
    table=10200,
    prefix="10.1.0.0",
    prefixlen=16,
    ipblocklen=26,
    attachments=(VniAttachment(type="l2vni", vni=60100), VniAttachment(type="l3vni", vni=60200)),
)
L2 = VRF300
RMAC = "02:42:00:00:00:01"


def state(**kw: object) -> LocalState:
    base: dict[str, object] = {
        "router_id": "192.168.77.11",
        "asn": 65000,
        "vtep": "192.168.77.11",
        "domains": (LocalDomain(L3, RMAC), LocalDomain(IRB, "02:42:00:00:00:02"), LocalDomain(L2)),
        "blocks": (
            LocalBlock(42, "10.244.0.0/26"),
            LocalBlock(42, "10.244.0.64/26"),
            LocalBlock(200, "10.1.0.0/26"),
            LocalBlock(300, "10.3.0.0/26"),
            LocalBlock(999, "10.99.0.0/26"),
        ),
        "pods": (
            LocalPod("vrf-42", "0a:00:00:00:00:01", "10.244.0.2"),
            LocalPod("vrf-200", "0a:00:00:00:00:02", "10.1.0.2"),
            LocalPod("vrf-300", "0a:00:00:00:00:03", "10.3.0.2"),
            LocalPod("gone", "0a:00:00:00:00:04", "10.4.0.2"),
        ),
    }
    base.update(kw)
    return LocalState(**base)  # type: ignore[arg-type]


def test_local_paths_per_domain_kind() -> None:
    paths, problems = local_paths(state())
    assert problems == []
    by_type: dict[str, list[EvpnPath]] = {}
    for p in paths:
        by_type.setdefault(type(p.route).__name__, []).append(p)
    prefixes = sorted(p.route.prefix for p in by_type["PrefixRoute"])  # type: ignore[union-attr]
    # a type-5 per block of each domain with an l3vni; none for l2-only or unknown VRFs
    assert prefixes == ["10.1.0.0/26", "10.244.0.0/26", "10.244.0.64/26"]
    t5_200 = next(p for p in by_type["PrefixRoute"] if p.route.prefix == "10.1.0.0/26")  # type: ignore[union-attr]
    assert t5_200.route_targets == ("65000:60200",)  # AS:L3VNI, as FRR derives it, not AS:VRF
    t5 = next(p for p in by_type["PrefixRoute"] if p.route.prefix == "10.244.0.0/26")  # type: ignore[union-attr]
    # RDs router-id:index, one index per VRF (type-5) and per l2vni, VRFs first
    assert t5 == EvpnPath(
        PrefixRoute(rd="192.168.77.11:1", prefix="10.244.0.0/26", vni=42),
        nexthop="192.168.77.11",
        route_targets=("65000:42",),
        router_mac=RMAC,
    )
    imets = {p.route.vni: p for p in by_type["ImetRoute"]}
    assert set(imets) == {60100, 300}
    assert imets[300].route == ImetRoute(rd="192.168.77.11:3", ip="192.168.77.11", vni=300)
    assert imets[300].route_targets == ("65000:300",)
    macs = {p.route.mac: p for p in by_type["MacIpRoute"]}  # type: ignore[union-attr]
    # type-2 only for pods on an l2vni; symmetric IRB when the domain has an l3vni too
    assert set(macs) == {"0a:00:00:00:00:02", "0a:00:00:00:00:03"}
    irb = macs["0a:00:00:00:00:02"]
    assert irb.route == MacIpRoute(
        rd="192.168.77.11:4", mac="0a:00:00:00:00:02", ip="10.1.0.2", vni=60100, l3vni=60200
    )
    # FRR's auto RTs: AS:L2VNI and AS:L3VNI (not the VRF number: an FRR leaf
    # with vrf 200 and l3vni 60200 imports 65000:60200 only)
    assert irb.route_targets == ("65000:60100", "65000:60200")
    assert irb.router_mac == "02:42:00:00:00:02"
    plain = macs["0a:00:00:00:00:03"]
    assert plain.route.l3vni == 0 and plain.router_mac == ""  # type: ignore[union-attr]


def test_local_paths_problems() -> None:
    paths, problems = local_paths(state(domains=(LocalDomain(L3, ""),)))
    assert not any(isinstance(p.route, PrefixRoute) for p in paths)
    assert problems and "router MAC" in problems[0]


def test_route_distinguishers_are_router_id_and_an_index_unique_on_the_node() -> None:
    big = Domain(
        name="vrf-65578",
        vrf=65578,  # folded into 16 bits this was 42's RD before indexes
        table=65578,
        prefix="10.5.0.0",
        prefixlen=16,
        ipblocklen=26,
        attachments=(VniAttachment(type="l3vni", vni=777),),
    )
    domains = (LocalDomain(L3, RMAC), LocalDomain(big, RMAC))
    blocks = (LocalBlock(42, "10.244.0.0/26"), LocalBlock(65578, "10.5.0.0/26"))
    paths, problems = local_paths(state(domains=domains, blocks=blocks, pods=()))
    assert problems == []
    rds = {p.route.prefix: p.route.rd for p in paths if isinstance(p.route, PrefixRoute)}
    assert rds == {"10.244.0.0/26": "192.168.77.11:1", "10.5.0.0/26": "192.168.77.11:2"}
    # an index is kept while its VRF exists: vrf 42 gone, 65578 keeps 2,
    # and a newcomer takes the lowest free index (1)
    indexes = rd_indexes([L3, big], {})
    assert indexes == {("vrf", 42): 1, ("vrf", 65578): 2}
    kept = rd_indexes([big], indexes)
    assert kept == {("vrf", 65578): 2}
    assert rd_indexes([big, IRB], kept) == {("vrf", 65578): 2, ("vrf", 200): 1, ("vni", 60100): 3}
    paths, _ = local_paths(
        state(domains=(LocalDomain(big, RMAC),), blocks=blocks, pods=(), rd_indexes=kept)
    )
    assert {p.route.rd for p in paths} == {"192.168.77.11:2"}


def test_export_route_targets_explicit_or_derived() -> None:
    hand_set = msgspec.structs.replace(
        IRB, export_route_targets=("65000:42", "192.0.2.1:7", "4200000001:9")
    )
    rfc = msgspec.structs.replace(L2, route_target_derivation="rfc8365")
    domains = (LocalDomain(hand_set, "02:42:00:00:00:02"), LocalDomain(rfc))
    paths, problems = local_paths(state(domains=domains))
    assert problems == []
    hand = ("65000:42", "192.0.2.1:7", "4200000001:9")
    by_route = {type(p.route).__name__ + str(p.route.vni): p.route_targets for p in paths}
    # explicit: every route of the domain, whatever its type, carries them
    assert by_route["PrefixRoute60200"] == hand
    assert by_route["ImetRoute60100"] == hand
    assert by_route["MacIpRoute60100"] == hand
    # RFC 8365: AS:(A=0, type 1 = VXLAN, VNI) = 65000:268435756 for VNI 300
    assert by_route["ImetRoute300"] == (f"65000:{(1 << 28) | 300}",)
    assert by_route["MacIpRoute300"] == (f"65000:{(1 << 28) | 300}",)


VIEW = node_view("192.168.77.11", "192.168.77.11", [L3, IRB, L2], asn=65000)


def rx(path: EvpnPath, peer: str = "192.168.77.1", originator: str = "") -> ReceivedPath:
    return ReceivedPath(peer=peer, path=path, originator=originator)


T5 = EvpnPath(
    PrefixRoute(rd="192.168.77.12:42", prefix="10.244.1.0/26", vni=42),
    nexthop="192.168.77.12",
    route_targets=("65000:42",),
    router_mac="02:42:00:00:00:12",
)
T2 = EvpnPath(
    MacIpRoute(rd="192.168.77.12:300", mac="0a:00:00:00:01:01", ip="10.3.0.9", vni=300),
    nexthop="192.168.77.12",
    route_targets=("65000:300",),
)
T3 = EvpnPath(
    ImetRoute(rd="192.168.77.12:300", ip="192.168.77.12", vni=300),
    nexthop="192.168.77.12",
    route_targets=("65000:300",),
)


def test_kernel_entries_of_each_route_type() -> None:
    assert kernel_entries(rx(T5), VIEW) == (
        EvpnRoute(table=42, prefix="10.244.1.0/26", vtep="192.168.77.12", vni=42),
        NeighEntry(vni=42, ip="192.168.77.12", mac="02:42:00:00:00:12"),
        FdbEntry(vni=42, mac="02:42:00:00:00:12", vtep="192.168.77.12"),
    )
    assert kernel_entries(rx(T2), VIEW) == (
        FdbEntry(vni=300, mac="0a:00:00:00:01:01", vtep="192.168.77.12"),
        NeighEntry(vni=300, ip="10.3.0.9", mac="0a:00:00:00:01:01"),
    )
    assert kernel_entries(rx(T3), VIEW) == (
        FdbEntry(vni=300, mac="00:00:00:00:00:00", vtep="192.168.77.12"),
    )


def _replace(path: EvpnPath, **kw: object) -> EvpnPath:
    return msgspec.structs.replace(path, **kw)


@pytest.mark.parametrize(
    ("received", "kind"),
    [
        (rx(_replace(T5, route_targets=("65000:4711",))), "no-route-target"),
        (rx(_replace(T5, route_targets=())), "no-route-target"),
        # the target of vrf-300, an l2vni-only domain: no table to route into
        (rx(_replace(T5, route_targets=("65000:300",))), "wrong-vni-kind"),
        (rx(_replace(T5, router_mac="")), "no-router-mac"),
        (rx(_replace(T5, nexthop="fe80::1")), "next-hop-family"),
        (rx(_replace(T5, nexthop="2001:db8::9")), "next-hop-family"),
        (rx(_replace(T5, nexthop="192.168.77.11")), "own-route"),
        (rx(T5, originator="192.168.77.11"), "own-route"),
        (rx(_replace(T3, route_targets=("65000:42",))), "wrong-vni-kind"),
        (
            rx(_replace(T2, route=MacIpRoute(rd="x:1", mac="01:00:5e:00:00:01", vni=300))),
            "bad-mac",
        ),
        (
            rx(
                _replace(
                    T2, route=MacIpRoute(rd="x:1", mac="0a:00:00:00:00:09", ip="10.3.0.1", vni=300)
                )
            ),
            "gateway",
        ),
        (rx(_replace(T5, nexthop="0.0.0.0")), "bad-next-hop"),
    ],
)
def test_routes_that_are_not_programmed(received: ReceivedPath, kind: str) -> None:
    with pytest.raises(Skip) as info:
        kernel_entries(received, VIEW)
    assert info.value.kind == kind


def test_route_table_announce_withdraw_and_dirty_keys() -> None:
    table = RouteTable(VIEW)
    assert table.announce("rr1", rx(T5)) == ""
    assert len(table.take_dirty()) == 3
    # the same route through a second reflector: no new kernel entry
    table.announce("rr2", rx(T5, peer="rr2"))
    assert len(table.desired()) == 3
    table.withdraw("rr1", T5.route)
    assert len(table.desired()) == 3  # rr2's copy keeps it
    table.withdraw("rr2", T5.route)
    assert table.desired() == {}
    assert len(table.take_dirty()) == 3
    assert table.withdraw("rr2", T5.route) is False


def test_shared_entries_stay_while_any_route_needs_them() -> None:
    table = RouteTable(VIEW)
    other = _replace(T5, route=PrefixRoute(rd="192.168.77.12:42", prefix="10.244.9.0/26", vni=42))
    table.announce("rr1", rx(T5))
    table.announce("rr1", rx(other))
    table.withdraw("rr1", T5.route)
    kinds = sorted(str(k[0]) for k in table.desired())
    # the VTEP's neighbour and FDB entry serve the other prefix still
    assert kinds == ["fdb", "neigh", "route"]


def test_a_moved_mac_follows_the_newer_route() -> None:
    table = RouteTable(VIEW)
    table.announce("rr1", rx(T2))
    moved = _replace(
        T2, route=msgspec.structs.replace(T2.route, rd="192.168.77.13:300"), nexthop="192.168.77.13"
    )
    table.announce("rr1", rx(moved))
    fdb = table.chosen(("fdb", 300, "0a:00:00:00:01:01"))
    assert fdb == FdbEntry(vni=300, mac="0a:00:00:00:01:01", vtep="192.168.77.13")
    table.withdraw("rr1", moved.route)
    fdb = table.chosen(("fdb", 300, "0a:00:00:00:01:01"))
    assert fdb is not None and fdb.vtep == "192.168.77.12"  # type: ignore[union-attr]


def test_flood_entries_are_per_vtep() -> None:
    table = RouteTable(VIEW)
    table.announce("rr1", rx(T3))
    other = EvpnPath(
        ImetRoute(rd="192.168.77.13:300", ip="192.168.77.13", vni=300),
        nexthop="192.168.77.13",
        route_targets=("65000:300",),
    )
    table.announce("rr1", rx(other))
    floods = [k for k in table.desired() if k[0] == "flood"]
    assert len(floods) == 2


def test_stale_paths_are_kept_until_relearned_or_dropped() -> None:
    table = RouteTable(VIEW)
    table.announce("rr1", rx(T5))
    table.announce("rr1", rx(T2))
    before = table.desired()
    assert table.make_stale() == 2
    assert table.desired() == before  # nothing leaves the kernel
    table.announce("rr1", rx(T5))  # re-learned: replaces its stale copy
    assert sorted(s for s, _ in table.paths()) == ["rr1", "stale:rr1"]
    assert table.drop_stale("rr1") == 1
    assert [k[0] for k in table.desired()].count("fdb") == 1  # T2's FDB entry gone, T5's stays
    table.make_stale()
    assert table.drop_stale() == 1 and len(table) == 0


def test_a_peer_down_drops_its_paths_only() -> None:
    table = RouteTable(VIEW)
    table.announce("rr1", rx(T5))
    table.announce("rr2", rx(T2, peer="rr2"))
    assert table.drop_source("rr1") == 1
    assert table.counts() == {2: 1, 3: 0, 5: 0}


def test_a_new_view_retranslates() -> None:
    table = RouteTable(node_view("192.168.77.11", "192.168.77.11", [L2], asn=65000))
    assert "route targets 65000:42 imported by no domain" in table.announce("rr1", rx(T5))
    assert table.desired() == {}
    assert table.skip_counts["no-route-target"] == 1
    table.set_view(VIEW)
    assert len(table.desired()) == 3 and table.skipped() == {}


def test_an_ipv6_prefix_via_an_ipv4_vtep_gets_the_mapped_neighbour() -> None:
    v6 = _replace(T5, route=PrefixRoute(rd="192.168.77.12:42", prefix="fd00:1::/64", vni=42))
    entries = kernel_entries(rx(v6), VIEW)
    assert NeighEntry(vni=42, ip="::ffff:192.168.77.12", mac="02:42:00:00:00:12") in entries
    assert NeighEntry(vni=42, ip="192.168.77.12", mac="02:42:00:00:00:12") in entries


# -- import by route target (issue 14) ----------------------------------------


def test_a_route_lands_in_the_domain_of_its_route_target_whatever_its_vni() -> None:
    # the target of vrf-42, the l3vni of vrf-200: vrf-42's table and devices only
    t5 = _replace(T5, route=PrefixRoute(rd="192.168.77.12:9", prefix="10.9.0.0/24", vni=60200))
    assert kernel_entries(rx(t5), VIEW) == (
        EvpnRoute(table=42, prefix="10.9.0.0/24", vtep="192.168.77.12", vni=42),
        NeighEntry(vni=42, ip="192.168.77.12", mac="02:42:00:00:00:12"),
        FdbEntry(vni=42, mac="02:42:00:00:00:12", vtep="192.168.77.12"),
    )
    # the target of vrf-300, the l2vni of vrf-200: on vx-300 / br-300
    t2 = _replace(
        T2,
        route=MacIpRoute(rd="192.168.77.12:9", mac="0a:00:00:00:01:02", ip="10.3.0.8", vni=60100),
    )
    assert kernel_entries(rx(t2), VIEW) == (
        FdbEntry(vni=300, mac="0a:00:00:00:01:02", vtep="192.168.77.12"),
        NeighEntry(vni=300, ip="10.3.0.8", mac="0a:00:00:00:01:02"),
    )
    t3 = _replace(T3, route=ImetRoute(rd="192.168.77.12:9", ip="192.168.77.12", vni=60100))
    assert kernel_entries(rx(t3), VIEW) == (
        FdbEntry(vni=300, mac="00:00:00:00:00:00", vtep="192.168.77.12"),
    )
    # vrf-200's own VNI with vrf-200's targets: vrf-200 (symmetric IRB type-2)
    irb = _replace(
        T2,
        route=MacIpRoute(rd="x:1", mac="0a:00:00:00:01:03", ip="10.1.0.9", vni=60100, l3vni=60200),
        route_targets=("65000:60100", "65000:60200"),
    )
    assert {e.vni for e in kernel_entries(rx(irb), VIEW)} == {60100}


def test_explicit_import_targets_replace_the_derived_ones() -> None:
    hand_set = msgspec.structs.replace(L3, import_route_targets=("65000:4242", "10.0.0.1:7"))
    view = node_view("192.168.77.11", "192.168.77.11", [hand_set, L2], asn=65000)
    with pytest.raises(Skip) as info:
        kernel_entries(rx(T5), view)  # 65000:42, the derived one: not any more
    assert info.value.kind == "no-route-target"
    for rts in (("65000:4242",), ("10.0.0.1:7",), ("65000:1", "10.0.0.1:7")):
        entries = kernel_entries(rx(_replace(T5, route_targets=rts)), view)
        assert entries[0] == EvpnRoute(
            table=42, prefix="10.244.1.0/26", vtep="192.168.77.12", vni=42
        )
    # values, not text: a 4-octet-AS 65000L:4242 is another target
    with pytest.raises(Skip):
        kernel_entries(rx(_replace(T5, route_targets=("65000L:4242",))), view)


def test_any_as_and_rfc8365_imports_take_routes_of_leaves_of_other_ases() -> None:
    star = msgspec.structs.replace(L3, import_route_targets=("*:42",))
    rfc = msgspec.structs.replace(L2, route_target_derivation="rfc8365")
    view = node_view("192.168.77.11", "192.168.77.11", [star, rfc], asn=65000)
    assert kernel_entries(rx(_replace(T5, route_targets=("65101:42",))), view)
    t3 = _replace(T3, route_targets=(f"65102:{(1 << 28) | 300}",))
    assert kernel_entries(rx(t3), view) == (
        FdbEntry(vni=300, mac="00:00:00:00:00:00", vtep="192.168.77.12"),
    )
    with pytest.raises(Skip):  # FRR's plain AS:VNI is not RFC 8365's
        kernel_entries(rx(T3), view)


def test_a_route_two_domains_import_goes_into_both() -> None:
    shared = msgspec.structs.replace(IRB, import_route_targets=("65000:42",))
    view = node_view("192.168.77.11", "192.168.77.11", [L3, shared], asn=65000)
    tables = {e.table for e in kernel_entries(rx(T5), view) if isinstance(e, EvpnRoute)}
    assert tables == {42, 10200}


def test_the_input_policy_holds_in_the_importing_domain() -> None:
    view = node_view(
        "192.168.77.11",
        "192.168.77.11",
        [L3, IRB, L2],
        asn=65000,
        pods=[("vrf-300", "0a:00:00:00:01:01", "10.3.0.2")],
        blocks=[(42, "10.244.1.0/26")],
    )
    # a type-2 for our pod's MAC, naming another VNI but vrf-300's target
    moved = _replace(T2, route=msgspec.structs.replace(T2.route, vni=60100))
    with pytest.raises(Skip) as info:
        kernel_entries(rx(moved), view)
    assert info.value.kind == "local-mac"
    # a type-5 inside our block of vrf-42, naming vrf-200's l3vni
    inside = _replace(T5, route=msgspec.structs.replace(T5.route, vni=60200))
    with pytest.raises(Skip) as info:
        kernel_entries(rx(inside), view)
    assert info.value.kind == "own-block"
