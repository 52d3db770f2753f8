"""The EVPN route plan's shortcuts plan what the general path does: a new
prefix with one path and a prefix whose only path goes skip
``_plan_prefix``, and ``routes_now`` is read for the planned prefixes only.
Each is checked against the general path on varied batches (valid and
invalid entries, ECMP merges, removals of what is not there). No timing
here: the speed is measured in ``bench/``."""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterable, Mapping

from cnid import dataplane as dp
from cnid.dataplane import _evpn_devices, _evpn_plan, _evpn_routes, _evpn_values
from cnid.dataplane import _netlink as nl

TABLES = (100, 100, 100, 101)
VTEPS = ("192.0.2.2", "192.0.2.3", "192.0.2.4", "2001:db8::2")
BAD = (
    dp.EvpnRoute(100, "10.1.0.1/26", "192.0.2.2", 100),  # host bits
    dp.EvpnRoute(100, "10.1.0.0/33", "192.0.2.2", 100),
    dp.EvpnRoute(100, "2001:DB8::/64", "192.0.2.2", 100),
    dp.EvpnRoute(255, "10.1.0.0/26", "192.0.2.2", 100),
    dp.EvpnRoute(100, "10.1.0.0/26", "0.0.0.0", 100),
    dp.EvpnRoute(100, "10.1.0.0/26", "192.0.2.2", 300),  # not ours
    dp.EvpnRoute(100, "10.1.0.0/26", "192.0.2.2", 400),  # not there
)


class _Devices(_evpn_devices._Devices):
    def __init__(self) -> None:
        self.bridges = {
            100: nl.Link(7, 1, "br-100", "cnid:br:100", None, 1500, None, "bridge", {}),
            200: nl.Link(9, 1, "br-200", "cnid:br:200", None, 1500, None, "bridge", {}),
        }
        self.vxlans = {}
        self.bridge_problem = {300: "br-300 is not ours"}
        self.vxlan_problem = {}
        self.vxlan_family, self.vxlan_group = {}, {}
        self._vni_of_index = {7: 100, 9: 200}


class _Sock:
    """Answers a route dump with the given routes (ours, by ifindex)."""

    def __init__(self, routes: Iterable[dp.EvpnRoute] = ()) -> None:
        self.paths: dict[tuple[int, str], list[tuple[str, int]]] = {}
        for r in routes:
            self.paths.setdefault((r.table, r.prefix), []).append(
                (r.vtep, 7 if r.vni == 100 else 9)
            )

    def dump(self, req: nl.Request, missing_ok: bool = False) -> list[bytes]:
        family = req.body[0]
        (table,) = struct.unpack("=I", nl.parse_attrs(req.body, 12)[nl.RTA_TABLE])
        out = []
        for (t, prefix), paths in self.paths.items():
            fam, raw, plen = _evpn_values._prefix(prefix)
            if (fam, t) == (family, table):
                out.append(_evpn_routes._RouteCodec().new(fam, raw, plen, t, sorted(paths)))
        return out


def _route(rng: random.Random) -> dp.EvpnRoute:
    if rng.random() < 0.1:
        return rng.choice(BAD)
    prefix = rng.choice([f"10.{rng.randrange(2)}.0.{64 * rng.randrange(4)}/26", "2001:db8:1::/64"])
    return dp.EvpnRoute(rng.choice(TABLES), prefix, rng.choice(VTEPS), rng.choice((100, 100, 200)))


def _batch(rng: random.Random) -> tuple[set[dp.EvpnRoute], set[dp.EvpnRoute], set[dp.EvpnRoute]]:
    """(installed, add, remove): the removals partly of what is installed."""
    installed = {r for r in (_route(rng) for _ in range(rng.choice((0, 2, 8)))) if r not in BAD}
    add = {_route(rng) for _ in range(rng.choice((0, 1, 3, 12)))}
    remove = {_route(rng) for _ in range(rng.choice((0, 1, 4)))}
    remove |= {r for r in installed if rng.random() < 0.6}
    return installed, add, remove


def _general(
    sock: _Sock, add: frozenset[dp.EvpnRoute], remove: frozenset[dp.EvpnRoute], known: _Known
) -> _evpn_plan._Plan:
    """``_plan_routes`` without its shortcuts: every prefix planned by
    ``_plan_prefix``."""
    plan = _evpn_plan._Plan()
    devs = _Devices()
    adds, removes, parsed = _evpn_routes._by_prefix(devs, add, remove, plan)
    current = _evpn_routes._current(sock, devs, parsed, known)  # type: ignore[arg-type]
    codec = _evpn_routes._RouteCodec()
    for key, (family, raw, plen) in parsed.items():
        route = _evpn_routes._Route(family, raw, plen, key[0])
        added, removed = adds.get(key, []), removes.get(key, [])
        now = current.get(key)
        if known is not None and removed:
            # apply_evpn: the removals are of the caller's record, held
            held = {(e.vtep, devs.bridges[e.vni].index) for e in removed}
            now = held | (now or set())
        _evpn_routes._plan_prefix(plan, codec, devs.bridges, route, now, added, removed)
    return plan


_Known = Mapping[tuple[int, str], Iterable[dp.EvpnRoute]] | None


def _planned(
    sock: _Sock, add: frozenset[dp.EvpnRoute], remove: frozenset[dp.EvpnRoute], known: _Known
) -> _evpn_plan._Plan:
    plan = _evpn_plan._Plan()
    _evpn_routes._plan_routes(sock, _Devices(), add, remove, plan, known)  # type: ignore[arg-type]
    return plan


def _outcome(plan: _evpn_plan._Plan) -> tuple[object, ...]:
    """What a plan sends and reports, in order, each request's names sorted."""

    def ops(ops: list[_evpn_plan._Op]) -> list[object]:
        return [(op.request, sorted(map(repr, op.entries)), op.gone_ok) for op in ops]

    return ops(plan.removals), ops(plan.additions), plan.failed, plan.refused


def _record(installed: Iterable[dp.EvpnRoute]) -> dict[tuple[int, str], set[dp.EvpnRoute]]:
    out: dict[tuple[int, str], set[dp.EvpnRoute]] = {}
    for r in installed:
        out.setdefault((r.table, r.prefix), set()).add(r)
    return out


def test_shortcuts_plan_what_the_general_path_plans() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        installed, add, remove = _batch(rng)
        a, r = frozenset(add), frozenset(remove)
        sock = _Sock(installed)
        for known in (None, _record(installed)):
            want = _outcome(_general(sock, a, r, known))
            assert _outcome(_planned(sock, a, r, known)) == want, (installed, add, remove)


def test_a_record_plans_as_reading_the_kernel_does() -> None:
    """``routes_now`` with empty sets for new prefixes, without them,
    without the routes the batch removes (they are of the record: taken as
    held), or no record at all (the tables read, holding what the record
    says): one plan."""
    rng = random.Random(6)
    for _ in range(1000):
        installed, add, remove = _batch(rng)
        a, r = frozenset(add), frozenset(remove)
        held = installed | {e for e in remove if e not in BAD}
        record = _record(held)
        with_empty: dict[tuple[int, str], set[dp.EvpnRoute]] = {
            (e.table, e.prefix): set() for e in add | remove
        }
        with_empty.update(record)
        want = _outcome(_planned(_Sock(held), a, r, None))
        assert _outcome(_planned(_Sock(), a, r, record)) == want
        assert _outcome(_planned(_Sock(), a, r, with_empty)) == want
        assert _outcome(_planned(_Sock(), a, r, _record(held - remove))) == want


def test_a_removal_the_record_does_not_hold_fails_loudly() -> None:
    """With a record, a removal is of the record: one that is gone from the
    kernel is asked all the same (its ENOENT is reported), never skipped."""
    e = dp.EvpnRoute(100, "10.1.0.0/26", "192.0.2.2", 100)
    plan = _planned(_Sock(), frozenset(), frozenset({e}), {})
    (op,) = plan.removals
    assert op.request.type == nl.RTM_DELROUTE and not op.gone_ok
    assert not _planned(_Sock(), frozenset(), frozenset({e}), None).removals  # read: gone


def test_a_single_outcome_is_named_by_its_list() -> None:
    plan = _evpn_plan._Plan()
    e = dp.EvpnRoute(100, "10.1.0.0/26", "192.0.2.2", 100)
    req = nl.Request(nl.RTM_NEWROUTE, 0, b"", "route")
    plan.add(req, e)
    plan.remove(req, e, gone_ok=True)
    plan.remove(req, [("add", e), ("remove", e)])
    assert plan.requests() == [req] * 3
    assert [plan.names(i) for i in range(3)] == [
        [("remove", e)],
        [("add", e), ("remove", e)],
        [("add", e)],
    ]
    assert [plan.gone(i) for i in range(3)] == [True, False, False]
    assert [op.gone_ok for op in plan.removals] == [True, False]
    assert plan.additions == [_evpn_plan._Op(req, [("add", e)])]


def test_ipv6_prefix_via_an_ipv4_vtep_is_one_request() -> None:
    e = dp.EvpnRoute(100, "2001:db8:1::/64", "192.0.2.2", 100)
    plan = _planned(_Sock(), frozenset({e}), frozenset(), {})
    (op,) = plan.additions
    route = nl.decode_route(op.request.body)
    assert (route.family, route.dst, route.gateway) == (
        socket.AF_INET6,
        "2001:db8:1::",
        "::ffff:192.0.2.2",
    )


class _Dump:
    """Answers a route dump with the given message bodies."""

    def __init__(self, bodies: list[bytes]) -> None:
        self.bodies = bodies

    def dump(self, req: nl.Request, missing_ok: bool = False) -> list[bytes]:
        return self.bodies


def test_the_common_ipv4_layout_reads_as_any_other() -> None:
    """An IPv4 route of one path, as the kernel dumps it, is read in one
    unpack; the same route with its attributes otherwise (another order, one
    more) is read attribute by attribute: one state."""
    codec = _evpn_routes._RouteCodec()
    common, other = [], []
    for i, (table, vtep) in enumerate(
        [(100, "192.0.2.2"), (101, "192.0.2.3"), (100, "2001:db8::2")]
    ):
        fam, raw, plen = _evpn_values._prefix(f"10.1.{i}.0/24")
        body = codec.new(fam, raw, plen, table, [(vtep, 7)])
        common.append(body)
        attrs = nl.parse_attrs(body, 12)
        tail = b"".join(_evpn_plan._attr(k, v) for k, v in reversed(attrs.items()))
        other.append(body[:12] + tail + _evpn_plan._attr(nl.RTA_PRIORITY, b"\0" * 4))
    fam, raw, plen = _evpn_values._prefix("10.2.0.0/24")
    common.append(codec.new(fam, raw, plen, 100, [("192.0.2.2", 7), ("192.0.2.4", 9)]))
    other.append(common[-1])
    got = _evpn_routes._route_state(_Dump(common), 100, socket.AF_INET)  # type: ignore[arg-type]
    want = _evpn_routes._route_state(_Dump(other), 100, socket.AF_INET)  # type: ignore[arg-type]
    assert (
        got
        == want
        == {
            "10.1.0.0/24": {("192.0.2.2", 7)},
            "10.1.2.0/24": {("2001:db8::2", 7)},
            "10.2.0.0/24": {("192.0.2.2", 7), ("192.0.2.4", 9)},
        }
    )
    assert len(common[0]) == _evpn_routes._ONE_PATH4_SIZE
