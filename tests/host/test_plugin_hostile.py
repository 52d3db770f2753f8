"""The C plugin against a hostile CNI_NETNS (issue 13): a FIFO, a device, a
directory or a socket must be refused promptly, never opened blocking."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

NETCONF = b'{"cniVersion":"1.0.0","name":"fabric","type":"cnid-plugin"}'


def run_plugin(plugin: Path, netns: str, sock_dir: Path, command: str = "ADD") -> dict:  # type: ignore[type-arg]
    env = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c1",
        "CNI_IFNAME": "eth0",
        "CNI_NETNS": netns,
        "CNI_PATH": "/opt/cni/bin",
        "CNID_SOCKET": str(sock_dir / "none.sock"),
        "CNID_TIMEOUT_MS": "60000",
    }
    start = time.monotonic()
    run = subprocess.run([str(plugin)], input=NETCONF, env=env, capture_output=True, timeout=10)
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, f"the plugin took {elapsed:.1f}s"
    assert run.returncode == 1
    return json.loads(run.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["fifo", "directory", "socket", "device"])
def test_a_netns_that_is_not_a_file_is_refused_at_once(
    cnid_plugin: Path, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / kind
    listener = None
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
    else:
        path = Path("/dev/zero")
    try:
        err = run_plugin(cnid_plugin, str(path), tmp_path)
    finally:
        if listener is not None:
            listener.close()
    assert err["code"] == 3
    assert "not a network namespace" in err["details"]


def test_a_fifo_netns_on_del_goes_on_without_a_descriptor(
    cnid_plugin: Path, tmp_path: Path
) -> None:
    # No daemon: DEL proceeds past the namespace and reports the daemon down (11).
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert run_plugin(cnid_plugin, str(fifo), tmp_path, "DEL")["code"] == 11
