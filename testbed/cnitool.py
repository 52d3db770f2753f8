"""A real CNI client for tests: the reference ``cnitool``, built by ``scripts/install-deps``.

`CniTool` runs ``.tools/bin/cnitool add|check|del NET NETNS`` with a conflist of our choosing,
a plugin directory of symlinks (`plugin_dir`: our plugin plus Debian's reference plugins) and
a private ``/var/lib/cni``: every call runs in its own mount namespace in which a temporary
directory is bind-mounted over ``/var/lib/cni``, so cnitool's result cache and host-local's
leases never touch the machine's and vanish with `close()`. cnitool has no option for its cache
directory; the environment it is given (CNI_PATH, NETCONFPATH, CNI_ARGS, CAP_ARGS, CNI_IFNAME
and anything in ``env``, such as CNID_SOCKET) is inherited by the plugins it runs.

    with CniTool(conflist, plugin_dir(workdir), netns="node1", env={...}) as tool:
        run = tool.add("/run/netns/pod1", cap_args={"portMappings": [...]})
        run.json["ips"]
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CNITOOL = REPO / ".tools" / "bin" / "cnitool"
OUR_PLUGIN = REPO / "build" / "cnid-plugin"
REFERENCE_PLUGINS = Path("/usr/lib/cni")
#: The default domain's prefix (server.ini [default]).
POD_NET = ipaddress.ip_network("10.244.0.0/16")
#: cnid first, then Debian's portmap and bandwidth. cniVersion 1.0.0: Debian's
#: libcni (cnitool, containerd 1.6) and reference plugins stop there.
CHAIN_CONFLIST: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "name": "cnid",
    "plugins": [
        {"type": "cnid-plugin"},
        {"type": "portmap", "capabilities": {"portMappings": True}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}},
    ],
}


def nat_rules(ns: str) -> str:
    """iptables' nat table in a namespace (where portmap writes its DNAT rules)."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, "iptables-save", "-t", "nat"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


# Run $@ with $CNI_STATE bind-mounted over /var/lib/cni (private mount namespace).
_PRIVATE_CNI_STATE = r"""
set -e
if [ ! -d /var/lib/cni ]; then
    mount -t tmpfs -o mode=0755 cnid-test-var-lib /var/lib
    mkdir -p /var/lib/cni
fi
mount --bind "$CNI_STATE" /var/lib/cni
exec "$@"
"""


def plugin_dir(where: Path, ours: Path = OUR_PLUGIN) -> Path:
    """A directory for CNI_PATH / containerd's bin_dir: symlinks to ``ours`` (as
    ``cnid-plugin``) and to every reference plugin in /usr/lib/cni."""
    where.mkdir(parents=True, exist_ok=True)
    links = {"cnid-plugin": ours}
    for plugin in sorted(REFERENCE_PLUGINS.iterdir()):
        links.setdefault(plugin.name, plugin)
    for name, target in links.items():
        link = where / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)
    return where


@dataclass
class CniRun:
    """One cnitool invocation."""

    command: str
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None

    def check(self) -> CniRun:
        if self.rc != 0:
            raise AssertionError(
                f"cnitool {self.command} failed ({self.rc}): {self.stderr.strip()}"
                f"{' / ' + self.stdout.strip() if self.stdout.strip() else ''}"
            )
        return self


class CniTool:
    """cnitool with conflist ``conflist``, plugins from ``plugins``, run in ``netns`` (the
    node's namespace: the host side the plugins see), with ``env`` added for the plugins."""

    def __init__(
        self,
        conflist: Mapping[str, Any],
        plugins: Path,
        *,
        netns: str | None = None,
        env: Mapping[str, str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        if not CNITOOL.is_file():
            raise RuntimeError(f"{CNITOOL} missing: run scripts/install-deps")
        self.conflist = dict(conflist)
        self.name = str(self.conflist["name"])
        self.plugins = plugins
        self.netns = netns
        self.env = dict(env or {})
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="cnitool-"))
        self.netconf_dir = self.workdir / "net.d"
        self.state_dir = self.workdir / "var-lib-cni"
        self.netconf_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.netconf_dir / f"10-{self.name}.conflist").write_text(json.dumps(self.conflist))

    def run(
        self,
        command: str,
        netns_path: str,
        *,
        cni_args: Mapping[str, str] | None = None,
        cap_args: Mapping[str, Any] | None = None,
        ifname: str = "eth0",
        timeout: float = 120.0,
    ) -> CniRun:
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "NETCONFPATH": str(self.netconf_dir),
            "CNI_PATH": str(self.plugins),
            "CNI_IFNAME": ifname,
            "CNI_STATE": str(self.state_dir),
            **self.env,
        }
        if cni_args:
            env["CNI_ARGS"] = ";".join(f"{k}={v}" for k, v in cni_args.items())
        if cap_args:
            env["CAP_ARGS"] = json.dumps(cap_args)
        cmd = [
            "unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", _PRIVATE_CNI_STATE, "cnitool",
            str(CNITOOL), command, self.name, netns_path,
        ]  # fmt: skip
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        start = time.perf_counter()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        return CniRun(command, out.returncode, out.stdout, out.stderr, time.perf_counter() - start)

    def add(self, netns_path: str, **kw: Any) -> CniRun:
        return self.run("add", netns_path, **kw)

    def check(self, netns_path: str, **kw: Any) -> CniRun:
        return self.run("check", netns_path, **kw)

    def delete(self, netns_path: str, **kw: Any) -> CniRun:
        return self.run("del", netns_path, **kw)

    def cached_results(self) -> list[Path]:
        """Files in cnitool's (private) result cache."""
        return sorted((self.state_dir / "results").glob("*"))

    def close(self) -> None:
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> CniTool:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
