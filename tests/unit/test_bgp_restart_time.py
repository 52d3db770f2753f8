"""The Restart Time each established peer advertised (its OPEN's graceful
restart capability, RFC 4724), as the extension's ``state`` reports it: the
EVPN controller keeps a peer's routes that long once its session ends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from exabgp.bgp.message.open.capability.capabilities import Capabilities

from cnid.bgp import _extension


def _open_capabilities(*capabilities: bytes) -> Capabilities:
    """Capabilities as ExaBGP reads them off a received OPEN."""
    params = b"".join(bytes([2, len(c)]) + c for c in capabilities)
    return Capabilities.unpack(bytes([len(params)]) + params)


def _peer(address: str, capabilities: Capabilities | None) -> Any:
    received = None if capabilities is None else SimpleNamespace(capabilities=capabilities)
    proto = SimpleNamespace(negotiated=SimpleNamespace(received_open=received))
    return SimpleNamespace(
        neighbor={"peer-address": address}, stats={"complete": 900.0}, proto=proto
    )


def test_state_carries_each_established_peers_restart_time() -> None:
    # graceful restart: flags 0, time 120; l2vpn (25) evpn (70), forwarding kept
    graceful = bytes([0x40, 6, 0x00, 120, 0, 25, 70, 0x80])
    route_refresh = bytes([0x02, 0])
    reactor = SimpleNamespace(
        _peers={
            "a": _peer("192.168.124.11", _open_capabilities(graceful, route_refresh)),
            "b": _peer("192.168.124.13", _open_capabilities(route_refresh)),
            "c": _peer("192.168.124.14", None),  # no OPEN read (yet)
        },
        established_peers=lambda: ["a", "b", "c"],
    )
    state = _extension.speaker_state(reactor)
    assert state.restart_times == (
        ("192.168.124.11", 120),
        ("192.168.124.13", 0),
        ("192.168.124.14", 0),
    )
    assert [a for a, _ in state.established] == [a for a, _ in state.restart_times]


def test_state_for_some_peers_carries_their_sessions_only() -> None:
    """What the daemon asks when sessions come up: no copy of every path."""
    reactor = SimpleNamespace(
        _peers={"a": _peer("192.168.124.11", None), "b": _peer("192.168.124.13", None)},
        established_peers=lambda: ["a", "b"],
    )
    state = _extension.speaker_state(reactor, ("192.168.124.13",))
    assert state.established == (("192.168.124.13", 900.0),)
    assert state.restart_times == (("192.168.124.13", 0),) and state.paths == ()
