"""``apply_evpn``'s worker process (cnid/dataplane/_evpn_worker.py) on the
real kernel: a worker that dies between batches is replaced, one that dies
in a batch fails that batch only, and a worker never outlives its daemon."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from cnid import dataplane as dp
from cnid.core import KernelError
from cnid.dataplane import _evpn, bridge_alias, vxlan_alias
from testbed.netns import Netns, netns

EMPTY = dp.KernelEvpn()
VNI, TABLE = 100, 50
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def node() -> Iterator[Netns]:
    """A node namespace with br-100 / vx-100, the dataplane's node side in it."""
    with netns("evwk") as ns:
        ns.ip("link", "add", f"br-{VNI}", "type", "bridge")
        ns.ip(
            "link", "add", f"vx-{VNI}", "type", "vxlan", "id", str(VNI),
            "local", "192.0.2.1", "dstport", "4789", "nolearning",
        )  # fmt: skip
        ns.ip("link", "set", f"vx-{VNI}", "master", f"br-{VNI}")
        ns.ip("link", "set", f"br-{VNI}", "alias", bridge_alias(VNI), "up")
        ns.ip("link", "set", f"vx-{VNI}", "alias", vxlan_alias(VNI), "up")
        dp.set_node_netns(ns.fd)
        try:
            yield ns
        finally:
            dp.set_node_netns(None)


def routes(*third: int) -> dp.KernelEvpn:
    return dp.KernelEvpn(
        routes=frozenset(dp.EvpnRoute(TABLE, f"10.8.{i}.0/24", "192.0.2.2", VNI) for i in third)
    )


async def installed() -> frozenset[dp.EvpnRoute]:
    return (await dp.dump_evpn([VNI], [TABLE])).routes


def gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process ``pid`` ended (or is a zombie) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


async def test_a_worker_killed_between_batches_is_replaced(node: Netns) -> None:
    assert (await dp.apply_evpn(routes(1), EMPTY)).failed == ()
    first = _evpn.WORKER.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert gone(first)
    result = await dp.apply_evpn(routes(2), EMPTY)
    assert result.failed == () and result.applied == 1
    assert _evpn.WORKER.pid not in (None, first)
    assert await installed() == routes(1, 2).routes


async def test_a_worker_dying_in_a_batch_fails_that_batch_only(node: Netns) -> None:
    assert (await dp.apply_evpn(routes(1), EMPTY)).failed == ()
    pid = _evpn.WORKER.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # it takes the batch but never answers
    failure: list[KernelError] = []

    async def apply() -> None:
        try:
            await dp.apply_evpn(routes(2), EMPTY)
        except KernelError as exc:
            failure.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(apply)
        await trio.sleep(0.5)
        assert not failure  # still waiting for the stopped worker
        os.kill(pid, signal.SIGKILL)
    assert len(failure) == 1 and "worker failed" in failure[0].msg
    assert await installed() == routes(1).routes  # the stopped worker did nothing
    assert (await dp.apply_evpn(routes(2), EMPTY)).failed == ()
    assert await installed() == routes(1, 2).routes


def test_the_worker_ends_with_its_daemon(node: Netns) -> None:
    """A daemon killed (no clean-up of its own) leaves no worker behind."""
    script = f"""
import os, signal, trio
from cnid import dataplane as dp
from cnid.dataplane import _evpn
routes = frozenset({{dp.EvpnRoute({TABLE}, "10.9.0.0/24", "192.0.2.2", {VNI})}})
result = trio.run(dp.apply_evpn, dp.KernelEvpn(routes=routes), dp.KernelEvpn())
print(_evpn.WORKER.pid, len(result.failed), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    daemon = subprocess.run(
        ["ip", "netns", "exec", node.name, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert daemon.returncode == -signal.SIGKILL, daemon.stderr
    pid, failed = (int(x) for x in daemon.stdout.split())
    assert failed == 0
    assert gone(pid), f"the worker {pid} outlived its daemon"
    assert "10.9.0.0/24" in node.ip("route", "show", "table", str(TABLE))


async def test_reading_the_state_starts_the_worker(node: Netns) -> None:
    """A node reads its EVPN state at start, then writes: the read starts
    the worker, so that the first batch does not wait for its imports."""
    _evpn.WORKER.close()
    assert _evpn.WORKER.pid is None
    assert await installed() == frozenset()
    pid = _evpn.WORKER.pid
    assert pid is not None
    assert (await dp.apply_evpn(routes(3), EMPTY)).failed == ()
    assert _evpn.WORKER.pid == pid
