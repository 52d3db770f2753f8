"""A real daemon's start-up timeline, read with ``cnictl status``. On this
host the kernel has no VRF device, so the node never becomes ready: the
milestones up to the CNI socket are there, in order; with a BGP peer (that
never answers) the speaker process runs ExaBGP and the daemon attaches."""

from __future__ import annotations

import os
import time
from pathlib import Path

from cnid.core import MILESTONES
from testbed.node import CnidNode

UP_TO_CNI_SOCKET = [
    "main",
    "config",
    "speaker",
    "underlay",
    "domains",
    "recovery",
    "host-integration",
    "cni-socket",
]


def test_timeline_up_to_the_cni_socket(cnid_plugin: Path) -> None:
    n = CnidNode(name=f"cnids-{os.getpid()}", ini_extra="[bgp]\npeers = 192.168.77.1\n").create()
    try:
        n.start_unready()
        deadline = time.monotonic() + 60
        while True:
            status = n.status()
            assert status is not None
            timeline = status["startup"]
            if "exabgp-api" in timeline or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["ready"] is False
        reached = [m for m in timeline if m in UP_TO_CNI_SOCKET]
        assert reached == UP_TO_CNI_SOCKET, timeline
        times = list(timeline.values())
        assert times == sorted(times)
        assert all(m in MILESTONES for m in timeline)
        assert "api" not in timeline and "ready" not in timeline, timeline
        # the speaker first; then the daemon attaches to ExaBGP (the speaker
        # process runs it) and learns its state
        assert timeline["speaker"] <= timeline["exabgp"], timeline
        assert timeline["exabgp-api"] >= timeline["exabgp"], (timeline, n.log_tail())
        # measured from the process's start: the imports take some time
        assert 0 < timeline["main"] < timeline["cni-socket"] < 120
        table = n.cnictl("status").stdout
        assert "startup (seconds since the process started, phase):" in table
        assert "cni-socket" in table.split("startup")[1]
    finally:
        n.stop()
