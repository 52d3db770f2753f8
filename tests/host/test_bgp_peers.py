"""Real BGP peers on the host (no VRF needed): an FRR route reflector, two
FRR EVPN leaves with hosts behind them and a GoBGP speaker, all on one LAN,
and the test bed's helpers themselves (stop, restart, bulk injection).

    lan bp<pid>-lan: br0, 192.168.79.0/24
     |-- rr  .1   FRR bgpd -Z: cluster-id .1, listen range 192.168.79.0/24
     |            (peer group CLIENTS, l2vpn evpn route-reflector-client),
     |            static RR client .20 (GoBGP waits passively: see testbed/gobgp.py)
     |-- l1  .11  FRR leaf, VTEP .11: L2VNI 100 (br100/vxlan100, RT 65000:100),
     |      |     L3VNI 4242 on the default VRF (br4242/vxlan4242, RT 65000:42)
     |      `-- h1: eth0 10.1.1.2/24 via 10.1.1.1 (announced: type-5 10.1.1.0/24)
     |              eth1 10.100.0.11/24 in br100 (its MAC: a type-2)
     |-- l2  .12  the same: h2 10.1.2.2/24, 10.100.0.12/24
     `-- gb  .20  gobgpd: type-2/3/5 routes injected with the CLI

Convergence is always waited for on a JSON view with testbed.jsoncmp.wait_for
(partial expectations; the last diff is in the failure).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.frr import FrrRouter, Host, L2Vni, L3Vni, Neighbor, evpn_leaf, route_reflector
from testbed.gobgp import GoBgp, GoBgpNeighbor, Prefix
from testbed.jsoncmp import json_cmp, wait_for
from testbed.netlab import Lab, namespaces, sh

ASN = 65000
L2VNI, L3VNI, VRF = 100, 4242, 42
RT2 = f"{ASN}:{L2VNI}"  # type-2/3: <asn>:<vni>
RT5 = f"{ASN}:{VRF}"  # type-5: <asn>:<vrf>
RR, GB = "192.168.79.1", "192.168.79.20"
GB_RMAC = "02:00:00:00:00:20"
TIMEOUT = 30.0


def leaf_addr(i: int) -> str:
    return f"192.168.79.{10 + i}"


@dataclass
class Fabric:
    lab: Lab
    rr: FrrRouter
    leaves: list[FrrRouter]
    gb: GoBgp

    def host(self, i: int) -> Host:
        leaf = self.leaves[i - 1].leaf
        assert leaf is not None
        return leaf.hosts[0]

    def bridged_mac(self, i: int) -> str:
        """The MAC of host i's interface in br100 (what its leaf announces)."""
        links = json.loads(sh("ip", "-j", "link", "show", "eth1", ns=self.host(i).netns).stdout)
        return str(links[0]["address"])


def build_leaf(lab: Lab, lan: Any, i: int) -> FrrRouter:
    addr = leaf_addr(i)
    return evpn_leaf(
        f"l{i}",
        lab.netns(f"l{i}", lan=lan, index=10 + i),
        ASN,
        addr,
        vtep=addr,
        neighbors=[Neighbor(RR)],
        l2vnis=[L2Vni(L2VNI, rt=RT2)],
        l3vni=L3Vni(L3VNI, rt=RT5),
        hosts=[
            Host(
                lab.name(f"h{i}"),
                routed=(f"10.1.{i}.1/24", f"10.1.{i}.2/24"),
                bridged={L2VNI: f"10.100.0.{10 + i}/24"},
            )
        ],
    )


def ping(ns: str, address: str, count: int = 2) -> bool:
    cmd = ["ping", "-c", str(count), "-W", "1", "-i", "0.2", address]
    return sh(*cmd, ns=ns, check=False).returncode == 0


def wait_ping(what: str, ns: str, address: str, timeout: float = TIMEOUT) -> None:
    wait_for(what, lambda: {"ok": ping(ns, address, 1)}, {"ok": True}, timeout, 0.2)


def established(*addresses: str) -> dict[str, Any]:
    """The expectation on ``show bgp l2vpn evpn summary json``."""
    return {"peers": {a: {"state": "Established"} for a in addresses}}


def wait_established(fabric: Fabric) -> None:
    rr, gb = fabric.rr, fabric.gb
    wait_for("RR sessions", rr.summary, established(leaf_addr(1), leaf_addr(2), GB), TIMEOUT)
    for leaf in fabric.leaves:
        wait_for(f"{leaf.name}'s session", leaf.summary, established(RR), TIMEOUT)
    wait_for("GoBGP's session", gb.peers, {RR: "established"}, TIMEOUT)


@pytest.fixture(scope="module")
def fabric() -> Iterator[Fabric]:
    lab = Lab(f"bp{os.getpid()}")
    try:
        lan = lab.lan("lan", "192.168.79.0/24")
        rr = lab.add(
            route_reflector(
                "rr",
                lab.netns("rr", lan=lan, index=1),
                ASN,
                RR,
                listen_range="192.168.79.0/24",
                neighbors=[Neighbor(GB, rr_client=True)],
            )
        )
        leaves = [lab.add(build_leaf(lab, lan, i)) for i in (1, 2)]
        gb = lab.add(
            GoBgp(
                "gb",
                lab.netns("gb", lan=lan, index=20),
                ASN,
                GB,
                neighbors=[GoBgpNeighbor(RR, ASN, passive=True)],
            )
        )
        rr.start()
        for leaf in leaves:
            leaf.start()
        gb.start()
        fab = Fabric(lab, rr, leaves, gb)
        wait_established(fab)
        # the hosts' bridged MACs become type-2 routes once they send a frame
        for i in (1, 2):
            ping(fab.host(i).netns, f"10.100.0.{13 - i}", 1)
        yield fab
    finally:
        lab.stop()


# -- sessions and routes ----------------------------------------------------------------


def test_sessions_established(fabric: Fabric) -> None:
    wait_established(fabric)
    summary = fabric.rr.summary()
    assert summary["dynamicPeers"] == 2  # the leaves came in through the listen range
    assert set(fabric.rr.peers()) == {leaf_addr(1), leaf_addr(2), GB}


def leaf_routes(fabric: Fabric, i: int) -> list[dict[str, Any]]:
    """What every other speaker must have from leaf i: its type-3 and the
    type-2 of its host's MAC (L2VNI, RT <asn>:<vni>) and its type-5 (the
    host prefix in the L3VNI, RT <asn>:<vrf>, the leaf's router MAC)."""
    addr, leaf = leaf_addr(i), fabric.leaves[i - 1]
    return [
        {"type": 3, "ip": addr, "vni": L2VNI, "rt": [RT2], "nexthop": addr, "originator": addr},
        {"type": 2, "mac": fabric.bridged_mac(i), "vni": L2VNI, "rt": [RT2], "nexthop": addr},
        {
            "type": 5,
            "prefix": f"10.1.{i}.0/24",
            "vni": L3VNI,
            "rt": [RT5],
            "rmac": leaf.router_mac,
            "nexthop": addr,
            "originator": addr,
        },
    ]


def test_each_leaf_has_the_others_type_2_3_5(fabric: Fabric) -> None:
    for me, other in ((1, 2), (2, 1)):
        leaf = fabric.leaves[me - 1]
        wait_for(f"l{other}'s routes at l{me}", leaf.evpn_routes, leaf_routes(fabric, other))
        # zebra's side: the L2VNI's flood list, both VNIs in the default VRF
        expected = {
            str(L2VNI): {"type": "L2", "remoteVteps": [leaf_addr(other)], "tenantVrf": "default"},
            str(L3VNI): {"type": "L3", "tenantVrf": "default"},
        }
        wait_for(f"l{me}'s VNIs", leaf.evpn_vni, expected)


def test_leaves_routes_in_gobgp_rib(fabric: Fabric) -> None:
    expected = leaf_routes(fabric, 1) + leaf_routes(fabric, 2)
    for route in expected:
        route["neighbor"] = RR
    wait_for("the leaves' routes in GoBGP's RIB", fabric.gb.rib, expected)


def test_gobgp_routes_reach_both_leaves_and_are_withdrawn(fabric: Fabric) -> None:
    gb = fabric.gb
    mac, ip = "aa:bb:cc:00:00:20", "10.100.0.20"
    irb_mac, irb_ip = "aa:bb:cc:00:00:21", "10.100.0.21"
    injected = [
        gb.add_macadv(mac, ip, L2VNI, f"{GB}:2", RT2, GB),
        # symmetric IRB flavour: second label = the L3VNI, with the router MAC
        gb.add_macadv(irb_mac, irb_ip, L2VNI, f"{GB}:2", RT2, GB, l3vni=L3VNI, router_mac=GB_RMAC),
        gb.add_multicast(GB, L2VNI, f"{GB}:2", RT2),
        gb.add_prefix("10.9.0.0/24", L3VNI, f"{GB}:1", RT5, GB_RMAC, GB),
    ]
    rd2, rd5 = f"{GB}:2", f"{GB}:1"
    from_gobgp = [
        {"type": 2, "rd": rd2, "mac": mac, "ip": ip, "labels": [L2VNI], "rt": [RT2],
         "rmac": None, "nexthop": GB, "originator": GB},
        {"type": 2, "rd": rd2, "mac": irb_mac, "ip": irb_ip, "labels": [L2VNI, L3VNI],
         "rt": [RT2], "rmac": GB_RMAC, "nexthop": GB},
        {"type": 3, "rd": rd2, "ip": GB, "vni": L2VNI, "rt": [RT2], "nexthop": GB},
        {"type": 5, "rd": rd5, "prefix": "10.9.0.0/24", "vni": L3VNI, "rt": [RT5],
         "rmac": GB_RMAC, "nexthop": GB},
    ]  # fmt: skip
    for leaf in fabric.leaves:
        wait_for(f"GoBGP's routes at {leaf.name}", leaf.evpn_routes, from_gobgp)
        # ... and what zebra programmed: the route, RMAC and MAC/IP neighbours, FDB
        wait_for(f"{leaf.name}: GoBGP's routes in the kernel", lambda leaf=leaf: kernel(leaf), {
            "route": [{"dst": "10.9.0.0/24", "gateway": GB, "dev": f"br{L3VNI}",
                       "protocol": "bgp", "flags": ["onlink"]}],
            "neigh": [{"dst": GB, "dev": f"br{L3VNI}", "lladdr": GB_RMAC, "state": ["NOARP"],
                       "protocol": "zebra"},
                      {"dst": ip, "dev": f"br{L2VNI}", "lladdr": mac, "protocol": "zebra"}],
            "fdb5": [{"mac": GB_RMAC, "dst": GB, "flags": ["self", "extern_learn"]}],
            "fdb2": [{"mac": mac, "dst": GB, "flags": ["self", "extern_learn"]},
                     {"mac": "00:00:00:00:00:00", "dst": GB, "state": "permanent"}],
        })  # fmt: skip
    # the test's own views agree with GoBGP's
    own = [{**r, "neighbor": None, "originator": None} for r in from_gobgp]
    wait_for("GoBGP's own routes in its RIB", gb.rib, own)

    for route in injected:
        gb.delete(route)
    gone = {
        f"{rd5} [5]:[0]:[24]:[10.9.0.0]": None,
        f"{rd2} [2]:[0]:[48]:[{mac}]:[32]:[{ip}]": None,
        f"{rd2} [2]:[0]:[48]:[{irb_mac}]:[32]:[{irb_ip}]": None,
        f"{rd2} [3]:[0]:[32]:[{GB}]": None,
    }
    for leaf in fabric.leaves:
        wait_for(f"GoBGP's withdrawals at {leaf.name}", leaf.evpn_index, gone)
        wait_for(
            f"{leaf.name}: GoBGP's routes gone from the kernel",
            lambda leaf=leaf: traces_of_gobgp(leaf),
            {"route": [], "fdb": [], "neigh": []},
            exact_lists=True,
        )
    # the leaves' own routes are still there
    wait_for("l1's routes at l2 after the withdrawals", fabric.leaves[1].evpn_routes,
             leaf_routes(fabric, 1))  # fmt: skip


def traces_of_gobgp(leaf: FrrRouter) -> dict[str, Any]:
    """What zebra programmed for GoBGP's routes (the LAN's own ARP entry
    for GoBGP's address on eth0 is not one of them)."""
    state = kernel(leaf)
    theirs = {GB, "10.100.0.20", "10.100.0.21"}
    return {
        "route": state["route"],
        "fdb": [e for e in state["fdb2"] + state["fdb5"]
                if e.get("dst") == GB or e["mac"].startswith("aa:bb:cc:") or e["mac"] == GB_RMAC],
        "neigh": [e for e in state["neigh"] if e["dst"] in theirs and e.get("dev") != "eth0"],
    }  # fmt: skip


def kernel(leaf: FrrRouter) -> dict[str, Any]:
    """The leaf's kernel state for EVPN, from ``ip -j`` / ``bridge -j``."""

    def j(*cmd: str) -> Any:
        return json.loads(leaf.run(*cmd) or "[]")

    return {
        "route": j("ip", "-j", "route", "show", "10.9.0.0/24"),
        "neigh": j("ip", "-j", "neigh", "show"),
        "fdb5": j("bridge", "-j", "fdb", "show", "dev", f"vxlan{L3VNI}"),
        "fdb2": j("bridge", "-j", "fdb", "show", "dev", f"vxlan{L2VNI}"),
    }


def test_hosts_ping_each_other_over_vxlan(fabric: Fabric) -> None:
    h1, h2 = fabric.host(1), fabric.host(2)
    # routed: host -> leaf -> type-5 route onto the L3VNI -> other leaf -> host
    wait_ping("h1 -> h2 over the L3VNI", h1.netns, h2.address)
    assert ping(h2.netns, h1.address)
    # bridged: the L2VNI (type-3 flood list, type-2 MACs)
    wait_ping("h1 -> h2 over the L2VNI", h1.netns, h2.bridged_address(L2VNI))
    assert ping(h2.netns, h1.bridged_address(L2VNI))

    # What zebra programmed at l1 for l2's routes (docstring of testbed/frr.py):
    l1, l2 = fabric.leaves
    rmac2, vtep2 = l2.router_mac, leaf_addr(2)
    state = {
        "route": json.loads(l1.ip("-j", "route", "show", "10.1.2.0/24")),
        "neigh": json.loads(l1.ip("-j", "neigh", "show", "dev", f"br{L3VNI}")),
        "fdb5": json.loads(l1.run("bridge", "-j", "fdb", "show", "dev", f"vxlan{L3VNI}")),
        "fdb2": json.loads(l1.run("bridge", "-j", "fdb", "show", "dev", f"vxlan{L2VNI}")),
    }
    expected = {
        "route": [{"dst": "10.1.2.0/24", "gateway": vtep2, "dev": f"br{L3VNI}",
                   "protocol": "bgp", "flags": ["onlink"]}],
        "neigh": [{"dst": vtep2, "lladdr": rmac2, "state": ["NOARP"], "protocol": "zebra"}],
        "fdb5": [{"mac": rmac2, "dst": vtep2, "flags": ["self", "extern_learn"]},
                 {"mac": rmac2, "master": f"br{L3VNI}", "flags": ["extern_learn"]}],
        "fdb2": [{"mac": "00:00:00:00:00:00", "dst": vtep2, "state": "permanent"},
                 {"mac": fabric.bridged_mac(2), "dst": vtep2, "flags": ["self", "extern_learn"]},
                 {"mac": fabric.bridged_mac(2), "master": f"br{L2VNI}",
                  "flags": ["extern_learn"]}],
    }  # fmt: skip
    assert json_cmp(state, expected) is None, json_cmp(state, expected)


# -- the helpers themselves -----------------------------------------------------------------


def test_restart_brings_the_sessions_back(fabric: Fabric) -> None:
    l1, l2 = fabric.leaves
    for router in (l1, fabric.rr):
        before = dict(router.pids)
        router.restart()
        assert set(router.pids) == set(before) and not set(router.pids.values()) & set(
            before.values()
        ), "new daemons"
        wait_established(fabric)
        wait_for(f"l1's routes at l2 after restarting {router.name}", l2.evpn_routes,
                 leaf_routes(fabric, 1))  # fmt: skip
        wait_for(f"l2's routes at l1 after restarting {router.name}", l1.evpn_routes,
                 leaf_routes(fabric, 2))  # fmt: skip
        wait_ping(f"h1 -> h2 after restarting {router.name}", fabric.host(1).netns,
                  fabric.host(2).address)  # fmt: skip

    old = fabric.gb.pid
    fabric.gb.restart()
    assert fabric.gb.pid not in (None, old)
    wait_established(fabric)
    wait_for("GoBGP's RIB after its restart", fabric.gb.rib,
             leaf_routes(fabric, 1) + leaf_routes(fabric, 2))  # fmt: skip


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_leaves_no_process_and_no_namespace() -> None:
    lab = Lab(f"bq{os.getpid()}")
    try:
        lan = lab.lan("lan", "192.168.79.0/24")
        rr = lab.add(route_reflector("rr", lab.netns("rr", lan=lan, index=1), ASN, RR,
                                     listen_range="192.168.79.0/24"))  # fmt: skip
        leaf = lab.add(build_leaf(lab, lan, 1))
        gb = lab.add(GoBgp("gb", lab.netns("gb", lan=lan, index=20), ASN, GB,
                           neighbors=[GoBgpNeighbor(RR, ASN)]))  # fmt: skip
        rr.start()
        leaf.start()
        gb.start()
        wait_for("the leaf's session", leaf.summary, established(RR), TIMEOUT)
        assert gb.pid is not None
        leaf_pids = list(leaf.pids.values())
        pids = [*rr.pids.values(), *leaf_pids, gb.pid]
        assert len(pids) == 4 and all(alive(p) for p in pids)
        dirs = [rr.run_dir, leaf.run_dir, rr.workdir, leaf.workdir, gb.workdir]
        assert all(d.exists() for d in dirs)
        host_ns = lab.name("h1")
        assert host_ns in namespaces()

        # a router's stop() removes what it made, even while its namespace stays
        leaf.stop()
        assert not any(alive(p) for p in leaf_pids)
        assert host_ns not in namespaces()
        assert not leaf.run_dir.exists() and not leaf.workdir.exists()
        assert sh("ip", "link", "show", f"br{L2VNI}", ns=leaf.netns, check=False).returncode != 0
        assert lab.name("l1") in namespaces()
        leaf.stop()  # idempotent
    finally:
        lab.stop()
    assert not any(alive(p) for p in pids)
    assert lab.leftovers() == []
    assert not any(Path(d).exists() for d in dirs)
    lab.stop()  # idempotent


def test_bulk_injection_of_50k_routes() -> None:
    """50,000 type-5 routes into GoBGP over gRPC, reflected by FRR; then
    withdrawn the same way. (Type-2 routes do not scale in GoBGP 3.10: each
    added MAC scans the EVPN table for MAC mobility; see testbed/gobgp.py.)"""
    count = 50_000
    lab = Lab(f"bb{os.getpid()}")
    try:
        lan = lab.lan("lan", "192.168.79.0/24")
        rr = lab.add(route_reflector("rr", lab.netns("rr", lan=lan, index=1), ASN, RR,
                                     listen_range=None,
                                     neighbors=[Neighbor(GB, rr_client=True)]))  # fmt: skip
        gb = lab.add(GoBgp("gb", lab.netns("gb", lan=lan, index=20), ASN, GB,
                           neighbors=[GoBgpNeighbor(RR, ASN, passive=True)]))  # fmt: skip
        rr.start()
        gb.start()
        wait_for("RR <-> GoBGP", rr.summary, established(GB), TIMEOUT)

        def routes() -> Iterator[Prefix]:
            for i in range(count):
                yield Prefix(f"10.{64 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}/32", L3VNI,
                             f"{GB}:1", RT5, GB_RMAC, GB)  # fmt: skip

        start = time.monotonic()
        assert gb.inject(routes()) == count
        injected = time.monotonic() - start
        assert gb.rib_count() == (count, count)
        wait_for("50k routes at the RR", rr.summary, {"peers": {GB: {"pfxRcd": count}}}, 120, 0.5)
        reflected = time.monotonic() - start
        print(f"\nbulk: {count} type-5 into GoBGP in {injected:.1f}s "
              f"({count / injected:.0f}/s), at the FRR RR after {reflected:.1f}s")  # fmt: skip
        assert injected < 60

        start = time.monotonic()
        gb.inject(routes(), withdraw=True)
        assert gb.rib_count() == (0, 0)
        wait_for("50k withdrawals at the RR", rr.summary, {"peers": {GB: {"pfxRcd": 0}}}, 120, 0.5)
        print(f"bulk: withdrawn and gone at the RR in {time.monotonic() - start:.1f}s")
    finally:
        lab.stop()
