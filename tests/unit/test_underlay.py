"""The routed underlay without I/O: ExaBGP's ipv4 unicast JSON, the RIB and
its hostile-input gate, the route plan, ExaBGP's configuration, server.ini,
and the controller against a fake kernel and speaker."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import trio
import trio.testing

from cnid import dataplane
from cnid.bgp import (
    Neighbor,
    SpeakerConfig,
    SpeakerDown,
    StateEvent,
    UnicastPath,
    UnicastUpdate,
    UpdateEvent,
    decode_line,
    render,
    with_underlay,
)
from cnid.core import ConfigError, Metrics
from cnid.daemon import parse_config
from cnid.evpn import UnderlayController, UnderlayPolicy, UnderlayRib

VTEP = "10.255.0.11"
L1, L2 = "10.1.1.0", "10.1.2.0"


def update_line(peer: str, update: dict[str, Any]) -> str:
    return json.dumps(
        {
            "type": "update",
            "neighbor": {"address": {"peer": peer}, "message": {"update": update}},
        }
    )


def test_exabgp_unicast_json_is_decoded() -> None:
    line = update_line(
        L1,
        {
            "attribute": {"origin": "igp", "as-path": [65101, 65199]},
            "announce": {
                "ipv4 unicast": {L1: [{"nlri": "10.255.0.99/32"}, {"nlri": "bogus"}]},
                "l2vpn evpn": {},
            },
            "withdraw": {"ipv4 unicast": [{"nlri": "10.255.0.98/32"}]},
        },
    )
    event = decode_line(line)
    assert isinstance(event, UpdateEvent) and event.unicast is not None
    assert event.unicast.announced == (UnicastPath("10.255.0.99/32", L1, (65101, 65199)),)
    assert event.unicast.withdrawn == ("10.255.0.98/32",)
    assert [r for r, _ in event.unicast.skipped] == ["malformed"]
    assert event.skipped == ()  # not "unsupported address family" any more
    eor = json.dumps(
        {
            "type": "update",
            "neighbor": {
                "address": {"peer": L1},
                "message": {"eor": {"afi": "ipv4", "safi": "unicast"}},
            },
        }
    )
    event = decode_line(eor)
    assert isinstance(event, UpdateEvent) and not event.eor
    assert event.unicast is not None and event.unicast.eor


def test_a_bad_next_hop_skips_its_routes() -> None:
    line = update_line(L1, {"announce": {"ipv4 unicast": {"fe80::1": [{"nlri": "10.9.0.0/24"}]}}})
    event = decode_line(line)
    assert isinstance(event, UpdateEvent) and event.unicast is not None
    assert event.unicast.announced == ()
    assert [r for r, _ in event.unicast.skipped] == ["bad-nexthop"]


POLICY = UnderlayPolicy(
    vtep=VTEP,
    asn=65011,
    pod_prefixes=("10.244.0.0/16",),
    connected=("10.1.1.1/31", "10.1.2.1/31", "192.168.5.7/24"),
    max_routes=3,
)


@pytest.mark.parametrize(
    ("prefix", "nexthop", "as_path", "reason"),
    [
        ("10.255.0.11/32", L1, (), "own-vtep"),
        ("10.255.0.0/24", L1, (), "own-vtep"),
        ("0.0.0.0/0", L1, (), "default-route"),
        ("10.244.3.0/24", L1, (), "pod-prefix"),
        ("10.0.0.0/8", L1, (), "own-vtep"),
        ("10.244.0.0/14", L1, (), "pod-prefix"),
        ("169.254.1.0/24", L1, (), "link-local"),
        ("224.0.0.0/4", L1, (), "multicast"),
        ("127.0.0.1/32", L1, (), "reserved"),
        ("240.0.0.1/32", L1, (), "reserved"),
        ("10.1.1.0/31", L1, (), "connected"),
        ("192.168.5.0/24", L1, (), "connected"),
        ("192.168.0.0/16", L1, (), "connected"),
        ("10.255.0.99/32", "127.0.0.1", (), "bad-nexthop"),
        ("10.255.0.99/32", VTEP, (), "bad-nexthop"),
        ("10.255.0.99/32", "10.255.0.99", (), "bad-nexthop"),
        ("10.255.0.99/32", "0.0.0.0", (), "bad-nexthop"),
        ("10.255.0.99/32", L1, (65101, 65011, 65199), "as-loop"),
        ("10.255.0.99/32", L1, (65101, 65199), None),
        ("172.16.0.0/12", L1, (), None),
    ],
)
def test_hostile_input_is_refused_with_a_reason(
    prefix: str, nexthop: str, as_path: tuple[int, ...], reason: str | None
) -> None:
    rib = UnderlayRib(POLICY)
    assert rib.announce(L1, UnicastPath(prefix, nexthop, as_path)) == reason
    assert (prefix in rib.wanted()) == (reason is None)
    assert rib.skipped == ({reason: 1} if reason else {})


def test_default_route_and_allow_as_in_when_configured() -> None:
    import msgspec

    policy = msgspec.structs.replace(POLICY, accept_default=True, allow_as_in={L1: 1})
    rib = UnderlayRib(policy)
    assert rib.announce(L1, UnicastPath("0.0.0.0/0", L1)) is None
    assert rib.announce(L2, UnicastPath("0.0.0.0/0", VTEP)) == "bad-nexthop"  # checked all the same
    assert rib.announce(L1, UnicastPath("10.255.0.99/32", L1, (65101, 65011))) is None
    assert rib.announce(L1, UnicastPath("10.255.0.98/32", L1, (65011, 65011))) == "as-loop"
    assert rib.announce(L2, UnicastPath("10.255.0.97/32", L2, (65102, 65011))) == "as-loop"


def test_ecmp_one_next_hop_per_neighbour_and_session_down() -> None:
    rib = UnderlayRib(POLICY)
    far = "10.255.0.99/32"
    assert rib.announce(L1, UnicastPath(far, L1)) is None
    assert rib.announce(L2, UnicastPath(far, L2)) is None
    assert rib.wanted() == {far: frozenset({L1, L2})}
    assert rib.entries() == [{"prefix": far, "nexthops": [L1, L2], "neighbors": [L1, L2]}]
    assert rib.drop_peer(L1) == 1
    assert rib.wanted() == {far: frozenset({L2})}
    assert rib.withdraw(L2, far) and rib.wanted() == {}
    assert not rib.withdraw(L2, far)


def test_a_refused_update_withdraws_the_earlier_path_and_max_routes_holds() -> None:
    rib = UnderlayRib(POLICY)
    assert rib.announce(L1, UnicastPath("10.255.0.99/32", L1)) is None
    # the same prefix again, now with our AS in the path: its newest word is unusable
    assert rib.announce(L1, UnicastPath("10.255.0.99/32", L1, (65011,))) == "as-loop"
    assert rib.wanted() == {}
    for i in range(3):
        assert rib.announce(L1, UnicastPath(f"10.255.1.{i}/32", L1)) is None
    assert rib.announce(L1, UnicastPath("10.255.1.9/32", L1)) == "max-routes"
    assert rib.announce(L1, UnicastPath("10.255.1.0/32", L1)) is None  # a known one: replaced
    assert rib.announce(L2, UnicastPath("10.255.1.9/32", L2)) is None  # the limit is per peer
    assert rib.skipped == {"as-loop": 1, "max-routes": 1}


def test_plan_replaces_whole_routes_and_deletes_empty_ones() -> None:
    a, b = "10.255.0.98/32", "10.255.0.99/32"
    current = {a: frozenset({L1, L2}), b: frozenset({L1})}
    plan = dataplane.plan_routes(current, {a: frozenset({L2}), b: frozenset({L1})})
    assert plan == [dataplane.RouteChange("set", a, (L2,))]
    assert dataplane.plan_routes(current, {b: frozenset({L2, L1})}) == [
        dataplane.RouteChange("delete", a),
        dataplane.RouteChange("set", b, (L1, L2)),
    ]
    assert dataplane.plan_routes({}, {b: frozenset({L1})}) == [
        dataplane.RouteChange("add", b, (L1,))
    ]
    assert dataplane.plan_routes(current, dict(current)) == []
    assert dataplane.plan_routes({}, {a: frozenset()}) == []


def test_address_facing_a_neighbour() -> None:
    addrs = ["10.1.1.1/31", "10.1.2.1/31", f"{VTEP}/32", "10.0.0.5/8"]
    assert dataplane.address_facing(L1, addrs) == "10.1.1.1"
    assert dataplane.address_facing(L2, addrs) == "10.1.2.1"
    assert dataplane.address_facing("10.9.9.9", addrs) == "10.0.0.5"
    assert dataplane.address_facing("192.0.2.1", addrs) == ""


def test_exabgp_config_of_the_underlay() -> None:
    config = SpeakerConfig(
        router_id=VTEP,
        local_address=VTEP,
        asn=65011,
        neighbors=(
            Neighbor(L1, asn=65101),
            Neighbor(L2, asn=65102),
            Neighbor("10.0.0.254", role="route-reflector"),
            Neighbor("fd00::1", asn=65103),
        ),
    )
    adjusted = with_underlay(config, VTEP, {L1: "10.1.1.1", L2: "10.1.2.1"})
    by = {n.address: n for n in adjusted.neighbors}
    assert by[L1].families == ("l2vpn evpn", "ipv4 unicast")
    assert by[L1].local_address == "10.1.1.1"
    assert by["10.0.0.254"].families == ("l2vpn evpn",)  # iBGP: EVPN only
    assert by["fd00::1"].families == ("l2vpn evpn",)  # an IPv6 session: no VTEP route
    assert with_underlay(adjusted, VTEP, {}) == adjusted  # idempotent
    text = render(adjusted, "/run/api.sock")
    block = text[text.index(f"neighbor {L1} {{") : text.index(f"neighbor {L2} {{")]
    assert "local-address 10.1.1.1;" in block and "peer-as 65101;" in block
    assert "ipv4 unicast;" in block and f"route {VTEP}/32 next-hop self;" in block
    rr = text[text.index("neighbor 10.0.0.254 {") : text.index("neighbor fd00::1 {")]
    assert "ipv4 unicast" not in rr and "static" not in rr and "peer-as 65011;" in rr
    assert "static" not in render(config, "/run/api.sock")


def test_server_ini_underlay_section() -> None:
    cfg = parse_config("[underlay]\nvtep_address = 10.255.0.11\ndefault_route = yes\n")
    assert cfg.underlay.enabled and cfg.underlay.accept_default
    assert cfg.underlay.max_routes == 4096
    assert not parse_config("").underlay.enabled
    for bad, allowed in (
        ("vtep_address = 10.255.0.300", "an IPv4 unicast"),
        ("vtep_address = 224.0.0.1", "an IPv4 unicast"),
        ("vtep_address = 2001:db8::1", "an IPv4 unicast"),
        ("default_route = perhaps", "yes or no"),
        ("max_routes = 0", "1..1000000"),
    ):
        with pytest.raises(ConfigError, match=f"\\[underlay\\] .*allowed {allowed}"):
            parse_config(f"[underlay]\n{bad}\n")


# -- the controller --------------------------------------------------------------


class FakeKernel:
    def __init__(self, routes: dict[str, frozenset[str]] | None = None) -> None:
        self.routes = dict(routes or {})
        self.vteps: list[str] = []
        self.changes: list[dataplane.RouteChange] = []
        self.refuse: set[str] = set()
        self.check_record = True

    async def ensure_vtep(self, address: str) -> int:
        self.vteps.append(address)
        return 7

    async def dump_underlay_routes(self) -> dict[str, frozenset[str]]:
        return dict(self.routes)

    async def connected_addresses(self) -> list[str]:
        return ["10.1.1.1/31", "10.1.2.1/31", f"{VTEP}/32"]

    async def apply_underlay_routes(
        self, wanted: Mapping[str, frozenset[str]], current: Mapping[str, frozenset[str]] | None
    ) -> dataplane.RoutesApplied:
        if self.check_record:
            assert current == self.routes  # the controller's record is the kernel's
        base = self.routes if current is None else dict(current)
        changes = dataplane.plan_routes(base, wanted)
        errors = []
        for c in changes:
            if c.prefix in self.refuse:
                errors.append((c.prefix, "Network is unreachable"))
            elif c.op == "delete":
                self.routes.pop(c.prefix, None)
            else:
                self.routes[c.prefix] = frozenset(c.nexthops)
        self.changes += changes
        return dataplane.RoutesApplied(tuple(changes), tuple(errors))


class FakeSpeaker:
    def __init__(self) -> None:
        self.config: SpeakerConfig | None = None
        self.adjust: Callable[[SpeakerConfig], SpeakerConfig] | None = None
        self.listeners: list[Callable[[Any], None]] = []
        self.source = SpeakerConfig(
            VTEP, VTEP, 65011, (Neighbor(L1, asn=65101), Neighbor(L2, asn=65102))
        )

    def subscribe(self, listener: Callable[[Any], None]) -> None:
        self.listeners.append(listener)

    def reconfigure(self) -> None:
        assert self.adjust is not None
        self.config = self.adjust(self.source)

    def emit(self, event: Any) -> None:
        for listener in self.listeners:
            listener(event)


FAR = "10.255.0.99/32"


def unicast(
    peer: str, *paths: UnicastPath, withdrawn: tuple[str, ...] = (), eor: bool = False
) -> UpdateEvent:
    return UpdateEvent(peer, unicast=UnicastUpdate(paths, withdrawn, eor=eor))


async def test_controller_installs_ecmp_and_drops_a_down_peers_next_hop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    kernel, speaker, metrics = FakeKernel(), FakeSpeaker(), Metrics()
    ctl = UnderlayController(
        speaker=speaker, policy=UnderlayPolicy(vtep=VTEP, asn=65011), metrics=metrics, kernel=kernel
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(ctl.run)
        assert kernel.vteps == [VTEP]
        assert speaker.config is not None  # adjusted: unicast family, local addresses
        assert {n.local_address for n in speaker.config.neighbors} == {"10.1.1.1", "10.1.2.1"}
        assert speaker.config.vtep == VTEP
        speaker.emit(unicast(L1, UnicastPath(FAR, L1), UnicastPath(f"{VTEP}/32", L1)))
        speaker.emit(unicast(L2, UnicastPath(FAR, L2)))
        await trio.sleep(0.1)
        assert kernel.routes == {FAR: frozenset({L1, L2})}
        assert metrics.underlay_routes._value.get() == 1
        assert metrics.underlay_skipped.labels("own-vtep")._value.get() == 1
        speaker.emit(StateEvent(L1, "down"))
        await trio.sleep(0.1)
        assert kernel.routes == {FAR: frozenset({L2})}
        assert kernel.changes[-1] == dataplane.RouteChange("set", FAR, (L2,))  # no delete
        speaker.emit(unicast(L2, withdrawn=(FAR,)))
        await trio.sleep(0.1)
        assert kernel.routes == {}
        speaker.emit(unicast(L1, UnicastPath(FAR, L1)))
        await trio.sleep(0.1)
        speaker.emit(SpeakerDown("exited"))
        await trio.sleep(0.1)
        assert kernel.routes == {} and metrics.underlay_routes._value.get() == 0
        nursery.cancel_scope.cancel()


async def test_restart_adopts_without_a_change_then_sweeps(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gone = "10.255.0.50/32"
    kernel = FakeKernel({FAR: frozenset({L1, L2}), gone: frozenset({L1})})
    speaker = FakeSpeaker()
    ctl = UnderlayController(
        speaker=speaker, policy=UnderlayPolicy(vtep=VTEP), kernel=kernel, stale_timeout=60
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(ctl.run)
        speaker.emit(unicast(L1, UnicastPath(FAR, L1)))
        await trio.sleep(1)
        assert kernel.changes == []  # adopted: L2's next hop and the gone route stay
        assert {e["prefix"]: e.get("adopted", False) for e in ctl.routes()} == {
            FAR: False,
            gone: True,
        }
        speaker.emit(unicast(L2, UnicastPath(FAR, L2), eor=True))
        await trio.sleep(1)
        assert kernel.changes == []  # L1 has not sent its End-of-RIB yet
        speaker.emit(unicast(L1, eor=True))
        await trio.sleep(1)
        assert kernel.changes == [dataplane.RouteChange("delete", gone)]
        assert kernel.routes == {FAR: frozenset({L1, L2})}
        nursery.cancel_scope.cancel()


async def test_adoption_ends_at_the_stale_timeout_and_refusals_are_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    kernel = FakeKernel({FAR: frozenset({L1})})
    kernel.refuse.add("10.255.0.77/32")
    metrics = Metrics()
    ctl = UnderlayController(
        speaker=FakeSpeaker(),
        policy=UnderlayPolicy(vtep=VTEP),
        kernel=kernel,
        metrics=metrics,
        stale_timeout=30,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(ctl.run)
        ctl._event(unicast(L1, UnicastPath("10.255.0.77/32", L1)))
        await trio.sleep(29)
        assert FAR in kernel.routes
        await trio.sleep(2)
        assert kernel.routes == {}
        assert ctl.errors == {"10.255.0.77/32": "Network is unreachable"}
        assert metrics.underlay_skipped.labels("kernel-refused")._value.get() == 1
        nursery.cancel_scope.cancel()


async def test_cnictl_underlay_routes(
    autojump_clock: trio.testing.MockClock, tmp_path: Any
) -> None:
    from cnid.core import CnidError, DomainRegistry, Journal, Readiness
    from cnid.ctl import ctl_request, render
    from cnid.daemon import ControlServer, DefaultDomainConfig
    from cnid.ipam import AddressPool, MemoryStore

    assert ctl_request(["underlay", "routes"]) == ("underlay-routes", {})
    kernel = FakeKernel({"10.255.0.50/32": frozenset({L1})})
    ctl = UnderlayController(speaker=FakeSpeaker(), policy=UnderlayPolicy(vtep=VTEP), kernel=kernel)
    server = ControlServer(
        node="n1",
        readiness=Readiness(),
        journal=Journal(tmp_path / "state"),
        pool=AddressPool(MemoryStore(), "n1"),
        domains=DomainRegistry(DefaultDomainConfig().domain()),
        metrics=Metrics(),
    )
    with pytest.raises(CnidError, match="no routed underlay"):
        await server.views["underlay-routes"]({})
    server.underlay = ctl
    async with trio.open_nursery() as nursery:
        await nursery.start(ctl.run)
        ctl._event(unicast(L1, UnicastPath(FAR, L1), UnicastPath("0.0.0.0/0", L1)))
        ctl._event(unicast(L2, UnicastPath(FAR, L2)))
        await trio.sleep(1)
        data = await server.views["underlay-routes"]({})
        nursery.cancel_scope.cancel()
    assert data["vtep"] == VTEP and data["routes"] == 2 and data["adopting"]
    assert data["skipped"] == {"default-route": 1}
    assert data["entries"] == [
        {"prefix": FAR, "nexthops": [L1, L2], "neighbors": [L1, L2], "installed": [L1, L2]},
        {
            "prefix": "10.255.0.50/32",
            "nexthops": [L1],
            "neighbors": [],
            "installed": [L1],
            "adopted": True,
        },
    ]
    text = render("underlay-routes", data)
    assert text.splitlines()[0] == (
        f"VTEP {VTEP}: 2 routes in the main table; skipped: default-route 1"
    )
    assert any(line.split()[:4] == [FAR, L1, f"{L1},{L2}", "yes"] for line in text.splitlines())
    assert any(line.split() == [L2, "yes"] for line in text.splitlines())


def test_vrfnodeconfig_underlay() -> None:
    import msgspec

    from cnid.cluster import node_address, settings_from
    from cnid.core import CnidError
    from cnid.kube import Node, NodeAddress, NodeStatus, ObjectMeta, VRFNodeConfig

    def config(vtep: str) -> VRFNodeConfig:
        raw = {
            "apiVersion": "cni.pyroute2.org/v1",
            "kind": "VRFNodeConfig",
            "metadata": {"name": "a-cfg"},
            "spec": {
                "nodeRef": {"name": "a"},
                "interfaces": [{"name": "eth0", "local": "192.168.0.1"}],
                "underlay": {"vtepAddress": vtep},
            },
        }
        return msgspec.convert(raw, VRFNodeConfig)

    good = config(VTEP)
    assert settings_from(good).vtep_address == VTEP
    node = Node(
        metadata=ObjectMeta(name="a"),
        status=NodeStatus(addresses=[NodeAddress(type="InternalIP", address="192.168.0.1")]),
    )
    assert node_address(node, [good]) == VTEP  # the mesh reaches a node at its VTEP
    with pytest.raises(CnidError, match=r"underlay\.vtepAddress '10\.0\.0\.300'"):
        settings_from(config("10.0.0.300"))
    assert msgspec.to_builtins(good.spec)["underlay"] == {"vtepAddress": VTEP}


async def test_drift_is_repaired(autojump_clock: trio.testing.MockClock) -> None:
    kernel, speaker = FakeKernel(), FakeSpeaker()
    ctl = UnderlayController(speaker=speaker, policy=UnderlayPolicy(vtep=VTEP), kernel=kernel)
    async with trio.open_nursery() as nursery:
        await nursery.start(ctl.run)
        speaker.emit(unicast(L1, UnicastPath(FAR, L1)))
        await trio.sleep(1)
        assert kernel.routes == {FAR: frozenset({L1})}
        kernel.routes.clear()  # someone deleted our route
        kernel.check_record = False
        await trio.sleep(20)
        assert kernel.routes == {}  # not noticed yet
        await trio.sleep(11)
        assert kernel.routes == {FAR: frozenset({L1})}
        nursery.cancel_scope.cancel()


async def test_allow_as_in_comes_from_the_neighbours(
    autojump_clock: trio.testing.MockClock,
) -> None:
    kernel, speaker = FakeKernel(), FakeSpeaker()
    speaker.source = SpeakerConfig(
        VTEP, VTEP, 65011, (Neighbor(L1, asn=65101, allow_as_in=1), Neighbor(L2, asn=65102))
    )
    ctl = UnderlayController(
        speaker=speaker, policy=UnderlayPolicy(vtep=VTEP, asn=65011), kernel=kernel
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(ctl.run)
        same_rack = "10.255.0.12/32"  # another node of the rack, in the node's own AS
        speaker.emit(unicast(L1, UnicastPath(same_rack, L1, (65101, 65011))))
        speaker.emit(unicast(L2, UnicastPath(same_rack, L2, (65102, 65011))))
        await trio.sleep(1)
        assert kernel.routes == {same_rack: frozenset({L1})}
        assert ctl.rib.skipped == {"as-loop": 1}
        nursery.cancel_scope.cancel()
