"""BFD in the speaker process (``cnid.bgp``'s ``BfdHost``) and the daemon's
end (``BfdLink``), over their real files and sockets: the sessions come from
``bfd.json`` (added and removed without disturbing the others), their states
reach each daemon that attaches (a snapshot, then every change), a failure
while no daemon is attached tears the BGP session down through ExaBGP's API
(a fake relay here) and the next daemon learns of it. The BFD sessions run
over the loopback (a session to our own address comes Up: test_bfd_service);
the failures are made by the test."""

from __future__ import annotations

import random
from pathlib import Path

import trio

from cnid.bfd import BfdService, Diag, PeerConfig, PeerKey, State, StateChange
from cnid.bgp import (
    BFD_HOLD,
    CEASE_BFD_DOWN,
    Ack,
    BfdHost,
    BfdLink,
    Command,
    ack_line,
    decode_command,
)
from cnid.core import serve_unix
from tests.unit.test_bfd_service import free_udp_port, wait_for

LOOP = PeerKey("127.0.0.1", "127.0.0.1")
SILENT = PeerKey("127.0.0.3", "127.0.0.1")  # nobody answers: Down
# quick packets, a slow detection (1 s): no flap on a loaded machine
FAST = PeerConfig(desired_min_tx_ms=50, required_min_rx_ms=50, detect_multiplier=20)


class FakeRelay:
    """ExaBGP's API socket (``api.sock``): every command acknowledged, and recorded."""

    def __init__(self, run_dir: Path) -> None:
        self.path = str(run_dir / "api.sock")
        self.commands: list[Command] = []

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await serve_unix(self.path, self._serve, task_status=task_status)

    async def _serve(self, conn: trio.socket.SocketType) -> None:
        buf = b""
        with conn:
            while data := await conn.recv(65536):
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    command = decode_command(line.decode())
                    self.commands.append(command)
                    await conn.send((ack_line(Ack(command.id, True, done=1)) + "\n").encode())


def failure(key: PeerKey) -> StateChange:
    return StateChange(key, State.UP, State.DOWN, Diag.CONTROL_DETECTION_TIME_EXPIRED, Diag.NONE,
                       False, State.DOWN)  # fmt: skip


async def test_sessions_from_the_file_states_to_each_daemon_and_failures_alone(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "bgp"
    service = BfdService(
        rng=random.Random(5), single_hop_port=free_udp_port(), multihop_port=free_udp_port()
    )
    host = BfdHost(run_dir, service=service, poll=0.05)
    relay = FakeRelay(run_dir)
    link = BfdLink(run_dir)
    told: list[StateChange] = []
    link.subscribe(told.append)
    link.configure({LOOP: FAST})
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        await nursery.start(host.run)
        link_scope = trio.CancelScope()

        async def attach() -> None:
            with link_scope:
                await link.run()

        nursery.start_soon(attach)
        await wait_for(lambda: [p.state for p in link.peers()] == ["up"])
        assert link.synced and told[-1].key == LOOP and told[-1].new is State.UP
        [before] = link.peers()

        # another session: the first one undisturbed
        link.configure({LOOP: FAST, SILENT: FAST})
        await wait_for(lambda: len(link.peers()) == 2)
        await trio.sleep(0.3)
        mine = {p.peer: p for p in link.peers()}
        assert mine[SILENT.peer].state == "down"
        assert mine[LOOP.peer].state == "up" and mine[LOOP.peer].flaps == 0
        assert mine[LOOP.peer].local_discr == before.local_discr

        # a failure while a daemon is attached: its to act on, not the host's
        host._changed(failure(SILENT))
        await wait_for(lambda: told[-1] == failure(SILENT))
        assert link.failing == {SILENT.peer}
        await trio.sleep(0.3)
        assert relay.commands == [] and host.held == {SILENT.peer}

        # the daemon goes; BFD Up, then down again meanwhile: the host
        # releases and then tears the BGP session down itself
        link_scope.cancel()
        await wait_for(lambda: not host.attached)
        host._changed(StateChange(SILENT, State.DOWN, State.UP, Diag.NONE, Diag.NONE, False,
                                  State.UP))  # fmt: skip
        await wait_for(lambda: [c.op for c in relay.commands] == ["release"])
        host._changed(failure(SILENT))
        await wait_for(lambda: len(relay.commands) == 2)
        torn = relay.commands[1]
        assert (torn.op, torn.peers, torn.code) == ("teardown", (SILENT.peer,), CEASE_BFD_DOWN)
        assert BFD_HOLD - 1 < torn.hold <= BFD_HOLD  # ExaBGP's hold ends with the bound
        assert host.held == {SILENT.peer}

        # a new daemon: told of the failure it missed (and of nothing twice)
        fresh = BfdLink(run_dir)
        fresh.configure({LOOP: FAST, SILENT: FAST})
        heard: list[StateChange] = []
        fresh.subscribe(heard.append)
        nursery.start_soon(fresh.run)
        await wait_for(lambda: fresh.synced)
        assert {(c.key, c.old, c.new) for c in heard} == {
            (LOOP, State.DOWN, State.UP),
            (SILENT, State.UP, State.DOWN),
        }
        assert fresh.failing == {SILENT.peer} and fresh.held_by_speaker == {SILENT.peer}
        await trio.sleep(1.5)  # a snapshot or two later: nothing again
        assert len(heard) == 2 and len(relay.commands) == 2

        # a session no longer asked for: gone from the view at once, then
        # ended (AdminDown) by the host
        fresh.configure({SILENT: FAST})
        assert [p.peer for p in fresh.peers()] == [SILENT.peer]
        await wait_for(lambda: heard[-1].key == LOOP and heard[-1].new is State.ADMIN_DOWN)
        assert [p.peer for p in service.peers()] == [SILENT.peer]
        nursery.cancel_scope.cancel()


async def test_alone_the_host_holds_a_failure_down_for_a_bounded_time(tmp_path: Path) -> None:
    """A failure whose BFD never comes Up again (a peer that starts BFD only
    with BGP: FRR's dynamic neighbours) is released after the bound; a
    daemon that attaches then is not told of it; BFD Up, then Down again,
    tears the session down again."""
    run_dir = tmp_path / "bgp"
    service = BfdService(
        rng=random.Random(5), single_hop_port=free_udp_port(), multihop_port=free_udp_port()
    )
    host = BfdHost(run_dir, service=service, poll=0.05, hold=1.5)
    relay = FakeRelay(run_dir)
    async with trio.open_nursery() as nursery:
        await nursery.start(relay.run)
        await nursery.start(host.run)
        start = trio.current_time()
        host._changed(failure(SILENT))
        await wait_for(lambda: [c.op for c in relay.commands] == ["teardown"])
        assert 1.0 < relay.commands[0].hold <= 1.5  # ExaBGP's hold: no longer than the bound
        assert host.held == {SILENT.peer}

        # BFD still down at the bound: released
        await wait_for(lambda: [c.op for c in relay.commands] == ["teardown", "release"])
        took = trio.current_time() - start
        assert 1.5 <= took < 3.0, took
        # the relay has the command before the host its answer: then no longer held
        await wait_for(lambda: not host.held)
        assert host.failed == {}

        # a daemon attaching now holds nothing down
        link = BfdLink(run_dir)
        link.configure({SILENT: FAST})
        heard: list[StateChange] = []
        link.subscribe(heard.append)
        link_scope = trio.CancelScope()

        async def attach() -> None:
            with link_scope:
                await link.run()

        nursery.start_soon(attach)
        await wait_for(lambda: link.synced)
        assert link.failing == set() and link.held_by_speaker == set()
        assert not any(c.failed for c in heard)
        link_scope.cancel()
        await wait_for(lambda: not host.attached)

        # BFD Up (BGP back, the peer's BFD with it), then Down: torn down again
        host._changed(StateChange(SILENT, State.DOWN, State.UP, Diag.NONE, Diag.NONE, False,
                                  State.UP))  # fmt: skip
        await trio.sleep(0.3)
        host._changed(failure(SILENT))
        await wait_for(lambda: [c.op for c in relay.commands][2:] == ["teardown"])
        assert host.held == {SILENT.peer}
        nursery.cancel_scope.cancel()
