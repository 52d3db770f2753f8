"""What the EVPN benchmarks share: the LAN and its addresses, the node's
domains, runner processes (``bench._evpn_runner``), kernels counted over
netlink, process memory and CPU from /proc.

    lan 172.30.0.0/16 (a namespace with a bridge, testbed.netlab)
     |-- rr    .0.1   FRR route reflector (bgpd -Z; listen range, GoBGP static)
     |-- leaf  .0.4   FRR EVPN leaf (bgpd + zebra), the reference
     |-- gb    .0.20  GoBGP, the injector
     |-- a     .0.11  cnid node (runner process)
     `-- b     .0.12  cnid node (runner process)

The node's domains: ``vrf-42`` (l3vni 42, table 42, blocks of 10.244.0.0/16)
and ``vrf-30<k>`` (l2vni 30<k>, 10.3<k>.0.0/16); the FRR leaf has the same
VNIs (L3VNI 42 on its default VRF, L2VNIs 30<k>).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cnid.dataplane import _netlink as nl
from cnid.dataplane import inside
from testbed.netlab import Lab, Lan
from testbed.node import REPO

ASN = 65000
SUBNET = "172.30.0.0/16"
RR, LEAF, GB = "172.30.0.1", "172.30.0.4", "172.30.0.20"
NODES = {"a": "172.30.0.11", "b": "172.30.0.12"}
L3VNI = 42
PROTO_BGP = 186  # zebra's routes
PROTO_EVPN = 150  # ours


def domains(l2vnis: int) -> list[dict[str, Any]]:
    """The node's domains as the runner takes them."""
    out: list[dict[str, Any]] = [
        {
            "name": "vrf-42",
            "vrf": 42,
            "table": 42,
            "prefix": "10.244.0.0",
            "prefixlen": 16,
            "ipblocklen": 26,
            "attachments": [{"type": "l3vni", "vni": L3VNI}],
        }
    ]
    for k in range(1, l2vnis + 1):
        vni = 300 + k
        out.append(
            {
                "name": f"vrf-{vni}",
                "vrf": vni,
                "table": vni,
                "prefix": f"10.{30 + k}.0.0",
                "prefixlen": 16,
                "ipblocklen": 26,
                "attachments": [{"type": "l2vni", "vni": vni}],
            }
        )
    return out


def l2vni_list(l2vnis: int) -> list[int]:
    return [300 + k for k in range(1, l2vnis + 1)]


# -- statistics ------------------------------------------------------------------


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max of some samples (the machine is shared: a median
    and its range, never one number)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, kernel {os.uname().release}"


# -- processes ---------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (KiB); {} when the process is gone."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = int(value.split()[0])
    except OSError:
        pass
    return out


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


def snapshot(pids: dict[str, int]) -> dict[str, dict[str, float]]:
    return {name: {**proc_status(pid), "cpu": proc_cpu(pid)} for name, pid in pids.items()}


class RunnerError(RuntimeError):
    pass


@dataclass
class NodeProcess:
    """A ``bench._evpn_runner`` child: one cnid EVPN node."""

    name: str
    address: str
    lan: Lan
    lan_port: int
    l2vnis: int
    workdir: Path
    log_level: str = "WARNING"
    hold_time: int = 9
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    netns: str = ""
    pid: int = 0

    def start(self, timeout: float = 60.0) -> NodeProcess:
        spec = {
            "name": self.name,
            "address": self.address,
            "workdir": str(self.workdir / "node"),
            "lan_netns": self.lan.netns,
            "lan_subnet": self.lan.subnet,
            "lan_port": self.lan_port,
            "domains": domains(self.l2vnis),
            "log_level": self.log_level,
            "hold_time": self.hold_time,
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "runner.log", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench._evpn_runner", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=REPO,
        )
        log.close()
        hello = self._read(timeout)
        self.netns, self.pid = hello["netns"], hello["pid"]
        return self

    def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RunnerError(f"node {self.name}: no answer in {timeout}s\n{self.log_tail()}")
        line = self.proc.stdout.readline()
        if not line:
            raise RunnerError(f"node {self.name} ended\n{self.log_tail()}")
        out: dict[str, Any] = json.loads(line)
        if not out.get("ok"):
            raise RunnerError(f"node {self.name}: {out.get('error')}\n{self.log_tail()}")
        return out

    def send(self, op: str, **kw: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"op": op, **kw}) + "\n").encode())
        self.proc.stdin.flush()

    def receive(self, timeout: float = 600.0) -> dict[str, Any]:
        return self._read(timeout)

    def call(self, op: str, timeout: float = 120.0, **kw: Any) -> dict[str, Any]:
        self.send(op, **kw)
        return self.receive(timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.workdir / "runner.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """quit, then SIGTERM / SIGKILL by PID if it does not go."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(b'{"op": "quit"}\n')
                proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                self._reap()
        if proc.stdout is not None:
            proc.stdout.close()
        self.lan.unplug(self.netns)

    def _reap(self) -> None:
        """A runner killed before it cleaned up: the processes in its node
        namespace (its ExaBGP and relay) by PID, its namespaces (the node's,
        its pods' ``ep<name>-<runner pid>-<n>``), its work directory."""
        if not self.netns:
            return
        out = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        for pid in out.stdout.split():
            try:
                os.kill(int(pid), 9)
            except (ProcessLookupError, ValueError):
                pass
        for ns in os.listdir("/run/netns"):
            if ns == self.netns or (ns.startswith("ep") and f"-{self.pid}-" in ns):
                subprocess.run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.workdir / "node", ignore_errors=True)


# -- kernels, counted ------------------------------------------------------------------


class KernelCounter:
    """Counts of EVPN entries in one namespace's kernel over strict netlink
    dumps (filtered by the kernel: table and protocol, device, port; only
    the headers are read): routes of ``proto`` in ``table``, neighbour
    entries with NTF_EXT_LEARNED on the bridges, the VXLAN driver's FDB
    entries (unicast remotes and flood remotes) and the bridges' external
    entries on the VXLAN ports."""

    def __init__(self, netns: str, table: int, proto: int, bridges: list[str], vxlans: list[str]):
        self.fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        with inside(self.fd):
            self.sock = nl.Netlink(strict=True, bufsize=8 << 20)
        self.table, self.proto = table, proto
        self.bridges = [self._index(b) for b in bridges]
        self.vxlans = [self._index(v) for v in vxlans]

    def _index(self, name: str) -> int:
        link = self.sock.link_by_name(name)
        if link is None:
            raise RuntimeError(f"no link {name}")
        return link.index

    def counts(self) -> dict[str, int]:
        sock = self.sock
        body = nl.rtmsg(2, table=0, proto=self.proto, rtype=0) + nl.nla_u32(
            nl.RTA_TABLE, self.table
        )
        routes = len(sock.dump(nl.Request(nl.RTM_GETROUTE, 0, body, "routes"), missing_ok=True))
        neigh = 0
        for index in self.bridges:
            req = nl.Request(
                nl.RTM_GETNEIGH, 0, nl.ndmsg(2) + nl.nla_u32(nl.NDA_IFINDEX, index), "neigh"
            )
            for b in sock.dump(req):
                if b[10] & nl.NTF_EXT_LEARNED:
                    neigh += 1
        fdb_self = fdb_master = 0
        for index in self.vxlans:
            req = nl.Request(nl.RTM_GETNEIGH, 0, nl.ndmsg(nl.AF_BRIDGE, index), "fdb")
            for b in sock.dump(req):
                flags = b[10]
                if flags & nl.NTF_SELF:
                    fdb_self += 1
                elif flags & nl.NTF_EXT_LEARNED:  # the bridge's (NDA_MASTER; no flag)
                    fdb_master += 1
        return {"routes": routes, "neigh": neigh, "fdb_self": fdb_self, "fdb_master": fdb_master}

    def close(self) -> None:
        self.sock.close()
        os.close(self.fd)


def wait_counts(
    counter: KernelCounter,
    want: dict[str, int],
    timeout: float,
    interval: float = 0.1,
) -> tuple[float, dict[str, int], int]:
    """Poll until the counts are ``want``; (monotonic time of the first
    poll that saw them, the counts, polls made)."""
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        got = counter.counts()
        polls += 1
        now = time.monotonic()
        if got == want:
            return now, got, polls
        if now > deadline:
            raise RuntimeError(f"kernel counts {got}, want {want}, after {timeout}s")
        time.sleep(interval)


def new_lab(tag: str) -> Lab:
    return Lab(f"{tag}{os.getpid() % 100000}")


def workdir(tag: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"cnid-bench-{tag}-"))


# -- kernel changes, as they happen -----------------------------------------------------

RTNLGRP_NEIGH = 3  # neighbour and FDB entries
RTNLGRP_IPV4_ROUTE = 7


class KernelEvent(NamedTuple):
    at: float  # time.monotonic() when read
    kind: str  # "+neigh" "-neigh" "+fdb" "-fdb" "+route" "-route"
    ifindex: int  # neighbours, FDB: the device; routes: the table
    key: str  # neighbour: IP; FDB: MAC; route: prefix
    value: str  # neighbour: MAC; FDB: VTEP (NDA_DST) or ""; route: ""


class Monitor:
    """The kernel's change notifications (rtnetlink multicast groups) in one
    namespace, read by a thread: when each neighbour, FDB entry or IPv4
    route came or went, without polling."""

    def __init__(self, netns: str) -> None:
        fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with inside(fd):
                sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        finally:
            os.close(fd)
        sock.setsockopt(socket.SOL_SOCKET, nl.SO_RCVBUFFORCE, 32 << 20)
        groups = (1 << (RTNLGRP_NEIGH - 1)) | (1 << (RTNLGRP_IPV4_ROUTE - 1))
        sock.bind((0, groups))
        sock.settimeout(0.1)
        self.sock = sock
        self.events: list[KernelEvent] = []
        self.overruns = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        hdr = struct.Struct("=IHHII")
        while not self._stop.is_set():
            try:
                data = self.sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:  # ENOBUFS: notifications lost
                self.overruns += 1
                continue
            now = time.monotonic()
            out = []
            offset = 0
            while offset + hdr.size <= len(data):
                length, mtype, _flags, _seq, _pid = hdr.unpack_from(data, offset)
                if length < hdr.size:
                    break
                event = _decode_event(now, mtype, data[offset + hdr.size : offset + length])
                if event is not None:
                    out.append(event)
                offset += (length + 3) & ~3
            if out:
                with self._cond:
                    self.events += out
                    self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def wait(self, since: int, match: Any, timeout: float) -> KernelEvent:
        """The first event from index ``since`` for which ``match(event)``."""
        deadline = time.monotonic() + timeout
        i = since
        with self._cond:
            while True:
                while i < len(self.events):
                    if match(self.events[i]):
                        return self.events[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no such kernel event")
                self._cond.wait(left)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _decode_event(now: float, mtype: int, body: bytes) -> KernelEvent | None:
    if mtype in (nl.RTM_NEWNEIGH, nl.RTM_DELNEIGH) and len(body) >= 12:
        family, ifindex = body[0], struct.unpack_from("=i", body, 4)[0]
        attrs = nl.parse_attrs(body, 12)
        sign = "+" if mtype == nl.RTM_NEWNEIGH else "-"
        mac = attrs.get(nl.NDA_LLADDR, b"").hex(":") if nl.NDA_LLADDR in attrs else ""
        dst_raw = attrs.get(nl.NDA_DST)
        dst = ""
        if dst_raw is not None and len(dst_raw) in (4, 16):
            dst = socket.inet_ntop(socket.AF_INET if len(dst_raw) == 4 else socket.AF_INET6,
                                   dst_raw)  # fmt: skip
        if family == nl.AF_BRIDGE:
            return KernelEvent(now, sign + "fdb", ifindex, mac, dst)
        return KernelEvent(now, sign + "neigh", ifindex, dst, mac)
    if mtype in (nl.RTM_NEWROUTE, nl.RTM_DELROUTE) and len(body) >= 12:
        family, dst_len, table = body[0], body[1], body[4]
        attrs = nl.parse_attrs(body, 12)
        if nl.RTA_TABLE in attrs:
            table = struct.unpack_from("=I", attrs[nl.RTA_TABLE])[0]
        raw = attrs.get(nl.RTA_DST, bytes(4 if family == socket.AF_INET else 16))
        prefix = f"{socket.inet_ntop(family, raw)}/{dst_len}"
        sign = "+" if mtype == nl.RTM_NEWROUTE else "-"
        return KernelEvent(now, sign + "route", table, prefix, "")
    return None
