"""A cluster on one machine: a LAN segment (a namespace with a bridge), the
API server emulation on it, and cnid nodes plugged into it, each with a Node
object and a daemon that reaches the API over HTTPS with the service
account's restricted token (kube/deploy/rbac.yaml is enforced).

    lan (netns, br0 192.168.77.1/24, API server :6443)
     |-- node A eth0 192.168.77.11
     |-- node B eth0 192.168.77.12
     `-- ...

Everything is removed by ``stop()``: daemons and the API server by PID,
namespaces, files.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .kubectl import Kubectl
from .node import REPO, VENV_BIN, CnidNode, netns_add, netns_del, sh

API_PORT = 6443


@dataclass
class Cluster:
    name: str
    subnet: str = "192.168.77"
    gc_grace: float = 5.0
    gc_interval: float = 1.0
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cnid-cluster-")))
    nodes: dict[str, CnidNode] = field(default_factory=dict)
    api_pid: int | None = None
    _api: subprocess.Popen[bytes] | None = None
    _kubectl: Kubectl | None = None

    @property
    def lan(self) -> str:
        return f"{self.name}-lan"

    @property
    def server(self) -> str:
        return f"https://{self.subnet}.1:{API_PORT}"

    @property
    def api_dir(self) -> Path:
        return self.workdir / "api"

    @property
    def kubectl(self) -> Kubectl:
        """An admin client. The lab's addresses exist only in its namespaces,
        so the test process reaches the API server over its UNIX socket
        (plain HTTP, the admin token), not over the LAN."""
        assert self._kubectl is not None
        return self._kubectl

    def up(self) -> Cluster:
        netns_add(self.lan)
        sh("ip", "link", "add", "br0", "type", "bridge", ns=self.lan)
        sh("ip", "addr", "add", f"{self.subnet}.1/24", "dev", "br0", ns=self.lan)
        sh("ip", "link", "set", "br0", "up", ns=self.lan)
        self.start_api()
        return self

    def start_api(self, wait: float = 120.0) -> None:
        self.api_dir.mkdir(parents=True, exist_ok=True)
        ready = self.api_dir / "ready"
        ready.unlink(missing_ok=True)
        log = open(self.workdir / "kubeapi.log", "ab")
        self._api = subprocess.Popen(
            [
                "ip", "netns", "exec", self.lan,
                str(VENV_BIN / "python"), "-m", "testbed.kubeapi",
                "--listen", f"{self.subnet}.1:{API_PORT}",
                "--dir", str(self.api_dir),
                "--crds", str(REPO / "kube" / "crds"),
                "--rbac", str(REPO / "kube" / "deploy" / "rbac.yaml"),
                "--rbac-user", "system:serviceaccount:pyroute2-cni:cnid",
                "--unix", str(self.api_dir / "admin.sock"),
                "--state", str(self.api_dir / "state.json"),
            ],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        self.api_pid = self._api.pid
        deadline = time.monotonic() + wait
        while not ready.exists():
            if self._api.poll() is not None:
                raise RuntimeError(f"kubeapi exited {self._api.returncode}: {self.api_log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"kubeapi not ready in {wait}s: {self.api_log()}")
            time.sleep(0.1)
        if self._kubectl is None:
            self._kubectl = Kubectl.over_unix(self.api_dir)

    def stop_api(self, sig: int = signal.SIGTERM) -> None:
        if self._api is None:
            return
        try:
            os.kill(self._api.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self._api.wait(20)
        except subprocess.TimeoutExpired:
            self._api.kill()
            self._api.wait()
        self._api = None
        self.api_pid = None

    def api_log(self, lines: int = 30) -> str:
        try:
            text = (self.workdir / "kubeapi.log").read_text()
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def add_node(self, name: str, index: int, ini_extra: str = "", start: bool = True) -> CnidNode:
        address = f"{self.subnet}.{10 + index}"
        extra = (
            f"[kubernetes]\nkubeconfig = {self.api_dir / 'sa-kubeconfig'}\n"
            f"gc_grace_seconds = {self.gc_grace}\ngc_interval_seconds = {self.gc_interval}\n"
            f"{ini_extra}"
        )
        node = CnidNode(
            name=name,
            underlay_addr=f"{address}/24",
            fabric_addr=f"{self.subnet}.1/24",
            ini_extra=extra,
            lan=self.lan,
            ns_name=f"{self.name}-{name}",
        )
        self.nodes[name] = node
        node.create()
        self.kubectl.add_node(name, address)
        if start:
            node.start()
        return node

    def stop(self) -> None:
        for node in self.nodes.values():
            node.stop()
        self.nodes.clear()
        if self._kubectl is not None:
            self._kubectl.close()
            self._kubectl = None
        self.stop_api()
        netns_del(self.lan)
        shutil.rmtree(self.workdir, ignore_errors=True)
