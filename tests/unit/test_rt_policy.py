"""Route-target derivations (FRR's auto RT, RFC 8365's), the RDs FRR
derives, and import by route target, with worked examples and where each
expected value comes from."""

from __future__ import annotations

import pytest

from cnid.core import (
    SKIP_NO_ROUTE_TARGET,
    ConfigError,
    DomainTargets,
    ImportDecision,
    RouteTarget,
    assign_rd_indexes,
    auto_route_target,
    domain_targets,
    frr_rd,
    import_domains,
    parse_import_target,
    parse_route_target,
    rfc8365_route_target,
)


def rt(text: str) -> RouteTarget:
    return parse_route_target(text)


# ------------------------------------------------------------ derivations


def test_frr_auto_rt_for_an_l2vni_matches_the_capture() -> None:
    """FRR 8.4 (AS 65000, L2VNI 100, no route target configured) sent
    target:65000:100 (tests/fixtures/evpn/from_frr.jsonl): bgp_evpn.c
    form_auto_rt, encode_route_target_as(as & 0xFFFF, vni)."""
    derived = auto_route_target(65000, 100)
    assert derived == rt("65000:100")
    assert derived.community() == 842122827661412  # the capture's "value"


def test_frr_auto_rt_for_an_l3vni_matches_the_capture() -> None:
    """FRR 8.4 with L3VNI 5000 sent its type-5 route with target:65000:5000
    (tests/fixtures/evpn/type5_from_frr_l3vni.jsonl): the same form_auto_rt
    over the VRF's L3VNI."""
    assert auto_route_target(65000, 5000).community() == 842122827666312


def test_frr_auto_rt_folds_a_four_octet_as() -> None:
    """form_auto_rt passes bgp->as & 0xFFFF: AS 4200000001 = 0xFA56EA01,
    so the administrator is 0xEA01 = 59905, a two-octet-AS target."""
    assert auto_route_target(4200000001, 100) == RouteTarget(0, 59905, 100)
    assert str(auto_route_target(4200000001, 100)) == "59905:100"


def test_rfc8365_auto_rt() -> None:
    """RFC 8365 5.1.2.1: local administrator = A (1 bit, 0 = auto-derived)
    | type (3 bits, 1 = VXLAN) | D-ID (4 bits) | VNI (24 bits). For VNI 100:
    0b0_001_0000 then 0x000064 = 0x10000064 = 268435556; FRR's
    EVPN_AUTORT_VXLAN is the same 0x10000000."""
    derived = rfc8365_route_target(65001, 100)
    assert derived == RouteTarget(0, 65001, 0x10000064)
    assert str(derived) == "65001:268435556"
    assert derived.to_bytes().hex() == "0002fde910000064"
    # D-ID 3 lands in bits 24..27
    assert rfc8365_route_target(65001, 100, domain_id=3).number == 0x13000064


@pytest.mark.parametrize(
    ("call", "why"),
    [
        (lambda: auto_route_target(65000, 0), "VNI 0 out of range"),
        (lambda: auto_route_target(65000, 2**24), "VNI 16777216 out of range"),
        (lambda: auto_route_target(0, 100), "AS 0 out of range"),
        (lambda: rfc8365_route_target(65000, 100, domain_id=16), "domain ID 16"),
        (lambda: frr_rd("10.0.0.1", 0), "RD index 0 out of range"),
        (lambda: frr_rd("10.0.0.1", 65536), "RD index 65536 out of range"),
        (lambda: frr_rd("fe80::1", 1), "router ID 'fe80::1' is not an IPv4 address"),
    ],
)
def test_derivation_errors(call: object, why: str) -> None:
    assert callable(call)
    with pytest.raises(ConfigError, match=why):
        call()


def test_frr_rd_matches_the_captures() -> None:
    """FRR derives router-id:index (type 1) for a VNI and a VRF: the FRR
    leaf 10.99.0.3 sent its L2VNI's routes with 10.99.0.3:2 and its VRF's
    type-5 route with 10.99.0.3:1 (tests/fixtures/evpn), consistent with
    one id space per node, the VRF created first."""
    assert str(frr_rd("10.99.0.3", 2)) == "10.99.0.3:2"
    assert frr_rd("10.99.0.3", 2).to_bytes().hex() == "00010a6300030002"
    assert str(frr_rd("10.99.0.3", 1)) == "10.99.0.3:1"


def test_rd_indexes_lowest_free_first_and_kept() -> None:
    """bgpd.c: bf_assign_index over bm->rd_idspace, index 0 reserved at
    start-up, released when the VRF or VNI goes (bf_release_index)."""
    first = assign_rd_indexes({}, ["vrf 100", "vni 100", "vni 200"])
    assert first == {"vrf 100": 1, "vni 100": 2, "vni 200": 3}
    # vni 100 goes: its index is free again; the others keep theirs
    second = assign_rd_indexes(first, ["vrf 100", "vni 200", "vni 300"])
    assert second == {"vrf 100": 1, "vni 200": 3, "vni 300": 2}
    # unique per node whatever the previous map says
    clash = assign_rd_indexes({"a": 5, "b": 5}, ["a", "b"])
    assert clash == {"a": 5, "b": 1}
    assert len(set(assign_rd_indexes({}, [f"vni {i}" for i in range(1000)]).values())) == 1000


def test_rd_indexes_run_out() -> None:
    full = {f"vni {i}": i for i in range(1, 65536)}
    assert assign_rd_indexes(full, list(full)) == full
    with pytest.raises(ConfigError, match="no route distinguisher index left for 'one more'"):
        assign_rd_indexes(full, [*full, "one more"])


# ------------------------------------------------------------ a domain's targets


def test_domain_targets_derived_frr_style() -> None:
    d = domain_targets("red", 65000, [100, 5000, 100])
    assert [str(t) for t in d.imports] == ["65000:100", "65000:5000"]
    assert [str(t) for t in d.exports] == ["65000:100", "65000:5000"]


def test_domain_targets_explicit_win() -> None:
    """Set by hand as on an Arista leaf (route-target both 65000:42)."""
    d = domain_targets("red", 65101, [100], imports=["65000:42"], exports=["65000:42"])
    assert [str(t) for t in d.imports] == ["65000:42"]
    assert d.exports == (rt("65000:42"),)
    # only the imports given: the exports stay derived
    d = domain_targets("red", 65101, [100], imports=["192.0.2.1:7", "*:42"])
    assert [str(t) for t in d.imports] == ["192.0.2.1:7", "*:42"]
    assert d.exports == (rt("65101:100"),)


def test_domain_targets_rfc8365_ignore_the_as_on_import() -> None:
    d = domain_targets("red", 65101, [100], auto="rfc8365")
    assert [str(t) for t in d.exports] == ["65101:268435556"]
    assert [str(t) for t in d.imports] == ["*:268435556"]
    # a leaf in another AS, same VNI: imported
    leaf = rfc8365_route_target(65201, 100)
    assert import_domains([leaf], [d]).domains == ("red",)


def test_domain_target_errors_name_the_domain() -> None:
    with pytest.raises(ConfigError, match=r"domain red: route target '65000:x'"):
        domain_targets("red", 65000, [100], imports=["65000:x"])
    with pytest.raises(ConfigError, match=r"domain red: route target '0:1': AS 0"):
        domain_targets("red", 65000, [100], exports=["0:1"])
    with pytest.raises(ConfigError, match="domain red: no VNI"):
        domain_targets("red", 65000, [])
    with pytest.raises(ConfigError, match=r"domain red: route target '\*:4294967296'"):
        domain_targets("red", 65000, [100], imports=["*:4294967296"])
    with pytest.raises(ConfigError, match=r"domain red: route target '\*:x' is not \*:NN"):
        domain_targets("red", 65000, [100], imports=["*:x"])


def test_wildcard_import_target() -> None:
    """FRR's `route-target import *:NN`: any two-octet AS, number NN
    (mask_ecom_global_admin); other layouts do not match."""
    anyas = parse_import_target("*:42")
    assert anyas.matches(rt("65000:42"))
    assert anyas.matches(rt("1:42"))
    assert not anyas.matches(rt("65000:43"))
    assert not anyas.matches(rt("4200000001:42"))
    assert not anyas.matches(rt("192.0.2.1:42"))


# ------------------------------------------------------------ import by route target

RED = domain_targets("red", 65000, [100, 5000], imports=["65000:42"])
BLUE = domain_targets("blue", 65000, [200, 6000], imports=["65000:43", "192.0.2.1:43"])


def test_route_lands_in_the_domain_of_its_target() -> None:
    assert import_domains([rt("65000:42")], [RED, BLUE]) == ImportDecision(("red",))
    assert import_domains([rt("192.0.2.1:43")], [RED, BLUE]) == ImportDecision(("blue",))


def test_target_of_a_vni_b_the_route_goes_to_a_only() -> None:
    """Issue 14: a route carrying domain A's target but naming domain B's
    VNI (here a type-2 route for red's target with blue's L2VNI 200, as a
    misconfigured leaf sends it) is installed in A's VRF only: the VNI plays
    no part, and B's derived target (65000:200) is not on the route."""
    carried = [rt("65000:42")]
    vni_named = 200  # blue's L2VNI, deliberately not an input
    decision = import_domains(carried, [RED, BLUE])
    assert decision.domains == ("red",)
    assert vni_named not in (t.target.number for t in RED.imports)


def test_no_matching_target_is_skipped_with_the_reason() -> None:
    for carried in ([rt("65000:44")], [], [rt("65000L:42")], [rt("65001:42")]):
        decision = import_domains(carried, [RED, BLUE])
        assert decision == ImportDecision((), SKIP_NO_ROUTE_TARGET)
        assert decision.skip_reason == "no-route-target"  # a metric label, as the others
    assert import_domains([rt("65000:42")], []).skip_reason == SKIP_NO_ROUTE_TARGET


def test_targets_of_two_domains_install_in_both() -> None:
    decision = import_domains([rt("65000:43"), rt("65000:42"), rt("65000:7")], [BLUE, RED])
    assert decision == ImportDecision(("blue", "red"))


def test_derived_targets_import_frr_routes() -> None:
    """A domain with L2VNI 100 and no explicit targets imports what the FRR
    leaf sent (target:65000:100) and not the L3VNI routes of another VRF."""
    d = domain_targets("red", 65000, [100])
    other = DomainTargets("green", imports=(parse_import_target("65000:5000"),), exports=())
    carried = [RouteTarget.from_community(842122827661412)]
    assert import_domains([t for t in carried if t], [d, other]).domains == ("red",)
