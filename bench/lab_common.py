"""What the lab benchmarks share: bringing the lab up quietly, percentiles,
Markdown tables, JSON reports under build/bench/, continuous pings."""

from __future__ import annotations

import itertools
import json
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from testbed.lab import DEFAULT_TOPOLOGY, ClusterLab, Progress
from testbed.labdemo import apply_demo
from testbed.node import REPO
from testbed.topology import load

OUT = REPO / "build" / "bench"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": round(pct(values, 50), 3),
        "p95": round(pct(values, 95), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(name: str, data: dict[str, Any]) -> Path:
    """build/bench/NAME.json, and the same on one line of standard output:
    in the VM tier the repository is an overlay that goes with the VM, and
    what the host keeps is what was printed (./just bench-lab keeps it in
    build/bench/lab.txt)."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True))
    print(f"bench-json {name} {json.dumps(data, sort_keys=True)}", flush=True)
    return path


def kernel() -> str:
    return Path("/proc/sys/kernel/osrelease").read_text().strip()


@contextmanager
def lab_up(
    name: str,
    *,
    mesh: bool = False,
    demo: bool = True,
    quiet: bool = True,
    topology: Path = DEFAULT_TOPOLOGY,
    bfdd: bool = False,
) -> Iterator[ClusterLab]:
    """The lab up (and the demo's tenants applied), down at the end;
    ``bfdd``: FRR's bfdd on every router (ClusterLab.bfdd)."""
    lab = ClusterLab(
        load(topology), name=name, mesh=mesh, progress=Progress(quiet=quiet), bfdd=bfdd
    )
    try:
        lab.up()
        if demo:
            apply_demo(lab)
        yield lab
    finally:
        lab.down()


class Pinger:
    """``ping -D`` from a namespace: every reply with its timestamp."""

    def __init__(self, ns: str, address: str, interval: float, deadline: int = 0) -> None:
        cmd = ["ip", "netns", "exec", ns, "ping", "-n", "-D", "-i", f"{interval:g}", "-W", "1"]
        if deadline:
            cmd += ["-w", str(deadline)]
        self.started = time.time()
        self.proc = subprocess.Popen(
            [*cmd, address], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )

    def first_reply(self, timeout: float) -> float | None:
        """The wall-clock time of the first reply (None: none within timeout)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            found = re.match(r"\[(\d+\.\d+)\] \d+ bytes from", line)
            if found:
                return float(found.group(1))
            if time.monotonic() > deadline:
                break
        return None

    def stop(self) -> tuple[int, int, list[float]]:
        """(sent, received, reply timestamps)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        replies = [float(m) for m in re.findall(r"\[(\d+\.\d+)\] \d+ bytes from", out)]
        found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        if not found:
            raise RuntimeError(f"ping: {out[-300:]}")
        return int(found.group(1)), int(found.group(2)), replies


def longest_gap(replies: list[float]) -> float:
    """The longest time between two replies: how long traffic stopped."""
    return max((b - a for a, b in itertools.pairwise(replies)), default=0.0)
