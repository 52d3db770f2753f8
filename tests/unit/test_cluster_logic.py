"""The pure parts of the cluster controllers: which domains are accepted,
how bindings resolve, this node's VRFNodeConfig, the grace period, the
IPBlock <-> record mapping and the per-node finalizer."""

from __future__ import annotations

import pytest

from cnid.cluster import (
    NODE_LABEL,
    VRF_LABEL,
    Grace,
    NodeSettings,
    accept,
    domain_from,
    finalizer_node,
    mine,
    node_finalizer,
    resolve,
    same_conditions,
    set_condition,
    settings_from,
    to_record,
    to_resource,
)
from cnid.core import AllocationRecord, CnidError
from cnid.ipam import BlockRecord
from cnid.kube import (
    AttachmentSpec,
    IPBlock,
    IPBlockSpec,
    NodeInterface,
    ObjectMeta,
    ObjectRef,
    VRFDomain,
    VRFDomainBinding,
    VRFDomainBindingSpec,
    VRFDomainSpec,
    VRFNodeConfig,
    VRFNodeConfigSpec,
)


def dom(
    name: str,
    vrf: int,
    vni: int,
    *,
    table: int = 0,
    created: str = "2026-01-01T00:00:00Z",
    prefix: str = "10.1.0.0",
    prefixlen: int = 16,
    ipblocklen: int = 26,
    kind: str = "l3vni",
) -> VRFDomain:
    return VRFDomain(
        metadata=ObjectMeta(name=name, creation_timestamp=created),
        spec=VRFDomainSpec(
            vrf=vrf,
            table=table or vrf + 10000,
            prefix=prefix,
            prefixlen=prefixlen,
            ipblocklen=ipblocklen,
            attachments=[AttachmentSpec(type=kind, vni=vni)],
        ),
    )


def test_the_seeds_vrf_200_is_accepted_as_written() -> None:
    domain = domain_from(dom("vrf-200", 200, 60200, table=10200))
    assert (domain.name, domain.vrf, domain.table, str(domain.network)) == (
        "vrf-200",
        200,
        10200,
        "10.1.0.0/16",
    )
    assert domain.pod_attachment.vni == 60200


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"prefix": "10.1.0.300"}, "bad prefix"),
        ({"prefix": "10.1.0.1"}, "bad prefix"),  # host bits
        ({"ipblocklen": 16}, "ipblocklen 16 must be longer"),
        ({"ipblocklen": 31}, "at most 30"),
        ({"kind": "l4vni"}, "l4vni"),
        ({"vni": 0}, "vni 0"),
        ({"table": 254}, "reserved"),
    ],
)
def test_a_domain_the_code_cannot_handle_is_refused_with_the_reason(
    change: dict[str, object], why: str
) -> None:
    args: dict[str, object] = {"name": "bad", "vrf": 7, "vni": 7}
    args.update(change)
    obj = dom(**args)  # type: ignore[arg-type]
    accepted, refused = accept([obj])
    assert accepted == []
    reason, message = refused["bad"]
    assert reason == "InvalidSpec"
    assert why in message


def test_the_older_domain_keeps_a_clashing_vrf_table_or_vni() -> None:
    old = dom("old", 10, 100, created="2026-01-01T00:00:00Z")
    same_vrf = dom("b", 10, 101, table=999, created="2026-01-02T00:00:00Z")
    same_vni = dom("c", 11, 100, created="2026-01-03T00:00:00Z")
    fine = dom("d", 12, 102, created="2026-01-04T00:00:00Z", prefix="10.1.0.0")
    accepted, refused = accept([fine, same_vni, same_vrf, old])
    assert [d.name for d in accepted] == ["old", "d"]  # overlapping prefixes are fine
    assert refused["b"] == ("Conflict", "vrf 10 is VRFDomain old's already")
    assert refused["c"] == ("Conflict", "vni 100 is VRFDomain old's already")


def binding(
    name: str, ns: str, domain: str, created: str = "2026-01-01T00:00:00Z"
) -> VRFDomainBinding:
    return VRFDomainBinding(
        metadata=ObjectMeta(name=name, creation_timestamp=created),
        spec=VRFDomainBindingSpec(
            namespace_ref=ObjectRef(name=ns), vrf_domain_ref=ObjectRef(name=domain)
        ),
    )


def test_bindings_resolve_report_missing_domains_and_conflicts() -> None:
    table, verdicts = resolve(
        [
            binding("test02-vrf-200", "test02", "vrf-200"),
            binding("late", "test02", "vrf-42", created="2026-02-01T00:00:00Z"),
            binding("dangling", "web", "vrf-999"),
        ],
        {"vrf-200", "vrf-42"},
    )
    assert table == {"test02": "vrf-200", "web": "vrf-999"}
    assert verdicts["test02-vrf-200"][:2] == (True, "Resolved")
    assert verdicts["late"][:2] == (False, "Conflict")
    ok, reason, message = verdicts["dangling"]
    assert (ok, reason) == (False, "DomainNotFound") and "vrf-999" in message


def nodeconfig(name: str, node: str, **spec: object) -> VRFNodeConfig:
    return VRFNodeConfig(
        metadata=ObjectMeta(name=name, creation_timestamp="2026-01-01T00:00:00Z"),
        spec=VRFNodeConfigSpec(node_ref=ObjectRef(name=node), **spec),  # type: ignore[arg-type]
    )


def test_the_seeds_node_config_gives_the_vtep_and_the_router_id() -> None:
    seeds = nodeconfig(
        "k8s02-vrnc", "k8s02", router_id="192.168.124.2", route_reflectors=["192.168.124.1"],
        interfaces=[NodeInterface(name="eth1", local="192.168.124.2")],
    )  # fmt: skip
    other = nodeconfig("k8s03-vrnc", "k8s03")
    found, extra = mine([other, seeds], "k8s02")
    assert found is seeds and extra == []
    assert settings_from(seeds) == NodeSettings(
        source="k8s02-vrnc",
        router_id="192.168.124.2",
        route_reflectors=("192.168.124.1",),
        host_if="eth1",
        local="192.168.124.2",
    )
    with pytest.raises(CnidError, match="routerId"):
        settings_from(nodeconfig("x", "k8s02", router_id="fe80::1"))
    with pytest.raises(CnidError, match="route reflector"):
        settings_from(nodeconfig("x", "k8s02", route_reflectors=["rr1"]))


def test_grace_counts_from_the_first_sighting_and_resets() -> None:
    now = [0.0]
    grace = Grace(10.0, lambda: now[0])
    assert not grace.due("pod")
    now[0] = 9.9
    assert not grace.due("pod")
    grace.clear("pod")  # seen alive again: the count starts over
    now[0] = 15.0
    assert not grace.due("pod")
    now[0] = 25.0
    assert grace.due("pod")


def test_an_ipblock_maps_to_a_record_and_back() -> None:
    pod = AllocationRecord(kind="pod", container_id="c1", ifname="eth0", pod_name="web")
    rec = BlockRecord(
        name="vrf-42-10-244-0-0-26",
        cidr="10.244.0.0/26",
        node="k8s03",
        vrf=42,
        gateway="10.244.0.1",
        allocations={"10.244.0.1": AllocationRecord(kind="gateway"), "10.244.0.2": pod},
        version="17",
    )
    obj = to_resource(rec)
    assert obj.metadata.labels == {NODE_LABEL: "k8s03", VRF_LABEL: "42"}
    assert (obj.status.allocated, obj.status.capacity) == (2, 62)
    assert to_record(obj) == rec


def test_a_block_whose_status_was_never_written_still_has_its_gateway() -> None:
    obj = IPBlock(
        metadata=ObjectMeta(name="vrf-42-10-244-0-64-26", resource_version="3"),
        spec=IPBlockSpec(cidr="10.244.0.64/26", node="n", vrf=42, gateway="10.244.0.65"),
    )
    assert to_record(obj).allocations == {"10.244.0.65": AllocationRecord(kind="gateway")}


def test_finalizers_name_their_node_even_when_the_name_is_long() -> None:
    assert node_finalizer("k8s02") == "cni.pyroute2.org/node.k8s02"
    long = "n" * 200
    f = node_finalizer(long)
    assert len(f.split("/", 1)[1]) <= 63
    assert finalizer_node(f, ["k8s02", long]) == long
    assert finalizer_node(node_finalizer("gone"), ["k8s02", long]) is None


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    first = set_condition([], "Accepted", True, "Valid")
    again = set_condition(first, "Accepted", True, "Valid")
    assert again[0].last_transition_time == first[0].last_transition_time
    assert same_conditions(first, again)
    flipped = set_condition(again, "Accepted", False, "InvalidSpec", "bad prefix")
    assert not same_conditions(again, flipped)
    assert [c.status for c in flipped] == ["False"]
