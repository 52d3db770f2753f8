"""Network namespaces for tests: created, used, and removed by the test.

Every namespace is named ``<prefix>-<pid>-<n>`` so leftovers of a crashed
run can be found (``ip netns list | grep -- -<pid>-``).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

_counter = itertools.count()


class Netns:
    """A named network namespace and an open descriptor of it."""

    def __init__(self, prefix: str = "t") -> None:
        self.name = f"{prefix}-{os.getpid()}-{next(_counter)}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
        self._pids: list[int] = []
        self.ip("link", "set", "lo", "up")

    def run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace; output captured as text."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *cmd], check=check, capture_output=True, text=True
        )

    def ip(self, *args: str, check: bool = True) -> str:
        return self.run("ip", *args, check=check).stdout

    def spawn(self, *cmd: str) -> subprocess.Popen[bytes]:
        """A background process in the namespace; killed by PID at close()."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd])
        self._pids.append(proc.pid)
        return proc

    def close(self) -> None:
        for pid in self._pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        self._pids.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            subprocess.run(["ip", "netns", "del", self.name], check=False)


@contextmanager
def netns(prefix: str = "t") -> Iterator[Netns]:
    ns = Netns(prefix)
    try:
        yield ns
    finally:
        ns.close()
