"""The route table's CPU for a burst of received EVPN routes, without BGP or
a kernel: what a node spends turning 50,000 decoded paths into the kernel
entries it wants (``RouteTable``, ``kernel_entries``).

``python -m bench evpn_table [--reps N] [--vteps V]``: per repetition, a
fresh table with a realistic view (an l3vni domain, four l2vni domains,
own blocks, Service CIDRs, local pods) takes 80 type-5 /26 prefixes per VTEP
(40,000 for 500 VTEPs), 16 type-2 MAC/IP per VTEP in 4 l2vnis (8,000) and a
type-3 per VTEP and l2vni (2,000); then the controller's read
(``take_dirty``, ``chosen`` of each dirty key), then every route withdrawn.
Prints CPU (``time.process_time``) per route of each phase, best and
median of the repetitions: the machine may be shared, CPU is what counts.
"""

from __future__ import annotations

import argparse
import statistics
import time

from cnid.bgp import EvpnPath, ImetRoute, MacIpRoute, PrefixRoute, ReceivedPath
from cnid.core import Domain, VniAttachment
from cnid.evpn import NodeView, RouteTable, node_view
from testbed.domains import VRF42

ASN = 65000
L3VNI = 42
L2VNIS = (301, 302, 303, 304)
PEER = "192.168.0.1"


def _domains() -> list[Domain]:
    l3 = VRF42  # l3vni 42
    l2 = [
        Domain(
            name=f"vrf-{vni}",
            vrf=vni,
            table=vni,
            prefix=f"10.{vni - 250}.0.0",
            prefixlen=16,
            ipblocklen=26,
            attachments=(VniAttachment(type="l2vni", vni=vni),),
        )
        for vni in L2VNIS
    ]
    return [l3, *l2]


def _view() -> NodeView:
    pods = [("vrf-301", f"0a:00:00:00:01:{i:02x}", f"10.51.0.{i + 2}") for i in range(20)]
    blocks = [(42, f"10.244.{i // 4}.{i % 4 * 64}/26") for i in range(8)]
    blocks += [(vni, f"10.{vni - 250}.0.0/26") for vni in L2VNIS]
    return node_view(
        "192.168.77.11",
        "192.168.77.11",
        _domains(),
        asn=ASN,
        pods=pods,
        blocks=blocks,
        service_cidrs=("10.96.0.0/12", "fd00:96::/108"),
    )


def _paths(vteps: int) -> list[ReceivedPath]:
    """The burst, in the order a route reflector sends it (per VTEP)."""
    out: list[ReceivedPath] = []
    n = 0
    for v in range(vteps):
        vtep = f"192.168.{100 + v // 250}.{v % 250 + 1}"
        rmac = f"02:42:c0:a8:{v // 250:02x}:{v % 250 + 1:02x}"
        rd = f"{vtep}:1"
        for _ in range(80):
            prefix = f"10.{128 + n // 1024}.{n // 4 % 256}.{n % 4 * 64}/26"
            n += 1
            path = EvpnPath(
                PrefixRoute(rd=rd, prefix=prefix, vni=L3VNI),
                nexthop=vtep,
                route_targets=(f"{ASN}:{L3VNI}",),
                router_mac=rmac,
            )
            out.append(ReceivedPath(PEER, path, originator=vtep))
        for i, vni in enumerate(L2VNIS):
            rd2 = f"{vtep}:{i + 2}"
            targets = (f"{ASN}:{vni}",)
            for j in range(4):
                host = v * 4 + j
                mac = f"0a:{i:02x}:00:{host >> 8 & 255:02x}:{host & 255:02x}:{j:02x}"
                ip = f"10.{vni - 250}.{1 + host // 250}.{host % 250 + 1}"
                route = MacIpRoute(rd=rd2, mac=mac, vni=vni, ip=ip)
                path = EvpnPath(route, nexthop=vtep, route_targets=targets)
                out.append(ReceivedPath(PEER, path, originator=vtep))
            imet = EvpnPath(ImetRoute(rd=rd2, ip=vtep, vni=vni), vtep, route_targets=targets)
            out.append(ReceivedPath(PEER, imet, originator=vtep))
    return out


def _run(paths: list[ReceivedPath]) -> tuple[float, float, float, int]:
    table = RouteTable(_view())
    cpu = time.process_time
    t0 = cpu()
    for rp in paths:
        table.announce(PEER, rp)
    t1 = cpu()
    chosen = 0
    for key in table.take_dirty():
        if table.chosen(key) is not None:
            chosen += 1
    t2 = cpu()
    for rp in paths:
        table.withdraw(PEER, rp.path.route)
    t3 = cpu()
    return t1 - t0, t2 - t1, t3 - t2, chosen


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench evpn_table")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--vteps", type=int, default=500)
    args = parser.parse_args()
    paths = _paths(args.vteps)
    runs = [_run(paths) for _ in range(args.reps)]
    n = len(paths)
    print(f"{n} routes, {runs[0][3]} kernel keys chosen, {args.reps} repetitions")
    print(f"{'phase':<22} {'best us/route':>14} {'median us/route':>16}")
    for i, phase in enumerate(("announce", "take_dirty + chosen", "withdraw")):
        times = [r[i] / n * 1e6 for r in runs]
        print(f"{phase:<22} {min(times):>14.2f} {statistics.median(times):>16.2f}")
    total = [sum(r[:3]) / n * 1e6 for r in runs]
    print(f"{'total':<22} {min(total):>14.2f} {statistics.median(total):>16.2f}")
    return 0
