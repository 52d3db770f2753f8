"""FRR 8.4 leaves keep a remote VTEP's router MAC when the best path of its
type-5 route moves between the two reflected copies of that route (FRR
only, no cnid node; the lab's leaf/reflector shape, on the host tier):

    lan fr<pid>-lan: br0, 192.168.86.0/24
     |-- rr1    .2   FRR route reflector (bgpd -Z), cluster-id 192.168.124.2
     |-- rr2    .3   the same, same cluster-id
     |-- leaf1  .11  FRR leaf, L3VNI 42 on its default VRF, client of rr1 and rr2
     |      `-- h1  10.50.0.2/24 (type-5 10.50.0.0/24)
     `-- leaf2  .12  the same; h2 10.60.0.2/24 behind it (type-5 10.60.0.0/24)

leaf1 gets leaf2's type-5 twice, one copy through each reflector: same NLRI,
same attributes (originator leaf2, cluster list 192.168.124.2), so rr1's copy
(the lower peer address) is best when both are there. The test moves leaf1's
best path between them three times: rr1 started after leaf1 is on rr2 (rr2's
copy first, then rr1's wins), leaf1's session to rr1 shut (back to rr2's),
and opened again (rr1's again). After each move leaf1 must still have the
route, the neighbour entry of leaf2's VTEP with leaf2's router MAC on br42,
and the FDB entries of that MAC on vxlan42 (to leaf2's VTEP and on the
bridge).

Unfixed FRR 8.4 loses the neighbour and FDB entries at the first move (the
route stays; ``ip neigh`` shows nothing or the VTEP INCOMPLETE), for good.
The cause (bgpd's DELETE + ADD to zebra, zebra's queue order, its nexthop
keeping a set of prefixes without a count) and the workaround
(``zebra zapi-packets 1`` and ``zebra work-queue 0`` in zebra.conf) are
described at testbed.frr.ZEBRA_SERIAL_ZAPI and in docs/evpn.md. To see the
failure, build the leaves without the workaround:

    CNID_FRR_RMAC_WORKAROUND=0 .venv/bin/pytest tests/host/test_frr_rmac.py

(fails at the first move, every time). The workaround narrows a race, it
does not remove it: zebra's socket thread can queue bgpd's ADD while the
main thread still handles the DELETE, and then the entries go all the same.
Measured here, on a loaded 2-core machine: about one move in 30 still
lost them (leaf1 or leaf2). Only FRR >= 10.4 is free of it. So a move that
lost them is healed as docs/evpn.md says (``clear bgp *``,
``FrrRouter.wait_l3vni_kernel``) and counted; the test fails if more than
one move of three needed it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from testbed.frr import FrrRouter, Host, L3Vni, Neighbor, evpn_leaf, route_reflector
from testbed.jsoncmp import wait_for
from testbed.netlab import Lab

ASN = 65000
NET = "192.168.86"
RR1, RR2, LEAF1, LEAF2 = f"{NET}.2", f"{NET}.3", f"{NET}.11", f"{NET}.12"
CLUSTER_ID = "192.168.124.2"  # the lab's reflectors' (containerlab/cnid.clab.yml)
L3VNI = 42
PREFIX2 = "10.60.0.0/24"  # behind leaf2
TIMEOUT = 30.0
SETTLE = 1.0  # zebra has long finished with a best-path move by then
WORKAROUND = os.environ.get("CNID_FRR_RMAC_WORKAROUND", "1") != "0"


@dataclass
class Fabric:
    lab: Lab
    rr1: FrrRouter
    rr2: FrrRouter
    leaf1: FrrRouter
    leaf2: FrrRouter

    @property
    def h1(self) -> Host:
        assert self.leaf1.leaf is not None
        return self.leaf1.leaf.hosts[0]

    @property
    def h2(self) -> Host:
        assert self.leaf2.leaf is not None
        return self.leaf2.leaf.hosts[0]


@pytest.fixture(scope="module")
def fabric() -> Iterator[Fabric]:
    lab = Lab(f"fr{os.getpid() % 100000}")
    try:
        lan = lab.lan("lan", f"{NET}.0/24")

        def reflector(name: str, address: str) -> FrrRouter:
            ns = lab.netns(name, lan=lan, cidr=f"{address}/24")
            return lab.add(
                route_reflector(
                    name, ns, ASN, address, listen_range=f"{NET}.0/24", cluster_id=CLUSTER_ID
                )
            )

        def leaf(name: str, address: str, routed: tuple[str, str]) -> FrrRouter:
            ns = lab.netns(name, lan=lan, cidr=f"{address}/24")
            return lab.add(
                evpn_leaf(
                    name,
                    ns,
                    ASN,
                    address,
                    vtep=address,
                    neighbors=[Neighbor(RR1), Neighbor(RR2)],
                    l3vni=L3Vni(L3VNI, rt=f"{ASN}:{L3VNI}"),
                    hosts=[Host(lab.name(f"h{name[-1]}"), routed=routed)],
                    serial_zapi=WORKAROUND,
                )
            )

        rr1 = reflector("rr1", RR1)
        rr2 = reflector("rr2", RR2)
        leaf1 = leaf("leaf1", LEAF1, ("10.50.0.1/24", "10.50.0.2/24"))
        leaf2 = leaf("leaf2", LEAF2, ("10.60.0.1/24", "10.60.0.2/24"))
        # rr1 stays down for now: the leaves learn each other through rr2 only
        rr2.start()
        leaf1.start()
        leaf2.start()
        yield Fabric(lab, rr1, rr2, leaf1, leaf2)
    finally:
        lab.stop()
        assert not lab.leftovers()


def leaf_kernel(leaf: FrrRouter, prefix: str) -> dict[str, Any]:
    """The leaf's route to ``prefix``, its neighbour entries on the L3VNI's
    bridge and its FDB entries on the L3VNI's VXLAN device (as
    tests/host/test_evpn_interop.py's ``leaf_kernel`` reads them, plus the
    FDB)."""
    route = json.loads(leaf.ip("-j", "route", "show", prefix) or "[]")
    neigh = json.loads(leaf.ip("-j", "neigh", "show", "dev", f"br{L3VNI}") or "[]")
    fdb = json.loads(leaf.run("bridge", "-j", "fdb", "show", "dev", f"vxlan{L3VNI}") or "[]")
    return {"route": route, "neigh": neigh, "fdb": fdb}


def kept(leaf: FrrRouter, prefix: str, vtep: str, rmac: str) -> dict[str, Any]:
    """What ``leaf_kernel`` must hold for a remote ``prefix`` at ``vtep``."""
    return {
        "route": [{"dst": prefix, "gateway": vtep, "dev": f"br{L3VNI}", "flags": ["onlink"]}],
        "neigh": [{"dst": vtep, "lladdr": rmac, "protocol": "zebra"}],
        "fdb": [
            {"mac": rmac, "dst": vtep, "flags": ["self", "extern_learn"]},
            {"mac": rmac, "master": f"br{L3VNI}", "flags": ["extern_learn"]},
        ],
    }


def best_peer(leaf: FrrRouter, prefix: str) -> dict[str, Any]:
    """The peers of ``prefix``'s paths in the leaf's (default VRF) unicast
    table, the ones imported from EVPN, and the peer of the best one."""
    out = leaf.vtysh_json(f"show bgp ipv4 unicast {prefix} json")
    paths = out.get("paths", []) if isinstance(out, dict) else []
    peers = sorted(p.get("peer", {}).get("peerId", "?") for p in paths)
    best = [p.get("peer", {}).get("peerId", "?") for p in paths
            if p.get("bestpath", {}).get("overall")]  # fmt: skip
    return {"peers": peers, "best": best}


def check(f: Fabric, step: str, best: str, peers: list[str]) -> None:
    """Wait for leaf1's best path of leaf2's prefix to be ``best``'s copy,
    then for zebra to have done its work, then: the route and the router
    MAC's neighbour and FDB entries. (Traffic h1 -> h2 is not asserted: it
    also needs leaf2's entries for leaf1, whose best path moves at the same
    time and which the workaround keeps only most of the time, see the
    module's docstring.)"""
    wait_for(
        f"{step}: leaf1's best path via {best}",
        lambda: best_peer(f.leaf1, PREFIX2),
        {"peers": peers, "best": [best]},
        TIMEOUT,
        exact_lists=True,
    )
    time.sleep(SETTLE)
    rmac = f.leaf2.router_mac
    assert rmac is not None
    what = f"{step}: leaf1's kernel keeps the route and leaf2's router MAC {rmac}"
    want = kept(f.leaf1, PREFIX2, LEAF2, rmac)
    try:
        wait_for(what, lambda: leaf_kernel(f.leaf1, PREFIX2), want, 5.0)
    except AssertionError as lost:
        # FRR's residual race (the module's docstring): what docs/evpn.md
        # tells an operator to do, as the lab does; counted, and bounded by
        # the test.
        HEALED.append(f"{step}: {lost}")
        f.leaf1.wait_l3vni_kernel(L3VNI, {LEAF2: [PREFIX2]}, timeout=TIMEOUT, heals=2)
        wait_for(f"{what}, after clearing its sessions", lambda: leaf_kernel(f.leaf1, PREFIX2),
                 want, TIMEOUT)  # fmt: skip


#: The moves after which leaf1 had lost the entries (and was healed).
HEALED: list[str] = []


def test_best_path_moves_between_reflected_copies_keep_the_router_mac(fabric: Fabric) -> None:
    f = fabric
    HEALED.clear()
    # leaf1 on rr2 only: one copy, best
    wait_for("leaf1 on rr2", f.leaf1.peers, {RR2: "Established"}, TIMEOUT)
    wait_for("leaf2 on rr2", f.leaf2.peers, {RR2: "Established"}, TIMEOUT)
    check(f, "rr2 only", RR2, [RR2])

    # move 1: rr1 comes up, its copy arrives after rr2's and wins (lower address)
    f.rr1.start()
    wait_for("leaf1 on both", f.leaf1.peers, {RR1: "Established", RR2: "Established"}, TIMEOUT)
    check(f, "rr1 started", RR1, [RR1, RR2])

    # move 2: leaf1's session to rr1 shut, back to rr2's copy
    f.leaf1.vtysh("configure terminal", f"router bgp {ASN}", f"neighbor {RR1} shutdown")
    check(f, "rr1 session shut", RR2, [RR2])

    # move 3: the session back, rr1's copy again
    f.leaf1.vtysh("configure terminal", f"router bgp {ASN}", f"no neighbor {RR1} shutdown")
    wait_for("leaf1 on both", f.leaf1.peers, {RR1: "Established", RR2: "Established"}, TIMEOUT)
    check(f, "rr1 session back", RR1, [RR1, RR2])
    # With the workaround, losing the entries is FRR's rare residual race:
    # at most one move of three (about one in 30 measured). Unfixed FRR loses
    # them at every move.
    assert len(HEALED) <= 1, "\n".join(HEALED)


def test_leaf_config_has_the_workaround(fabric: Fabric) -> None:
    """What an operator's FRR 8.4 leaf needs in zebra.conf (docs/evpn.md)."""
    if not WORKAROUND:
        pytest.skip("built without the workaround (CNID_FRR_RMAC_WORKAROUND=0)")
    running = fabric.leaf1.vtysh("show running-config")
    assert "zebra zapi-packets 1" in running
    assert "zebra work-queue 0" in running
