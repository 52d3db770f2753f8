"""The daemon's start-up timeline: when each milestone was first reached,
in seconds since the process itself started (not since ``main``), so the
interpreter's start and the imports are the first phase.

The process's start is the kernel's: field 22 of ``/proc/self/stat``
(clock ticks since boot, ``SC_CLK_TCK`` a second, so 10 ms resolution),
read against ``CLOCK_BOOTTIME``, the clock it counts on. The kernel sets it
when the process is forked, so a daemon exec'd by ``ip netns exec`` counts
``ip``'s entry into the namespace too (a few milliseconds).

One recorder per daemon, passed down to the services that mark a
milestone (``mark`` is a dictionary insert: free to call on every pass).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

#: Every milestone, in the order a daemon normally reaches them.
MILESTONES = (
    "main",  # cnid.daemon._cli.main entered: interpreter and imports before it
    "config",  # server.ini loaded and checked
    "speaker",  # the speaker service started (its journal restored)
    "exabgp",  # attached to an ExaBGP process (a new one, or one that ran on)
    "exabgp-api",  # the attachment done: state learned, received routes replayed
    "underlay-routes",  # the routed underlay's controller started (VTEP routes adopted)
    "api",  # the Kubernetes watches synced (with an API)
    "underlay",
    "domains",
    "recovery",
    "host-integration",
    "cni-socket",
    "ready",  # readiness true for the first time
    "first-session",  # the first BGP session established
    "first-announcement",  # the first EVPN route acknowledged by ExaBGP
)

#: How the phase that ends at a milestone is called in the log line.
PHASE_NAMES = {"main": "imports"}

Clock = Callable[[], float]


def boot_clock() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def process_start(stat: str | None = None, ticks: int | None = None) -> float:
    """When this process started, in ``CLOCK_BOOTTIME`` seconds: field 22
    (``starttime``) of ``/proc/self/stat``. The second field, the command
    name in parentheses, may itself hold spaces and parentheses: the fields
    are counted after its last ``)``."""
    if stat is None:
        with open("/proc/self/stat") as f:
            stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    starttime = int(fields[22 - 3])  # the list begins with field 3
    return starttime / (ticks or os.sysconf("SC_CLK_TCK"))


class Startup:
    """Named milestones, each recorded once, relative to the process's start."""

    def __init__(self, *, started: float | None = None, clock: Clock = boot_clock) -> None:
        self.clock = clock
        if started is None:
            try:
                started = process_start()
            except (OSError, ValueError, IndexError):
                started = clock()  # no /proc: from the recorder's creation
        self.started = started
        self._marks: dict[str, float] = {}

    def mark(self, name: str) -> bool:
        """Record ``name`` now; True the first time, False (and nothing
        changed) after."""
        if name in self._marks:
            return False
        self._marks[name] = max(0.0, self.clock() - self.started)
        return True

    def at(self, name: str) -> float | None:
        """Seconds from the process's start to ``name`` (None: not reached)."""
        return self._marks.get(name)

    def timeline(self) -> dict[str, float]:
        """Every milestone reached so far, in the order reached, in seconds
        (millisecond precision)."""
        ordered = sorted(self._marks.items(), key=lambda kv: kv[1])
        return {name: round(t, 3) for name, t in ordered}

    def phases(self, until: str | None = None) -> list[tuple[str, float]]:
        """Each milestone with the time since the previous one (the first
        since the process's start), in the order reached, up to ``until``."""
        out = []
        previous = 0.0
        for name, t in sorted(self._marks.items(), key=lambda kv: kv[1]):
            out.append((name, t - previous))
            previous = t
            if name == until:
                break
        return out

    def summary(self, until: str) -> str:
        """``ready in 0.84 s: imports 0.31, config 0.02, ...``: the phase
        ending at ``until`` itself only when it took a measurable time."""
        total = self.at(until)
        phases = ", ".join(
            f"{PHASE_NAMES.get(name, name)} {seconds:.2f}"
            for name, seconds in self.phases(until)
            if name != until or seconds >= 0.005
        )
        head = f"{until} in {total:.2f} s" if total is not None else f"{until} not reached"
        return f"{head}: {phases}" if phases else head
