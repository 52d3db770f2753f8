"""Reading kernel state back, and creating devices: cnid's own netlink code
against pyroute2 (the pinned 0.9.7, ``IPRoute``) and iproute2 (``ip -j`` /
``bridge -j``, parsed), in the same namespace, in the same run. This is the
measurement behind pyroute2's place in the dependencies (README, "Dependencies and
why").

In a namespace the bench creates (and removes after): a bridge ``br-<vni>``
and a VXLAN device ``vx-<vni>`` (our aliases) holding N FDB MACs (each the
VXLAN driver's entry plus the bridge's entry on the VXLAN port: 2N entries),
N neighbour entries on the bridge and N type-5 routes in one table, all
written by ``apply_evpn``. Each reader returns the same facts, (MAC, VTEP)
of the driver's entries, (IP, MAC) of the neighbours and (prefix, VTEP) of
the routes (the neighbours of protocol ROUTE_PROTO_EVPN: the kernel keeps
its own IGMP entry there too), and every run is checked against what was
written. Readers:

* ``cnid Netlink``: ``cnid.dataplane._netlink`` on a strict socket (the
  kernel filters by port, device, table and protocol), decoded into its
  named tuples: the reference;
* ``cnid dump_evpn``: the dataplane's public read (a worker thread, our
  devices looked up, ownership filtered, typed entries);
* ``pyroute2 IPRoute``: ``get_neighbours`` / ``get_routes`` with the same
  filters, attributes read with ``get``; the socket opened once, outside
  the timing (its opening is timed on its own); once as it comes, once
  with ``strict_check=True`` (the kernel filters the dumps, as for cnid);
* ``ip -j``: one ``bridge -j fdb show``, ``ip -j neigh show``, ``ip -j
  route show`` process each, JSON parsed.

Then device creation: M veth pairs, each in a fresh namespace per run,
created one request at a time as a pod ADD does (cnid: one encoded
RTM_NEWLINK and its ACK; pyroute2: ``link("add", kind="veth")``) and, for
scale, all in one ``ip -batch``.

Needs no VRF: runs on the host (``.venv/bin/python -m bench netlink_read``).
Prints Markdown tables and writes JSON.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from pyroute2 import IPRoute

from cnid import dataplane as dp
from cnid.dataplane import _netlink as nl
from cnid.dataplane import inside
from testbed.netns import Netns

VNI = 500
TABLE = 100
#: (MAC, VTEP) of the VXLAN driver's entries, (IP, MAC) of the neighbours,
#: (prefix, VTEP) of the routes.
Facts = tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]], frozenset[tuple[str, str]]]


def _devices(ns: Netns) -> None:
    ns.ip("link", "add", f"br-{VNI}", "address", "02:cd:00:00:01:f4", "type", "bridge")
    ns.ip(
        "link", "add", f"vx-{VNI}", "type", "vxlan", "id", str(VNI),
        "local", "192.0.2.1", "dstport", "4789", "nolearning",
    )  # fmt: skip
    ns.ip("link", "set", f"br-{VNI}", "alias", f"cnid:br:{VNI}", "up")
    ns.ip("link", "set", f"vx-{VNI}", "alias", f"cnid:vx:{VNI}", "master", f"br-{VNI}", "up")


def _state(n: int, vteps: int) -> dp.KernelEvpn:
    tunnel = [f"192.0.2.{10 + i}" for i in range(vteps)]
    prefixes = int(ipaddress.IPv4Address("10.0.0.0"))
    hosts = int(ipaddress.IPv4Address("172.16.0.0"))
    macs = ["02:aa:" + (i + 1).to_bytes(4, "big").hex(":") for i in range(n)]
    return dp.KernelEvpn(
        fdb=frozenset(dp.FdbEntry(VNI, macs[i], tunnel[i % vteps]) for i in range(n)),
        neigh=frozenset(
            dp.NeighEntry(VNI, str(ipaddress.IPv4Address(hosts + i)), macs[i]) for i in range(n)
        ),
        routes=frozenset(
            dp.EvpnRoute(
                TABLE, f"{ipaddress.IPv4Address(prefixes + 64 * i)}/26", tunnel[i % vteps], VNI
            )
            for i in range(n)
        ),
    )


def _expected(state: dp.KernelEvpn) -> Facts:
    return (
        frozenset((e.mac, e.vtep) for e in state.fdb),
        frozenset((e.ip, e.mac) for e in state.neigh),
        frozenset((r.prefix, r.vtep) for r in state.routes),
    )


# ---------------------------------------------------------------- readers


def read_cnid(ns: Netns) -> Facts:
    with inside(dp.checked_netns(ns.fd)):
        raw = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    with nl.Netlink(raw, strict=True) as sock:
        vx = sock.link_by_name(f"vx-{VNI}")
        br = sock.link_by_name(f"br-{VNI}")
        assert vx is not None and br is not None
        fdb = frozenset(
            (f.lladdr, f.dst)
            for f in sock.fdb(vx.index)
            if f.master is None and f.dst is not None and f.lladdr is not None
        )
        neigh = frozenset(
            (n.dst, n.lladdr)
            for n in sock.neighbours(socket.AF_INET, br.index)
            if n.protocol == dp.ROUTE_PROTO_EVPN
        )
        routes = frozenset(
            (f"{r.dst}/{r.dst_len}", r.gateway or r.nexthops[0].gateway)
            for r in sock.routes(socket.AF_INET, TABLE, dp.ROUTE_PROTO_EVPN)
        )
    return fdb, neigh, routes  # type: ignore[return-value]


async def read_dump_evpn() -> Facts:
    return _expected(await dp.dump_evpn([VNI], [TABLE]))


def read_pyroute2(ipr: Any) -> Facts:
    (vx,) = ipr.link_lookup(ifname=f"vx-{VNI}")
    (br,) = ipr.link_lookup(ifname=f"br-{VNI}")
    fdb = frozenset(
        (m.get("NDA_LLADDR"), m.get("NDA_DST"))
        for m in ipr.get_neighbours(family=socket.AF_BRIDGE, ifindex=vx)
        if m.get("NDA_MASTER") is None and m.get("NDA_DST") is not None
    )
    neigh = frozenset(
        (m.get("NDA_DST"), m.get("NDA_LLADDR"))
        for m in ipr.get_neighbours(family=socket.AF_INET, ifindex=br)
        if m.get("NDA_PROTOCOL") == dp.ROUTE_PROTO_EVPN
    )
    routes = set()
    for m in ipr.get_routes(family=socket.AF_INET, table=TABLE, proto=dp.ROUTE_PROTO_EVPN):
        gateway = m.get("RTA_GATEWAY")
        if gateway is None:
            gateway = m.get("RTA_MULTIPATH")[0].get("RTA_GATEWAY")
        routes.add((f"{m.get('RTA_DST')}/{m['dst_len']}", gateway))
    return fdb, neigh, frozenset(routes)


def _json(ns: Netns, tool: str, *args: str) -> Any:
    out = subprocess.run([tool, "-j", "-n", ns.name, *args], check=True, capture_output=True)
    return json.loads(out.stdout)


def read_iproute2(ns: Netns) -> Facts:
    fdb = frozenset(
        (e["mac"], e["dst"])
        for e in _json(ns, "bridge", "fdb", "show", "dev", f"vx-{VNI}")
        if "master" not in e and "dst" in e
    )
    neigh = frozenset(
        (e["dst"], e["lladdr"])
        for e in _json(ns, "ip", "neigh", "show", "dev", f"br-{VNI}")
        if e.get("protocol") == str(dp.ROUTE_PROTO_EVPN)
    )
    routes = frozenset(
        (r["dst"], r.get("gateway") or r["nexthops"][0]["gateway"])
        for r in _json(ns, "ip", "route", "show", "table", str(TABLE), "proto", "150")
    )
    return fdb, neigh, routes


async def _timed_read(
    who: str, ns: Netns, iprs: dict[str, Any], samples: dict[str, list[float]], want: Facts
) -> None:
    start = time.perf_counter()
    if who == "cnid Netlink":
        got = read_cnid(ns)
    elif who == "cnid dump_evpn":
        got = await read_dump_evpn()
    elif who in iprs:
        got = read_pyroute2(iprs[who])
    else:
        got = read_iproute2(ns)
    samples.setdefault(f"read {who}", []).append(time.perf_counter() - start)
    if got != want:
        counts = [len(g) for g in got]
        raise RuntimeError(f"{who} read {counts}, not what was written ({[len(w) for w in want]})")


READERS = ("cnid Netlink", "cnid dump_evpn", "pyroute2 IPRoute", "pyroute2 strict_check", "ip -j")


# ---------------------------------------------------------------- devices


def _veth(host: str, peer: str) -> nl.Request:
    linkinfo = nl.nla_nested(
        nl.IFLA_LINKINFO,
        nl.nla_str(nl.IFLA_INFO_KIND, "veth"),
        nl.nla_nested(
            nl.IFLA_INFO_DATA,
            nl.nla(nl.VETH_INFO_PEER, nl.ifinfo() + nl.nla_str(nl.IFLA_IFNAME, peer)),
        ),
    )
    body = nl.ifinfo() + nl.nla_str(nl.IFLA_IFNAME, host) + linkinfo
    return nl.Request(nl.RTM_NEWLINK, nl.NLM_F_CREATE | nl.NLM_F_EXCL, body, host)


def create_cnid(ns: Netns, m: int) -> None:
    with inside(dp.checked_netns(ns.fd)):
        raw = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    with nl.Netlink(raw) as sock:
        for i in range(m):
            sock.batch([_veth(f"h{i}", f"p{i}")])


def create_pyroute2(ns: Netns, m: int) -> None:
    with IPRoute(netns=ns.name) as ipr:
        for i in range(m):
            ipr.link("add", ifname=f"h{i}", kind="veth", peer=f"p{i}")


def create_iproute2(ns: Netns, m: int) -> None:
    with tempfile.NamedTemporaryFile("w", prefix="bench-nl-", suffix=".batch") as f:
        f.write("".join(f"link add h{i} type veth peer name p{i}\n" for i in range(m)))
        f.flush()
        subprocess.run(["ip", "-n", ns.name, "-batch", f.name], check=True, capture_output=True)


CREATORS: dict[str, Callable[[Netns, int], None]] = {
    "cnid Netlink": create_cnid,
    "pyroute2 IPRoute": create_pyroute2,
    "ip -batch": create_iproute2,
}


def _veths(ns: Netns) -> int:
    return ns.ip("-o", "link", "show", "type", "veth").count("\n")


# ---------------------------------------------------------------- the run


async def _bench(args: argparse.Namespace) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {}
    ns = Netns("bnlread")
    dp.set_node_netns(ns.fd)
    try:
        _devices(ns)
        state = _state(args.entries, args.vteps)
        result = await dp.apply_evpn(state, dp.KernelEvpn())
        if result.failed:
            raise RuntimeError(f"apply_evpn failed: {result.failed[:3]}")
        want = _expected(state)
        for _ in range(args.reps):
            start = time.perf_counter()
            ipr = IPRoute(netns=ns.name)
            samples.setdefault("open pyroute2 IPRoute(netns=)", []).append(
                time.perf_counter() - start
            )
            ipr.close()
        iprs = {
            "pyroute2 IPRoute": IPRoute(netns=ns.name),
            "pyroute2 strict_check": IPRoute(netns=ns.name, strict_check=True),
        }
        try:
            for rep in range(args.reps):
                order = READERS if rep % 2 == 0 else READERS[::-1]
                for who in order:
                    await _timed_read(who, ns, iprs, samples, want)
        finally:
            for ipr in iprs.values():
                ipr.close()
    finally:
        dp.set_node_netns(None)
        ns.close()
    for rep in range(args.reps):
        order = list(CREATORS) if rep % 2 == 0 else list(CREATORS)[::-1]
        for who in order:
            fresh = Netns("bnlmake")
            try:
                start = time.perf_counter()
                CREATORS[who](fresh, args.devices)
                samples.setdefault(f"create {who}", []).append(time.perf_counter() - start)
                if _veths(fresh) != 2 * args.devices:
                    raise RuntimeError(f"{who}: {_veths(fresh)} veths, not {2 * args.devices}")
            finally:
                fresh.close()
    return samples


def _ms(values: list[float]) -> float:
    return statistics.median(values) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench netlink_read")
    parser.add_argument("--entries", type=int, default=10_000, help="FDB MACs, neighbours, routes")
    parser.add_argument("--vteps", type=int, default=4)
    parser.add_argument("--devices", type=int, default=200, help="veth pairs created per run")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", default="bench/results/netlink_read.json")
    args = parser.parse_args(argv)
    samples = trio.run(_bench, args)
    n, m = args.entries, args.devices
    total = 4 * n  # 2N FDB entries (driver + bridge), N neighbours, N routes
    print(
        f"{n} FDB MACs ({2 * n} entries) + {n} neighbours + {n} routes; {m} veth pairs;"
        f" median of {args.reps} runs; kernel {os.uname().release}"
    )
    print()
    ref = _ms(samples["read cnid Netlink"])
    print("| read back | ms | entries/s | time against cnid Netlink |")
    print("| --- | --- | --- | --- |")
    for who in READERS:
        took = _ms(samples[f"read {who}"])
        print(f"| {who} | {took:.1f} | {total / took * 1e3:,.0f} | **{took / ref:.2f}x** |")
    print(f"| (open `IPRoute(netns=)`) | {_ms(samples['open pyroute2 IPRoute(netns=)']):.1f} | | |")
    print()
    ref = _ms(samples["create cnid Netlink"])
    print(f"| create {m} veth pairs | ms | per pair ms | time against cnid Netlink |")
    print("| --- | --- | --- | --- |")
    for who in CREATORS:
        took = _ms(samples[f"create {who}"])
        print(f"| {who} | {took:.1f} | {took / m:.2f} | **{took / ref:.2f}x** |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"samples": samples, "kernel": os.uname().release}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
