"""EVPN kernel state without a kernel: values, message encoding and
decoding, chunking, and the plans (what apply_evpn sends for a given
kernel state)."""

from __future__ import annotations

import socket
import struct

import msgspec
import pytest

from cnid import dataplane as dp
from cnid.dataplane import (
    _evpn,
    _evpn_bridge,
    _evpn_devices,
    _evpn_plan,
    _evpn_routes,
    _evpn_values,
)
from cnid.dataplane import _netlink as nl

ZERO = _evpn.ZERO_MAC


# ---------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("mac", "error"),
    [
        ("02:AA:00:00:00:01", "lower case"),
        ("02:aa:00:00:00", "lower case"),
        ("02-aa-00-00-00-01", "lower case"),
        ("02:aa:00:00:00:0g", "lower case"),
        ("02:aa: 0:00:00:01", "lower case"),
        (7, "lower case"),
    ],
)
def test_macs_must_be_canonical(mac: object, error: str) -> None:
    with pytest.raises(_evpn_values._Invalid, match=error):
        _evpn_values._mac(mac)  # type: ignore[arg-type]


def test_mac_bytes_and_unicast() -> None:
    assert _evpn_values._mac("02:aa:00:00:00:01") == bytes.fromhex("02aa00000001")
    assert _evpn_values._mac(ZERO) == b"\0" * 6
    for mac in (ZERO, "01:00:5e:00:00:01", "ff:ff:ff:ff:ff:ff"):
        with pytest.raises(_evpn_values._Invalid, match="unicast"):
            _evpn_values._unicast_mac(mac)


@pytest.mark.parametrize(
    ("ip", "error"),
    [
        ("2001:DB8::1", "write 2001:db8::1"),
        ("2001:db8:0:0::1", "write 2001:db8::1"),
        ("010.0.0.1", "not an IP address"),
        ("10.0.0", "not an IP address"),
    ],
)
def test_addresses_must_be_canonical(ip: str, error: str) -> None:
    with pytest.raises(_evpn_values._Invalid, match=error):
        _evpn_values._parse_ip(ip)


@pytest.mark.parametrize(
    ("vtep", "error"),
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:192.0.2.1", "IPv4-mapped"),
        ("239.1.1.1", "unicast"),
        ("ff02::1", "unicast"),
    ],
)
def test_vteps_are_unicast_and_not_mapped(vtep: str, error: str) -> None:
    with pytest.raises(_evpn_values._Invalid, match=error):
        _evpn_values._vtep(vtep)


def test_prefixes() -> None:
    assert _evpn_values._prefix("10.1.0.0/26") == (socket.AF_INET, bytes([10, 1, 0, 0]), 26)
    assert _evpn_values._prefix("0.0.0.0/0") == (socket.AF_INET, b"\0" * 4, 0)
    assert _evpn_values._prefix("2001:db8::/64")[2] == 64
    for bad, error in [
        ("10.1.0.1/26", "host bits"),
        ("10.1.0.0/33", "over 32"),
        ("10.1.0.0/026", "form"),
        ("10.1.0.0", "form"),
        ("2001:DB8::/64", "canonical"),
    ]:
        with pytest.raises(_evpn_values._Invalid, match=error):
            _evpn_values._prefix(bad)


def test_nda_protocol_from_the_kernel_release(monkeypatch: pytest.MonkeyPatch) -> None:
    def release(r: str) -> bool:
        monkeypatch.setattr(_evpn_values.os, "uname", lambda: type("U", (), {"release": r})())
        _evpn_values.nda_protocol_supported.cache_clear()
        return _evpn_values.nda_protocol_supported()

    try:
        assert release("6.1.0-18-amd64")
        assert release("5.2.0")
        assert not release("5.1.21")
        assert not release("4.19.0-27-amd64")
    finally:
        monkeypatch.undo()
        _evpn_values.nda_protocol_supported.cache_clear()


def test_values_are_hashable_and_serialisable() -> None:
    state = dp.KernelEvpn(
        fdb=frozenset({dp.FdbEntry(1, ZERO, "192.0.2.1")}),
        neigh=frozenset({dp.NeighEntry(1, "10.0.0.1", "02:00:00:00:00:01")}),
        routes=frozenset({dp.EvpnRoute(10, "10.0.0.0/24", "192.0.2.1", 1)}),
    )
    assert hash(state) == hash(msgspec.json.decode(msgspec.json.encode(state), type=dp.KernelEvpn))
    assert dp.KernelEvpn() == dp.KernelEvpn(frozenset(), frozenset(), frozenset())
    with pytest.raises(AttributeError):
        dp.FdbEntry(1, ZERO, "192.0.2.1").vni = 2  # type: ignore[misc]


# ---------------------------------------------------------------- messages


def _route(family: int, prefix: str, paths: list[tuple[str, int]]) -> nl.Route:
    fam, raw, plen = _evpn_values._prefix(prefix)
    assert fam == family
    body = _evpn_routes._RouteCodec().new(family, raw, plen, 1000, paths)
    return nl.decode_route(body)


def test_route_encoding_decodes_back() -> None:
    r = _route(socket.AF_INET, "10.1.0.0/26", [("192.0.2.2", 7)])
    assert (r.dst, r.dst_len, r.table, r.proto) == ("10.1.0.0", 26, 1000, 150)
    assert (r.gateway, r.oif, r.flags & nl.RTNH_F_ONLINK, r.nexthops) == ("192.0.2.2", 7, 4, ())

    via = _route(socket.AF_INET, "10.1.0.0/26", [("2001:db8::2", 7)])
    assert via.gateway == "2001:db8::2"  # RTA_VIA
    mapped = _route(socket.AF_INET6, "2001:db8:1::/64", [("192.0.2.2", 7)])
    assert mapped.gateway == "::ffff:192.0.2.2"
    assert _evpn_routes._route_vtep(socket.AF_INET6, mapped.gateway) == "192.0.2.2"
    assert _evpn_routes._route_vtep(socket.AF_INET6, "::ffff:1:2") == "::ffff:1:2"

    ecmp = _route(socket.AF_INET, "10.2.0.0/24", [("192.0.2.2", 7), ("2001:db8::3", 8)])
    assert ecmp.gateway is None and ecmp.oif is None
    assert ecmp.nexthops == (
        nl.Nexthop(7, nl.RTNH_F_ONLINK, "192.0.2.2"),
        nl.Nexthop(8, nl.RTNH_F_ONLINK, "2001:db8::3"),
    )


def _neigh_body(family: int, index: int, state: int, flags: int, attrs: bytes) -> bytes:
    return nl.ndmsg(family, index, state, flags) + attrs


def test_neigh_decoding() -> None:
    mac = bytes.fromhex("02aa00000001")
    vxlan = _neigh_body(
        nl.AF_BRIDGE,
        5,
        nl.NUD_NOARP | nl.NUD_PERMANENT,
        nl.NTF_SELF | nl.NTF_EXT_LEARNED,
        nl.nla(nl.NDA_LLADDR, mac)
        + nl.nla(nl.NDA_DST, socket.inet_pton(socket.AF_INET6, "2001:db8::2")),
    )
    n = nl.decode_neigh(vxlan)
    assert (n.family, n.ifindex, n.lladdr, n.dst, n.master, n.protocol) == (
        nl.AF_BRIDGE, 5, "02:aa:00:00:00:01", "2001:db8::2", None, None,
    )  # fmt: skip
    bridge = _neigh_body(
        nl.AF_BRIDGE, 5, nl.NUD_REACHABLE, nl.NTF_EXT_LEARNED,
        nl.nla(nl.NDA_LLADDR, mac) + nl.nla_u32(nl.NDA_MASTER, 4),
    )  # fmt: skip
    assert nl.decode_neigh(bridge).master == 4
    arp = _neigh_body(
        socket.AF_INET, 4, nl.NUD_NOARP, nl.NTF_EXT_LEARNED,
        nl.nla(nl.NDA_DST, bytes([10, 0, 0, 1])) + nl.nla(nl.NDA_LLADDR, mac)
        + nl.nla_u8(nl.NDA_PROTOCOL, 150),
    )  # fmt: skip
    n = nl.decode_neigh(arp)
    assert (n.dst, n.lladdr, n.protocol) == ("10.0.0.1", "02:aa:00:00:00:01", 150)
    assert _evpn_bridge._neigh_ours(n) == _evpn_bridge._neigh_ours(
        n._replace(flags=0)
    )  # the tag is the protocol


def _bare_netlink(sndbuf: int, rcvbuf: int) -> nl.Netlink:
    """A Netlink without a socket: enough for encoding."""
    sock = nl.Netlink.__new__(nl.Netlink)
    sock._seq = 100
    sock.sndbuf, sock.rcvbuf, sock.strict = sndbuf, rcvbuf, True
    return sock


def test_chunks_fit_the_send_and_receive_buffers() -> None:
    reqs = [nl.Request(nl.RTM_NEWROUTE, 0, b"\0" * 44, "r") for _ in range(1000)]  # 60 bytes each
    # bytes: 16384 (the floor) / 60 -> 273 a chunk
    sock = _bare_netlink(sndbuf=0, rcvbuf=1 << 30)
    ends = []
    start = 0
    while start < len(reqs):
        start, data = sock._encode_chunk(reqs, start)
        ends.append(start)
        assert len(data) <= 16384
    assert ends == [273, 546, 819, 1000]
    assert sock._seq == 1100
    # count: every error ACK must fit the receive buffer
    sock = _bare_netlink(sndbuf=1 << 30, rcvbuf=nl.Netlink.ERROR_ACK_TRUESIZE * 116)
    end, data = sock._encode_chunk(reqs, 0)
    assert end == 100
    length, mtype, flags, seq, _pid = struct.unpack_from("=IHHII", data)
    assert (length, mtype, flags, seq) == (60, nl.RTM_NEWROUTE, nl.NLM_F_REQUEST, 101)  # no ACK
    # an odd body is padded
    sock = _bare_netlink(sndbuf=1 << 20, rcvbuf=1 << 20)
    end, data = sock._encode_chunk([nl.Request(1, 0, b"abc", "x")], 0)
    assert (end, len(data)) == (1, 20)


# ---------------------------------------------------------------- plans


class _FakeSock:
    """Answers the dumps a plan asks for with a given kernel state."""

    def __init__(
        self, routes: list[nl.Route] = (), fdb: list[nl.Neigh] = (), neigh: list[nl.Neigh] = ()
    ) -> None:
        self._routes, self._fdb, self._neigh = list(routes), list(fdb), list(neigh)

    def dump(self, req: nl.Request, missing_ok: bool = False) -> list[bytes]:
        """A route dump: the state's routes, encoded as the kernel would."""
        family = req.body[0]
        table = nl.parse_attrs(req.body, 12)[nl.RTA_TABLE]
        out = []
        for r in self._routes:
            if r.family != family or struct.pack("=I", r.table) != table:
                continue
            fam, raw, plen = _evpn_values._prefix(f"{r.dst}/{r.dst_len}")
            paths = [(h.gateway, h.ifindex) for h in r.nexthops] or [(r.gateway, r.oif)]
            out.append(_evpn_routes._RouteCodec().new(fam, raw, plen, r.table, paths))
        return out

    def fdb(self, port: int = 0) -> list[nl.Neigh]:
        return self._fdb

    def neighbours(self, family: int, index: int = 0) -> list[nl.Neigh]:
        return [n for n in self._neigh if n.family == family]

    def neighbours_get(self, requests: list[nl.Request]) -> list[nl.Neigh | None]:
        """GETs of single entries, as the kernel answers them: an FDB GET
        (NTF_SELF: the driver's entry, NTF_MASTER: the bridge's) by MAC, a
        neighbour GET by device and address."""
        out: list[nl.Neigh | None] = []
        for req in requests:
            assert req.type == nl.RTM_GETNEIGH
            family, index, _state, flags, _type = struct.unpack_from("=BxxxiHBB", req.body)
            attrs = nl.parse_attrs(req.body, 12)
            if family == nl.AF_BRIDGE:
                mac = attrs[nl.NDA_LLADDR].hex(":")
                master = bool(flags & nl.NTF_MASTER)
                found = [
                    n for n in self._fdb if n.lladdr == mac and (n.master is not None) == master
                ]
            else:
                dst = socket.inet_ntop(family, attrs[nl.NDA_DST])
                found = [
                    n for n in self._neigh if (n.family, n.ifindex, n.dst) == (family, index, dst)
                ]
            out.append(found[0] if found else None)
        return out


class _FakeDevices(_evpn_devices._Devices):
    def __init__(self) -> None:
        br = nl.Link(7, 1, "br-100", "cnid:br:100", None, 1500, None, "bridge", {})
        vx = nl.Link(8, 1, "vx-100", "cnid:vx:100", 7, 1450, None, "vxlan", {})
        self.bridges, self.vxlans = {100: br}, {100: vx}
        self.bridge_problem = {}
        self.vxlan_problem = {}
        self.vxlan_family, self.vxlan_group = {100: socket.AF_INET}, {100: None}
        self._vni_of_index = {7: 100}


EMPTY = dp.KernelEvpn()


def _plan(sock: _FakeSock, add: dp.KernelEvpn, remove: dp.KernelEvpn = EMPTY) -> _evpn_plan._Plan:
    plan = _evpn_plan._Plan()
    devs = _FakeDevices()
    _evpn_bridge._plan_fdb(sock, devs, add.fdb, remove.fdb, plan)  # type: ignore[arg-type]
    _evpn_bridge._plan_neigh(sock, devs, add.neigh, remove.neigh, plan)  # type: ignore[arg-type]
    _evpn_routes._plan_routes(sock, devs, add.routes, remove.routes, plan)  # type: ignore[arg-type]
    return plan


def _ecmp(prefix: str, *gateways: str) -> nl.Route:
    hops = tuple(nl.Nexthop(7, nl.RTNH_F_ONLINK, g) for g in gateways)
    dst, plen = prefix.split("/")
    return nl.Route(socket.AF_INET, int(plen), 50, 150, 0, 1, dst, None, None, 0, None, hops)


def test_route_paths_are_rewritten_as_a_whole() -> None:
    a, b, c = (dp.EvpnRoute(50, "10.9.0.0/24", f"192.0.2.{i}", 100) for i in (2, 3, 4))
    kernel = _FakeSock(routes=[_ecmp("10.9.0.0/24", "192.0.2.2", "192.0.2.3")])

    plan = _plan(kernel, EMPTY, dp.KernelEvpn(routes=frozenset({a})))
    assert plan.additions == [] and len(plan.removals) == 1
    req = plan.removals[0].request
    assert (req.type, req.flags) == (nl.RTM_NEWROUTE, nl.NLM_F_CREATE | nl.NLM_F_REPLACE)
    assert nl.decode_route(req.body).gateway == "192.0.2.3"  # the one path left

    plan = _plan(kernel, EMPTY, dp.KernelEvpn(routes=frozenset({a, b})))
    assert [op.request.type for op in plan.removals] == [nl.RTM_DELROUTE]
    assert nl.decode_route(plan.removals[0].request.body).proto == 150  # only ours go

    plan = _plan(kernel, dp.KernelEvpn(routes=frozenset({c})))
    hops = nl.decode_route(plan.additions[0].request.body).nexthops
    assert [h.gateway for h in hops] == ["192.0.2.2", "192.0.2.3", "192.0.2.4"]

    plan = _plan(kernel, EMPTY, dp.KernelEvpn(routes=frozenset({c})))
    assert plan.removals == [] and plan.additions == []  # not there: nothing to do

    new = dp.EvpnRoute(50, "10.10.0.0/24", "192.0.2.2", 100)
    plan = _plan(kernel, dp.KernelEvpn(routes=frozenset({new})))
    assert plan.additions[0].request.flags == nl.NLM_F_CREATE | nl.NLM_F_EXCL  # not over a foreign


def test_a_moving_mac_is_one_replace_and_a_stale_removal_nothing() -> None:
    mac = "02:00:00:00:09:01"
    old, new = dp.FdbEntry(100, mac, "192.0.2.2"), dp.FdbEntry(100, mac, "192.0.2.3")
    tag = nl.NTF_EXT_LEARNED
    kernel = _FakeSock(
        fdb=[
            nl.Neigh(nl.AF_BRIDGE, 8, 0x80, nl.NTF_SELF | tag, "192.0.2.3", mac, None, None),
            nl.Neigh(nl.AF_BRIDGE, 8, nl.NUD_REACHABLE, tag, None, mac, 7, None),
        ]
    )
    plan = _plan(kernel, dp.KernelEvpn(fdb=frozenset({new})), dp.KernelEvpn(fdb=frozenset({old})))
    assert plan.removals == []
    assert [op.request.type for op in plan.additions] == [nl.RTM_NEWNEIGH] * 2
    assert ("remove", old) in plan.additions[0].entries  # fails with it if it fails

    plan = _plan(kernel, EMPTY, dp.KernelEvpn(fdb=frozenset({old})))
    assert plan.removals == []  # the MAC is at 192.0.2.3 now: neither entry is touched
    plan = _plan(kernel, EMPTY, dp.KernelEvpn(fdb=frozenset({new})))
    assert [op.request.what for op in plan.removals] == ["fdb", "fdb bridge entry"]


def test_neighbours_are_removed_only_when_ours_with_that_mac() -> None:
    mac = "02:00:00:00:09:01"
    ours = nl.Neigh(socket.AF_INET, 7, nl.NUD_NOARP, 0, "10.0.0.1", mac, None, 150)
    foreign = nl.Neigh(socket.AF_INET, 7, nl.NUD_PERMANENT, 0, "10.0.0.2", mac, None, None)
    kernel = _FakeSock(neigh=[ours, foreign])
    gone = [
        dp.NeighEntry(100, "10.0.0.1", "02:00:00:00:09:02"),  # another MAC now
        dp.NeighEntry(100, "10.0.0.2", mac),  # not ours
        dp.NeighEntry(100, "10.0.0.3", mac),  # not there
    ]
    plan = _plan(kernel, EMPTY, dp.KernelEvpn(neigh=frozenset(gone)))
    assert plan.removals == [] and plan.failed == {}
    plan = _plan(
        kernel,
        dp.KernelEvpn(),
        dp.KernelEvpn(neigh=frozenset({dp.NeighEntry(100, "10.0.0.1", mac)})),
    )
    assert [op.request.type for op in plan.removals] == [nl.RTM_DELNEIGH]


class _NoDumps(_FakeSock):
    def fdb(self, port: int = 0) -> list[nl.Neigh]:
        raise AssertionError("a removal dumped the FDB")

    def neighbours(self, family: int, index: int = 0) -> list[nl.Neigh]:
        raise AssertionError("a removal dumped the neighbours")


def test_removals_look_up_their_entries_and_dump_nothing() -> None:
    mac = "02:00:00:00:09:01"
    tag = nl.NTF_EXT_LEARNED
    kernel = _NoDumps(
        fdb=[
            nl.Neigh(nl.AF_BRIDGE, 8, 0x80, nl.NTF_SELF | tag, "192.0.2.2", mac, None, None),
            nl.Neigh(nl.AF_BRIDGE, 8, nl.NUD_REACHABLE, tag, None, mac, 7, None),
        ],
        neigh=[nl.Neigh(socket.AF_INET, 7, nl.NUD_NOARP, tag, "10.0.0.1", mac, None, 150)],
    )
    remove = dp.KernelEvpn(
        fdb=frozenset(
            {
                dp.FdbEntry(100, mac, "192.0.2.2"),
                dp.FdbEntry(100, ZERO, "192.0.2.7"),  # a flood remote, there or not
                dp.FdbEntry(100, "02:00:00:00:09:09", "192.0.2.2"),  # not there
            }
        ),
        neigh=frozenset({dp.NeighEntry(100, "10.0.0.1", mac)}),
    )
    plan = _plan(kernel, EMPTY, remove)
    assert plan.failed == {}
    ops = sorted((op.request.type, op.request.what, op.gone_ok) for op in plan.removals)
    assert ops == [
        (nl.RTM_DELNEIGH, "fdb", False),
        (nl.RTM_DELNEIGH, "fdb", True),  # the flood remote: ENOENT is "gone already"
        (nl.RTM_DELNEIGH, "fdb bridge entry", False),
        (nl.RTM_DELNEIGH, "neigh", False),
    ]
    # the kernel's own default remote of a device made with `remote` is never removed
    devs = _FakeDevices()
    devs.vxlan_group[100] = "192.0.2.7"
    plan = _evpn_plan._Plan()
    flood = frozenset({dp.FdbEntry(100, ZERO, "192.0.2.7")})
    _evpn_bridge._plan_fdb(kernel, devs, frozenset(), flood, plan)  # type: ignore[arg-type]
    assert plan.removals == [] and plan.failed == {}


def test_many_removals_on_one_device_read_its_dump_with_the_same_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_evpn_bridge, "DUMP_AT", 1)
    test_a_moving_mac_is_one_replace_and_a_stale_removal_nothing()
    test_neighbours_are_removed_only_when_ours_with_that_mac()
