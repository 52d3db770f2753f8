"""The cnid-lab image's entrypoint (testbed/labnode.py) without Docker: each
"container" a network namespace wired the way containerlab wires them (the
processes start first, the links come after, named as the endpoints say;
the bridge is a namespace holding one, not the host's), each running
``python -m testbed.labnode`` with the node's name and the topology file.
Every role but ``node`` (that one needs the VRF device): the API server,
FRR route reflector and leaf, a host. Needs root, like the host tier.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.jsoncmp import wait_for
from testbed.lab import ping
from testbed.labstate import stop_pids
from testbed.netlab import veth
from testbed.node import netns_add, netns_del, sh
from testbed.topology import parse

REPO = Path(__file__).resolve().parents[2]
MINI = (Path(__file__).parent / "test_lab_teardown.py").read_text().split('MINI = """')[1]
MINI = MINI.split('"""')[0]

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)")


@pytest.fixture
def containers(tmp_path: Path) -> Iterator[dict[str, object]]:
    topo_file = tmp_path / "mini.clab.yml"
    topo_file.write_text(MINI)
    topo = parse(MINI, str(topo_file))
    prefix = f"cs{os.getpid() % 100000}"
    # FRR reads its configs as user frr: not below pytest's 0700 directories
    state, work = tmp_path / "state", Path(tempfile.mkdtemp(prefix="cnid-lab-work-"))
    work.chmod(0o755)
    namespaces = {n: f"{prefix}-{n}" for n in topo.nodes}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for ns in namespaces.values():
            netns_add(ns)
        bridge = namespaces["seg"]
        sh("ip", "link", "add", "br0", "type", "bridge", ns=bridge)
        sh("ip", "link", "set", "br0", "up", ns=bridge)
        for name, node in topo.nodes.items():
            if node.is_bridge:
                continue
            env = dict(
                os.environ,
                CNID_NODE=name,
                CNID_TOPOLOGY=str(topo_file),
                CNID_LAB_STATE=str(state),
                CNID_LAB_WORK=str(work),
            )
            log = open(tmp_path / f"{name}.log", "wb")
            procs[name] = subprocess.Popen(
                ["ip", "netns", "exec", namespaces[name], sys.executable, "-m", "testbed.labnode"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
            log.close()
        time.sleep(1)  # containerlab adds the links once the containers run
        for link in topo.links:
            a, b = link.a, link.b
            if topo.nodes[a.node].is_bridge:
                a, b = b, a
            veth(namespaces[a.node], a.ifname, namespaces[b.node], b.ifname)
            if topo.nodes[b.node].is_bridge:
                sh("ip", "link", "set", b.ifname, "master", "br0", ns=namespaces[b.node])
        yield {"ns": namespaces, "procs": procs, "state": state, "logs": tmp_path}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                stop_pids([proc.pid])
        for ns in namespaces.values():
            netns_del(ns)
        shutil.rmtree(work, ignore_errors=True)


def _logs(c: dict[str, object]) -> str:
    logs = c["logs"]
    assert isinstance(logs, Path)
    return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in sorted(logs.glob("*.log")))


def test_the_entrypoint_plays_each_nodes_role(containers: dict[str, object]) -> None:
    ns = containers["ns"]
    state = containers["state"]
    assert isinstance(ns, dict) and isinstance(state, Path)
    # the API server, on kapi's address, its files in the shared directory
    wait_for(
        "the API server ready",
        lambda: {"ready": (state / "api" / "ready").exists()},
        {"ready": True},
        120,
    )
    assert (state / "api" / "url").read_text().strip() == "https://192.168.124.1:6443"

    # the leaf and the reflector, peering, the leaf's host prefix as type-5
    def vtysh(node: str, command: str) -> object:
        out = subprocess.run(
            ["vtysh", "-N", ns[node], "-c", command], capture_output=True, text=True, check=False
        )
        return json.loads(out.stdout) if out.returncode == 0 and out.stdout.strip() else {}

    (
        wait_for(
            "the leaf established with rr1, h1's prefix at rr1",
            lambda: {
                "leaf": vtysh("leaf", "show bgp l2vpn evpn summary json"),
                "rr1": vtysh("rr1", "show bgp l2vpn evpn route type prefix json"),
            },
            {
                "leaf": {"peers": {"192.168.124.2": {"state": "Established"}}},
                "rr1": {"192.168.124.4:1": {"[5]:[0]:[24]:[10.50.0.0]": {}}},
            },
            120,
        ),
        _logs(containers),
    )
    # the host: its address and default route
    assert ping(ns["h1"], "10.50.0.1")
    # resources applied from a "container" on the fabric, through the API's HTTPS address
    env = dict(os.environ, CNID_LAB_STATE=str(state))
    out = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns["rr1"],
            sys.executable,
            "-m",
            "testbed.labnode",
            "apply",
            "demo",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "applied VRFDomain vrf-200" in out.stdout
    # SIGTERM (containerlab destroy): each stops what it started
    procs = containers["procs"]
    assert isinstance(procs, dict)
    for proc in procs.values():
        assert proc.poll() is None, _logs(containers)
        proc.send_signal(signal.SIGTERM)
    for proc in procs.values():
        assert proc.wait(30) in (0, -signal.SIGTERM, 1)
    assert not list(Path("/var/run/frr").glob(f"{ns['leaf']}*"))
