"""The socket servers under abuse (issue 13): out of descriptors, floods of
idle connections, peers that never read, answers over a frame, large frames
in flight, handlers that fail. Real UNIX sockets, in-process with trio."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from cnid.core import (
    HEADER,
    MAX_FRAME,
    CtlRequest,
    CtlResponse,
    DomainRegistry,
    Journal,
    Metrics,
    ProtocolError,
    Readiness,
    _sockets,
    decode_ctl_response,
    frame,
    read_frame,
    send_all,
    serve_unix,
)
from cnid.ctl import query
from cnid.daemon import ControlServer, DefaultDomainConfig
from cnid.ipam import AddressPool, MemoryStore

ROUTES = 200_000


def route_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "type": 2,
            "rd": f"10.0.{i >> 16 & 255}.{i >> 8 & 255}:{i & 255}",
            "route": f"[2]:[0]:[48]:[aa:bb:cc:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
            f"{i & 255:02x}]",
            "vni": "100",
            "nexthop": "192.0.2.1",
            "router_mac": "",
            "route_targets": ["65000:100"],
            "from": "192.0.2.1",
            "originator": "",
            "state": "programmed",
        }
        for i in range(n)
    ]


def control_server(tmp_path: Path, rows: list[dict[str, Any]]) -> ControlServer:
    server = ControlServer(
        node="n1",
        readiness=Readiness(),
        journal=Journal(tmp_path / "state"),
        pool=AddressPool(MemoryStore(), "n1"),
        domains=DomainRegistry(DefaultDomainConfig().domain()),
        metrics=Metrics(),
    )

    async def routes(args: dict[str, str]) -> list[dict[str, Any]]:
        return rows

    async def broken(args: dict[str, str]) -> Any:
        raise KeyError("a bug in a view")

    server.views["evpn-routes"] = routes
    server.views["broken"] = broken
    return server


@asynccontextmanager
async def serving(path: str, handler: _sockets.Handler, **kw: Any) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        await nursery.start(
            lambda task_status: serve_unix(path, handler, task_status=task_status, **kw)
        )
        yield
        nursery.cancel_scope.cancel()


async def echo(conn: trio.socket.SocketType) -> None:
    payload, fds = await read_frame(conn)
    for fd in fds:
        os.close(fd)
    await send_all(conn, frame(CtlResponse(1, True, len(payload))))


async def ask(path: str, msg: Any) -> CtlResponse:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with sock:
        await sock.connect(path)
        await sock.send(frame(msg))
        buf = b""
        while True:
            data = await sock.recv(1 << 20)
            if not data:
                break
            buf += data
    return decode_ctl_response(buf[HEADER.size :])


# ------------------------------------------------------ out of descriptors


async def test_accept_out_of_descriptors_is_waited_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the fix, EMFILE from accept() ended serve_unix (and the daemon)."""
    path = str(tmp_path / "s.sock")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    clients: list[socket.socket] = []
    async with serving(path, echo):
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
        try:
            while True:  # until this process (clients and server alike) runs out
                try:
                    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                except OSError:
                    break
                clients.append(c)
                c.setblocking(False)
                try:
                    c.connect(path)
                except OSError:
                    break
                await trio.sleep(0.001)
            await trio.sleep(3 * _sockets.ACCEPT_BACKOFF)  # accept() failing with EMFILE
            for c in clients:
                c.close()
            clients.clear()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            for c in clients:
                c.close()
        with trio.fail_after(5):
            answer = await ask(path, CtlRequest(1, "x"))
        assert answer.ok
    pausing = [r for r in caplog.records if "pausing new connections" in r.getMessage()]
    assert len(pausing) == 1  # once per burst


# ---------------------------------------------------------- connection caps


async def test_idle_flood_closes_the_oldest_idle_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    async with serving(path, echo, max_connections=4):
        idle = []
        for _ in range(10):
            s = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await s.connect(path)
            idle.append(s)
            await trio.sleep(0.01)
        with trio.fail_after(5):
            assert (await ask(path, CtlRequest(1, "x"))).ok
            # the first ones were closed to make room: they read EOF
            assert await idle[0].recv(10) == b""
        for s in idle:
            s.close()


def test_admission_turns_away_a_newcomer_when_all_are_busy() -> None:
    admission = _sockets.Admission("t", 2)
    slots = [admission.admit(), admission.admit()]
    for slot in slots:
        assert slot is not None
        slot.idle = False
    assert admission.admit() is None
    assert admission.refused == 1


async def test_a_failing_handler_does_not_end_the_listener(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    calls = 0

    async def flaky(conn: trio.socket.SocketType) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ProtocolError("frame too large")
        if calls == 2:
            raise RuntimeError("a bug")
        await echo(conn)

    async with serving(path, flaky):
        for _ in range(2):
            s = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with s:
                await s.connect(path)
                assert await s.recv(10) == b""
        with trio.fail_after(5):
            assert (await ask(path, CtlRequest(1, "x"))).ok


# --------------------------------------------------------- frames in flight


async def test_large_frames_in_flight_are_few_at_a_time(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    async with serving(path, echo):
        peers = []
        for _ in range(10):
            s = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            await s.connect(path)
            await s.send(HEADER.pack(MAX_FRAME) + b"x" * 1000)
            peers.append(s)
        limiter = _sockets.large_frame_limiter()
        with trio.fail_after(5):
            while limiter.statistics().tasks_waiting < 10 - _sockets.LARGE_FRAME_SLOTS:
                await trio.sleep(0.01)
        assert limiter.borrowed_tokens == _sockets.LARGE_FRAME_SLOTS
        for s in peers:
            s.close()
        with trio.fail_after(5):
            while limiter.borrowed_tokens:
                await trio.sleep(0.01)


async def test_a_frame_over_the_sockets_limit_is_refused_before_reading() -> None:
    a, b = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        await a.send(HEADER.pack(100_000))
        with pytest.raises(ProtocolError, match="exceeds this socket's 65536"):
            await read_frame(b, 65536)


# ------------------------------------------------------ never-reading peers


async def test_a_peer_that_never_reads_is_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sockets, "SEND_TIMEOUT", 0.5)
    path = str(tmp_path / "c.sock")
    server = control_server(tmp_path, route_rows(20_000))
    async with serving(path, server.handle_connection):
        s = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await s.connect(path)
            await s.send(frame(CtlRequest(2, "evpn-routes")))
            await trio.sleep(1.5)  # the daemon gave up on us
            assert server.answering.borrowed_tokens == 0
            got = 0
            with trio.fail_after(5):
                while data := await s.recv(1 << 20):
                    got += len(data)
            assert got < 3 * 1024 * 1024  # part of the answer, then the end


# ------------------------------------------------------------ long answers


async def test_200000_routes_through_the_socket_and_cnictl(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sock")
    rows = route_rows(ROUTES)
    server = control_server(tmp_path, rows)
    async with serving(path, server.handle_connection):
        answer = await trio.to_thread.run_sync(query, path, "evpn-routes", {})
        assert answer.ok and answer.data == rows
        proc = await trio.run_process(
            [
                sys.executable,
                "-c",
                "from cnid.ctl import main; raise SystemExit(main())",
                "--socket",
                path,
                "--json",
                "evpn",
                "routes",
            ],
            capture_stdout=True,
            capture_stderr=True,
        )
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads(proc.stdout)) == ROUTES
        # a cnictl of control protocol 1 gets one clear error, and the daemon lives on
        old = await ask(path, CtlRequest(1, "evpn-routes"))
        assert not old.ok and "control protocol 1" in old.error
        assert (await ask(path, CtlRequest(1, "broken"))).error.startswith("internal error")
        assert (await ask(path, CtlRequest(2, "status"))).ok


def test_the_lab_entry_points_still_answer_whole(tmp_path: Path) -> None:
    # ctl_request + query: what testbed.labstate calls
    from cnid.ctl import ctl_request

    assert ctl_request(["evpn", "routes"]) == ("evpn-routes", {})
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cnid.ctl import main; raise SystemExit(main())",
            "--socket",
            str(tmp_path / "none.sock"),
            "status",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "cannot reach the daemon" in proc.stderr
