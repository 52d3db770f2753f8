"""The lab's bring-up and teardown on the host (no VRF needed: a topology
with the API server, a route reflector, a leaf and its host, no cnid node):
namespaces and veths as the file says, FRR up and peering, and ``down``
removing everything, also after the lab's own process was SIGKILLed.

Real namespaces and processes: needs root, as the host tier does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from testbed.jsoncmp import wait_for
from testbed.lab import ClusterLab, Progress, ping
from testbed.labstate import LabFiles, lab_namespaces, sweep, tagged_pids
from testbed.topology import parse

REPO = Path(__file__).resolve().parents[2]

MINI = """
name: mini
topology:
  defaults: {kind: linux}
  kinds:
    linux: {image: cnid-lab:latest, labels: {cnid.asn: "65000"}}
  nodes:
    seg: {kind: bridge}
    kapi: {labels: {cnid.role: kube-api, cnid.eth1: 192.168.124.1/24}}
    rr1: {labels: {cnid.role: route-reflector, cnid.eth1: 192.168.124.2/24,
                   cnid.listen-range: 192.168.124.0/24}}
    leaf: {labels: {cnid.role: leaf, cnid.eth1: 192.168.124.4/24, cnid.eth2: 10.50.0.1/24,
                    cnid.neighbors: rr1, cnid.l3vni: "42", cnid.route-target: "65000:42",
                    cnid.networks: 10.50.0.0/24}}
    h1: {labels: {cnid.role: host, cnid.eth1: 10.50.0.2/24, cnid.gateway: 10.50.0.1}}
  links:
    - endpoints: ["kapi:eth1", "seg:p-kapi"]
    - endpoints: ["rr1:eth1", "seg:p-rr1"]
    - endpoints: ["leaf:eth1", "seg:p-leaf"]
    - endpoints: ["leaf:eth2", "h1:eth1"]
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces)")


def _name(tag: str) -> str:
    return f"t{tag}{os.getpid() % 100000}"


def test_up_builds_what_the_file_says_and_down_removes_it(tmp_path: Path) -> None:
    name = _name("u")
    topo = parse(MINI, "mini")
    lab = ClusterLab(topo, name=name, progress=Progress(quiet=True))
    try:
        lab.up()
        # the namespaces: one per linux node but the API server, one per bridge
        assert lab_namespaces(name) == sorted(
            f"lab-{name}-{n}" for n in ("seg", "rr1", "leaf", "h1")
        )
        links = json.loads(lab.run("leaf", "ip", "-j", "-4", "addr", "show").stdout)
        addrs = {i["ifname"]: [a["local"] for a in i["addr_info"]] for i in links}
        assert addrs["eth1"] == ["192.168.124.4"] and addrs["eth2"] == ["10.50.0.1"]
        ports = json.loads(
            subprocess.run(
                ["ip", "netns", "exec", f"lab-{name}-seg", "ip", "-j", "link", "show",
                 "master", "br0"],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        assert {p["ifname"] for p in ports} == {"p-rr1", "p-leaf"}
        # the host's default route goes through the leaf
        assert ping(lab.namespaces["h1"], "10.50.0.1")
        assert lab.sessions("leaf") == {"192.168.124.2": "established"}
        assert lab.sessions("rr1") == {"192.168.124.4": "established"}
        wait_for(
            "the leaf's type-5 at the reflector",
            lab.routers["rr1"].evpn_routes,
            [{"type": 5, "prefix": "10.50.0.0/24", "vni": 42, "nexthop": "192.168.124.4"}],
            60,
        )
        # the API server answers on its admin socket
        assert lab.kubectl.list("namespaces")
        state = LabFiles(name).read()
        assert state["name"] == name and len(state["processes"]) >= 3
        # another process can read the lab back
        other = ClusterLab.attach(name)
        assert other.sessions("leaf") == {"192.168.124.2": "established"}
        other.detach()
    finally:
        found = lab.down()
    assert found["processes"] == 0  # the orderly stop left nothing to kill
    assert lab_namespaces(name) == []
    assert not LabFiles(name).root.exists()
    assert not [p for p in Path("/var/run/frr").glob(f"lab-{name}-*")]


def test_down_after_the_lab_process_was_killed_removes_everything(tmp_path: Path) -> None:
    name = _name("k")
    topo_file = tmp_path / "mini.clab.yml"
    topo_file.write_text(MINI)
    script = textwrap.dedent(
        f"""
        import os, signal
        from testbed.lab import ClusterLab, Progress
        from testbed.topology import load
        lab = ClusterLab(load({str(topo_file)!r}), name={name!r}, progress=Progress(quiet=True))
        lab.up()
        print("up", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    try:
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert proc.stdout.strip() == "up"
        namespaces = lab_namespaces(name)
        assert len(namespaces) == 4
        orphans = tagged_pids(name, namespaces)
        assert len(orphans) >= 3  # the API server, the RR's bgpd, the leaf's zebra and bgpd
    finally:
        found = sweep(name)
    assert found["processes"] >= 3 and found["namespaces"] == 4
    time.sleep(0.2)
    assert lab_namespaces(name) == []
    assert tagged_pids(name, []) == []
    assert not LabFiles(name).root.exists()
    # the CLI says there is nothing left
    out = subprocess.run(
        [sys.executable, "-m", "testbed.lab", "-t", str(topo_file), "--name", name, "down"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "nothing to remove" in out.stdout
