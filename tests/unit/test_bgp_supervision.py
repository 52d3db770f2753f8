"""The speaker process's supervision of ExaBGP on trio's virtual clock:
restarts with backoff (1 s doubling to 30 s, from 1 s again after a run of
more than a minute, none when a restart was asked for), the files the
daemon writes for it, events to every subscriber, and the announced paths
counted by type. ExaBGP itself is a stand-in for ``Supervisor._run_once``;
tests/host/test_bgp_speaker.py runs the real one."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import msgspec
import trio
import trio.testing

from cnid.bgp import (
    AckEvent,
    Command,
    EvpnPath,
    ImetRoute,
    MacIpRoute,
    Neighbor,
    PrefixRoute,
    Speaker,
    SpeakerConfig,
    SpeakerDown,
    SpeakerEvent,
    SpeakerResync,
    SpeakerState,
    SpeakerUp,
    StateEvent,
    Supervisor,
    read_wanted,
)

ME, PEER = "192.168.77.11", "192.168.77.12"
CONFIG = SpeakerConfig(router_id=ME, local_address=ME, asn=65000, neighbors=(Neighbor(PEER),))


class FakeExabgp:
    """``Supervisor._run_once``: each run lasts its planned time and ends with
    its planned outcome; the last one runs until cancelled."""

    def __init__(self, plan: list[tuple[float, str]]) -> None:
        self.plan = plan
        self.runs: list[tuple[float, float]] = []  # (start, end)

    async def __call__(self, wanted: object) -> str:
        start = trio.current_time()
        duration, outcome = self.plan.pop(0) if self.plan else (math.inf, "")
        await trio.sleep(duration)
        self.runs.append((start, trio.current_time()))
        return outcome

    def waits(self) -> list[float]:
        """The time between each run's end and the next one's start."""
        return [round(b[0] - a[1], 3) for a, b in itertools.pairwise(self.runs)]


async def supervise(
    tmp_path: Path, exabgp: FakeExabgp, runs: int, on_exit: list[float] | None = None
) -> Supervisor:
    speaker = Speaker(run_dir=tmp_path)
    speaker.configure(CONFIG)  # the files the supervisor runs ExaBGP from
    supervisor = Supervisor(
        tmp_path,
        on_exit=(lambda reason: on_exit.append(trio.current_time()))
        if on_exit is not None
        else None,
    )
    supervisor._run_once = exabgp  # type: ignore[method-assign]
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run)
        while len(exabgp.runs) < runs:
            await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    return supervisor


async def test_exabgp_is_restarted_with_backoff_from_1_s_again_after_a_stable_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    exits: list[float] = []
    crash = (0.0, "exited with status 1")
    exabgp = FakeExabgp([crash] * 7 + [(100.0, "exited with status 1"), crash])
    supervisor = await supervise(tmp_path, exabgp, runs=9, on_exit=exits)
    assert exabgp.waits() == [1, 2, 4, 8, 16, 30, 30, 1]
    assert len(exits) == 9 and supervisor.restarts == 9


async def test_a_restart_asked_for_starts_at_once_and_resets_the_backoff(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    crash = (0.0, "exited with status 1")
    exabgp = FakeExabgp([crash, crash, crash, (5.0, "restart"), crash, crash])
    supervisor = await supervise(tmp_path, exabgp, runs=6)
    assert exabgp.waits() == [1, 2, 4, 0, 1]
    assert supervisor.restarts == 5  # the restart asked for is not counted


async def test_nothing_runs_without_neighbours_and_the_files_say_what_runs(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = Speaker(run_dir=tmp_path)
    speaker.configure(CONFIG)
    wanted = read_wanted(tmp_path)
    assert wanted is not None
    text, env = wanted
    assert f"neighbor {PEER}" in text and "adj-rib-in true;" in text
    assert env["exabgp.api.ack"] == "false"
    assert (tmp_path / "exabgp.conf").stat().st_mode & 0o777 == 0o600  # MD5 passwords
    speaker.configure(msgspec.structs.replace(CONFIG, neighbors=()))
    assert read_wanted(tmp_path) is None
    supervisor = Supervisor(tmp_path)
    exabgp = FakeExabgp([])
    supervisor._run_once = exabgp  # type: ignore[method-assign]
    with trio.move_on_after(10):
        await supervisor.run()
    assert exabgp.runs == [] and supervisor.pid == 0


async def test_every_subscriber_hears_each_event_and_a_new_pid_is_a_restart(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    first: list[SpeakerEvent] = []
    second: list[SpeakerEvent] = []
    speaker = Speaker(run_dir=tmp_path, listener=first.append)
    speaker.subscribe(second.append)
    speaker.configure(CONFIG)
    speaker._event(StateEvent(PEER, "up"))
    speaker.stats.pid = 41  # attached to ExaBGP 41 before
    speaker._stopped("restarted (pid 41 -> 42)")
    assert first == second == [StateEvent(PEER, "up"), SpeakerDown("restarted (pid 41 -> 42)")]
    # The speaker's record of the session, which the EVPN controller reads.
    assert speaker.peers[PEER].state == "idle" and speaker.peers[PEER].since > 0
    assert speaker.stats.restarts == 1


def test_the_announced_paths_are_counted_by_type(tmp_path: Path) -> None:
    speaker = Speaker(run_dir=tmp_path)
    assert speaker.announced_by_type() == {2: 0, 3: 0, 5: 0}
    paths = frozenset(
        {
            EvpnPath(ImetRoute(rd=f"{ME}:300", ip=ME, vni=300), ME),
            EvpnPath(MacIpRoute(rd=f"{ME}:300", mac="0a:00:00:00:00:03", ip="", vni=300), ME),
            EvpnPath(MacIpRoute(rd=f"{ME}:300", mac="0a:00:00:00:00:04", ip="", vni=300), ME),
            EvpnPath(PrefixRoute(rd=f"{ME}:42", prefix="10.244.0.0/26", vni=42), ME),
        }
    )
    speaker.announce(paths)
    assert speaker.announced_by_type() == {2: 2, 3: 1, 5: 1}
    speaker.announced_by_type()[2] = 99  # a copy: the caller cannot change the count
    speaker.announce(frozenset(p for p in paths if not isinstance(p.route, MacIpRoute)))
    assert speaker.announced_by_type() == {2: 0, 3: 1, 5: 1}


def test_the_next_start_restores_the_neighbours_and_paths_from_the_journal(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "state" / "bgp.json"
    journal.parent.mkdir()
    paths = frozenset({EvpnPath(ImetRoute(rd=f"{ME}:300", ip=ME, vni=300), ME)})
    before = Speaker(run_dir=tmp_path / "run1", journal=journal)
    before.configure(CONFIG)
    before.announce(paths)
    assert journal.stat().st_mode & 0o777 == 0o600  # it may hold an MD5 password
    after = Speaker(run_dir=tmp_path / "run2", journal=journal)
    assert after.restore() == 1
    assert after.config == CONFIG and after.announced == paths
    assert read_wanted(tmp_path / "run2") is not None  # ExaBGP can start at once
    journal.write_text("{not json")
    assert Speaker(run_dir=tmp_path / "run3", journal=journal).restore() == 0


def test_every_listener_of_the_start_hears_the_events_since_the_start(tmp_path: Path) -> None:
    """The daemon attaches (and the replay arrives) while its controllers are
    made one after the other: the underlay's, subscribing after the EVPN
    controller's, missed the replay's unicast End-of-RIB and stayed adopting."""
    speaker = Speaker(run_dir=tmp_path)
    speaker.configure(CONFIG)
    speaker._event(StateEvent(PEER, "up"))
    heard: list[SpeakerEvent] = []
    later: list[SpeakerEvent] = []
    speaker.subscribe(heard.append)
    speaker._event(StateEvent(PEER, "down"))
    speaker.subscribe(later.append)
    assert heard == later == [StateEvent(PEER, "up"), StateEvent(PEER, "down")]
    speaker.subscribed()  # the start's listeners are all there: nothing more kept
    speaker._event(StateEvent(PEER, "up"))
    last: list[SpeakerEvent] = []
    speaker.subscribe(last.append)
    assert last == [] and heard == later and len(heard) == 3


class FakeConn:
    """The daemon's end of the API connection, answering ``state`` with the
    ExaBGP it stands for and ``replay`` with nothing."""

    def __init__(
        self,
        pid: int,
        established: tuple[tuple[str, float], ...],
        paths: tuple[EvpnPath, ...],
        restart_times: tuple[tuple[str, int], ...] = (),
    ) -> None:
        self.state = SpeakerState(pid, 1000.0, established, paths, restart_times)
        self.ops: list[str] = []

    def next_id(self) -> int:
        return len(self.ops) + 1

    async def call(self, command: Command) -> AckEvent:
        self.ops.append(command.op)
        state = self.state if command.op == "state" else None
        return AckEvent(command.id, True, 0, (), state)


async def test_attaching_learns_what_exabgp_holds_and_tells_a_restart_from_a_lost_connection(
    tmp_path: Path,
) -> None:
    heard: list[SpeakerEvent] = []
    held = (EvpnPath(ImetRoute(rd=f"{ME}:300", ip=ME, vni=300), ME),)
    speaker = Speaker(run_dir=tmp_path, listener=heard.append, mode="external")
    speaker.configure(CONFIG)
    conn = FakeConn(41, ((PEER, 900.0),), held)
    await speaker._attach(conn)  # type: ignore[arg-type]
    assert conn.ops == ["state", "replay"]
    assert heard == [SpeakerUp(41), StateEvent(PEER, "up")]
    assert speaker.peers[PEER].state == "up" and speaker.peers[PEER].since == 900.0
    assert speaker._held == set(held) and speaker._to_refresh == {PEER}
    assert speaker.stats.restarts == 0 and speaker.running
    # the same ExaBGP again (the connection was lost): what was received is re-learned
    heard.clear()
    await speaker._attach(FakeConn(41, ((PEER, 900.0),), held))  # type: ignore[arg-type]
    assert isinstance(heard[0], SpeakerResync) and speaker.stats.restarts == 0
    # another ExaBGP: every session ended with the old one, it holds nothing
    heard.clear()
    await speaker._attach(FakeConn(42, (), ()))  # type: ignore[arg-type]
    assert isinstance(heard[0], SpeakerDown) and heard[1] == SpeakerUp(42)
    assert speaker.stats.restarts == 1 and speaker._held == set()
    assert speaker.peers[PEER].state == "idle"


async def test_each_peers_advertised_restart_time_is_learned_and_outlives_its_session(
    tmp_path: Path,
) -> None:
    """At attach, and for each session that comes up (ExaBGP's session
    event carries no OPEN): the EVPN controller keeps a peer's routes that
    long once its session ends."""
    speaker = Speaker(run_dir=tmp_path, mode="external")
    speaker.configure(CONFIG)
    conn = FakeConn(41, ((PEER, 900.0),), (), ((PEER, 120),))
    await speaker._attach(conn)  # type: ignore[arg-type]
    assert speaker.peers[PEER].restart_time == 120
    speaker._event(StateEvent(PEER, "down"))
    assert speaker.peers[PEER].restart_time == 120  # what it advertised, for its restart
    speaker._event(StateEvent(PEER, "up"))  # back, with another OPEN
    conn.state = SpeakerState(41, 1000.0, ((PEER, 950.0),), (), ((PEER, 90),))
    conn.ops.clear()
    await speaker._sync(conn, frozenset())  # type: ignore[arg-type]
    assert conn.ops == ["eor", "state"]  # the End-of-RIB not delayed for it
    assert speaker.peers[PEER].restart_time == 90
