"""One cnid node in a network namespace, and pods created the way kubelet does.

A node is a namespace ``<name>`` with an underlay interface ``eth0`` whose
peer sits in a second namespace ``<name>-fab`` (the fabric side), a daemon
started in the node namespace with its own config, sockets and state, and
the real ``cnid-plugin`` binary executed with a CNI environment for every
pod operation. Every process is tracked by PID and every namespace removed
on ``stop()``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cnid.core import CnidError
from cnid.ctl import query as ctl_query
from cnid.ctl import run as ctl_run

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "build" / "cnid-plugin"
VENV_BIN = REPO / ".venv" / "bin"


def sh(*args: str, check: bool = True, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*(["ip", "netns", "exec", ns] if ns else []), *args]
    return subprocess.run(cmd, check=check, text=True, capture_output=True)


def netns_add(name: str) -> str:
    sh("ip", "netns", "add", name)
    sh("ip", "link", "set", "lo", "up", ns=name)
    return f"/run/netns/{name}"


def netns_del(name: str) -> None:
    sh("ip", "netns", "del", name, check=False)


def with_external_speaker(ini: str) -> str:
    """server.ini with ``[bgp] speaker = external``: the node's speaker is a
    process the test bed starts (``CnidNode.start_speaker``), as the pod's
    speaker container runs it."""
    lines = ini.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "[bgp]":
            lines.insert(i + 1, "speaker = external")
            return "\n".join(lines) + "\n"
    return ini + ("" if ini.endswith("\n") or not ini else "\n") + "[bgp]\nspeaker = external\n"


def spawn_speaker(netns: str, python: str, run_dir: Path, log_path: Path) -> subprocess.Popen[Any]:
    """``python -m cnid.bgp --run-dir RUN_DIR`` in ``netns``, as the pod's
    speaker container runs it, its output appended to ``log_path``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            ["ip", "netns", "exec", netns, python, "-m", "cnid.bgp", "--run-dir", str(run_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def end_process(proc: subprocess.Popen[Any], sig: int, wait: float) -> int:
    """Send ``sig`` to ``proc`` and reap it; SIGKILL if it lingers ``wait`` s."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)
    try:
        return proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def conflist_conf(name: str = "cnid", version: str = "1.1.0", **extra: Any) -> dict[str, Any]:
    """The network configuration the runtime hands our plugin."""
    return {"cniVersion": version, "name": name, "type": "cnid-plugin", **extra}


@dataclass
class PluginRun:
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None


@dataclass
class CnidNode:
    name: str
    underlay_addr: str = "192.168.77.2/24"
    fabric_addr: str = "192.168.77.1/24"
    ini_extra: str = ""
    #: A shared segment (testbed.cluster.Lan): the node's eth0 plugs into
    #: its bridge instead of a fabric namespace of its own.
    lan: str | None = None
    #: The node's network namespace when it must differ from the node name
    #: (cluster nodes have short Kubernetes names; namespaces must be unique
    #: on the machine).
    ns_name: str = ""
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cnid-node-")))
    pid: int | None = None
    pods: list[str] = field(default_factory=list)
    #: The speaker process (``cnid speaker``), as the pod's speaker container:
    #: it outlives the daemon's ``kill()``; ``stop()`` ends it.
    speaker_pid: int | None = None

    @property
    def netns(self) -> str:
        return self.ns_name or self.name

    @property
    def fabric(self) -> str:
        return f"{self.netns}-fab"

    @property
    def socket(self) -> str:
        return str(self.workdir / "cni.sock")

    @property
    def ctl_socket(self) -> str:
        return str(self.workdir / "ctl.sock")

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def log_path(self) -> Path:
        return self.workdir / "cnid.log"

    @property
    def speaker_dir(self) -> Path:
        """The speaker's run directory (the pod's shared volume): the
        daemon's is the control socket's directory + ``bgp``."""
        return self.workdir / "bgp"

    def config_text(self) -> str:
        return with_external_speaker(
            f"[api]\nsocket_path_api = {self.socket}\nsocket_path_ctl = {self.ctl_socket}\n"
            f"[network]\nnode_name = {self.name}\nstate_dir = {self.state_dir}\n"
            f"[readiness]\nhost = 127.0.0.1\nport = 24800\n"
            f"[logging]\nlevel = info\n{self.ini_extra}"
        )

    # -- lifecycle --------------------------------------------------------

    def create(self) -> CnidNode:
        netns_add(self.netns)
        if self.lan is not None:
            # The peer plugs into the LAN's bridge.
            port, peer_ns = f"p-{abs(hash(self.netns)) % 10**8}", self.lan
        else:
            port, peer_ns = "up0", self.fabric
            netns_add(self.fabric)
        sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", peer_ns,
           ns=self.netns)  # fmt: skip
        if self.lan is not None:
            sh("ip", "link", "set", port, "master", "br0", "up", ns=peer_ns)
        else:
            sh("ip", "addr", "add", self.fabric_addr, "dev", port, ns=peer_ns)
            sh("ip", "link", "set", port, "up", ns=peer_ns)
        sh("ip", "addr", "add", self.underlay_addr, "dev", "eth0", ns=self.netns)
        sh("ip", "link", "set", "eth0", "up", ns=self.netns)
        gw = self.fabric_addr.split("/")[0]
        sh("ip", "route", "add", "default", "via", gw, ns=self.netns)
        (self.workdir / "server.ini").write_text(self.config_text())
        return self

    def start_unready(self, wait: float = 180.0) -> CnidNode:
        """Start the daemon and wait only for its CNI socket (a node whose
        kernel lacks a VRF device never becomes ready)."""
        return self.start(wait, require_ready=False)

    def start_speaker(self) -> int:
        """The speaker (``python -m cnid.bgp``, as the pod's speaker
        container runs it) in the node's namespace, unless it runs."""
        if self.speaker_pid is not None and self._speaker.poll() is None:
            return self.speaker_pid
        self._speaker = spawn_speaker(
            self.netns, str(VENV_BIN / "python"), self.speaker_dir, self.workdir / "speaker.log"
        )
        self.speaker_pid = self._speaker.pid
        return self.speaker_pid

    def kill_speaker(self, sig: int = signal.SIGTERM, wait: float = 20.0) -> int | None:
        """Send ``sig`` to the speaker process and reap it (SIGKILL if it
        lingers): its BGP sessions end (graceful restart applies)."""
        if self.speaker_pid is None:
            return None
        rc = end_process(self._speaker, sig, wait)
        self.speaker_pid = None
        return rc

    def start(self, wait: float = 180.0, require_ready: bool = True) -> CnidNode:
        self.start_speaker()
        log = open(self.log_path, "ab")
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.netns,
                str(VENV_BIN / "cnid"),
                "run",
                "--config",
                str(self.workdir / "server.ini"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.pid = proc.pid
        self._proc = proc
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"cnid exited with {proc.returncode}:\n{self.log_tail()}")
            status = self.status()
            if status is not None and (
                status.get("ready")
                or (not require_ready and status["components"].get("cni-socket") == "ready")
            ):
                return self
            time.sleep(0.2)
        raise TimeoutError(f"cnid on {self.name} not ready in {wait}s:\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGTERM, wait: float = 20.0) -> int | None:
        """Send ``sig`` to the daemon and reap it; SIGKILL if it lingers.
        The speaker process runs on (``kill_speaker``, ``stop``)."""
        if self.pid is None:
            return None
        rc = end_process(self._proc, sig, wait)
        self.pid = None
        return rc

    def stop(self) -> None:
        self.kill()
        self.kill_speaker()
        for pod in list(self.pods):
            netns_del(pod)
        self.pods.clear()
        netns_del(self.netns)
        if self.lan is None:
            netns_del(self.fabric)
        subprocess.run(["rm", "-rf", str(self.workdir)], check=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- operator and kubelet views ---------------------------------------

    def cnictl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``cnictl ARGS`` against this node, run in this process (cnictl's
        own code, its exit status and output): an interpreter per call costs
        seconds of CPU under the VM tier's emulation. tests/host/test_daemon_host.py
        runs the real ``cnictl`` script."""
        argv = ["--socket", self.ctl_socket, *args]
        out = ctl_run(argv)
        return subprocess.CompletedProcess(
            ["cnictl", *argv], out.returncode, out.stdout, out.stderr
        )

    def status(self) -> dict[str, Any] | None:
        """What ``cnictl --json status`` prints, asked over the control socket
        from this process (None while the daemon does not answer): a Python
        process per probe costs seconds of CPU under TCG, taken from the
        daemon that is starting."""
        try:
            response = ctl_query(self.ctl_socket, "status", {}, timeout=5.0)
        except (OSError, CnidError):
            return None
        if not response.ok or not isinstance(response.data, dict):
            return None
        return dict(response.data)

    def add_pod(self, name: str) -> str:
        path = netns_add(name)
        self.pods.append(name)
        return path

    def del_pod_netns(self, name: str) -> None:
        netns_del(name)
        if name in self.pods:
            self.pods.remove(name)

    def plugin(
        self,
        command: str,
        *,
        container_id: str = "",
        netns: str = "",
        ifname: str = "eth0",
        conf: dict[str, Any] | bytes | None = None,
        pod: tuple[str, str] = ("default", ""),
        pod_uid: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120.0,
    ) -> PluginRun:
        """Execute the real plugin exactly as kubelet/containerd would."""
        stdin = conf if isinstance(conf, bytes) else json.dumps(conf or conflist_conf()).encode()
        cni_env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_PATH": str(PLUGIN.parent),
            "CNI_ARGS": (
                f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod[0]};K8S_POD_NAME={pod[1]};"
                f"K8S_POD_INFRA_CONTAINER_ID={container_id};"
                f"K8S_POD_UID={pod_uid or 'uid-' + container_id}"
            ),
            "CNID_SOCKET": self.socket,
        }
        cni_env.update(env or {})
        start = time.perf_counter()
        out = subprocess.run(
            [str(PLUGIN)], input=stdin, env=cni_env, capture_output=True, timeout=timeout
        )
        return PluginRun(
            out.returncode, out.stdout.decode(), out.stderr.decode(), time.perf_counter() - start
        )

    def ping(self, from_ns: str, address: str, count: int = 1, vrf: str | None = None) -> bool:
        cmd = ["ping", "-c", str(count), "-W", "2", "-i", "0.2", address]
        if vrf:  # bound to the VRF device (SO_BINDTODEVICE): no cgroup BPF needed
            cmd[1:1] = ["-I", vrf]
        return sh(*cmd, ns=from_ns, check=False).returncode == 0


class _Router(Protocol):
    def start(self) -> object: ...
    def stop(self) -> None: ...


R = TypeVar("R", bound=_Router)


@contextlib.contextmanager
def node_beside(node: CnidNode, router: R) -> Iterator[tuple[CnidNode, R]]:
    """``node`` created and ``router`` (in its fabric namespace: GoBGP, FRR)
    started; both stopped afterwards, the node's speaker process included."""
    node.create()
    try:
        router.start()
        yield node, router
    finally:
        router.stop()
        node.stop()
        assert node.speaker_pid is None
