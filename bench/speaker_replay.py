"""What a daemon that attaches to a running speaker costs (host tier).

GoBGP sends N type-5 routes to a cnid node whose speaker is a process of its
own (``cnid speaker``, as the pod runs it); the node's daemon side (speaker
client + EVPN controller, ``testbed.evpn_node``) is then ended and started
afresh, as a killed daemon's replacement: how long the attach takes (the
``state`` answer and the ``replay`` of ExaBGP's adj-rib-in), and when the new
controller's route table holds the N routes again. ExaBGP's memory with the
N routes is measured with ``adj-rib-in`` on (what the replay needs) and off.

    python -m bench speaker_replay [--routes 10000]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

from testbed.domains import VRF42
from testbed.evpn_node import EvpnNode
from testbed.gobgp import GoBgp, GoBgpNeighbor, Prefix
from testbed.netlab import Lab

from .lab_common import table, write_report

ASN = 65000
NET = "192.168.87"
GB, NODE = f"{NET}.20", f"{NET}.11"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def routes(n: int) -> list[Prefix]:
    base = int(ipaddress.IPv4Address("10.128.0.0"))
    out = []
    for i in range(n):
        vtep = f"172.30.{16 + (i % 20)}.1"
        prefix = f"{ipaddress.IPv4Address(base + 64 * i)}/26"
        out.append(
            Prefix(prefix, 42, f"{vtep}:42", f"{ASN}:42", f"02:aa:00:00:00:{i % 20:02x}", vtep)
        )
    return out


async def until(what: str, probe: Any, timeout: float = 300.0) -> float:
    start = time.monotonic()
    while not probe():
        if time.monotonic() - start > timeout:
            raise TimeoutError(what)
        await trio.sleep(0.02)
    return time.monotonic() - start


async def one_run(n: int, adj_rib_in: bool) -> dict[str, Any]:
    lab = Lab(f"sp{os.getpid() % 100000}")
    workdir = Path(tempfile.mkdtemp(prefix="cnid-replay-"))
    node: EvpnNode | None = None
    try:
        lan = lab.lan("lan", f"{NET}.0/24")
        gb = lab.add(GoBgp("gb", lab.netns("gb", lan=lan, index=20), ASN, GB,
                           neighbors=[GoBgpNeighbor(NODE, ASN, passive=True)]))  # fmt: skip
        gb.start()
        node = EvpnNode("node", NODE, workdir / "node", [VRF42], lan, speaker_mode="external")
        config = node.reflectors(GB)
        node.speaker.configure(config)
        if not adj_rib_in:
            conf = node.speaker.config_path
            conf.write_text(conf.read_text().replace("adj-rib-in true;", "adj-rib-in false;"))
        node.start_speaker_process()
        out: dict[str, Any] = {"routes": n, "adj_rib_in": adj_rib_in}
        async with trio.open_nursery() as nursery:
            first = trio.CancelScope()

            async def daemon(scope: trio.CancelScope) -> None:
                with scope:
                    await node.run()  # type: ignore[union-attr]

            nursery.start_soon(daemon, first)
            await until("session", lambda: node.speaker.peers[GB].state == "up")  # type: ignore[union-attr]
            pid = node.speaker.stats.pid
            await trio.sleep(1.0)
            out["rss_idle_kib"] = rss_kib(pid)
            gb.inject(routes(n))
            out["received_s"] = await until(
                "received",
                lambda: node.evpn.table.counts()[5] >= n,  # type: ignore[union-attr]
            )
            await trio.sleep(2.0)
            out["rss_kib"] = rss_kib(pid)
            if adj_rib_in:
                first.cancel()
                await trio.sleep(0.5)
                node.new_controller()
                began = time.monotonic()
                await nursery.start(node.run)
                node.speaker.configure(config)
                await until("attached", lambda: node.speaker.running)  # type: ignore[union-attr]
                out["attach_s"] = time.monotonic() - began
                out["replayed"] = node.speaker.stats.replayed
                out["replay_s"] = node.speaker.stats.replay_seconds
                await until("re-learned", lambda: node.evpn.table.counts()[5] >= n)  # type: ignore[union-attr]
                out["table_again_s"] = time.monotonic() - began
                assert node.speaker.stats.pid == pid, "ExaBGP restarted"
            nursery.cancel_scope.cancel()
        return out
    finally:
        if node is not None:
            node.close()
            lan.unplug(node.ns.name)
        lab.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench speaker_replay", description=__doc__)
    parser.add_argument("--routes", type=int, default=10_000)
    args = parser.parse_args(argv)
    with_rib = trio.run(one_run, args.routes, True)
    without = trio.run(one_run, args.routes, False)
    per_route = (with_rib["rss_kib"] - without["rss_kib"]) * 1024 / args.routes
    rows = [
        ["ExaBGP RSS idle / with the routes, adj-rib-in on (KiB)",
         f"{with_rib['rss_idle_kib']} / {with_rib['rss_kib']}"],
        ["ExaBGP RSS idle / with the routes, adj-rib-in off (KiB)",
         f"{without['rss_idle_kib']} / {without['rss_kib']}"],
        ["adj-rib-in's cost per route (bytes)", f"{per_route:.0f}"],
        ["attach: state + replay (s)", f"{with_rib['attach_s']:.3f}"],
        ["replay alone (s), routes", f"{with_rib['replay_s']:.3f}, {with_rib['replayed']}"],
        ["the new controller's table complete after (s)", f"{with_rib['table_again_s']:.3f}"],
    ]  # fmt: skip
    print(table(["what", f"{args.routes} routes"], rows))
    write_report("speaker_replay", {"with": with_rib, "without": without, "per_route": per_route})
