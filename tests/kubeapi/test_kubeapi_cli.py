"""``python -m testbed.kubeapi`` as another process uses it: files in a
directory, a ready marker, SIGTERM to stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.kubeapi._helpers import HERE, RBAC, WIDGETS, widget

REPO = HERE.parents[1]
USER = "system:serviceaccount:pyroute2-cni:cnid"


def _wait_ready(process: subprocess.Popen[bytes], ready: Path, log: Path) -> None:
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no ready file after 30 s"
        time.sleep(0.05)


def test_cli_serves_other_processes_and_stops_on_sigterm(tmp_path: Path) -> None:
    directory = tmp_path / "api"
    log = tmp_path / "kubeapi.log"
    command = [
        sys.executable, "-m", "testbed.kubeapi",
        "--listen", "127.0.0.1:0",
        "--dir", str(directory),
        "--crds", str(HERE),
        "--rbac", str(RBAC),
        "--rbac-user", USER,
        "--bookmark-interval", "0.5",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=output)
    try:
        _wait_ready(process, directory / "ready", log)
        expected = {"ca.crt", "token", "kubeconfig", "sa-token", "sa-kubeconfig", "url", "ready"}
        assert expected <= {p.name for p in directory.iterdir()}
        url = (directory / "url").read_text()
        kubeconfig = yaml.safe_load((directory / "kubeconfig").read_text())
        assert kubeconfig["clusters"][0]["cluster"]["server"] == url
        context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
        admin_token = (directory / "token").read_text()
        sa_token = (directory / "sa-token").read_text()
        with httpx.Client(base_url=url, verify=context, timeout=10) as client:
            admin = {"Authorization": f"Bearer {admin_token}"}
            created = client.post(WIDGETS, json=widget("w1"), headers=admin)
            assert created.status_code == 201, created.text
            restricted = {"Authorization": f"Bearer {sa_token}"}
            assert client.get(f"{WIDGETS}/w1", headers=restricted).status_code == 200
            assert client.delete(f"{WIDGETS}/w1", headers=restricted).status_code == 403
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert code == 0, log.read_text()
    assert not (directory / "ready").exists()
    assert "serving on https://127.0.0.1:" in log.read_text()


def _start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "ab") as output:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=output)


def _stop(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    assert code == 0, log.read_text()


def test_cli_unix_socket_and_state_across_a_restart(tmp_path: Path, sock_dir: Path) -> None:
    """A test process reaches the server over its UNIX socket (as from the
    root namespace into a lab's), stops it (an outage: nothing listens),
    and starts it again with the same state."""
    directory = tmp_path / "api"
    log = tmp_path / "kubeapi.log"
    sock = sock_dir / "admin.sock"
    state = tmp_path / "state.json"
    command = [
        sys.executable, "-m", "testbed.kubeapi",
        "--listen", "127.0.0.1:0",
        "--dir", str(directory),
        "--crds", str(HERE),
        "--rbac", str(RBAC),
        "--rbac-user", USER,
        "--unix", str(sock),
        "--state", str(state),
    ]  # fmt: skip

    def client(token_file: str) -> httpx.Client:
        token = (directory / token_file).read_text()
        return httpx.Client(
            base_url="http://kubeapi",
            transport=httpx.HTTPTransport(uds=str(sock)),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )

    process = _start(command, log)
    try:
        _wait_ready(process, directory / "ready", log)
        assert sock.is_socket()
        with client("token") as admin, client("sa-token") as restricted:
            created = admin.post(WIDGETS, json=widget("w1"))
            assert created.status_code == 201, created.text
            before = created.json()["metadata"]
            assert restricted.delete(f"{WIDGETS}/w1").status_code == 403
            params = {"watch": "1", "resourceVersion": before["resourceVersion"]}
            with admin.stream("GET", WIDGETS, params={**params, "timeoutSeconds": "5"}) as watch:
                assert admin.post(WIDGETS, json=widget("w2")).status_code == 201
                event = json.loads(next(watch.iter_lines()))
            assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "w2")
            last_rv = admin.get(WIDGETS).json()["metadata"]["resourceVersion"]
            url = (directory / "url").read_text()
            log_before = admin.get("/debug/requests").json()
            assert restricted.get("/debug/requests").status_code == 403
    finally:
        _stop(process, log)
    assert not sock.exists() and not (directory / "ready").exists()
    # the outage (plain sockets: httpcore leaks the socket of a failed UDS connect)
    with socket.socket(socket.AF_UNIX) as probe, pytest.raises(FileNotFoundError):
        probe.connect(str(sock))
    host, port = url.removeprefix("https://").rsplit(":", 1)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, int(port)), timeout=5).close()
    assert state.exists()

    process = _start(command, log)
    try:
        _wait_ready(process, directory / "ready", log)
        with client("token") as admin:
            after = admin.get(f"{WIDGETS}/w1").json()["metadata"]
            assert (after["uid"], after["resourceVersion"]) == (
                before["uid"],
                before["resourceVersion"],
            )
            params = {"watch": "1", "resourceVersion": last_rv}
            with admin.stream("GET", WIDGETS, params=params) as watch:
                event = json.loads(next(watch.iter_lines()))
            assert (event["type"], event["object"]["code"]) == ("ERROR", 410)
            created = admin.post(WIDGETS, json=widget("w3")).json()
            assert int(created["metadata"]["resourceVersion"]) > int(last_rv)
            log_after = admin.get("/debug/requests").json()
        assert log_after[: len(log_before)] == log_before
        assert [(e["verb"], e["name"], e["code"]) for e in log_after[len(log_before) :]] == [
            ("get", "w1", 200),
            ("watch", "", 200),
            ("create", "", 201),
        ]
    finally:
        _stop(process, log)
    assert "restored" in log.read_text()
    assert not sock.exists()
