"""One EVPN node in a process of its own, driven over its stdin/stdout: the
benchmarks' stand-in for a node daemon (``testbed.evpn_node.EvpnNode``: the
real Speaker with its ExaBGP child, the real EvpnController and dataplane,
in a namespace plugged into the benchmark's LAN).

    python -m bench._evpn_runner '<json spec>'     # see bench._evpn_lab.RunnerSpec

A process of its own so that its memory (VmRSS / VmHWM) is the node's alone,
and so that two nodes can run side by side (the dataplane's node namespace
is global to a process). One JSON command a line on stdin, one JSON answer a
line on stdout (``{"ok": true, ...}`` or ``{"ok": false, "error": ...}``);
the node's log goes to stderr. Times are ``time.monotonic()``, the same
clock in every process of the machine.

Commands (``op``):

* ``reflectors`` {addresses} / ``mesh`` {peers: {name: address}}: the
  speaker's neighbours (answered at once); ``wait_up``: until every session
  is up (answers when each came up, as ``time.time()``);
* ``status``: installed kernel entries by kind, paths in the route table,
  memory and CPU of the node process and of its ExaBGP (and relay) child;
* ``watch`` {installed, paths, timeout}: wait until the controller's
  installed state holds exactly ``installed`` entries (and the route table
  ``paths`` paths); answers when the first path arrived, when the table was
  complete, when the kernel was (polled every few milliseconds: two
  ``len()`` calls);
* ``add_pod`` {name, domain} / ``delete_pod`` {name} / ``release_domain``
  {vrf}: as ``EvpnNode``; answer with the times before and after;
* ``profile`` {on, path}: cProfile of the node's trio thread on / off
  (written to ``path`` as pstats);
* ``quit``.

Every ``apply_evpn`` call is timed (entries, seconds): ``status`` reports the
totals, so the kernel's share of a run is known without a profiler.
"""

from __future__ import annotations

import cProfile
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import trio

from cnid import dataplane
from cnid.bgp import Speaker, SpeakerConfig, UpdateEvent, mesh_neighbors
from cnid.core import Domain, VniAttachment, tune_gc
from cnid.dataplane import _evpn
from cnid.evpn import EvpnController, Identity
from testbed.evpn_node import ASN, EvpnNode
from testbed.netlab import Lan

from ._evpn_lab import children, proc_cpu, proc_status


def domains_of(spec: list[dict[str, Any]]) -> list[Domain]:
    out = []
    for d in spec:
        atts = tuple(VniAttachment(type=a["type"], vni=a["vni"]) for a in d["attachments"])
        out.append(
            Domain(
                name=d["name"],
                vrf=d["vrf"],
                table=d["table"],
                prefix=d["prefix"],
                prefixlen=d["prefixlen"],
                ipblocklen=d["ipblocklen"],
                attachments=atts,
            )
        )
    return out


class DaemonNode(EvpnNode):
    """``EvpnNode`` with the daemon's settings (cnid/daemon/_daemon.py): ExaBGP's
    log at WARNING, the controller's repair and local-state timers at their
    defaults (30 s), not the test bed's (INFO, 5 s)."""

    def new_controller(self) -> None:
        self.speaker = Speaker(
            run_dir=self.workdir / "bgp",
            launcher=("ip", "netns", "exec", self.ns.name),
            log_level="WARNING",
            bfd_sockets=self._udp_socket,  # the BFD sessions in the speaker, as the daemon's
        )
        self.bfd = self.speaker.bfd
        self.evpn = EvpnController(
            speaker=self.speaker,
            identity=Identity(self.address, ASN, self.address),
            registry=self.registry,
            journal=self.journal,
            pool=self.pool,
            node=self.name,
            metrics=self.metrics,
            stale_timeout=self.stale_timeout,
            bfd=self.bfd,
        )


class Counting:
    """A listener of the speaker's, counting what the node was sent."""

    def __init__(self) -> None:
        self.updates = self.announced = self.withdrawn = 0

    def __call__(self, event: Any) -> None:
        if isinstance(event, UpdateEvent):
            self.updates += 1
            self.announced += len(event.announced)
            self.withdrawn += len(event.withdrawn)


class Runner:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        lan = Lan(spec["lan_netns"], spec["lan_subnet"])
        # the LAN's ports p0..p<n-1> exist already (the parent's and other nodes')
        lan.ports = {f"p{i}": "taken" for i in range(spec["lan_port"])}
        self.domains = domains_of(spec["domains"])
        self.node = DaemonNode(
            spec["name"],
            spec["address"],
            Path(spec["workdir"]),
            self.domains,
            lan,
            hold_time=spec.get("hold_time", 9),
            stale_timeout=spec.get("stale_timeout", 60.0),
        )
        self.counting = Counting()
        self.node.speaker.subscribe(self.counting)
        #: Each apply_evpn call: entries added, removed, seconds, and when it
        #: started (time.monotonic()).
        self.applies: list[tuple[int, int, float, float]] = []
        self.profiler: cProfile.Profile | None = None
        self._wrap_apply()

    def _wrap_apply(self) -> None:
        real = dataplane.apply_evpn
        applies = self.applies

        async def timed(add: dataplane.KernelEvpn, remove: dataplane.KernelEvpn, *rest: Any) -> Any:
            start = time.perf_counter()
            began = time.monotonic()
            result = await real(add, remove, *rest)
            n_add = len(add.fdb) + len(add.neigh) + len(add.routes)
            n_remove = len(remove.fdb) + len(remove.neigh) + len(remove.routes)
            applies.append((n_add, n_remove, time.perf_counter() - start, began))
            return result

        # the controller calls dataplane.apply_evpn through the package
        dataplane.apply_evpn = timed  # type: ignore[assignment]

    def domain(self, name: str) -> Domain:
        return next(d for d in self.domains if d.name == name)

    def kinds(self) -> dict[str, int]:
        out = {"fdb": 0, "flood": 0, "neigh": 0, "route": 0}
        for key in self.node.evpn.installed:
            out[str(key[0])] += 1
        return out

    def memory(self) -> dict[str, Any]:
        exabgp = self.node.speaker.stats.pid
        procs = {"node": os.getpid()}
        if exabgp and proc_status(exabgp):
            procs["exabgp"] = exabgp
            for i, child in enumerate(children(exabgp)):
                procs[f"relay{i or ''}"] = child
        worker = _evpn.WORKER.pid  # apply_evpn's process, once it has had a batch
        if worker and proc_status(worker):
            procs["kworker"] = worker
        return {
            name: {**proc_status(pid), "cpu": proc_cpu(pid), "pid": pid}
            for name, pid in procs.items()
        }

    async def wait_up(self, timeout: float) -> None:
        deadline = trio.current_time() + timeout
        while True:
            peers = self.node.speaker.peers
            if peers and all(p.state == "up" for p in peers.values()):
                return
            if trio.current_time() > deadline:
                states = {a: p.state for a, p in peers.items()}
                raise RuntimeError(f"sessions not up in {timeout}s: {states}")
            await trio.sleep(0.05)

    async def handle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        op = cmd["op"]
        node = self.node
        if op == "reflectors":
            node.speaker.configure(node.reflectors(*cmd["addresses"]))
            return {}
        if op == "mesh":
            node.speaker.configure(
                SpeakerConfig(
                    router_id=node.address,
                    local_address=node.address,
                    asn=ASN,
                    neighbors=mesh_neighbors(node.address, cmd["peers"]),
                    hold_time=node.hold_time,
                )
            )
            return {}
        if op == "wait_up":
            await self.wait_up(cmd.get("timeout", 60.0))
            return {"up": {a: p.since for a, p in node.speaker.peers.items()}}
        if op == "status":
            return {
                "installed": self.kinds(),
                "paths": len(node.evpn.table),
                "memory": self.memory(),
                "applies": len(self.applies),
                "apply_entries": sum(a[0] + a[1] for a in self.applies),
                "apply_seconds": sum(a[2] for a in self.applies),
                "restarts": node.speaker.stats.restarts,
                "received": {
                    "updates": self.counting.updates,
                    "announced": self.counting.announced,
                    "withdrawn": self.counting.withdrawn,
                },
                "failures": len(node.evpn.kernel_failures),
                "netns": node.ns.name,
                "mac": {d.name: node.link_mac(f"br-{d.pod_attachment.vni}") for d in self.domains},
            }
        if op == "watch":
            return await self.watch(cmd["installed"], cmd.get("paths"), cmd.get("timeout", 600.0))
        if op == "add_pod":
            t0 = time.monotonic()
            pod = await node.add_pod(cmd["name"], self.domain(cmd["domain"]))
            t1 = time.monotonic()
            return {"t0": t0, "t1": t1, "mac": pod.mac, "ip": pod.address}
        if op == "delete_pod":
            t0 = time.monotonic()
            await node.delete_pod(cmd["name"])
            return {"t0": t0, "t1": time.monotonic()}
        if op == "release_domain":
            t0 = time.monotonic()
            await node.pool.release_domain(cmd["vrf"])
            return {"t0": t0, "t1": time.monotonic()}
        if op == "profile":
            if cmd["on"]:
                self.profiler = cProfile.Profile()
                self.profiler.enable()
            elif self.profiler is not None:
                self.profiler.disable()
                self.profiler.dump_stats(cmd["path"])
                self.profiler = None
            return {}
        raise ValueError(f"unknown op {op!r}")

    async def watch(self, installed: int, paths: int | None, timeout: float) -> dict[str, Any]:
        """Poll the controller's state (two len() calls) every 2 ms."""
        evpn = self.node.evpn
        start = time.monotonic()
        first_path: float | None = None
        all_paths: float | None = None
        base_paths = len(evpn.table)
        applies_before = len(self.applies)
        while True:
            now = time.monotonic()
            n_paths = len(evpn.table)
            if first_path is None and n_paths != base_paths:
                first_path = now
            if all_paths is None and paths is not None and n_paths >= paths:
                all_paths = now
            if len(evpn.installed) == installed and (paths is None or n_paths >= paths):
                break
            if now - start > timeout:
                raise RuntimeError(
                    f"watch: {len(evpn.installed)} installed (want {installed}), "
                    f"{n_paths} paths (want {paths}) after {timeout}s"
                )
            await trio.sleep(0.002)
        applies = self.applies[applies_before:]
        return {
            "start": start,
            "first_path": first_path,
            "all_paths": all_paths,
            "installed_at": now,
            "applies": len(applies),
            "apply_entries": sum(a[0] + a[1] for a in applies),
            "apply_seconds": sum(a[2] for a in applies),
            #: (started, entries, seconds) of each call
            "apply_log": [(began, a + r, secs) for a, r, secs, began in applies],
        }

    async def serve(self) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.node.run)
            reply({"ok": True, "ready": True, "netns": self.node.ns.name, "pid": os.getpid()})
            stdin = trio.lowlevel.FdStream(os.dup(0))
            buf = b""
            while True:
                data = await stdin.receive_some(1 << 16)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                quit_ = False
                for line in lines:
                    if not line.strip():
                        continue
                    cmd = json.loads(line)
                    if cmd["op"] == "quit":
                        quit_ = True
                        break
                    try:
                        out = await self.handle(cmd)
                    except Exception as exc:
                        logging.getLogger("bench").error("%s", traceback.format_exc())
                        reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
                    else:
                        reply({"ok": True, **out})
                if quit_:
                    break
            await stdin.aclose()
            nursery.cancel_scope.cancel()


def reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main() -> int:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(
        level=spec.get("log_level", "WARNING"),
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    runner = Runner(spec)
    tune_gc()  # as the daemon does
    try:
        trio.run(runner.serve)
    finally:
        runner.node.close()
    reply({"ok": True, "bye": True})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
