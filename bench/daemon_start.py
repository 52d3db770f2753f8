"""Where a daemon's start goes, phase by phase: the daemon's own start-up
timeline (``cnictl status``: each milestone in seconds since the kernel
started the process), against interpreter starts measured in the same run.

    python -m bench daemon_start [--runs 5]                (host: no VRF)
    python -m testbed.vm -- .venv/bin/python -m bench daemon_start   (VM tier)

Method. Each run creates a fresh node namespace and its fabric namespace
(``testbed.node.CnidNode``: eth0 with an address, a default route), writes
a standalone server.ini (no Kubernetes API; ``[bgp] peers`` names the
fabric side's address, so ExaBGP starts; nothing answers there and no
session comes up), starts ``cnid run`` the way a runtime would (fork, one
setns(2) into the node namespace, exec: no ``ip netns exec``), and reads
the timeline over the control socket every 0.1 s until it holds
``cni-socket`` and ``exabgp-api`` (and ``ready`` where the kernel has a
VRF device: there the node becomes ready; on this host it never does).
The polling does not move the milestones: the daemon timestamps them
itself. Then SIGTERM, and the namespaces go. First the repository is
byte-compiled (with PYTHONDONTWRITEBYTECODE set, a module edited since its
last compilation would be compiled again at every start) and one warm-up
run (a cold page cache) is not counted. Between runs, the references, each a median of
as many runs: ``python -I -S -c pass`` (a bare interpreter),
``python -c pass`` (with the venv's site), ``python -c "import
cnid.daemon"`` (the daemon's imports), wall time of the whole process.

Reported: the median over the runs of each milestone's time since the
process started and of each phase (the time since the previous milestone
reached, in the order reached), and the median start to ``cni-socket``
(and ``ready``) as a multiple of a bare interpreter's start.

Writes bench/results/daemon_start_host.json, or ..._vm.json where the
kernel has a VRF device; the JSON is also printed on one line
(``bench-json daemon_start ...``): in the VM tier the repository is an
overlay that goes with the VM, and what the host keeps is what was printed.
Numbers of one run on a shared machine: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnid.core import MILESTONES, CnidError
from cnid.ctl import query as ctl_query
from testbed.node import REPO, VENV_BIN, CnidNode

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000
#: What a standalone node reaches without a VRF device (and with one).
UP_TO_SOCKET = MILESTONES[: MILESTONES.index("cni-socket") + 1]
REPORTED = [m for m in MILESTONES if m not in ("api", "first-session", "first-announcement")]
REFERENCES = {
    "python -I -S -c pass": [str(VENV_BIN / "python"), "-I", "-S", "-c", "pass"],
    "python -c pass": [str(VENV_BIN / "python"), "-c", "pass"],
    "python -c 'import cnid.daemon'": [
        str(VENV_BIN / "python"),
        "-c",
        "import cnid.daemon",
    ],
}
BARE = "python -I -S -c pass"


def _enter_netns(path: str) -> Callable[[], None]:
    """A preexec_fn: the child joins the node's network namespace."""

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        os.close(fd)

    return enter


def _status(node: CnidNode) -> dict[str, Any] | None:
    try:
        response = ctl_query(node.ctl_socket, "status", {}, timeout=5.0)
    except (OSError, CnidError):
        return None
    return response.data if response.ok and isinstance(response.data, dict) else None


def one_run(name: str, wait: float) -> dict[str, float]:
    """The daemon's timeline, from its start until it reached what it can."""
    node = CnidNode(name=name, ini_extra="[bgp]\npeers = 192.168.77.1\n").create()
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(node.log_path, "ab") as log:
            proc = subprocess.Popen(
                [str(VENV_BIN / "cnid"), "run", "--config", str(node.workdir / "server.ini")],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_enter_netns(f"/run/netns/{node.netns}"),
                cwd=str(REPO),
            )
        deadline = time.monotonic() + wait
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"cnid exited with {proc.returncode}:\n{node.log_tail()}")
            status = _status(node)
            if status is not None:
                timeline: dict[str, float] = status.get("startup", {})
                # At the CNI socket the domains had their first attempt:
                # ready then means the kernel has VRFs and the node will be.
                vrf = status["components"].get("domains") == "ready"
                wanted = ["cni-socket", "exabgp-api", *(["ready"] if vrf else [])]
                if all(m in timeline for m in wanted):
                    return timeline
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: timeline {status and status.get('startup')}")
            time.sleep(0.1)
    finally:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        node.stop()


def time_process(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, cwd=str(REPO), stdin=subprocess.DEVNULL)
    return time.perf_counter() - start


def phases_of(timeline: dict[str, float]) -> dict[str, float]:
    """Each milestone's phase: the time since the one reached before it."""
    out, previous = {}, 0.0
    for name, at in sorted(timeline.items(), key=lambda kv: kv[1]):
        out[name] = at - previous
        previous = at
    return out


def median_of(rows: list[dict[str, float]], key: str) -> float | None:
    values = [r[key] for r in rows if key in r]
    return round(statistics.median(values), 4) if values else None


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench daemon_start")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--wait", type=float, default=0.0, help="per run (default 60 s, VM 600)")
    parser.add_argument("--out", default="", help="default bench/results/daemon_start_<where>.json")
    args = parser.parse_args()
    vrf = Path("/sys/module/vrf").exists()
    where = "vm" if vrf else "host"
    wait = args.wait or (600.0 if vrf else 60.0)
    tag = os.getpid()
    print(f"daemon_start: {args.runs} runs ({where}, kernel {os.uname().release})", flush=True)
    subprocess.run(
        [str(VENV_BIN / "python"), "-m", "compileall", "-q", str(REPO / "cnid")],
        stdout=subprocess.DEVNULL,
        check=False,
    )
    one_run(f"dsw{tag}", wait)  # warm-up: not counted
    runs: list[dict[str, float]] = []
    refs: dict[str, list[float]] = {label: [] for label in REFERENCES}
    for i in range(args.runs):
        for label, argv in REFERENCES.items():
            refs[label].append(time_process(argv))
        timeline = one_run(f"ds{tag}-{i}", wait)
        runs.append(timeline)
        print(f"  run {i + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in timeline.items()))
    phases = [phases_of(t) for t in runs]
    at = {m: median_of(runs, m) for m in REPORTED}
    phase = {m: median_of(phases, m) for m in REPORTED}
    reference = {label: round(statistics.median(v), 4) for label, v in refs.items()}
    bare = reference[BARE]
    ratios = {
        f"start to {m} / bare interpreter": round(t / bare, 1)
        for m in ("main", "cni-socket", "ready", "exabgp-api")
        if (t := at[m]) is not None
    }
    print()
    print("| milestone | median s since start | median phase s | x bare interpreter |")
    print("| --- | --- | --- | --- |")
    for m in REPORTED:
        if at[m] is not None:
            print(f"| {m} | {at[m]:.3f} | {phase[m]:.3f} | {at[m] / bare:.1f} |")
    print()
    print("| reference (whole process, wall time) | median s |")
    print("| --- | --- |")
    for label, seconds in reference.items():
        print(f"| `{label}` | {seconds:.4f} |")
    print()
    for what, ratio in ratios.items():
        print(f"{what} = {ratio}x")
    report = {
        "where": where,
        "kernel": os.uname().release,
        "runs": runs,
        "median_at": at,
        "median_phase": phase,
        "reference": reference,
        "reference_runs": refs,
        "ratios": ratios,
        "loadavg_after": os.getloadavg(),
    }
    out = Path(args.out or f"bench/results/daemon_start_{where}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"bench-json daemon_start {json.dumps(report, sort_keys=True)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
