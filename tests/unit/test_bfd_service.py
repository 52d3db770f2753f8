"""BfdService over real UDP sockets on the loopback: a session to our own
address talks to itself (RFC 5880's loop case) and comes Up; GTSM, the A
bit and unknown discriminators are discarded and counted; subscribers see
the changes; removal sends AdminDown."""

from __future__ import annotations

import random
import socket

import trio

from cnid.bfd import (
    BfdService,
    ControlPacket,
    PeerConfig,
    State,
    StateChange,
    encode,
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(predicate: object, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.02)


async def test_loopback_session_and_discards() -> None:
    port = free_udp_port()
    bfd = BfdService(rng=random.Random(7), single_hop_port=port, multihop_port=free_udp_port())
    changes: list[StateChange] = []
    unsubscribe = bfd.subscribe(changes.append)
    watched: list[object] = []
    bfd.watch(watched.append)  # the agreed intervals, the remote's state
    key = bfd.add_peer("127.0.0.1", local="127.0.0.1", config=PeerConfig(desired_min_tx_ms=50,
                       required_min_rx_ms=50))  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(bfd.run)
        await wait_for(lambda: bfd.state(key) is State.UP)
        assert [c.new for c in changes][-1] is State.UP
        await wait_for(lambda: bfd.peers()[0].tx_interval_ms == 50)  # the Poll Sequence's end
        assert watched and set(watched) == {key}
        [view] = bfd.peers()
        assert view.state == "up" and view.peer == "127.0.0.1" and view.flaps == 0
        assert view.uptime_s is not None and view.remote_discr == view.local_discr
        assert bfd.counters.packets_in > 0 and bfd.counters.packets_out > 0

        def probe(packet: ControlPacket, ttl: int, flags: int = 0) -> None:
            data = bytearray(encode(packet))
            data[1] |= flags
            if flags & 0x04:
                data[3] = 26
                data += b"\x01\x02"
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                s.sendto(bytes(data), ("127.0.0.1", port))

        down = ControlPacket(state=State.DOWN, detect_mult=3, my_discr=99,
                             desired_min_tx=1_000_000, required_min_rx=1)  # fmt: skip
        probe(down, ttl=64)  # GTSM: single hop needs 255
        probe(down, ttl=255, flags=0x04)  # A bit
        probe(ControlPacket(state=State.UP, detect_mult=3, my_discr=99, your_discr=12345,
                            desired_min_tx=1, required_min_rx=1), ttl=255)  # fmt: skip
        await wait_for(lambda: len(bfd.counters.discarded) >= 3)
        assert bfd.counters.discarded == {"ttl": 1, "authentication": 1, "no-session": 1}
        assert bfd.state(key) is State.UP

        bfd.remove_peer(key)
        await trio.sleep(0.2)
        assert bfd.peers() == [] and changes[-1].new is State.ADMIN_DOWN
        assert bfd.counters.flaps == 1
        unsubscribe()
        nursery.cancel_scope.cancel()


async def test_the_service_ending_says_admin_down_to_its_peers() -> None:
    """The speaker process stops: each Up session sends AdminDown (RFC 5882
    3.2: no path failure to a peer that honours it)."""
    from cnid.bfd import Diag, decode

    # the peer on 127.0.0.2 (a more specific bind than the service's listener
    # on 0.0.0.0 of the same port: the peer's packets go to it)
    peer = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    await peer.bind(("127.0.0.2", 0))
    port = peer.getsockname()[1]
    bfd = BfdService(rng=random.Random(3), single_hop_port=port, multihop_port=free_udp_port())
    bfd.add_peer("127.0.0.2", local="127.0.0.1")
    with peer:
        async with trio.open_nursery() as nursery:
            await nursery.start(bfd.run)
            first = decode(await peer.recv(512))
            assert first.state is State.DOWN
            nursery.cancel_scope.cancel()
        with trio.fail_after(2):
            while True:
                last = decode(await peer.recv(512))
                if last.state is State.ADMIN_DOWN:
                    break
    assert last.diag is Diag.ADMINISTRATIVELY_DOWN and last.my_discr == first.my_discr
