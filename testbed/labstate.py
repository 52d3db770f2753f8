"""What a lab leaves on the machine, and how ``down`` finds all of it even
after a crash.

A lab named N keeps its files under ``/run/cnid-lab/N/`` (``state.json``,
the nodes' and routers' work directories, the API server's) and names every
network namespace it makes ``lab-N-...``. Its processes carry two tags:

* the network namespace they run in (every daemon, FRR, ExaBGP, the API
  server and each ``ping`` runs inside one of the lab's namespaces);
* the environment variable ``CNID_LAB=N``, inherited by everything the lab
  process starts.

``sweep(N)`` stops every process with either tag (SIGTERM, then SIGKILL),
by PID, deletes the namespaces (those recorded in state.json and any
``lab-N-`` one), FRR's run directories of those namespaces and the state
directory. Nothing else on the machine is looked at twice: a process is
ours only if it is inside one of our namespaces or carries our tag.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RUN_ROOT", "TAG", "LabFiles", "lab_namespaces", "sweep", "tagged_pids"]

RUN_ROOT = Path(os.environ.get("CNID_LAB_RUN", "/run/cnid-lab"))
TAG = "CNID_LAB"
FRR_RUN = Path("/var/run/frr")
NETNS_DIR = Path("/run/netns")


def ns_prefix(name: str) -> str:
    return f"lab-{name}-"


@dataclass
class LabFiles:
    """The state directory of lab ``name``."""

    name: str

    @property
    def root(self) -> Path:
        return RUN_ROOT / self.name

    @property
    def state_path(self) -> Path:
        return self.root / "state.json"

    def exists(self) -> bool:
        return self.state_path.exists()

    def read(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_path.read_text()))
        except (OSError, ValueError):
            return {}

    def write(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
        tmp.replace(self.state_path)


def lab_namespaces(name: str, recorded: list[str] | None = None) -> list[str]:
    """The lab's namespaces that exist: recorded ones and any ``lab-N-``."""
    try:
        present = {p.name for p in NETNS_DIR.iterdir()}
    except OSError:
        present = set()
    prefix = ns_prefix(name)
    found = {ns for ns in present if ns.startswith(prefix)}
    found |= {ns for ns in recorded or [] if ns in present}
    return sorted(found)


def _ns_inode(ns: str) -> tuple[int, int] | None:
    path = NETNS_DIR / ns
    if path.is_symlink():  # not one of ours: `ip netns add` makes bind mounts
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _ancestors() -> set[int]:
    pids = {os.getpid()}
    pid = os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        pids.add(pid)
    return pids


def tagged_pids(name: str, namespaces: list[str]) -> list[int]:
    """Processes inside one of ``namespaces`` or tagged ``CNID_LAB=name``
    (never this process or its ancestors)."""
    inodes = {i for i in (_ns_inode(ns) for ns in namespaces) if i is not None}
    tag = f"{TAG}={name}".encode()
    skip = _ancestors()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in skip:
            continue
        try:
            st = os.stat(entry / "ns" / "net")
            if (st.st_dev, st.st_ino) in inodes:
                found.append(pid)
                continue
            env = (entry / "environ").read_bytes()
        except OSError:
            continue
        if tag in env.split(b"\0"):
            found.append(pid)
    return sorted(found)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_pids(pids: list[int], grace: float = 10.0) -> list[int]:
    """SIGTERM each, wait up to ``grace`` seconds, SIGKILL what is left."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    left = list(pids)
    while left and time.monotonic() < deadline:
        for pid in left:
            _reap(pid)
        left = [p for p in left if _alive(p)]
        if left:
            time.sleep(0.1)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
    return left


def sweep(name: str, log: Any = None) -> dict[str, int]:
    """Remove everything of lab ``name``; what was found, counted."""
    files = LabFiles(name)
    state = files.read()
    namespaces = lab_namespaces(name, state.get("namespaces", []))
    pids = tagged_pids(name, namespaces)
    killed = stop_pids(pids) if pids else []
    # a second look: children started while the first ones were stopping
    late = tagged_pids(name, namespaces)
    if late:
        stop_pids(late, grace=2.0)
    for ns in namespaces:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        shutil.rmtree(FRR_RUN / ns, ignore_errors=True)
    existed = files.root.exists()
    shutil.rmtree(files.root, ignore_errors=True)
    found = {
        "processes": len(pids) + len(late),
        "killed": len(killed),
        "namespaces": len(namespaces),
        "files": int(existed),
    }
    if log is not None:
        log(
            f"lab {name}: stopped {found['processes']} processes"
            f" ({found['killed']} needed SIGKILL), removed {found['namespaces']} namespaces"
            + (f" and {files.root}" if existed else "")
        )
    return found
