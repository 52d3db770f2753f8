"""The static C plugin (plugin_go_free/cnid-plugin.c) against a fake daemon.

Every test runs the real binary with a real environment. The fake daemon is a
trio UNIX stream server that decodes what the plugin sent with cnid.core's protocol
(and receives the netns descriptor with recvmsg) and answers whatever the test
wants, well-formed or not.

Run as a script (``python tests/host/test_plugin.py``) to measure the plugin's
wall time for VERSION and for a round trip against the fake daemon.
"""

from __future__ import annotations

import array
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from cnid.cni import SUPPORTED_VERSIONS
from cnid.core import (
    HEADER,
    MAX_FRAME,
    MAX_STDIN,
    CniRequest,
    CniResponse,
    decode_cni_request,
    frame,
    payload_length,
)

NETCONF = b'{"cniVersion":"1.0.0","name":"fabric","type":"cnid-plugin"}'
SUPPORTED = list(SUPPORTED_VERSIONS)  # the plugin answers from the same list

#: What the fake daemon sends back for a request: raw bytes (then it closes),
#: or None to keep the connection open and say nothing.
Answer = Callable[[CniRequest], Awaitable[bytes | None]]


@dataclass
class Received:
    request: CniRequest
    netns_inodes: list[int]


@dataclass
class FakeDaemon:
    path: str
    answer: Answer
    connections: int = 0
    received: list[Received] = field(default_factory=list)


async def _recv_frame(conn: trio.socket.SocketType) -> tuple[bytes, list[int]]:
    """One frame's payload and the descriptors that came with it."""
    buf = b""
    fds: list[int] = []
    need = HEADER.size
    while len(buf) < need:
        data, ancdata, flags, _ = await conn.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
        assert not flags & socket.MSG_CTRUNC
        for level, kind, cdata in ancdata:
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            fds.extend(array.array("i", cdata[: len(cdata) - len(cdata) % 4]))
        if not data:
            raise EOFError(f"peer closed after {len(buf)} bytes")
        buf += data
        if need == HEADER.size and len(buf) >= HEADER.size:
            need = HEADER.size + payload_length(buf[: HEADER.size])
    assert len(buf) == need, "the plugin sent more than one frame"
    return buf[HEADER.size :], fds


async def _serve_one(daemon: FakeDaemon, conn: trio.socket.SocketType) -> None:
    with conn:
        daemon.connections += 1
        payload, fds = await _recv_frame(conn)
        inodes = []
        for fd in fds:
            inodes.append(os.fstat(fd).st_ino)
            os.close(fd)
        request = decode_cni_request(payload)
        daemon.received.append(Received(request, inodes))
        reply = await daemon.answer(request)
        if reply is None:
            await trio.sleep_forever()
        view = memoryview(reply)
        while view:
            view = view[await conn.send(view) :]


async def _serve(
    daemon: FakeDaemon, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with listener:
        await listener.bind(daemon.path)
        listener.listen(64)
        task_status.started()
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await listener.accept()
                nursery.start_soon(_serve_one, daemon, conn)


@asynccontextmanager
async def fake_daemon(sock_dir: Path, answer: Answer) -> AsyncIterator[FakeDaemon]:
    daemon = FakeDaemon(str(sock_dir / "cni.sock"), answer)
    async with trio.open_nursery() as nursery:
        await nursery.start(_serve, daemon)
        yield daemon
        nursery.cancel_scope.cancel()


def respond(exit_code: int, stdout: bytes) -> Answer:
    async def answer(_: CniRequest) -> bytes:
        return frame(CniResponse(1, exit_code, stdout))

    return answer


def raw(data: bytes) -> Answer:
    async def answer(_: CniRequest) -> bytes:
        return data

    return answer


async def silent(_: CniRequest) -> None:
    return None


@dataclass
class Run:
    returncode: int
    stdout: bytes
    elapsed: float

    def error(self) -> dict[str, object]:
        """The CNI error JSON the plugin printed itself."""
        assert self.returncode == 1, self
        doc = json.loads(self.stdout)
        assert isinstance(doc, dict)
        assert set(doc) == {"cniVersion", "code", "msg", "details"}, doc
        assert doc["msg"] and doc["details"], doc
        return doc


async def run_plugin(plugin: Path, env: dict[str, str], stdin: bytes = NETCONF) -> Run:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"}
    start = time.monotonic()
    proc = await trio.run_process(
        [str(plugin)], stdin=stdin, capture_stdout=True, env=base | env, check=False
    )
    return Run(proc.returncode, proc.stdout, time.monotonic() - start)


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Short, because a UNIX socket path is limited to 107 bytes.
    path = Path(tempfile.mkdtemp(prefix="cnidp-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def netns() -> Iterator[str]:
    """A throwaway network namespace; yields its path under /run/netns."""
    name = f"cnidp-{os.getpid()}-{time.monotonic_ns()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def pod_env(sock_dir: Path, command: str, netns: str = "", **extra: str) -> dict[str, str]:
    return {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "c0ffee",
        "CNI_NETNS": netns,
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        "CNI_PATH": "/opt/cni/bin",
        "CNID_SOCKET": str(sock_dir / "cni.sock"),
        **extra,
    }


# ------------------------------------------------------------ round trips


async def test_request_carries_cni_env_exact_stdin_and_the_netns(
    cnid_plugin: Path, sock_dir: Path, netns: str
) -> None:
    stdin = NETCONF + b"\n\x00\xff binary tail \xc3\xa9"
    env = pod_env(
        sock_dir, "ADD", netns, UNRELATED="x", CNIX_NOT_OURS="y", CNI_EMPTY="", CNI_UTF8="é"
    )
    async with fake_daemon(sock_dir, respond(0, b'{"ok":1}')) as daemon:
        run = await run_plugin(cnid_plugin, env, stdin)

    assert (run.returncode, run.stdout) == (0, b'{"ok":1}')
    [got] = daemon.received
    assert got.request.version == 1
    assert got.request.env == {k: v for k, v in env.items() if k.startswith("CNI_")}
    assert "CNID_SOCKET" not in got.request.env
    assert got.request.stdin == stdin
    assert got.request.has_netns is True
    # The descriptor is the throwaway namespace, not ours.
    assert got.netns_inodes == [os.stat(netns).st_ino]
    assert got.netns_inodes != [os.stat("/proc/self/ns/net").st_ino]


@pytest.mark.parametrize("exit_code", [0, 1])
async def test_stdout_byte_exact_and_exit_code_passed_through(
    cnid_plugin: Path, sock_dir: Path, exit_code: int
) -> None:
    stdout = b'{"cniVersion":"1.1.0","code":7,"msg":"bad \\"conf\\""}\n\x00\xfe no newline'
    async with fake_daemon(sock_dir, respond(exit_code, stdout)):
        run = await run_plugin(cnid_plugin, pod_env(sock_dir, "CHECK", "/proc/self/ns/net"))
    assert (run.returncode, run.stdout) == (exit_code, stdout)


async def test_largest_stdin_and_a_large_answer(cnid_plugin: Path, sock_dir: Path) -> None:
    stdin = (NETCONF + b" " * MAX_STDIN)[:MAX_STDIN]
    stdout = bytes(range(256)) * (3 * 4096)  # 3 MiB: many partial reads
    async with fake_daemon(sock_dir, respond(0, stdout)) as daemon:
        run = await run_plugin(cnid_plugin, pod_env(sock_dir, "ADD", "/proc/self/ns/net"), stdin)
    assert run.returncode == 0
    assert run.stdout == stdout
    assert daemon.received[0].request.stdin == stdin
    # Sent in several partial writes, the descriptor still travels once.
    assert daemon.received[0].netns_inodes == [os.stat("/proc/self/ns/net").st_ino]


async def test_del_with_missing_netns_is_sent_without_descriptor(
    cnid_plugin: Path, sock_dir: Path
) -> None:
    gone = str(sock_dir / "netns-that-is-gone")
    async with fake_daemon(sock_dir, respond(0, b"")) as daemon:
        run = await run_plugin(cnid_plugin, pod_env(sock_dir, "DEL", gone))
    assert (run.returncode, run.stdout) == (0, b"")
    [got] = daemon.received
    assert got.request.has_netns is False
    assert got.netns_inodes == []
    assert got.request.env["CNI_NETNS"] == gone


@pytest.mark.parametrize("command", ["DEL", "GC", "STATUS"])
async def test_non_add_commands_with_a_non_netns_path_go_to_the_daemon(
    cnid_plugin: Path, sock_dir: Path, command: str
) -> None:
    async with fake_daemon(sock_dir, respond(0, b"")) as daemon:
        run = await run_plugin(cnid_plugin, pod_env(sock_dir, command, "/etc/hostname"))
    assert run.returncode == 0
    assert [(r.request.has_netns, r.netns_inodes) for r in daemon.received] == [(False, [])]


async def test_without_netns_no_descriptor(cnid_plugin: Path, sock_dir: Path) -> None:
    async with fake_daemon(sock_dir, respond(0, b"{}")) as daemon:
        run = await run_plugin(cnid_plugin, pod_env(sock_dir, "GC"))
    assert (run.returncode, run.stdout) == (0, b"{}")
    assert daemon.received[0].request.has_netns is False
    assert daemon.received[0].request.env["CNI_NETNS"] == ""


async def test_concurrent_plugins_need_no_lock(cnid_plugin: Path, sock_dir: Path) -> None:
    count = 12
    all_connected = trio.Event()
    seen = 0

    async def answer(request: CniRequest) -> bytes:
        # Answer nobody until every plugin has sent its request: a plugin
        # that serialised on a lock would never get here and time out.
        nonlocal seen
        seen += 1
        if seen == count:
            all_connected.set()
        await all_connected.wait()
        return frame(CniResponse(1, 0, request.env["CNI_CONTAINERID"].encode()))

    results: dict[str, Run] = {}

    async def one(i: int) -> None:
        env = pod_env(sock_dir, "ADD", "/proc/self/ns/net", CNI_CONTAINERID=f"pod-{i}")
        results[f"pod-{i}"] = await run_plugin(cnid_plugin, env)

    with trio.fail_after(20):
        async with fake_daemon(sock_dir, answer) as daemon:
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(one, i)
    assert daemon.connections == count
    assert {k: (r.returncode, r.stdout) for k, r in results.items()} == {
        k: (0, k.encode()) for k in results
    }
    assert len(results) == count


# ------------------------------------------------------ answered by itself


@pytest.mark.parametrize(
    ("stdin", "version"),
    [
        (b'{"cniVersion":"0.4.0"}', "0.4.0"),
        (b'{"name":"x","ipam":{"cniVersion":"9.9.9"},\n "cniVersion" : "1.0.0"}', "1.0.0"),
        (b"", "1.1.0"),
        (b'{"cniVersion":"1.0.0\\"}"}', "1.1.0"),
    ],
)
async def test_version_is_answered_without_a_daemon(
    cnid_plugin: Path, sock_dir: Path, stdin: bytes, version: str
) -> None:
    run = await run_plugin(cnid_plugin, pod_env(sock_dir, "VERSION"), stdin)
    assert run.returncode == 0
    assert json.loads(run.stdout) == {"cniVersion": version, "supportedVersions": SUPPORTED}


@pytest.mark.parametrize(("command", "code"), [("ADD", 11), ("DEL", 11), ("STATUS", 50)])
async def test_daemon_socket_missing(
    cnid_plugin: Path, sock_dir: Path, command: str, code: int
) -> None:
    run = await run_plugin(cnid_plugin, pod_env(sock_dir, command, "/proc/self/ns/net"))
    err = run.error()
    assert err["code"] == code
    assert err["cniVersion"] == "1.0.0"  # taken from the request
    assert str(sock_dir / "cni.sock") in str(err["details"])
    assert "No such file" in str(err["details"])
    assert run.elapsed < 1.0


async def test_daemon_connection_refused(cnid_plugin: Path, sock_dir: Path) -> None:
    # A socket file nobody listens on: what a crashed daemon leaves behind.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(sock_dir / "cni.sock"))
        run = await run_plugin(cnid_plugin, pod_env(sock_dir, "ADD"))
    err = run.error()
    assert err["code"] == 11
    assert "Connection refused" in str(err["details"])


@pytest.mark.parametrize(("command", "code"), [("ADD", 11), ("STATUS", 50)])
async def test_silent_daemon_times_out(
    cnid_plugin: Path, sock_dir: Path, command: str, code: int
) -> None:
    env = pod_env(sock_dir, command, CNID_TIMEOUT_MS="300")
    async with fake_daemon(sock_dir, silent) as daemon:
        run = await run_plugin(cnid_plugin, env)
    err = run.error()
    assert err["code"] == code
    assert "300 ms" in str(err["details"])
    assert 0.3 <= run.elapsed < 2.0
    assert len(daemon.received) == 1  # the request did get through


async def test_daemon_that_never_accepts_times_out(cnid_plugin: Path, sock_dir: Path) -> None:
    # Backlog 0 and no accept(): the first plugins sit in the backlog, the
    # next ones get EAGAIN from connect() and retry; all stop at the deadline.
    env = pod_env(sock_dir, "ADD", CNID_TIMEOUT_MS="300")
    runs: list[Run] = []

    async def one() -> None:
        runs.append(await run_plugin(cnid_plugin, env))

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stuck:
        stuck.bind(str(sock_dir / "cni.sock"))
        stuck.listen(0)
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(one)
    assert [r.error()["code"] for r in runs] == [11] * 4
    assert all(0.3 <= r.elapsed < 2.0 for r in runs), [r.elapsed for r in runs]


async def test_stdin_over_the_limit_is_refused_before_connecting(
    cnid_plugin: Path, sock_dir: Path
) -> None:
    stdin = b'{"cniVersion":"0.4.0","pad":"' + b"x" * MAX_STDIN + b'"}'
    async with fake_daemon(sock_dir, respond(0, b"")) as daemon:
        run = await run_plugin(cnid_plugin, pod_env(sock_dir, "ADD"), stdin)
    err = run.error()
    assert (err["code"], err["cniVersion"]) == (6, "0.4.0")
    assert daemon.connections == 0


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
@pytest.mark.parametrize(
    "netns_path",
    ["/nonexistent/netns", "/etc/hostname", "/proc/self/ns/mnt", '/tmp/x"\n\x01\xff'],
    ids=["missing", "regular-file", "other-namespace", "odd-characters"],
)
async def test_add_without_a_usable_netns_is_unknown_container(
    cnid_plugin: Path, sock_dir: Path, command: str, netns_path: str
) -> None:
    env = pod_env(sock_dir, command, netns_path)
    async with fake_daemon(sock_dir, respond(0, b"")) as daemon:
        run = await run_plugin(cnid_plugin, env)
    err = run.error()
    assert err["code"] == 3
    assert err["msg"] == "container unknown or does not exist"
    # The path comes back JSON-escaped; undecodable bytes as U+FFFD.
    shown = netns_path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    assert shown in str(err["details"])
    assert daemon.connections == 0


# ------------------------------------------------------ malformed answers


@pytest.mark.parametrize(
    ("answer", "detail"),
    [
        (raw(HEADER.pack(10) + b"\x93\x01"), "closed the connection after 2 of 10"),
        (raw(b"\x00\x00"), "closed the connection after 2 of 4"),
        (raw(b""), "closed the connection after 0 of 4"),
        (raw(frame(CniResponse(2, 0, b"x"))), "protocol version 2"),
        (raw(HEADER.pack(MAX_FRAME + 1) + b"\x93"), "exceeds the limit"),
        (raw(HEADER.pack(0xFFFFFFFF)), "exceeds the limit"),
        (raw(HEADER.pack(3) + b"\x83\x01\x02"), "not [version, exit_code, stdout]"),
        (raw(HEADER.pack(7) + b"\x93\x01\x00\xa3abc"), "not [version, exit_code, stdout]"),
        (raw(HEADER.pack(6) + b"\x93\x01\x00\xc4\x05a"), "not [version, exit_code, stdout]"),
        (raw(HEADER.pack(6) + b"\x93\x01\x00\xc4\x00\x00"), "not [version, exit_code"),
        (raw(frame(CniResponse(1, 300, b""))), "exit code 300 out of range"),
        (raw(frame(CniResponse(1, -1, b""))), "exit code -1 out of range"),
    ],
    ids=[
        "truncated-payload",
        "truncated-header",
        "closed-without-answer",
        "wrong-version",
        "oversize-length",
        "huge-length",
        "map-not-array",
        "str-not-bin",
        "bin-overruns",
        "trailing-garbage",
        "exit-code-too-big",
        "exit-code-negative",
    ],
)
async def test_malformed_answer_is_try_again(
    cnid_plugin: Path, sock_dir: Path, answer: Answer, detail: str
) -> None:
    async with fake_daemon(sock_dir, answer):
        run = await run_plugin(cnid_plugin, pod_env(sock_dir, "ADD"))
    err = run.error()
    assert err["code"] == 11
    assert detail in str(err["details"]), err


# ------------------------------------------------------------- the binary


def test_binary_is_static_and_small(cnid_plugin: Path) -> None:
    dynamic = subprocess.run(
        ["readelf", "-d", str(cnid_plugin)], capture_output=True, text=True, check=True
    ).stdout
    assert "NEEDED" not in dynamic
    assert "no dynamic section" in dynamic
    headers = subprocess.run(
        ["readelf", "-lW", str(cnid_plugin)], capture_output=True, text=True, check=True
    ).stdout
    assert "INTERP" not in headers
    assert "LOAD" in headers
    assert cnid_plugin.stat().st_size < 1_500_000


# -------------------------------------------------------------- measuring


async def _bench(runs: int = 200) -> None:
    plugin = Path(__file__).resolve().parents[2] / "build" / "cnid-plugin"
    subprocess.run(["make", "-s", "-C", str(plugin.parents[1] / "plugin_go_free")], check=True)
    sock = Path(tempfile.mkdtemp(prefix="cnidp-", dir="/tmp"))
    try:

        async def median_ms(argv: list[str], env: dict[str, str]) -> float:
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                await trio.run_process(argv, stdin=NETCONF, capture_stdout=True, env=env)
                times.append(time.perf_counter() - start)
            return statistics.median(times) * 1000

        base = await median_ms(["/bin/true"], {})
        version = await median_ms([str(plugin)], pod_env(sock, "VERSION"))
        async with fake_daemon(sock, respond(0, b'{"cniVersion":"1.1.0"}')):
            trip = await median_ms([str(plugin)], pod_env(sock, "ADD", "/proc/self/ns/net"))
        size = plugin.stat().st_size
        print(f"{runs} runs each, median wall time from trio.run_process:")
        print(f"  /bin/true (spawn baseline)     {base:6.2f} ms")
        print(f"  cnid-plugin VERSION            {version:6.2f} ms")
        print(f"  cnid-plugin ADD round trip     {trip:6.2f} ms")
        print(f"  binary size                    {size} bytes")
    finally:
        shutil.rmtree(sock)


if __name__ == "__main__":
    trio.run(_bench)
