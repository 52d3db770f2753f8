"""The daemon on a kernel without a VRF device (this host): it stays up, says
why it cannot take pods, and answers every bad input with the right CNI
error code, through the real plugin and straight on its socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from cnid.core import MAX_FRAME, CniRequest, frame
from testbed.node import VENV_BIN, CnidNode, conflist_conf


@pytest.fixture(scope="module")
def node(cnid_plugin: Path) -> Iterator[CnidNode]:
    n = CnidNode(name=f"cnidh-{os.getpid()}").create()
    try:
        n.start_unready()
        yield n
    finally:
        n.stop()


def http_get(node: CnidNode, path: str) -> tuple[int, str]:
    code = (
        "import urllib.request, urllib.error, sys\n"
        "try:\n"
        f"    r = urllib.request.urlopen('http://127.0.0.1:24800{path}', timeout=5)\n"
        '    print(r.status); print(r.read().decode(), end="")\n'
        "except urllib.error.HTTPError as e:\n"
        '    print(e.code); print(e.read().decode(), end="")\n'
    )
    out = subprocess.run(
        ["ip", "netns", "exec", node.name, str(VENV_BIN / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status, _, body = out.partition("\n")
    return int(status), body


def error_of(run) -> dict:  # type: ignore[no-untyped-def]
    assert run.rc == 1, (run.rc, run.stdout, run.stderr)
    err = json.loads(run.stdout)
    assert set(err) >= {"cniVersion", "code", "msg"}
    return err


def test_health_endpoints_tell_why_not_ready(node: CnidNode) -> None:
    assert http_get(node, "/livez") == (200, "ok\n")
    status, body = http_get(node, "/readyz")
    assert status == 503
    assert "domains:" in body
    status, body = http_get(node, "/metrics")
    assert status == 200
    assert "cnid_cni_requests_total" in body or "# HELP cnid_cni_requests" in body
    assert "cnid_ready 0.0" in body
    assert http_get(node, "/nope")[0] == 404


def test_cnictl_status_shows_components(node: CnidNode) -> None:
    status = node.status()
    assert status is not None
    assert status["ready"] is False
    assert status["components"]["cni-socket"] == "ready"
    assert status["components"]["domains"] != "ready"
    table = node.cnictl("status").stdout
    assert "ready:   no" in table and "vrf-42" in table


def test_the_cnictl_script_prints_what_the_in_process_call_returns(node: CnidNode) -> None:
    """The installed entry point, as an operator runs it: the same exit
    status and output as ``CnidNode.cnictl`` (cnictl's code in-process)."""
    for args in (["status"], ["--json", "ipam"], ["bogus"]):
        script = subprocess.run(
            [str(VENV_BIN / "cnictl"), "--socket", node.ctl_socket, *args],
            capture_output=True,
            text=True,
            check=False,
        )
        inproc = node.cnictl(*args)
        assert script.returncode == inproc.returncode, args
        assert script.stderr == inproc.stderr, args
        if args[0] != "status":  # status shows uptimes
            assert script.stdout == inproc.stdout, args
    assert subprocess.run([str(VENV_BIN / "cnictl"), "--help"], capture_output=True).returncode == 0


def test_status_is_not_available(node: CnidNode) -> None:
    err = error_of(node.plugin("STATUS"))
    assert err["code"] == 50
    assert "domains" in err.get("details", "")


def test_add_on_an_unready_node_is_try_again_and_allocates_nothing(node: CnidNode) -> None:
    path = node.add_pod(f"p-{os.getpid()}")
    err = error_of(node.plugin("ADD", container_id="c-unready", netns=path))
    assert err["code"] == 11
    assert json.loads(node.cnictl("--json", "pods").stdout) == []
    blocks = json.loads(node.cnictl("--json", "ipam").stdout)
    assert all(b["allocated"] <= 1 for b in blocks)


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"conf": b"{this is not json"}, 6),
        ({"env": {"CNI_COMMAND": "FROB"}}, 4),
        ({"conf": conflist_conf(version="0.2.0")}, 1),
        ({"conf": conflist_conf(version="7.0.0")}, 1),
        ({"conf": {"cniVersion": "1.1.0", "type": "cnid-plugin"}}, 7),
        ({"container_id": ""}, 4),
        ({"netns": "/run/netns/does-not-exist"}, 3),
        ({"netns": "/etc/hostname"}, 3),
        ({"conf": b"{" + b" " * (1024 * 1024) + b"}"}, 6),
    ],
)
def test_bad_input_gets_its_spec_code(node: CnidNode, kwargs: dict, code: int) -> None:  # type: ignore[type-arg]
    args = {"container_id": "c-bad", "netns": "/proc/self/ns/net", **kwargs}
    err = error_of(node.plugin("ADD", **args))
    assert err["code"] == code, err
    assert json.loads(node.cnictl("--json", "pods").stdout) == []


def test_missing_command(node: CnidNode) -> None:
    run = node.plugin("", container_id="x", netns="/proc/self/ns/net")
    assert error_of(run)["code"] == 4


def test_version_is_answered(node: CnidNode) -> None:
    run = node.plugin("VERSION")
    assert run.rc == 0
    assert "1.1.0" in json.loads(run.stdout)["supportedVersions"]


def raw_exchange(path: str, data: bytes, close_write: bool = True) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(15)
        s.connect(path)
        s.sendall(data)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def decode_answer(raw: bytes) -> dict:  # type: ignore[type-arg]
    (length,) = struct.unpack(">I", raw[:4])
    version, code, stdout = msgspec.msgpack.decode(raw[4 : 4 + length])
    assert (version, code) == (1, 1)
    return json.loads(stdout)


def test_frames_straight_to_the_socket(node: CnidNode) -> None:
    # over the limit: refused before reading the payload, answered with code 6
    err = decode_answer(raw_exchange(node.socket, struct.pack(">I", MAX_FRAME + 1)))
    assert err["code"] == 6 and "exceeds" in err["msg"]
    # truncated: the peer stops writing early; answered with code 6 if it still listens
    err = decode_answer(raw_exchange(node.socket, struct.pack(">I", 100) + b"x" * 10))
    assert err["code"] == 6 and "truncated" in err["msg"]
    # garbage payload
    err = decode_answer(raw_exchange(node.socket, struct.pack(">I", 3) + b"\xc1\xc1\xc1"))
    assert err["code"] == 6
    # announces a descriptor it does not carry
    req = CniRequest(1, {"CNI_COMMAND": "DEL"}, b'{"cniVersion":"1.1.0","name":"n"}', True)
    err = decode_answer(raw_exchange(node.socket, frame(req)))
    assert err["code"] == 6
    # still serving
    assert node.plugin("STATUS").rc == 1 and node.status() is not None
    metrics = http_get(node, "/metrics")[1]
    assert 'cnid_protocol_errors_total{socket="cni"}' in metrics


def test_daemon_down_means_try_again_and_sigterm_is_clean(cnid_plugin: Path) -> None:
    n = CnidNode(name=f"cnidd-{os.getpid()}").create()
    try:
        n.start_unready()
        t0 = time.monotonic()
        rc = n.kill(signal.SIGTERM)
        assert rc == 0, n.log_tail()
        assert time.monotonic() - t0 < 10
        assert not Path(n.socket).exists()
        assert "shutting down" in n.log_tail()
        err = error_of(n.plugin("ADD", container_id="c", netns="/proc/self/ns/net"))
        assert err["code"] == 11
    finally:
        n.stop()
