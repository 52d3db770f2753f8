"""The routed underlay's routes on a real kernel, in namespaces the test
creates: a node with two point-to-point /31 links (one per leaf), ECMP
routes of protocol ROUTE_PROTO_UNDERLAY in its main table, written, dumped,
replaced, removed; other owners' routes untouched.

    node  10.1.1.1/31 --- 10.1.1.0/31  l1
          10.1.2.1/31 --- 10.1.2.0/31  l2

The ``cnid-vtep`` dummy device needs the dummy driver, which this host's
kernel lacks: its test is in the VM tier (tests/vm/test_underlay_vtep.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import trio

from cnid import dataplane as dp
from cnid.core import KernelError
from testbed.netns import Netns, netns

L1, L2 = "10.1.1.0", "10.1.2.0"
FAR, OTHER = "10.255.0.99/32", "10.255.0.98/32"


@pytest.fixture
def node() -> Iterator[tuple[Netns, Netns, Netns]]:
    with netns("ulnode") as ns, netns("ull1") as l1, netns("ull2") as l2:
        for peer, mine, theirs, name in ((l1, "10.1.1.1", L1, "up1"), (l2, "10.1.2.1", L2, "up2")):
            ns.ip("link", "add", name, "type", "veth", "peer", "name", "node0", "netns", peer.name)
            ns.ip("addr", "add", f"{mine}/31", "dev", name)
            ns.ip("link", "set", name, "up")
            peer.ip("addr", "add", f"{theirs}/31", "dev", "node0")
            peer.ip("link", "set", "node0", "up")
        dp.set_node_netns(ns.fd)
        try:
            yield ns, l1, l2
        finally:
            dp.set_node_netns(None)


def routes(ns: Netns, proto: str = "151") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(ns.ip("-j", "route", "show", "proto", proto))
    return out


def gateways(route: dict[str, Any]) -> set[str]:
    if "nexthops" in route:
        return {h["gateway"] for h in route["nexthops"]}
    return {route["gateway"]}


def test_ecmp_routes_written_dumped_replaced_and_removed(node: tuple[Netns, Netns, Netns]) -> None:
    ns, _, _ = node
    ns.ip("route", "add", "10.9.0.0/24", "via", L1, "proto", "static")  # another owner's

    async def main() -> None:
        wanted = {FAR: frozenset({L1, L2}), OTHER: frozenset({L2})}
        result = await dp.apply_underlay_routes(wanted)
        assert result.errors == ()
        assert {c.op for c in result.changes} == {"add"}
        assert {r["dst"]: gateways(r) for r in routes(ns)} == {
            "10.255.0.99": {L1, L2},
            "10.255.0.98": {L2},
        }
        # both paths really used: the kernel resolved each next hop's link
        (far,) = [r for r in routes(ns) if r["dst"] == "10.255.0.99"]
        assert {h["dev"] for h in far["nexthops"]} == {"up1", "up2"}
        assert await dp.dump_underlay_routes() == wanted  # adopted as it is
        # the same state again: nothing sent
        assert (await dp.apply_underlay_routes(wanted)).changes == ()
        # a leaf's session down: its next hop out, the route replaced, not deleted
        result = await dp.apply_underlay_routes({FAR: frozenset({L2}), OTHER: frozenset({L2})})
        assert [(c.op, c.prefix) for c in result.changes] == [("set", FAR)]
        assert {r["dst"]: gateways(r) for r in routes(ns)}["10.255.0.99"] == {L2}
        result = await dp.apply_underlay_routes({FAR: frozenset({L1, L2})})
        assert [(c.op, c.prefix) for c in result.changes] == [("delete", OTHER), ("set", FAR)]
        await dp.apply_underlay_routes({})
        assert routes(ns) == []
        assert await dp.dump_underlay_routes() == {}

    trio.run(main)
    assert [r["dst"] for r in routes(ns, "static")] == ["10.9.0.0/24"]


def test_another_owners_route_is_never_replaced(node: tuple[Netns, Netns, Netns]) -> None:
    ns, _, _ = node
    ns.ip("route", "add", FAR, "via", L1, "proto", "static")

    async def main() -> None:
        result = await dp.apply_underlay_routes({FAR: frozenset({L2})})
        assert [p for p, _ in result.errors] == [FAR]
        assert "File exists" in result.errors[0][1]
        # a next hop on no link of the node: refused, reported, not raised
        result = await dp.apply_underlay_routes({OTHER: frozenset({"192.0.2.1"})})
        assert [p for p, _ in result.errors] == [OTHER]
        assert await dp.dump_underlay_routes() == {}

    trio.run(main)
    (static,) = routes(ns, "static")
    assert gateways(static) == {L1}


def test_connected_addresses_and_the_vtep_device_without_the_dummy_driver(
    node: tuple[Netns, Netns, Netns],
) -> None:
    async def main() -> None:
        addrs = await dp.connected_addresses()
        assert {"10.1.1.1/31", "10.1.2.1/31"} <= set(addrs)
        assert dp.address_facing(L2, addrs) == "10.1.2.1"
        # this kernel has no dummy driver: a clear error, nothing left behind
        with pytest.raises(KernelError):
            await dp.ensure_vtep("10.255.0.11")
        assert not await dp.remove_vtep()

    trio.run(main)
