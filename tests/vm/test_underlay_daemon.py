"""The daemon with ``[underlay] vtep_address`` (the VM tier: the dummy driver
and the VRF device).

In a routed fabric (testbed/underlay.py: two FRR 8.4 leaves, a spine), its
leaves as ``[neighbor ...]`` sections: ``cnid-vtep`` made before the domains,
the VTEP as the VXLAN devices' local address and the BGP router ID, each
session from the node's end of its link; the ECMP route to the spine's VTEP
through both leaves, the node's VTEP at the leaves, a ping between the
VTEPs, ``cnictl underlay routes`` and the metric; a leaf's bgpd killed and
back; a daemon restart without a flap, ``cnid-vtep`` adopted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from testbed.jsoncmp import wait_for
from testbed.netlab import Lab
from testbed.node import CnidNode, sh
from testbed.underlay import FAR_VTEP, LEAVES, underlay_fabric

VTEP = "10.255.0.11"


def vtep_index(node: CnidNode) -> int:
    (link,) = json.loads(sh("ip", "-j", "-d", "link", "show", "cnid-vtep", ns=node.netns).stdout)
    assert link["ifalias"] == "cnid:vtep" and link["linkinfo"]["info_kind"] == "dummy"
    return int(link["ifindex"])


FABRIC_INI = f"""[underlay]
vtep_address = {VTEP}
[bgp]
asn = 65011
hold_time = 3
[neighbor {LEAVES[1][0]}]
asn = {LEAVES[1][2]}
[neighbor {LEAVES[2][0]}]
asn = {LEAVES[2][2]}
"""
BOTH = {FAR_VTEP: [LEAVES[1][0], LEAVES[2][0]]}


def ping(node: CnidNode) -> dict[str, bool]:
    cmd = ["ping", "-c", "1", "-W", "1", "-I", VTEP, FAR_VTEP]
    return {"ok": sh(*cmd, ns=node.netns, check=False).returncode == 0}


def exactly(probe: Callable[[], Any]) -> Callable[[], Any]:
    """The probe's value wrapped so that lists compare whole."""
    return lambda: {"v": probe()}


def test_daemon_in_a_routed_fabric(cnid_plugin: Path) -> None:
    node = CnidNode(name=f"uf{os.getpid()}", ini_extra=FABRIC_INI)
    lab = Lab(f"uf{os.getpid()}")
    monitor: subprocess.Popen[str] | None = None
    events = ""
    try:
        node.create()
        fabric = underlay_fabric(lab, node.netns)
        node.start()
        # the VTEP: cnid-vtep's /32, the VXLAN devices' local address, the router ID
        index = vtep_index(node)
        addrs = sh("ip", "-o", "-4", "addr", "show", "dev", "cnid-vtep", ns=node.netns).stdout
        assert f"{VTEP}/32" in addrs
        vxlans = sh("ip", "-d", "link", "show", "type", "vxlan", ns=node.netns).stdout
        assert f"local {VTEP}" in vxlans and "local 192.168.77.2" not in vxlans
        conf = (node.workdir / "bgp" / "exabgp.conf").read_text()
        assert f"router-id {VTEP};" in conf
        for _, node_ip, _ in LEAVES.values():  # each session from its link, the VTEP announced
            assert f"local-address {node_ip};" in conf
        assert conf.count(f"route {VTEP}/32 next-hop self;") == 2
        status = node.status()
        assert status is not None and "underlay-routes" in status["startup"]

        wait_for("both next hops", exactly(fabric.node_routes), {"v": BOTH}, 90, exact_lists=True)
        for i, (_, node_ip, _) in LEAVES.items():
            want = {f"{VTEP}/32": [{"protocol": "bgp", "nexthops": [{"ip": node_ip}]}]}
            leaf = fabric.leaves[i]
            wait_for(f"l{i} learned the VTEP", lambda r=leaf: r.vtysh_json("show ip route json"),
                     want, 60)  # fmt: skip
        wait_for("ping between the VTEPs", lambda: ping(node), {"ok": True}, 60)
        routes = json.loads(node.cnictl("--json", "underlay", "routes").stdout)
        (entry,) = routes["entries"]
        assert entry["prefix"] == f"{FAR_VTEP}/32"
        assert entry["neighbors"] == [LEAVES[1][0], LEAVES[2][0]]
        assert entry["installed"] == BOTH[FAR_VTEP]
        metrics = sh(
            "python3",
            "-c",
            "import urllib.request; print(urllib.request.urlopen("
            "'http://127.0.0.1:24800/metrics').read().decode())",
            ns=node.netns,
        ).stdout
        assert "cnid_underlay_routes 1.0" in metrics

        l2 = fabric.leaves[2]
        os.kill(l2.pids["bgpd"], signal.SIGKILL)
        one = {"v": {FAR_VTEP: [LEAVES[1][0]]}}
        wait_for("l1's next hop only", exactly(fabric.node_routes), one, 30, exact_lists=True)
        wait_for("ping through l1", lambda: ping(node), {"ok": True}, 30)
        l2.restart()
        wait_for("both again", exactly(fabric.node_routes), {"v": BOTH}, 60, exact_lists=True)

        # the daemon restarted: the route adopted, never deleted or re-added
        monitor = subprocess.Popen(["ip", "netns", "exec", node.netns, "ip", "monitor", "route"],
                                   stdout=subprocess.PIPE, text=True)  # fmt: skip
        node.kill()
        assert fabric.node_routes() == BOTH
        node.start()
        wait_for(
            "adoption over",
            lambda: json.loads(node.cnictl("--json", "underlay", "routes").stdout),
            {"adopting": False, "routes": 1},
            90,
        )
        assert fabric.node_routes() == BOTH
        assert vtep_index(node) == index  # cnid-vtep adopted, not made again
        time.sleep(1)
    finally:
        if monitor is not None:
            monitor.send_signal(signal.SIGTERM)
            events, _ = monitor.communicate(timeout=10)
        node.stop()
        lab.stop()
    assert FAR_VTEP not in events, f"the route flapped across the restart:\n{events}"
