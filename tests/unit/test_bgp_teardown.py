"""The speaker's teardown (FRR's ``maximum-prefix N restart M``) as the
ExaBGP extension executes it, and the MD5 password's configuration file
created owner-only from the start."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from cnid.bgp import Command, decode_command, encode_command, write_private
from cnid.bgp import _extension as ext

PEER = "192.168.77.12"
KEY = f"neighbor {PEER} local-ip 192.168.77.11 local-as 65000 peer-as 65000 router-id 1.1.1.1"


class FakePeer:
    def __init__(self) -> None:
        from exabgp.reactor.delay import Delay

        self.neighbor = {"peer-address": PEER}
        self._delay = Delay()
        self.proto = None
        self.fsm = _Idle()
        self.stats: dict[str, Any] = {}
        self.torn: list[int] = []


class _Idle:
    """An FSM that is idle (ExaBGP's _close then only resets counters)."""

    def __eq__(self, other: object) -> bool:
        from exabgp.bgp.fsm import FSM

        return other == FSM.IDLE

    def __hash__(self) -> int:
        return 0

    def change(self, state: object) -> None:
        pass


class FakeReactor:
    def __init__(self) -> None:
        self._peers = {KEY: FakePeer()}

    def peers(self, service: str) -> list[str]:
        return list(self._peers)

    def established_peers(self) -> set[str]:
        return set(self._peers)

    def teardown_peer(self, key: str, code: int) -> None:
        self._peers[key].torn.append(code)


class FakeConnection:
    def __init__(self) -> None:
        self.sent: list[tuple[int, int, str]] = []

    def notification(self, code: int, subcode: int, message: str) -> bool:
        self.sent.append((code, subcode, message))
        return True


@pytest.fixture(autouse=True)
def _no_holds() -> Any:
    ext.HOLD_DOWN.clear()
    yield
    ext.HOLD_DOWN.clear()


def test_teardown_travels_the_api_line() -> None:
    cmd = Command(7, "teardown", (PEER,), hold=30.0, code=1)
    assert decode_command(encode_command(cmd)) == cmd


def test_teardown_sends_cease_and_holds_the_peer_down() -> None:
    reactor = FakeReactor()
    ack = ext.execute(reactor, "cnid", Command(1, "teardown", (PEER,), hold=30.0, code=1))
    assert ack.ok and ack.done == 1
    peer = reactor._peers[KEY]
    assert peer.torn == [1]  # Cease, "maximum number of prefixes reached"
    # No reconnection before the hold time: the reconnect delay ends then,
    # also after ExaBGP's own close pushed it (the patched _close).
    assert peer._delay.backoff()
    assert peer._delay._time >= time.time() + 29
    from exabgp.reactor.peer import Peer

    Peer._close(peer, "test")  # type: ignore[arg-type]
    assert peer._delay._time >= time.time() + 29
    # Its connections are refused meanwhile.
    conn = FakeConnection()
    assert Peer.handle_connection(peer, conn)  # type: ignore[arg-type]
    assert conn.sent == [(6, 5, "hold-down: maximum-prefix or BFD down")]


def test_after_the_hold_the_peer_is_met_again() -> None:
    reactor = FakeReactor()
    ext.execute(reactor, "cnid", Command(1, "teardown", (PEER,), hold=0.0, code=1))
    peer = reactor._peers[KEY]
    assert not ext._held_down(peer)
    assert not peer._delay.backoff() or peer._delay._time <= time.time() + 1


def test_release_ends_the_hold_at_once() -> None:
    """BFD back Up: the held-down peer is met again now, not at the hold's end."""
    reactor = FakeReactor()
    ext.execute(reactor, "cnid", Command(1, "teardown", (PEER,), hold=3600.0, code=6))
    peer = reactor._peers[KEY]
    assert ext._held_down(peer) and peer._delay.backoff()
    ack = ext.execute(reactor, "cnid", Command(2, "release", (PEER,)))
    assert ack.ok and ack.done == 1
    assert not ext._held_down(peer)
    assert not peer._delay.backoff()  # connects on the reactor's next turn
    # ExaBGP's own close after the release does not push the reconnection out
    from exabgp.reactor.peer import Peer

    Peer._close(peer, "test")  # type: ignore[arg-type]
    assert peer._delay._time <= time.time() + 1


def test_the_config_file_is_owner_only_from_its_creation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, **kw: Any) -> int:
        opened.append(mode)
        return real_open(path, flags, mode, **kw)

    monkeypatch.setattr(os, "open", spy)
    old = os.umask(0)
    try:
        target = tmp_path / "exabgp.conf"
        (tmp_path / "exabgp.tmp").write_text("a leftover")
        (tmp_path / "exabgp.tmp").chmod(0o644)
        write_private(target, 'md5-password "s3cret";')
    finally:
        os.umask(old)
    assert opened == [0o600]
    assert target.read_text() == 'md5-password "s3cret";'
    assert target.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exabgp.conf"]
