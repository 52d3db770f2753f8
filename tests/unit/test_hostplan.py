"""Host integration's plan (pure) and the VRFRoutingPolicy spec checks."""

from __future__ import annotations

import socket

import pytest

from cnid.cluster import policy_from
from cnid.core import ConfigError
from cnid.daemon import parse_config
from cnid.dataplane import (
    FR_ACT_UNREACHABLE,
    PRIO_EGRESS,
    PRIO_POLICY,
    PRIO_PROBE,
    PRIO_REPLY,
    FibRule,
    HostDomain,
    HostPolicy,
    HostSettings,
    NodePorts,
    PolicyMatch,
    host_group,
    plan,
)
from cnid.kube import ObjectMeta, ObjectRef, PolicyMatchSpec, VRFRoutingPolicy, VRFRoutingPolicySpec

V4 = socket.AF_INET
A = HostDomain("vrf-42", 42, 42, "10.244.0.0/16", ("10.244.0.0/26",))
B = HostDomain("vrf-300", 300, 10300, "10.244.0.0/16", ("10.244.0.0/26",))
S = HostSettings()


def test_the_plan_is_deterministic() -> None:
    assert plan([A, B], [], S) == plan([A, B], [], S)


def test_the_older_domain_wins_a_probe_to_an_address_both_hold() -> None:
    rules = plan([A, B], [], S).rules
    probes = sorted((r.priority, r.table) for r in rules if r.iifname == "lo")
    assert probes == [(PRIO_PROBE, 42), (PRIO_PROBE + 1, 10300)]


def test_marks_and_groups_keep_off_kube_proxys_bits() -> None:
    p = plan([A, B], [], S)
    assert p.marks == {"vrf-42": 0x002A0000, "vrf-300": 0x012C0000}
    assert all(m & 0xC000 == 0 for m in p.marks.values())
    assert p.devices == {"vrf-42": host_group(42), "vrf-300": host_group(300)}
    assert "meta mark set meta mark & 0x0000ffff | 0x002a0000" in p.nft
    assert FibRule(V4, PRIO_REPLY, table=42, fwmark=0x2A0000, fwmask=0xFFFF0000) in p.rules


def test_tenant_traffic_never_reaches_a_rule_after_the_egress_rules() -> None:
    p = plan([A], [HostPolicy("p", "vrf-42", (PolicyMatch(dst="192.0.2.0/24"),))], S)
    last = FibRule(V4, PRIO_EGRESS + 2, action=FR_ACT_UNREACHABLE, src="10.244.0.0/16")
    assert last in p.rules
    (policy,) = [r for r in p.rules if r.dst == "192.0.2.0/24"]
    assert policy.priority == PRIO_POLICY > last.priority and policy.table == 42


def test_a_vrf_id_too_big_for_the_mark_gets_probes_only() -> None:
    big = HostDomain("big", 70000, 70000, "10.9.0.0/16", ("10.9.0.0/26",))
    p = plan([big], [], S)
    assert "probes only" in p.problems["big"]
    assert "zone-" not in p.nft and not p.marks and host_group(70000) == 0
    assert 'iifname { "vrf-70000" } goto from-tenants' in p.nft  # still kept off the node
    assert {r.action for r in p.rules if r.src} == {FR_ACT_UNREACHABLE}
    assert [r.kind for r in p.routes[70000]] == ["unreachable"]


def test_egress_off_keeps_services() -> None:
    p = plan([A], [], HostSettings(masquerade=False))
    assert sorted((r.dst, r.kind) for r in p.routes[42]) == [
        ("10.244.0.0/16", "unreachable"),
        ("10.96.0.0/12", "throw"),
    ]
    assert "masquerade" not in p.nft
    assert not [r for r in p.rules if r.table == 254 and r.dst is None]


@pytest.mark.parametrize(
    ("ini", "word"),
    [
        ("fwmark_mask = 0x4000", "run of at least 8 bits"),
        ("fwmark_mask = 0xffffc000", "kube-proxy"),
        ("fwmark_mask = 0xff00ff00", "one run"),
        ("service_cidr = 10.96.0.1/12", "service_cidr"),
        ("masquerade = perhaps", "masquerade"),
        ("node_protect = perhaps", "node_protect = 'perhaps': allowed yes or no"),
        ("node_allow = tcp/0", "node_allow = 'tcp/0': allowed"),
        ("node_allow = udp/53,icmp/8", "node_allow"),
        ("node_allow = tcp/90-80", "node_allow"),
        ("node_allow = tcp/70000", "node_allow"),
        ("node_allow = 53", "node_allow"),
    ],
)
def test_bad_host_settings_are_refused(ini: str, word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        parse_config(f"[network]\n{ini}\n")


def test_host_settings_from_server_ini() -> None:
    cfg = parse_config("[network]\nservice_cidr = 10.96.0.0/12, fd00:96::/112\nmasquerade = no\n")
    s = cfg.network.host_settings()
    assert s.service_cidrs == ("10.96.0.0/12", "fd00:96::/112") and not s.masquerade
    assert parse_config("").network.host_settings() == HostSettings()
    cfg = parse_config("[network]\nnode_protect = no\nnode_allow = UDP/53, tcp/53,tcp/9100-9102\n")
    s = cfg.network.host_settings()
    assert not s.node_protect and HostSettings().node_protect
    assert s.node_allow == (
        NodePorts("tcp", 53, 53),
        NodePorts("tcp", 9100, 9102),
        NodePorts("udp", 53, 53),
    )
    assert [str(p) for p in s.node_allow] == ["tcp/53", "tcp/9100-9102", "udp/53"]


def _chain(nft: str, name: str) -> list[str]:
    body = nft.split(f"\tchain {name} {{\n", 1)[1].split("\t}", 1)[0]
    return [line.strip() for line in body.splitlines()]


def test_tenants_open_no_connection_to_the_node_by_default() -> None:
    allow = (NodePorts("udp", 53, 53), NodePorts("tcp", 53, 53), NodePorts("tcp", 9100, 9102))
    s = HostSettings(service_cidrs=("10.96.0.0/12", "fd00:96::/112"), node_allow=allow)
    nft = plan([B, A], [], s).nft
    assert _chain(nft, "input") == [
        "type filter hook input priority filter; policy accept;",
        'iifname { "vrf-42", "vrf-300" } goto from-tenants',
        "meta iifgroup & 0xffff0000 == 0x0c1d0000 goto from-tenants",
    ]
    rules = _chain(nft, "from-tenants")
    # replies to what the node opened (probes) and kube-proxy's DNAT pass first
    assert rules[1:3] == ["ct state established,related return", "ct status dnat return"]
    assert "ip daddr { 10.96.0.0/12 } return" in rules
    assert "ip6 daddr { fd00:96::/112 } return" in rules
    assert any(r.startswith("icmp type { echo-request, destination-unreachable") for r in rules)
    assert any("nd-neighbor-solicit" in r for r in rules if r.startswith("icmpv6 type"))
    assert "tcp dport { 53, 9100-9102 } return" in rules
    assert "udp dport { 53 } return" in rules
    assert rules[-1] == "drop"
    # without an allow list: no port passes
    bare = _chain(plan([A], [], S).nft, "from-tenants")
    assert not [r for r in bare if "dport" in r] and bare[-1] == "drop"


def test_the_node_policy_can_be_turned_off_and_needs_domains() -> None:
    off = plan([A], [], HostSettings(node_protect=False)).nft
    assert "from-tenants" not in off and "hook input" not in off and "zone-42" in off
    assert plan([], [], S).nft == ""


def _policy(*matches: PolicyMatchSpec, domain: str = "vrf-200") -> VRFRoutingPolicy:
    return VRFRoutingPolicy(
        metadata=ObjectMeta(name="p"),
        spec=VRFRoutingPolicySpec(vrf_domain_ref=ObjectRef(name=domain), match=list(matches)),
    )


def test_policy_specs_are_checked() -> None:
    ok = policy_from(_policy(PolicyMatchSpec(dst="192.0.2.0/24"), PolicyMatchSpec(iifname="eth1")))
    assert ok.matches == (PolicyMatch(dst="192.0.2.0/24"), PolicyMatch(iifname="eth1"))
    for bad, word in [
        (_policy(), "at least one"),
        (_policy(PolicyMatchSpec()), "at least one"),
        (_policy(PolicyMatchSpec(dst="192.0.2.1/24")), "dst"),
        (_policy(PolicyMatchSpec(dst="fd00::/8", src="10.0.0.0/8")), "families"),
        (_policy(PolicyMatchSpec(oifname="a/b")), "interface"),
        (_policy(PolicyMatchSpec(dst="10.0.0.0/8"), domain=""), "vrfDomainRef"),
    ]:
        with pytest.raises(ValueError, match=word):
            policy_from(bad)
