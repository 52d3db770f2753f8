"""The start-up timeline: milestones once each, in order, from the process's
own start as the kernel counts it; its log line and its cnictl table."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cnid.core import MILESTONES, Readiness, Startup, boot_clock, process_start
from cnid.ctl import render


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_process_start_counts_fields_after_the_command_name() -> None:
    # The command name may hold spaces and parentheses: "(a) (b)".
    fields = [str(i) for i in range(3, 53)]
    fields[22 - 3] = "12345"
    stat = "4242 ((a) (b) c) " + " ".join(fields)
    assert process_start(stat, ticks=100) == pytest.approx(123.45)


def test_process_start_of_a_fresh_interpreter_is_before_its_first_line() -> None:
    """Read in a child: the time from the kernel's start of the process to
    its first statement covers the interpreter's start (10 ms ticks)."""
    code = (
        "from cnid.core._startup import boot_clock, process_start\n"
        "print(boot_clock() - process_start())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    age = float(out)
    assert 0.0 < age < 30.0
    assert process_start() <= boot_clock()


def test_milestones_are_relative_to_the_start_and_kept_in_the_order_reached() -> None:
    clock = FakeClock(100.0)
    s = Startup(started=99.5, clock=clock)
    assert s.mark("main")
    clock.now = 100.25
    assert s.mark("config")
    clock.now = 101.0
    assert s.mark("cni-socket")
    clock.now = 100.5  # never goes back in practice; the order is by time
    assert s.mark("underlay")
    assert s.timeline() == {"main": 0.5, "config": 0.75, "underlay": 1.0, "cni-socket": 1.5}
    assert list(s.timeline()) == ["main", "config", "underlay", "cni-socket"]
    assert s.at("config") == 0.75
    assert s.at("ready") is None


def test_each_milestone_is_recorded_once() -> None:
    clock = FakeClock(10.0)
    s = Startup(started=9.0, clock=clock)
    assert s.mark("first-session") is True
    clock.now = 20.0
    assert s.mark("first-session") is False
    assert s.at("first-session") == 1.0


def test_a_mark_before_the_start_is_zero() -> None:
    s = Startup(started=10.0, clock=FakeClock(9.999))
    s.mark("main")
    assert s.at("main") == 0.0


def test_phases_and_the_ready_line() -> None:
    clock = FakeClock(0.0)
    s = Startup(started=0.0, clock=clock)
    for name, t in [("main", 0.31), ("config", 0.33), ("underlay", 0.40), ("cni-socket", 0.84)]:
        clock.now = t
        s.mark(name)
    s.mark("ready")  # the same instant as cni-socket: no phase of its own
    clock.now = 2.0
    s.mark("first-session")
    phases = s.phases("ready")
    assert [name for name, _ in phases] == ["main", "config", "underlay", "cni-socket", "ready"]
    assert phases[1][1] == pytest.approx(0.02)
    assert s.summary("ready") == (
        "ready in 0.84 s: imports 0.31, config 0.02, underlay 0.07, cni-socket 0.44"
    )
    clock.now = 3.0
    s.mark("late")
    assert s.summary("late").endswith("first-session 1.16, late 1.00")
    assert s.summary("nope").startswith("nope not reached")


def test_without_proc_the_start_is_the_recorders_creation(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable() -> float:
        raise OSError(2, "no /proc")

    monkeypatch.setattr("cnid.core._startup.process_start", unreadable)
    s = Startup(clock=FakeClock(50.0))
    assert s.started == 50.0


def test_milestone_names_are_unique() -> None:
    assert len(set(MILESTONES)) == len(MILESTONES)
    assert MILESTONES[0] == "main"


def test_readiness_calls_back_once_when_first_ready() -> None:
    calls: list[bool] = []
    r = Readiness(on_ready=lambda: calls.append(r.ready))
    r.expect("a")
    r.expect("b")
    r.set_ready("a")
    assert calls == []
    r.set_ready("b")
    assert calls == [True]
    r.set_not_ready("a", "gone")
    r.set_ready("a")
    assert calls == [True]


STATUS = {
    "node": "n1",
    "version": "0.1.0",
    "ready": False,
    "uptime_seconds": 1.0,
    "pods": 0,
    "components": {"cni-socket": "ready"},
    "domains": [],
}


def test_cnictl_status_table_shows_the_timeline() -> None:
    text = render("status", {**STATUS, "startup": {"main": 0.31, "config": 0.335}})
    lines = text.splitlines()
    start = lines.index("startup (seconds since the process started, phase):")
    assert lines[start + 1].split() == ["main", "0.310", "+0.310"]
    assert lines[start + 2].split() == ["config", "0.335", "+0.025"]


def test_cnictl_status_table_of_a_daemon_without_a_timeline() -> None:
    assert "startup" not in render("status", STATUS)
