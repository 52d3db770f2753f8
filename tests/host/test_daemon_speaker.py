"""A real daemon process and its speaker process, as the pod runs them (two
containers sharing the speaker's directory), with GoBGP as the peer in the
fabric namespace:

    node  cdsp<pid>      192.168.77.2  cnid daemon + cnid speaker (ExaBGP)
    fabric cdsp<pid>-fab 192.168.77.1  GoBGP (graceful restart helper)

SIGKILL to the daemon, then a new daemon: the BGP session never goes down
(GoBGP's uptime unchanged), the new daemon attaches to the same ExaBGP.
SIGKILL to the speaker: ExaBGP ends with it (parent-death signal), the
session too; a new speaker starts (the container restarted) and the daemon
re-attaches to the new ExaBGP.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnid.bgp import running_pid
from testbed.gobgp import GoBgp, GoBgpNeighbor
from testbed.jsoncmp import wait_for
from testbed.node import CnidNode, node_beside

NODE, PEER = "192.168.77.2", "192.168.77.1"


@pytest.fixture
def node(cnid_plugin: Path) -> Iterator[tuple[CnidNode, GoBgp]]:
    n = CnidNode(name=f"cdsp{os.getpid()}", ini_extra=f"[bgp]\npeers = {PEER}\nhold_time = 9\n")
    helper = GoBgpNeighbor(NODE, 65000, passive=True, graceful_restart=True)
    with node_beside(n, GoBgp("gb", n.fabric, 65000, PEER, neighbors=[helper])) as both:
        yield both


def session(gb: GoBgp) -> tuple[Any, Any]:
    peer = next(p for p in gb.neighbor_json() if p["conf"]["neighbor_address"] == NODE)
    return peer["state"].get("session_state"), peer.get("timers", {}).get("state", {}).get("uptime")


def bgp_view(n: CnidNode) -> dict[str, Any]:
    out = n.cnictl("--json", "bgp", "summary")
    if out.returncode != 0:
        return {}
    import json

    data = json.loads(out.stdout)
    return {
        "peers": {p["address"]: p["state"] for p in data.get("peers", [])},
        "pid": data.get("speaker", {}).get("pid"),
    }


def view_up(n: CnidNode, what: str) -> None:
    try:
        wait_for(what, lambda: bgp_view(n).get("peers"), {PEER: "established"}, 60)
    except AssertionError as exc:
        speaker_log = (n.workdir / "speaker.log").read_text()[-3000:]
        raise AssertionError(f"{exc}\n{n.log_tail(60)}\n--- speaker:\n{speaker_log}") from None


def test_a_killed_daemon_leaves_the_session_up_and_the_next_one_attaches(
    node: tuple[CnidNode, GoBgp],
) -> None:
    n, gb = node
    n.start_unready()
    wait_for("GoBGP's session", gb.peers, {NODE: "established"}, 60)
    view_up(n, "the daemon's view")
    exabgp = bgp_view(n)["pid"]
    speaker = running_pid(n.speaker_dir)
    assert exabgp and speaker == n.speaker_pid
    before = session(gb)
    time.sleep(1.5)  # GoBGP's uptime has a resolution of a second

    n.kill(signal.SIGKILL)
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # no daemon: the session stays
        assert session(gb) == before
        time.sleep(0.2)
    n.start_unready()
    view_up(n, "the new daemon's view")
    assert bgp_view(n)["pid"] == exabgp  # the same ExaBGP
    assert session(gb) == before, "the session went down"
    assert running_pid(n.speaker_dir) == speaker
    assert "attached to ExaBGP" in n.log_tail(400)


def test_a_killed_speaker_is_a_new_exabgp_and_the_daemon_reattaches(
    node: tuple[CnidNode, GoBgp],
) -> None:
    n, gb = node
    n.start_unready()
    view_up(n, "the daemon's view")
    exabgp = bgp_view(n)["pid"]
    before = session(gb)
    n.kill_speaker(signal.SIGKILL)  # the speaker's container dies: ExaBGP goes with it
    wait_for("ExaBGP's end", lambda: os.path.exists(f"/proc/{exabgp}"), False, 10)
    n.start_speaker()
    wait_for("GoBGP's new session", gb.peers, {NODE: "established"}, 60)
    view_up(n, "the daemon re-attached")
    assert bgp_view(n)["pid"] not in (None, exabgp)
    assert session(gb) != before


async def test_a_detached_speaker_is_started_once_and_left_running(tmp_path: Path) -> None:
    """Standalone (``[bgp] speaker = detached``): the daemon starts ``cnid
    speaker --detach`` when none runs for its directory, and leaves it
    running when it ends; the next daemon attaches to it. The neighbour is
    on loopback (nothing leaves the machine); the test kills the speaker."""
    import trio

    from cnid.bgp import Neighbor, Speaker, SpeakerConfig

    config = SpeakerConfig(
        router_id="127.0.0.1",
        local_address="127.0.0.1",
        asn=65000,
        neighbors=(Neighbor("127.0.0.2"),),
        port=17900 + os.getpid() % 1000,
    )
    run_dir = tmp_path / "bgp"
    pids: list[int] = []
    try:
        for _ in range(2):
            speaker = Speaker(run_dir=run_dir, mode="detached")
            speaker.configure(config)
            async with trio.open_nursery() as nursery:
                await nursery.start(speaker.run)
                with trio.fail_after(60):
                    while not speaker.running:
                        await trio.sleep(0.1)
                nursery.cancel_scope.cancel()
            pids.append(running_pid(run_dir))
            assert pids[-1] > 0 and os.path.exists(f"/proc/{pids[-1]}")  # left running
        assert pids[0] == pids[1]  # started once
        assert speaker.stats.attaches == 1
    finally:
        pid = running_pid(run_dir)
        if pid > 0:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not os.path.exists(f"/proc/{pid}")
