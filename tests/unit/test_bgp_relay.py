"""ExaBGP's API helper (``_relay.py``, a stdlib script) as ExaBGP runs it:
it serves the daemon's socket and outlives the daemon. While no daemon is
connected ExaBGP's output is read and dropped (ExaBGP never blocks); lines,
not bytes, cross: a command cut short by a daemon's death never reaches
ExaBGP, and a new daemon replaces the old one."""

from __future__ import annotations

import fcntl
import os
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import cnid.bgp

RELAY = Path(cnid.bgp.__file__).with_name("_relay.py")


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    path = str(tmp_path / "api.sock")
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", str(RELAY), path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        assert time.monotonic() < deadline, "the relay never listened"
        time.sleep(0.01)
    try:
        yield proc, path
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.settimeout(5)
    return sock


def read_line(sock: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(1)
        assert chunk, "closed"
        buf += chunk
    return buf


def wait_drained(fd: int, timeout: float = 10.0) -> None:
    """Until the pipe behind ``fd`` is empty (FIONREAD on either end)."""
    deadline = time.monotonic() + timeout
    while True:
        left = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        if left == 0:
            return
        assert time.monotonic() < deadline, f"{left} bytes still in the pipe"
        time.sleep(0.01)


def test_a_daemon_comes_and_goes_and_exabgp_never_notices(
    relay: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, path = relay
    assert proc.stdin is not None and proc.stdout is not None
    # No daemon: a megabyte of ExaBGP's output is read and dropped.
    proc.stdin.write(b'{"type": "update"}\n' * 60_000)
    proc.stdin.flush()
    # the relay widens the pipe to 1 MiB: the write returns before it read
    # the lines; they are all dropped before a daemon comes
    wait_drained(proc.stdin.fileno())
    first = connect(path)
    first.sendall(b"cnid AAAA\ncnid half-a-comm")  # dies mid-command
    assert proc.stdout.readline() == b"cnid AAAA\n"
    first.close()
    second = connect(path)
    time.sleep(0.2)  # the relay saw the first one go
    second.sendall(b"and\ncnid BBBB\n")  # "and": the rest of nothing: a whole line
    assert proc.stdout.readline() == b"and\n"
    assert proc.stdout.readline() == b"cnid BBBB\n"
    proc.stdin.write(b"partial")
    proc.stdin.flush()
    third = connect(path)  # replaces the second
    time.sleep(0.2)
    proc.stdin.write(b' line\n{"type": "state"}\n')
    proc.stdin.flush()
    # whole lines only: the one ExaBGP had begun is delivered from its start
    assert read_line(third) == b"partial line\n"
    assert read_line(third) == b'{"type": "state"}\n'
    assert second.recv(100) == b""  # the second one was closed
    assert proc.poll() is None
    for sock in (second, third):
        sock.close()


def test_the_relay_ends_with_exabgp(relay: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, path = relay
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(10) == 0
    assert not os.path.exists(path)
