"""An attach's replay of ExaBGP's adj-rib-in (cnid.bgp._extension.replay)
carries the routed underlay's IPv4 unicast routes as well as EVPN's: a
daemon that attaches after a leaf sent the other nodes' VTEPs must learn
them (the eBGP lab's underlay was left empty without it)."""

from __future__ import annotations

from typing import Any

from exabgp.bgp.message import Action
from exabgp.bgp.message.update.attribute import Attributes
from exabgp.bgp.message.update.nlri.inet import INET
from exabgp.protocol.family import AFI, SAFI
from exabgp.protocol.ip import IP
from exabgp.rib.change import Change

from cnid.bgp import _extension


class _Rib:
    def __init__(self, changes: list[Change]) -> None:
        self.changes = changes
        self.asked: list[Any] = []

    def cached_changes(self, families: list[Any]) -> list[Change]:
        self.asked = list(families)
        return [c for c in self.changes if c.nlri.afi_safi() in families]


def test_the_replay_carries_ipv4_unicast_routes() -> None:
    nlri = INET(AFI.ipv4, SAFI.unicast, Action.ANNOUNCE)
    nlri.cidr.__init__(IP.pton("10.255.0.13"), 32)  # type: ignore[misc]
    nlri.nexthop = IP.create("172.16.1.0")
    rib = _Rib([Change(nlri, Attributes())])
    neighbor: dict[str, Any] = {"peer-address": "172.16.1.0"}

    class Neighbor(dict[str, Any]):
        pass

    n = Neighbor(neighbor)
    n.rib = type("R", (), {"incoming": rib})()  # type: ignore[attr-defined]
    written: list[tuple[Any, ...]] = []

    class Encoder:
        def update(self, *args: Any) -> str:
            written.append(args)
            return "line"

    reactor = type("Reactor", (), {})()
    reactor.processes = type("P", (), {"_encoder": {"svc": Encoder()}, "write": lambda *a: None})()
    reactor._peers = {"k": type("Peer", (), {"neighbor": n})()}
    reactor.established_peers = lambda: ["k"]
    assert _extension.replay(reactor, "svc", ()) == 1
    assert (AFI.ipv4, SAFI.unicast) in rib.asked
    [(_, direction, update, *_rest)] = written
    assert direction == "receive" and update.nlris == [nlri]


def test_the_replay_ends_unicast_with_the_end_of_rib_the_peer_sent() -> None:
    """The underlay's adoption at a daemon's start ends with each leaf's IPv4
    unicast End-of-RIB: replayed only when the leaf's own was received."""
    n: Any = type("Neighbor", (dict,), {})({"peer-address": "172.16.1.0"})
    n.rib = type("R", (), {"incoming": _Rib([])})()
    lines: list[str] = []
    reactor: Any = type("Reactor", (), {})()
    reactor.processes = type(
        "P", (), {"_encoder": {"svc": None}, "write": lambda _self, _svc, line: lines.append(line)}
    )()
    reactor._peers = {"k": type("Peer", (), {"neighbor": n})()}
    reactor.established_peers = lambda: ["k"]
    _extension.replay(reactor, "svc", ())
    assert lines == []  # none received: none made up
    _extension.UNICAST_EOR_RECEIVED.add("172.16.1.0")
    try:
        _extension.replay(reactor, "svc", ())
    finally:
        _extension.UNICAST_EOR_RECEIVED.discard("172.16.1.0")
    [line] = lines
    assert '"afi":"ipv4","safi":"unicast"' in line and '"peer":"172.16.1.0"' in line
