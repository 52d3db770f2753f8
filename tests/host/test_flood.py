"""Issue 13's flood, against a subprocess with 256 open files: 300 idle
connections to the health port and 300 to a UNIX socket, then one request.
Before the fix, the health port held every descriptor and the next accept()
on the UNIX socket raised EMFILE out of the daemon."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from cnid.core import HEADER, CtlRequest, decode_ctl_response, frame

SERVER = r"""
import resource, sys, trio
from cnid.core import CtlResponse, Metrics, Readiness, frame, read_frame, send_all, serve_unix
from cnid.daemon import HealthServer

resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

async def echo(conn):
    payload, fds = await read_frame(conn)
    await send_all(conn, frame(CtlResponse(1, True, len(payload))))

async def main():
    async with trio.open_nursery() as nursery:
        port = await nursery.start(HealthServer(Readiness(), Metrics()).run, "127.0.0.1", 0)
        await nursery.start(serve_unix, sys.argv[1], echo)
        print(port, flush=True)

trio.run(main)
"""


def ask(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(frame(CtlRequest(1, "x")))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return decode_ctl_response(data[HEADER.size :]).ok


def test_300_idle_connections_each_and_the_daemon_still_answers(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert soft > 1000, "the test itself needs room for 600 connections"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, path], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    held: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        for _ in range(300):
            held.append(socket.create_connection(("127.0.0.1", port)))
        for _ in range(300):
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.connect(path)
            held.append(u)
        time.sleep(1.0)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert ask(path)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=5) as r:
            assert r.status == 200
        fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
        assert fds < 256
        assert proc.poll() is None
    finally:
        for s in held:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
