"""The daemon with ``[underlay] vtep_address`` (the VM tier: the dummy driver
and the VRF device): ``cnid-vtep`` made before the domains, the VTEP as the
VXLAN devices' local address and the BGP router ID, ``cnictl underlay
routes``, and the device adopted by a restarted daemon.

(The eBGP neighbours that get the ipv4 unicast family come from the ebgp
work's ``[neighbor ...]`` sections; the BGP side is checked against FRR in
tests/host/test_underlay_frr.py.)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from testbed.node import CnidNode, sh

VTEP = "10.255.0.11"


def vtep_index(node: CnidNode) -> int:
    (link,) = json.loads(sh("ip", "-j", "-d", "link", "show", "cnid-vtep", ns=node.netns).stdout)
    assert link["ifalias"] == "cnid:vtep" and link["linkinfo"]["info_kind"] == "dummy"
    return int(link["ifindex"])


def test_daemon_with_a_routed_underlay(cnid_plugin: Path) -> None:
    node = CnidNode(
        name=f"ul{os.getpid()}",
        ini_extra=f"[underlay]\nvtep_address = {VTEP}\n[bgp]\npeers = 192.168.77.1\n",
    )
    try:
        node.create().start()
        index = vtep_index(node)
        addrs = sh("ip", "-o", "-4", "addr", "show", "dev", "cnid-vtep", ns=node.netns).stdout
        assert f"{VTEP}/32" in addrs
        vxlans = sh("ip", "-d", "link", "show", "type", "vxlan", ns=node.netns).stdout
        assert vxlans.count(f"local {VTEP}") >= 1 and "local 192.168.77.2" not in vxlans
        conf = (node.workdir / "bgp" / "exabgp.conf").read_text()
        assert f"router-id {VTEP};" in conf and f"local-address {VTEP};" in conf
        routes = json.loads(node.cnictl("--json", "underlay", "routes").stdout)
        assert routes["vtep"] == VTEP and routes["routes"] == 0 and routes["entries"] == []
        status = node.status()
        assert status is not None and "underlay-routes" in status["startup"]
        node.kill()
        node.start()
        assert vtep_index(node) == index  # adopted, not made again
    finally:
        node.stop()
