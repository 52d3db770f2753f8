"""Real FRR peers for interop tests: one FRR 8.4 instance per network
namespace, in the role of an EVPN route reflector or an EVPN leaf.

    rr = route_reflector("rr", "bp-rr", 65000, "192.168.79.1",
                         listen_range="192.168.79.0/24")
    leaf = evpn_leaf("l1", "bp-l1", 65000, "192.168.79.11", vtep="192.168.79.11",
                     neighbors=[Neighbor("192.168.79.1")],
                     l2vnis=[L2Vni(100, rt="65000:100")],
                     l3vni=L3Vni(4242, rt="65000:42"),
                     hosts=[Host("bp-h1", routed=("10.1.1.1/24", "10.1.1.2/24"))])
    rr.start(); leaf.start()
    leaf.peers()            # {"192.168.79.1": "Established"}
    leaf.evpn_routes()      # [{"type": 5, "rd": ..., "prefix": "10.1.2.0/24", ...}, ...]
    leaf.stop(); rr.stop()

The router's own namespace is the caller's (testbed.netlab plugs it into a
LAN); what the router creates it removes in ``stop()``: its daemons (by
PID), its run directory /var/run/frr/<netns>, its work directory, and for a
leaf the bridges, VXLAN devices, host namespaces and veths it made.

How FRR runs this way (found on Debian 12's frr 8.4.4):

* ``-N <netns>`` (pathspace) puts the vty sockets, zserv.api and pid files
  in /var/run/frr/<netns>/, so instances do not collide. That directory must
  exist and belong to frr:frr: the daemons drop to user frr at once.
* The config files are read *after* dropping privileges: a config in a
  root-only directory (mkdtemp's 0700) is silently not read and the daemon
  runs empty. The work directory is therefore chowned to frr:frr.
  /etc/frr itself is not used (``-f`` names the file) and need not be readable.
* ``vtysh -N <netns>`` talks to those sockets from any namespace; it warns on
  stderr that /etc/frr/<netns>/vtysh.conf is missing (harmless, ignored).
* ``-P 0`` turns off the TCP vty (ports 2601/2605), ``--log stdout`` sends
  the log to the file the daemon's stdout is redirected to. The daemons run
  in the foreground (no ``-d``) so that the PID we hold is the daemon's.
* A pure route reflector runs bgpd alone with ``-Z`` (no zebra): it still
  reflects EVPN routes (their next hops are not resolved).
* The kernel has no VRF device, so a leaf's L3VNI lives in the default VRF:
  zebra ``vrf default`` / ``vni N``, the VXLAN device in a bridge of its own
  (the bridge's MAC is the router MAC), ``advertise ipv4 unicast`` under
  ``address-family l2vpn evpn`` of the default instance, and the type-5 RTs
  as ``route-target import/export`` in that same address family.
* A leaf's zebra.conf has ``zebra zapi-packets 1`` and ``zebra work-queue
  0`` (``ZEBRA_SERIAL_ZAPI``, ``serial_zapi=False`` leaves them out): FRR
  8.4 otherwise drops a remote router MAC when a type-5 route's best path
  moves between reflected copies (tests/host/test_frr_rmac.py).
* Per-netns sysctl ``net.ipv4.ip_forward=1`` is needed for the leaf to route
  its hosts' traffic onto the L3VNI.
* VXLAN devices: ``nolearning``, bridge-port ``learning off`` (zebra installs
  the remote MACs itself, ``extern_learn``), MTU 1450 like the hosts' links.

What a leaf's kernel holds for received routes (zebra programs it; checked in
tests/host/test_bgp_peers.py). Leaf 1 (VTEP 192.168.79.11) with leaf 2's
routes (VTEP .12, host prefix 10.1.2.0/24, L2VNI 100, L3VNI 4242, RMAC
02:00:c0:a8:4f:0c = leaf 2's br4242 MAC) and GoBGP's (.20, RMAC
02:00:00:00:00:20):

    type-5 10.1.2.0/24 (VNI 4242, RT 65000:42, Rmac 02:00:c0:a8:4f:0c):
      ip route    10.1.2.0/24 nhid 16 via 192.168.79.12 dev br4242 proto bgp metric 20 onlink
      ip neigh    192.168.79.12 dev br4242 lladdr 02:00:c0:a8:4f:0c extern_learn NOARP proto zebra
      bridge fdb  02:00:c0:a8:4f:0c dev vxlan4242 dst 192.168.79.12 self extern_learn
                  02:00:c0:a8:4f:0c dev vxlan4242 extern_learn master br4242
    type-3 (VNI 100, originator .12):
      bridge fdb  00:00:00:00:00:00 dev vxlan100 dst 192.168.79.12 self permanent
    type-2 MAC only (leaf 2's bridged host 8e:79:a9:3b:5d:be, VNI 100):
      bridge fdb  8e:79:a9:3b:5d:be dev vxlan100 dst 192.168.79.12 self extern_learn
                  8e:79:a9:3b:5d:be dev vxlan100 extern_learn master br100
    type-2 MAC+IP (GoBGP: aa:bb:cc:00:00:20 10.100.0.20, VNI 100) adds, on the
    L2VNI's bridge (no address needed on it):
      ip neigh    10.100.0.20 dev br100 lladdr aa:bb:cc:00:00:20 extern_learn NOARP proto zebra

The route's next hop is the remote VTEP itself, ``onlink`` on the L3VNI's
bridge; the neighbour entry gives it the remote router MAC, and the FDB
entry on the L3VNI's VXLAN device sends that MAC to the VTEP. A type-2 with
the L3VNI as second label and a router MAC (symmetric IRB, RT <asn>:<vni>)
got the same neighbour and FDB entries as a plain MAC+IP one, and no /32.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .node import netns_add, netns_del, sh

__all__ = [
    "BFDD_CONF",
    "ZEBRA_SERIAL_ZAPI",
    "FrrError",
    "FrrRouter",
    "Host",
    "L2Vni",
    "L3Vni",
    "Leaf",
    "Neighbor",
    "Reflector",
    "Underlay",
    "bfd_line",
    "evpn_leaf",
    "flatten_evpn",
    "route_reflector",
    "spine",
]

FRR_LIB = Path("/usr/lib/frr")
RUN_ROOT = Path("/var/run/frr")
VXLAN_PORT = 4789

# FRR 8.4 leaves: when the best path of an EVPN-imported type-5 route moves
# to another path (e.g. from one reflector's copy to the other's), bgpd sends
# zebra a route DELETE then an ADD (bgp_process_main_one: "withdraw the route
# first to clear the nh neigh and the RMAC entry"). zebra's ADD handler queues
# the nexthop/RMAC add on its EVPN meta-queue at once, which runs before the
# queued route DELETE; processing the DELETE then queues the nexthop/RMAC
# delete, and as the nexthop keeps a *set* of prefixes (no count), that
# delete empties it: the neighbour and FDB entries of the router MAC go while
# the route is reinstalled (tests/host/test_frr_rmac.py). Fixed upstream in
# FRR 10.4 (pull request 18158: refcounts in zebra, no withdraw in bgpd).
# With one ZAPI message per event and no hold on the RIB work queue, zebra
# mostly finishes the DELETE (RMAC removed) before it reads the ADD (RMAC
# added back). A race remains (zebra's socket thread may schedule the ADD
# while the DELETE is being read): about one move in 30 still lost it here.
ZEBRA_SERIAL_ZAPI = ("zebra zapi-packets 1", "zebra work-queue 0")


class FrrError(RuntimeError):
    """A daemon that did not start, or a vtysh command that failed."""


# -- the configuration, as data ------------------------------------------------


@dataclass
class Neighbor:
    """A configured BGP neighbour. ``remote_as`` is an ASN or FRR's
    ``internal`` / ``external``; ``rr_client`` makes it a route-reflector
    client; ``passive`` waits for it to connect."""

    address: str
    remote_as: int | str = "internal"
    rr_client: bool = False
    passive: bool = False
    ebgp_multihop: int | None = None
    #: the routed underlay's IPv4 unicast too (needs ``FrrRouter.underlay``)
    ipv4_unicast: bool = False
    #: FRR's ``allowas-in N`` (both families): routes whose AS path holds
    #: this router's AS up to N times are accepted
    allowas_in: int = 0
    #: ``attribute-unchanged next-hop`` for l2vpn evpn: a transit router
    #: (an eBGP spine or leaf) passes EVPN routes on with the originating
    #: VTEP as next hop
    evpn_nexthop_unchanged: bool = False
    #: BFD for this session (``neighbor X bfd``; bfdd must run: ``FrrRouter.bfdd``):
    #: (detect multiplier, interval ms), None: off
    bfd: tuple[int, int] | None = None


def bfd_line(who: str, bfd: tuple[int, int]) -> str:
    """bgpd's ``neighbor WHO bfd`` for (multiplier, interval ms): FRR's
    defaults (3, 300) as the plain command, others with their timers."""
    mult, interval = bfd
    timers = "" if (mult, interval) == (3, 300) else f" {mult} {interval} {interval}"
    return f" neighbor {who} bfd{timers}"


#: bfdd's configuration when its peers come from bgpd's ``neighbor X bfd``
BFDD_CONF = "bfd\nexit\n"


@dataclass
class Underlay:
    """A routed underlay (RFC 7938): ``announce`` (this router's loopback
    /32s) in IPv4 unicast, ``maximum-paths`` ECMP with
    ``as-path multipath-relax`` (paths through different leaves or spines
    have different AS paths), and only the fabric's ``vteps`` (/32s)
    announced to the ``ipv4_unicast`` neighbours (prefix list
    ``UNDERLAY``): a leaf's tenant prefixes, in the same default VRF here,
    stay type-5 routes."""

    announce: list[str] = field(default_factory=list)
    vteps: list[str] = field(default_factory=list)
    maximum_paths: int = 4


@dataclass
class Reflector:
    """A route reflector's dynamic side: every speaker connecting from
    ``listen_range`` joins peer group ``group`` (remote-as = the router's
    AS) and is a route-reflector client for l2vpn evpn."""

    listen_range: str | None = None
    cluster_id: str | None = None
    group: str = "CLIENTS"
    listen_limit: int = 200
    #: BFD with every client (``neighbor GROUP bfd``), as Neighbor.bfd
    bfd: tuple[int, int] | None = None


@dataclass
class L2Vni:
    """A bridged VNI: bridge ``br<vni>`` with port ``vxlan<vni>``.
    ``rt`` sets both route-target import and export (None: FRR's auto RT,
    ``<asn>:<vni>``); ``rd`` likewise; ``svi`` an address on the bridge."""

    vni: int
    rt: str | None = None
    rd: str | None = None
    svi: str | None = None


@dataclass
class L3Vni:
    """The routed VNI of the default VRF: ``vxlan<vni>`` in bridge
    ``br<vni>`` whose MAC (``router_mac``, default derived from the VTEP) is
    the router MAC of the type-5 routes; ``rt``/``rd`` as for L2Vni."""

    vni: int
    rt: str | None = None
    rd: str | None = None
    router_mac: str | None = None


@dataclass
class Host:
    """A namespace behind a leaf. ``routed`` = (leaf side, host side) CIDRs
    of a veth: the leaf announces that prefix (type-5) and the host routes
    everything through it. ``bridged`` = {vni: host CIDR}: a veth from the
    host into that L2VNI's bridge."""

    netns: str
    routed: tuple[str, str] | None = None
    bridged: dict[int, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The host's routed address (no prefix length)."""
        assert self.routed is not None
        return self.routed[1].split("/")[0]

    def bridged_address(self, vni: int) -> str:
        return self.bridged[vni].split("/")[0]


@dataclass
class Leaf:
    """The EVPN side of a leaf: its VTEP address (an address the leaf's
    namespace already has), its VNIs, hosts, and extra prefixes to announce
    as type-5 (``networks``; the hosts' routed prefixes are added).

    ``serial_zapi`` (default on) makes zebra run its RIB work queue after
    each message from bgpd (``ZEBRA_SERIAL_ZAPI``): without it FRR 8.4's
    zebra drops a remote VTEP's router MAC (neighbour and FDB entries) when
    the best path of a type-5 route moves to another copy of the same route
    (see ``ZEBRA_SERIAL_ZAPI`` and docs/evpn.md, "Known limits")."""

    vtep: str
    l2vnis: list[L2Vni] = field(default_factory=list)
    l3vni: L3Vni | None = None
    hosts: list[Host] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    redistribute_connected: bool = False
    serial_zapi: bool = True


def derived_mac(address: str, first: int = 0x02) -> str:
    """A locally administered MAC holding an IPv4 address: 02:00:a:b:c:d."""
    octets = ipaddress.IPv4Address(address).packed
    return ":".join(f"{b:02x}" for b in (first, 0, *octets))


# -- the router ------------------------------------------------------------------


@dataclass
class FrrRouter:
    """One FRR instance in namespace ``netns`` (which the caller made).

    ``zebra`` defaults to True for a leaf and False otherwise (bgpd ``-Z``).
    ``extra_bgpd`` is appended to bgpd's config verbatim. ``bfdd``, when
    given, is bfdd's config (``bfd`` / ``peer X`` ...) and bfdd runs too.
    """

    name: str
    netns: str
    asn: int
    router_id: str
    neighbors: list[Neighbor] = field(default_factory=list)
    reflector: Reflector | None = None
    leaf: Leaf | None = None
    timers: tuple[int, int] = (1, 3)
    zebra: bool | None = None
    extra_bgpd: str = ""
    bfdd: str | None = None
    underlay: Underlay | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="cnid-frr-")))
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _hosts_made: list[str] = field(default_factory=list, repr=False)
    _links_made: list[str] = field(default_factory=list, repr=False)

    # -- derived -----------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return RUN_ROOT / self.netns

    @property
    def with_zebra(self) -> bool:
        return self.leaf is not None if self.zebra is None else self.zebra

    @property
    def daemons(self) -> tuple[str, ...]:
        daemons = ("zebra", "bgpd") if self.with_zebra else ("bgpd",)
        return (*daemons, "bfdd") if self.bfdd is not None else daemons

    @property
    def pids(self) -> dict[str, int]:
        """The running daemons: name -> PID."""
        procs = list(self._procs.items())  # a copy: the lab reads it while others start
        return {d: p.pid for d, p in procs if p.poll() is None}

    @property
    def router_mac(self) -> str | None:
        if self.leaf is None or self.leaf.l3vni is None:
            return None
        return self.leaf.l3vni.router_mac or derived_mac(self.leaf.vtep)

    def networks(self) -> list[str]:
        """The prefixes announced into ipv4 unicast (hence as type-5)."""
        if self.leaf is None:
            return []
        nets = list(self.leaf.networks)
        for host in self.leaf.hosts:
            if host.routed is not None:
                nets.append(str(ipaddress.ip_interface(host.routed[0]).network))
        return nets

    # -- config rendering --------------------------------------------------

    def zebra_conf(self) -> str:
        lines = [f"hostname {self.name}", "ip forwarding", "!"]
        if self.leaf is not None and self.leaf.serial_zapi:
            lines += [*ZEBRA_SERIAL_ZAPI, "!"]
        if self.leaf is not None and self.leaf.l3vni is not None:
            lines += ["vrf default", f" vni {self.leaf.l3vni.vni}", "exit-vrf", "!"]
        return "\n".join(lines) + "\n"

    def _policy_lines(self) -> list[str]:
        """Prefix lists and route maps of the routed underlay: what goes out
        in IPv4 unicast (the VTEPs), what a leaf turns into type-5 routes
        (its ``networks``, not the underlay's /32s)."""
        u = self.underlay
        if u is None:
            return []
        out = [f"ip prefix-list UNDERLAY seq {5 * i} permit {p}"
               for i, p in enumerate(u.vteps, start=1)]  # fmt: skip
        if not u.vteps:
            out.append("ip prefix-list UNDERLAY seq 5 deny any")
        if self.leaf is not None and self.leaf.l3vni is not None:
            nets = self.networks()
            out += [f"ip prefix-list TYPE5 seq {5 * i} permit {p}"
                    for i, p in enumerate(nets, start=1)]  # fmt: skip
            if not nets:
                out.append("ip prefix-list TYPE5 seq 5 deny any")
            out += ["route-map TYPE5 permit 10", " match ip address prefix-list TYPE5", "exit"]
        return [*out, "!"]

    def bgpd_conf(self) -> str:
        keepalive, hold = self.timers
        out = [
            f"hostname {self.name}",
            "frr defaults traditional",
            "!",
            *self._policy_lines(),
            f"router bgp {self.asn}",
            f" bgp router-id {self.router_id}",
            " no bgp default ipv4-unicast",
            " no bgp ebgp-requires-policy",
            " bgp log-neighbor-changes",
            f" timers bgp {keepalive} {hold}",
        ]
        u = self.underlay
        if u is not None:
            out.append(" bgp bestpath as-path multipath-relax")
        rr = self.reflector
        if rr is not None:
            if rr.cluster_id:
                out.append(f" bgp cluster-id {rr.cluster_id}")
            out += [
                f" neighbor {rr.group} peer-group",
                f" neighbor {rr.group} remote-as {self.asn}",
                f" neighbor {rr.group} advertisement-interval 0",
                f" neighbor {rr.group} timers {keepalive} {hold}",
            ]
            if rr.bfd is not None:
                out.append(bfd_line(rr.group, rr.bfd))
            if rr.listen_range:
                out += [
                    f" bgp listen limit {rr.listen_limit}",
                    f" bgp listen range {rr.listen_range} peer-group {rr.group}",
                ]
        for n in self.neighbors:
            out += [
                f" neighbor {n.address} remote-as {n.remote_as}",
                f" neighbor {n.address} timers {keepalive} {hold}",
                f" neighbor {n.address} timers connect 1",
                f" neighbor {n.address} advertisement-interval 0",
            ]
            if n.passive:
                out.append(f" neighbor {n.address} passive")
            if n.ebgp_multihop:
                out.append(f" neighbor {n.address} ebgp-multihop {n.ebgp_multihop}")
            if n.bfd is not None:
                out.append(bfd_line(n.address, n.bfd))
        nets = self.networks()
        if u is not None:
            nets = [*u.announce, *nets]
        unicast = [n for n in self.neighbors if n.ipv4_unicast and u is not None]
        if nets or unicast or (self.leaf and self.leaf.redistribute_connected):
            out.append(" address-family ipv4 unicast")
            out += [f"  network {p}" for p in nets]
            if self.leaf and self.leaf.redistribute_connected:
                out.append("  redistribute connected")
            for n in unicast:
                out += [
                    f"  neighbor {n.address} activate",
                    f"  neighbor {n.address} prefix-list UNDERLAY out",
                ]
                if n.allowas_in:
                    out.append(f"  neighbor {n.address} allowas-in {n.allowas_in}")
            if u is not None:
                out.append(f"  maximum-paths {u.maximum_paths}")
            out.append(" exit-address-family")
        out.append(" address-family l2vpn evpn")
        if rr is not None:
            out += [
                f"  neighbor {rr.group} activate",
                f"  neighbor {rr.group} route-reflector-client",
            ]
        for n in self.neighbors:
            out.append(f"  neighbor {n.address} activate")
            if n.rr_client:
                out.append(f"  neighbor {n.address} route-reflector-client")
            if n.allowas_in:
                out.append(f"  neighbor {n.address} allowas-in {n.allowas_in}")
            if n.evpn_nexthop_unchanged:
                out.append(f"  neighbor {n.address} attribute-unchanged next-hop")
        if self.leaf is not None:
            out.append("  advertise-all-vni")
            l3 = self.leaf.l3vni
            if l3 is not None:
                out.append(
                    "  advertise ipv4 unicast route-map TYPE5"
                    if u is not None
                    else "  advertise ipv4 unicast"
                )
                if l3.rd:
                    out.append(f"  rd {l3.rd}")
                if l3.rt:
                    out += [f"  route-target import {l3.rt}", f"  route-target export {l3.rt}"]
            for l2 in self.leaf.l2vnis:
                if l2.rd or l2.rt:
                    out.append(f"  vni {l2.vni}")
                    if l2.rd:
                        out.append(f"   rd {l2.rd}")
                    if l2.rt:
                        out += [
                            f"   route-target import {l2.rt}",
                            f"   route-target export {l2.rt}",
                        ]
                    out.append("  exit-vni")
        out += [" exit-address-family", "exit", "!"]
        if self.extra_bgpd:
            out.append(self.extra_bgpd)
        return "\n".join(out) + "\n"

    # -- lifecycle -----------------------------------------------------------

    def start(self, wait: float = 30.0) -> FrrRouter:
        """Kernel objects of a leaf, then zebra (if any) and bgpd; returns
        once every daemon answers on its vty."""
        if self.pids:
            raise FrrError(f"{self.name} is already running (restart() or stop() first)")
        self._stop_daemons()  # reap daemons that died
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.leaf is not None:
            self._setup_leaf(self.leaf)
        self._write_configs()
        self._start_daemons(wait)
        return self

    def restart(self, wait: float = 30.0) -> FrrRouter:
        """Stop the daemons (SIGTERM, by PID) and start them again with the
        same configuration; kernel objects stay."""
        self._stop_daemons()
        self._write_configs()
        self._start_daemons(wait)
        return self

    def start_bfdd(self, wait: float = 30.0) -> None:
        """bfdd started beside the running daemons (``BFDD_CONF`` unless
        ``bfdd`` says otherwise); bgpd reaches it through zebra, so a router
        without zebra (bgpd ``-Z``) cannot have it."""
        if "bfdd" in self.pids:
            return
        if not self.with_zebra:
            raise FrrError(f"{self.name}: bgpd runs without zebra (-Z) and cannot reach bfdd")
        if self.bfdd is None:
            self.bfdd = BFDD_CONF
        self._write_configs()
        self._spawn("bfdd", wait)

    def stop(self) -> None:
        """Daemons, leaf kernel objects and host namespaces, run and work
        directories: everything this router made. Idempotent."""
        self._stop_daemons()
        for host_ns in self._hosts_made:
            netns_del(host_ns)
        self._hosts_made.clear()
        if Path("/run/netns", self.netns).exists():
            for link in reversed(self._links_made):
                sh("ip", "link", "del", link, ns=self.netns, check=False)
        self._links_made.clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _write_configs(self) -> None:
        shutil.chown(self.workdir, "frr", "frr")
        os.chmod(self.workdir, 0o755)
        files = {"bgpd.conf": self.bgpd_conf()}
        if self.with_zebra:
            files["zebra.conf"] = self.zebra_conf()
        if self.bfdd is not None:
            files["bfdd.conf"] = f"hostname {self.name}\n{self.bfdd}"
        for fname, text in files.items():
            path = self.workdir / fname
            path.write_text(text)
            shutil.chown(path, "frr", "frr")
            os.chmod(path, 0o644)

    def _start_daemons(self, wait: float) -> None:
        if not RUN_ROOT.exists():  # as the frr package makes it (a fresh /run)
            RUN_ROOT.mkdir(mode=0o755, parents=True)
            shutil.chown(RUN_ROOT, "frr", "frr")
        self.run_dir.mkdir(exist_ok=True)
        shutil.chown(self.run_dir, "frr", "frr")
        for daemon in self.daemons:
            self._spawn(daemon, wait)

    def _spawn(self, daemon: str, wait: float) -> None:
        pidfile = self.run_dir / f"{daemon}.pid"
        vty = self.run_dir / f"{daemon}.vty"
        for stale in (pidfile, vty):
            stale.unlink(missing_ok=True)
        cmd = [
            "ip", "netns", "exec", self.netns, str(FRR_LIB / daemon),
            "-N", self.netns,
            "-f", str(self.workdir / f"{daemon}.conf"),
            "-i", str(pidfile),
            "-P", "0",
            "--log", "stdout",
            "--log-level", "informational",
        ]  # fmt: skip
        if daemon == "zebra":
            cmd += ["-s", "90000000"]
        if daemon == "bgpd" and not self.with_zebra:
            cmd.append("-Z")
        with open(self.workdir / f"{daemon}.log", "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._procs[daemon] = proc
        deadline = time.monotonic() + wait
        while True:
            if proc.poll() is not None:
                raise FrrError(
                    f"{daemon} of {self.name} exited with {proc.returncode}:\n"
                    f"{self.log_tail(daemon)}"
                )
            if vty.exists() and pidfile.exists():
                probe = self._vtysh_run(["-d", daemon, "-c", "show version"])
                if probe.returncode == 0:
                    return
            if time.monotonic() > deadline:
                raise FrrError(
                    f"{daemon} of {self.name} not answering in {wait}s:\n{self.log_tail(daemon)}"
                )
            time.sleep(0.05)

    def _stop_daemons(self, wait: float = 10.0) -> None:
        # bgpd first (it withdraws from zebra), then zebra
        for daemon in reversed(list(self._procs)):
            proc = self._procs.pop(daemon)
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(wait)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # -- leaf kernel objects -----------------------------------------------------

    def _link(self, *args: str) -> None:
        """``ip link add NAME ...`` in the router's namespace, remembered for
        ``stop()``."""
        sh("ip", "link", "add", *args, ns=self.netns)
        self._links_made.append(args[0])

    def _setup_leaf(self, leaf: Leaf) -> None:
        if self._links_made or self._hosts_made:
            return  # already made (a start after a stop of the daemons only)
        ns = self.netns
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns)
        vnis: list[tuple[int, str | None]] = [(v.vni, None) for v in leaf.l2vnis]
        if leaf.l3vni is not None:
            vnis.append((leaf.l3vni.vni, self.router_mac))
        for vni, mac in vnis:
            br, vx = f"br{vni}", f"vxlan{vni}"
            self._link(br, "type", "bridge", "forward_delay", "0", "mcast_snooping", "0")
            if mac:
                sh("ip", "link", "set", br, "address", mac, ns=ns)
            self._link(vx, "mtu", "1450", "type", "vxlan", "id", str(vni), "local", leaf.vtep,
                       "dstport", str(VXLAN_PORT), "nolearning")  # fmt: skip
            sh("ip", "link", "set", vx, "master", br, ns=ns)
            sh("bridge", "link", "set", "dev", vx, "learning", "off", ns=ns)
            sh("ip", "link", "set", br, "up", ns=ns)
            sh("ip", "link", "set", vx, "up", ns=ns)
        for l2 in leaf.l2vnis:
            if l2.svi:
                sh("ip", "addr", "add", l2.svi, "dev", f"br{l2.vni}", ns=ns)
        for index, host in enumerate(leaf.hosts):
            self._setup_host(index, host)

    def _setup_host(self, index: int, host: Host) -> None:
        ns = self.netns
        netns_add(host.netns)
        self._hosts_made.append(host.netns)
        if host.routed is not None:
            leaf_side, host_side = host.routed
            port = f"h{index}"
            self._link(port, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            sh("ip", "addr", "add", leaf_side, "dev", port, ns=ns)
            sh("ip", "link", "set", port, "mtu", "1450", "up", ns=ns)
            sh("ip", "addr", "add", host_side, "dev", "eth0", ns=host.netns)
            sh("ip", "link", "set", "eth0", "mtu", "1450", "up", ns=host.netns)
            gateway = leaf_side.split("/")[0]
            sh("ip", "route", "add", "default", "via", gateway, ns=host.netns)
        for n, (vni, cidr) in enumerate(sorted(host.bridged.items()), start=1):
            port = f"h{index}v{vni}"
            ifname = f"eth{n}"
            self._link(port, "type", "veth", "peer", "name", ifname, "netns", host.netns)
            sh("ip", "link", "set", port, "master", f"br{vni}", "mtu", "1450", "up", ns=ns)
            sh("ip", "addr", "add", cidr, "dev", ifname, ns=host.netns)
            sh("ip", "link", "set", ifname, "mtu", "1450", "up", ns=host.netns)

    # -- views -------------------------------------------------------------------

    def _vtysh_run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["vtysh", "-N", self.netns, *args], text=True, capture_output=True, check=False
        )

    def vtysh(self, *commands: str) -> str:
        """Run vtysh commands (each a ``-c``); their output as text."""
        args: list[str] = []
        for command in commands:
            args += ["-c", command]
        out = self._vtysh_run(args)
        if out.returncode != 0:
            raise FrrError(f"vtysh {commands!r} on {self.name}: rc={out.returncode}\n"
                           f"{out.stdout}{out.stderr}")  # fmt: skip
        return out.stdout

    def vtysh_json(self, command: str) -> Any:
        """One ``show ... json`` command, parsed."""
        text = self.vtysh(command)
        try:
            return json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as exc:
            raise FrrError(f"{command!r} on {self.name}: not JSON: {text[:300]!r}") from exc

    def summary(self) -> Any:
        """``show bgp l2vpn evpn summary json``."""
        return self.vtysh_json("show bgp l2vpn evpn summary json")

    def peers(self) -> dict[str, str]:
        """EVPN peers and their session state (``Established``, ``Active``...)."""
        peers = self.summary().get("peers", {})
        return {addr: p.get("state", "?") for addr, p in peers.items()}

    def evpn_json(self) -> Any:
        """``show bgp l2vpn evpn json`` as FRR gives it."""
        return self.vtysh_json("show bgp l2vpn evpn json")

    def l3vni_kernel(self, vni: int) -> dict[str, dict[str, Any]]:
        """What this leaf's kernel holds for L3VNI ``vni``, per remote VTEP:
        the prefixes routed to it (on ``br<vni>``), whether its neighbour
        entry there has a router MAC ("resolved", else "none (STATE)"), and
        whether ``vxlan<vni>``'s FDB sends that MAC to it ("to this VTEP").
        zebra's work; FRR 8.4 can lose the last two (``ZEBRA_SERIAL_ZAPI``)."""

        def read(*cmd: str) -> list[dict[str, Any]]:
            data = json.loads(self.run(*cmd, check=False) or "[]")
            return [e for e in data if isinstance(e, dict)] if isinstance(data, list) else []

        per: dict[str, dict[str, Any]] = {}
        for route in read("ip", "-j", "route", "show", "dev", f"br{vni}"):
            if route.get("gateway"):
                entry = per.setdefault(
                    route["gateway"], {"prefixes": [], "router-mac": "none", "fdb": "none"}
                )
                entry["prefixes"].append(route.get("dst"))
        fdb = {
            e["mac"]: e["dst"]
            for e in read("bridge", "-j", "fdb", "show", "dev", f"vxlan{vni}")
            if e.get("dst") and e.get("mac")
        }
        for n in read("ip", "-j", "neigh", "show", "dev", f"br{vni}"):
            entry = per.get(n.get("dst", ""))
            if entry is None:
                continue
            state = {str(x) for x in n.get("state", [])}
            mac = n.get("lladdr")
            if mac and not state & {"INCOMPLETE", "FAILED"}:
                entry["router-mac"] = "resolved"
                entry["fdb"] = (
                    "to this VTEP" if fdb.get(mac) == n["dst"] else f"{mac}: {fdb.get(mac)}"
                )
            else:
                entry["router-mac"] = f"none ({' '.join(sorted(state)) or 'no address'})"
        return per

    def wait_l3vni_kernel(
        self,
        vni: int,
        prefixes: dict[str, list[str]],
        timeout: float = 30.0,
        heals: int = 2,
        say: Callable[[str], None] = print,
    ) -> None:
        """Wait until this leaf's kernel routes each VTEP's ``prefixes`` on
        L3VNI ``vni`` with its router MAC resolved. FRR 8.4 can lose a
        router MAC for good when a route's best path moves between two
        reflected copies (docs/evpn.md, "Known limits"; ``ZEBRA_SERIAL_ZAPI``
        makes it rare, not impossible): then its BGP sessions are cleared, as
        that page tells an operator, at most ``heals`` times, saying so."""
        from .jsoncmp import wait_for

        want = {
            vtep: {"prefixes": p, "router-mac": "resolved", "fdb": "to this VTEP"}
            for vtep, p in prefixes.items()
        }
        for attempt in range(heals + 1):
            try:
                wait_for(f"{self.name}'s kernel (L3VNI {vni})", lambda: self.l3vni_kernel(vni),
                         want, timeout, 1.0)  # fmt: skip
                return
            except AssertionError:
                now = self.l3vni_kernel(vni)
                lost = [v for v in want if now.get(v, {}).get("prefixes")
                        and now[v]["router-mac"] != "resolved"]  # fmt: skip
                if not lost or attempt == heals:
                    raise
                say(
                    f"{self.name} (FRR 8.4) lost the router MAC of VTEP {', '.join(lost)} "
                    f"(docs/evpn.md, Known limits): clearing its BGP sessions "
                    f"({attempt + 1} of {heals})"
                )
                self.vtysh("clear bgp *")

    def evpn_routes(self) -> list[dict[str, Any]]:
        """Every path of the EVPN table, flattened (see ``flatten_evpn``);
        from ``show bgp l2vpn evpn route detail json`` (it has the labels,
        communities and originator, the plain view does not)."""
        return flatten_evpn(self.vtysh_json("show bgp l2vpn evpn route detail json"))

    def evpn_index(self) -> dict[str, dict[str, Any]]:
        """``evpn_routes()`` keyed by ``"<rd> <prefix key>"`` (the best path
        when there are several): handy for "this route must be absent"."""
        index: dict[str, dict[str, Any]] = {}
        for route in self.evpn_routes():
            key = f"{route['rd']} {route['key']}"
            if key not in index or route["best"]:
                index[key] = route
        return index

    def evpn_vni(self) -> Any:
        return self.vtysh_json("show evpn vni json")

    def routes(self) -> Any:
        """``show ip route json``."""
        return self.vtysh_json("show ip route json")

    def ip(self, *args: str, check: bool = True) -> str:
        """``ip ARGS`` in the router's namespace (stdout)."""
        return sh("ip", *args, ns=self.netns, check=check).stdout

    def run(self, *cmd: str, check: bool = True) -> str:
        """Any command in the router's namespace (stdout)."""
        return sh(*cmd, ns=self.netns, check=check).stdout

    def log_tail(self, daemon: str = "bgpd", lines: int = 30) -> str:
        try:
            text = (self.workdir / f"{daemon}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


# -- the two roles -----------------------------------------------------------------


def route_reflector(
    name: str,
    netns: str,
    asn: int,
    router_id: str,
    *,
    listen_range: str | None,
    cluster_id: str | None = None,
    neighbors: list[Neighbor] | None = None,
    group: str = "CLIENTS",
    timers: tuple[int, int] = (1, 3),
) -> FrrRouter:
    """bgpd alone (``-Z``): ``bgp cluster-id`` (default: the router id), the
    peer group ``group`` with ``remote-as asn`` and ``bgp listen range``, EVPN
    activated with ``route-reflector-client``; ``neighbors`` are static peers
    (another RR: not clients unless ``rr_client``)."""
    return FrrRouter(
        name=name,
        netns=netns,
        asn=asn,
        router_id=router_id,
        neighbors=list(neighbors or []),
        reflector=Reflector(listen_range, cluster_id or router_id, group),
        timers=timers,
    )


def evpn_leaf(
    name: str,
    netns: str,
    asn: int,
    router_id: str,
    *,
    vtep: str,
    neighbors: list[Neighbor],
    l2vnis: list[L2Vni] | None = None,
    l3vni: L3Vni | None = None,
    hosts: list[Host] | None = None,
    networks: list[str] | None = None,
    timers: tuple[int, int] = (1, 3),
    serial_zapi: bool = True,
    underlay: Underlay | None = None,
) -> FrrRouter:
    """zebra + bgpd: ``advertise-all-vni`` for the L2VNIs, the L3VNI on the
    default VRF with ``advertise ipv4 unicast``, the hosts' prefixes (and
    ``networks``) announced, hence type-5 routes. ``serial_zapi=False``
    leaves out the FRR 8.4 router-MAC workaround (``ZEBRA_SERIAL_ZAPI``).
    ``underlay``: an eBGP leaf of a routed fabric (its VTEP a loopback /32
    announced in IPv4 unicast; only ``networks`` become type-5 routes)."""
    return FrrRouter(
        name=name,
        netns=netns,
        asn=asn,
        router_id=router_id,
        neighbors=list(neighbors),
        leaf=Leaf(
            vtep=vtep,
            l2vnis=list(l2vnis or []),
            l3vni=l3vni,
            hosts=list(hosts or []),
            networks=list(networks or []),
            serial_zapi=serial_zapi,
        ),
        timers=timers,
        underlay=underlay,
    )


def spine(
    name: str,
    netns: str,
    asn: int,
    router_id: str,
    *,
    neighbors: list[Neighbor],
    underlay: Underlay,
    timers: tuple[int, int] = (1, 3),
) -> FrrRouter:
    """An RFC 7938 spine: zebra + bgpd (it forwards the underlay: its
    kernel needs the routes), IPv4 unicast with ECMP between the leaves,
    l2vpn evpn passed on with next hops unchanged (``neighbors`` with
    ``ipv4_unicast`` and ``evpn_nexthop_unchanged``); no VNI of its own."""
    return FrrRouter(
        name=name,
        netns=netns,
        asn=asn,
        router_id=router_id,
        neighbors=list(neighbors),
        timers=timers,
        zebra=True,
        underlay=underlay,
    )


# -- parsing ---------------------------------------------------------------------------


def flatten_evpn(table: Any) -> list[dict[str, Any]]:
    """FRR's EVPN table JSON (``show bgp l2vpn evpn [route detail] json``:
    RD -> prefix -> paths) as one dict per path: type, rd, key (FRR's
    prefix string), prefix (type-5), mac, ip, ethTag, nexthop, originator
    (reflected routes), peer, labels (VNIs: a type-2 may carry the L3VNI
    second), vni (the first), rt (list), rmac, extended (the communities as
    FRR prints them), valid, best, local. Keys without a value are left
    out, so ``{"rmac": None}`` in an expectation means "no router MAC"."""
    routes: list[dict[str, Any]] = []
    if not isinstance(table, dict):
        return routes
    for rd_key, by_prefix in table.items():
        if not isinstance(by_prefix, dict) or "rd" not in by_prefix:
            continue
        rd = by_prefix["rd"]
        for prefix_key, entry in by_prefix.items():
            if not isinstance(entry, dict) or not prefix_key.startswith("["):
                continue
            for path in _paths(entry.get("paths", [])):
                routes.append(_flatten_path(rd or rd_key, prefix_key, entry, path))
    return routes


def _paths(paths: Any) -> list[dict[str, Any]]:
    # "paths" is a list of paths, or (plain view) a list of one-path lists
    out: list[dict[str, Any]] = []
    for p in paths if isinstance(paths, list) else []:
        if isinstance(p, list):
            out += [q for q in p if isinstance(q, dict)]
        elif isinstance(p, dict):
            out.append(p)
    return out


def _flatten_path(
    rd: str, prefix_key: str, entry: dict[str, Any], path: dict[str, Any]
) -> dict[str, Any]:
    # the detail view keeps the route's fields (routeType, ip, mac...) at the
    # prefix level, the plain view repeats them in each path
    f = {**entry, **path}
    ext = f.get("extendedCommunity", {})
    ext_str = ext.get("string", "") if isinstance(ext, dict) else str(ext)
    words = ext_str.split()
    rts = [w.split(":", 1)[1] for w in words if w.startswith("RT:")]
    rmac = next((w.split(":", 1)[1] for w in words if w.startswith("Rmac:")), None)
    nexthops = f.get("nexthops") or [{}]
    route_type = f.get("routeType")
    ip = f.get("ip")
    prefix = f"{ip}/{f.get('ipLen', 0)}" if route_type == 5 and ip else None
    vnis = [int(v) for v in str(f.get("vni", f.get("VNI", ""))).split("/") if v.isdigit()]
    pmsi = f.get("pmsi")
    if not vnis and isinstance(pmsi, dict) and isinstance(pmsi.get("label"), int):
        vnis = [pmsi["label"]]  # a received type-3 shows its VNI only there
    best = f.get("bestpath")
    peer = f.get("peer")
    flat = {
        "type": route_type,
        "rd": rd,
        "key": prefix_key,
        "prefix": prefix,
        "mac": f.get("mac"),
        "ip": ip,
        "ethTag": f.get("ethTag"),
        "nexthop": nexthops[0].get("ip"),
        "originator": f.get("originatorId"),
        "peer": peer.get("peerId") if isinstance(peer, dict) else f.get("peerId"),
        "labels": vnis,
        "vni": vnis[0] if vnis else None,
        "rt": rts,
        "rmac": rmac,
        "extended": ext_str,
        "valid": bool(f.get("valid")),
        "best": bool(best.get("overall") if isinstance(best, dict) else best),
        "local": bool(f.get("local")) or f.get("pathFrom") == "local",
    }
    # absent rather than null: an expectation's None then means "has none"
    return {k: v for k, v in flat.items() if v is not None}
