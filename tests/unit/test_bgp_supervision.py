"""The speaker's supervision of ExaBGP on trio's virtual clock: restarts
with backoff (1 s doubling to 30 s, from 1 s again after a run of more than
a minute, none when a restart was asked for), events to every subscriber,
and the announced paths counted by type. ExaBGP itself is a stand-in for
``_run_once``; tests/host/test_bgp_speaker.py runs the real one."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import trio
import trio.testing

from cnid.bgp import (
    EvpnPath,
    ImetRoute,
    MacIpRoute,
    Neighbor,
    PrefixRoute,
    Speaker,
    SpeakerConfig,
    SpeakerDown,
    SpeakerEvent,
    StateEvent,
)

ME, PEER = "192.168.77.11", "192.168.77.12"
CONFIG = SpeakerConfig(router_id=ME, local_address=ME, asn=65000, neighbors=(Neighbor(PEER),))


class FakeExabgp:
    """``Speaker._run_once``: each run lasts its planned time and ends with
    its planned outcome; the last one runs until cancelled."""

    def __init__(self, plan: list[tuple[float, str]]) -> None:
        self.plan = plan
        self.runs: list[tuple[float, float]] = []  # (start, end)

    async def __call__(self, config: SpeakerConfig) -> str:
        start = trio.current_time()
        duration, outcome = self.plan.pop(0) if self.plan else (math.inf, "")
        await trio.sleep(duration)
        self.runs.append((start, trio.current_time()))
        return outcome

    def waits(self) -> list[float]:
        """The time between each run's end and the next one's start."""
        return [round(b[0] - a[1], 3) for a, b in itertools.pairwise(self.runs)]


async def supervise(speaker: Speaker, exabgp: FakeExabgp, runs: int) -> None:
    speaker._run_once = exabgp  # type: ignore[method-assign]
    speaker.configure(CONFIG)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(speaker._supervise)
        while len(exabgp.runs) < runs:
            await trio.sleep(0.5)
        nursery.cancel_scope.cancel()


async def test_exabgp_is_restarted_with_backoff_from_1_s_again_after_a_stable_run(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    restarts: list[float] = []
    speaker = Speaker(run_dir=tmp_path, on_restart=lambda: restarts.append(trio.current_time()))
    crash = (0.0, "exited with status 1")
    exabgp = FakeExabgp([crash] * 7 + [(100.0, "exited with status 1"), crash])
    await supervise(speaker, exabgp, runs=9)
    assert exabgp.waits() == [1, 2, 4, 8, 16, 30, 30, 1]
    assert len(restarts) == 9 and speaker.stats.restarts == 9


async def test_a_restart_asked_for_starts_at_once_and_resets_the_backoff(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    speaker = Speaker(run_dir=tmp_path)
    crash = (0.0, "exited with status 1")
    exabgp = FakeExabgp([crash, crash, crash, (5.0, "restart"), crash, crash])
    await supervise(speaker, exabgp, runs=6)
    assert exabgp.waits() == [1, 2, 4, 0, 1]
    assert speaker.stats.restarts == 5  # the restart asked for is not counted


async def test_every_subscriber_hears_each_event(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    first: list[SpeakerEvent] = []
    second: list[SpeakerEvent] = []
    speaker = Speaker(run_dir=tmp_path, listener=first.append)
    speaker.subscribe(second.append)
    speaker.configure(CONFIG)
    speaker._event(StateEvent(PEER, "up"))
    await supervise(speaker, FakeExabgp([(0.0, "exited with status 1")]), runs=1)
    assert first == second == [StateEvent(PEER, "up"), SpeakerDown("exited with status 1")]
    # The speaker's record of the session, which the EVPN controller reads.
    assert speaker.peers[PEER].state == "idle" and speaker.peers[PEER].since > 0


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
