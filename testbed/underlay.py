"""A routed-underlay fabric (RFC 7938) of real FRR 8.4 routers for tests:
a node namespace with a point-to-point /31 link to each of two leaves, the
leaves each in their own AS and linked to one spine, all eBGP.

    node (the caller's namespace)                            spine (AS 65000,
      up1 10.1.1.1/31 -- 10.1.1.0/31 l1 (AS 65101) 10.3.1.0/31 -- 10.3.1.1/31   remote VTEP
      up2 10.1.2.1/31 -- 10.1.2.0/31 l2 (AS 65102) 10.3.2.0/31 -- 10.3.2.1/31   10.255.0.99 on lo)

The spine announces ``network 10.255.0.99/32`` (another VTEP), which reaches
the node through both leaves; it learns the node's VTEP through both leaves
(ECMP there too), so the return path follows the leaves' sessions the way
the node's does. Every router runs zebra and bgpd (``FrrRouter``), with
``remote-as external`` peer groups, ``maximum-paths 4`` and
``multipath-relax``; the leaves activate ``l2vpn evpn`` towards the node.

    fabric = underlay_fabric(lab, node_ns)    # routers started
    fabric.node_routes()                      # {"10.255.0.99": ["10.1.1.0", "10.1.2.0"]}

The node's side, as the host tests run it (the real ``Speaker`` and
``UnderlayController`` on the node's namespace, AS ``NODE_AS``, VTEP
``NODE_VTEP`` on ``lo``: ``LoopbackVtep``, this kernel has no dummy driver):

    with node_dataplane(node_ns) as fd:       # the dataplane's node namespace
        speaker = node_speaker(node_ns, run_dir)
        underlay = node_underlay(speaker, node_ns, metrics)
        speaker.configure(SpeakerConfig(NODE_VTEP, NODE_VTEP, NODE_AS, leaf_neighbors(), ...))
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnid import dataplane
from cnid.bgp import Neighbor, Speaker
from cnid.core import Metrics
from cnid.evpn import UnderlayController, UnderlayPolicy

from .frr import FrrRouter
from .netlab import Lab, sh, veth

FAR_VTEP = "10.255.0.99"
#: leaf index -> (the leaf's address, the node's address on that link, its AS)
LEAVES = {1: ("10.1.1.0", "10.1.1.1", 65101), 2: ("10.1.2.0", "10.1.2.1", 65102)}
SPINE_AS = 65000
#: the node's AS and VTEP
NODE_AS, NODE_VTEP = 65011, "10.255.0.11"


@dataclass
class Router(FrrRouter):
    """An FRR leaf or spine of an RFC 7938 fabric: eBGP peers by group
    (``remote-as external``), ``maximum-paths 4``, ``multipath-relax``."""

    groups: dict[str, list[str]] = field(default_factory=dict)
    networks_v4: list[str] = field(default_factory=list)
    #: BGP's hold time (keepalives every third of it)
    hold: int = 3
    #: Groups with ``neighbor GROUP bfd`` (bfdd must run: ``bfdd``).
    bfd_groups: tuple[str, ...] = ()

    def bgpd_conf(self) -> str:
        lines = [
            f"hostname {self.name}",
            "frr defaults datacenter",
            f"router bgp {self.asn}",
            f" bgp router-id {self.router_id}",
            " no bgp ebgp-requires-policy",
            " bgp bestpath as-path multipath-relax",
            f" timers bgp {max(self.hold // 3, 1)} {self.hold}",
        ]
        for group, peers in self.groups.items():
            lines += [
                f" neighbor {group} peer-group",
                f" neighbor {group} remote-as external",
                f" neighbor {group} timers {max(self.hold // 3, 1)} {self.hold}",
                f" neighbor {group} advertisement-interval 0",
                *(f" neighbor {p} peer-group {group}" for p in peers),
            ]
            if group in self.bfd_groups:
                lines.append(f" neighbor {group} bfd")
        lines += [" address-family ipv4 unicast"]
        lines += [f"  network {n}" for n in self.networks_v4]
        lines += [f"  neighbor {g} activate" for g in self.groups]
        lines += ["  maximum-paths 4", " exit-address-family"]
        if "NODES" in self.groups:
            lines += [" address-family l2vpn evpn", "  neighbor NODES activate"]
            lines += [" exit-address-family"]
        return "\n".join([*lines, "exit", ""])


@dataclass
class UnderlayFabric:
    node: str
    spine: Router
    leaves: dict[int, Router]

    def node_routes(self) -> dict[str, list[str]]:
        """The node's routes of cnid's underlay protocol (151): destination ->
        its gateways, sorted."""
        out = sh("ip", "-j", "route", "show", "proto", "151", ns=self.node).stdout
        found: dict[str, list[str]] = {}
        for r in json.loads(out):
            hops = r.get("nexthops") or [r]
            found[r["dst"]] = sorted(h["gateway"] for h in hops)
        return found


def underlay_fabric(
    lab: Lab, node: str, *, bfd: bool = False, hold: int = 3, spine_bfd: bool = False
) -> UnderlayFabric:
    """The leaves and the spine around the namespace ``node`` (links and
    routers made in ``lab``, which removes them), routers started. ``bfd``:
    the leaves run bfdd with ``neighbor NODES bfd`` (300 ms x 3); ``hold``:
    the leaves' BGP hold time towards the node; ``spine_bfd``: BFD on the
    leaf-spine sessions too (bfdd on every router, ``neighbor SPINES bfd``
    and ``neighbor LEAVES bfd``), so that a silent leaf leaves the spine's
    ECMP route back to the node as fast as the node's."""
    spine_ns = lab.netns("spine")
    sh("ip", "addr", "add", f"{FAR_VTEP}/32", "dev", "lo", ns=spine_ns)
    leaves = {}
    for i, (leaf_ip, node_ip, asn) in LEAVES.items():
        ns = lab.netns(f"l{i}")
        veth(node, f"up{i}", ns, "node0")
        sh("ip", "addr", "add", f"{node_ip}/31", "dev", f"up{i}", ns=node)
        sh("ip", "addr", "add", f"{leaf_ip}/31", "dev", "node0", ns=ns)
        veth(ns, "spine0", spine_ns, f"leaf{i}")
        sh("ip", "addr", "add", f"10.3.{i}.0/31", "dev", "spine0", ns=ns)
        sh("ip", "addr", "add", f"10.3.{i}.1/31", "dev", f"leaf{i}", ns=spine_ns)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=ns)
        groups = {"NODES": [node_ip], "SPINES": [f"10.3.{i}.1"]}
        bfd_groups = (*(("NODES",) if bfd else ()), *(("SPINES",) if spine_bfd else ()))
        leaves[i] = lab.add(Router(f"l{i}", ns, asn, f"10.0.0.{10 + i}", zebra=True,
                                   groups=groups, hold=hold, bfd_groups=bfd_groups,
                                   bfdd="bfd\nexit\n" if bfd_groups else None))  # fmt: skip
    spine = lab.add(
        Router("spine", spine_ns, SPINE_AS, "10.0.0.1", zebra=True,
               groups={"LEAVES": ["10.3.1.0", "10.3.2.0"]}, networks_v4=[f"{FAR_VTEP}/32"],
               bfd_groups=("LEAVES",) if spine_bfd else (),
               bfdd="bfd\nexit\n" if spine_bfd else None)
    )  # fmt: skip
    for router in (spine, *leaves.values()):
        router.start()
    return UnderlayFabric(node, spine, leaves)


# -- the node's side ------------------------------------------------------------------


@contextmanager
def node_dataplane(node: str) -> Iterator[int]:
    """The dataplane's node namespace is ``node`` (``set_node_netns``) while
    this lasts; yields the namespace's file descriptor."""
    fd = os.open(f"/run/netns/{node}", os.O_RDONLY | os.O_CLOEXEC)
    dataplane.set_node_netns(fd)
    try:
        yield fd
    finally:
        dataplane.set_node_netns(None)
        os.close(fd)


class LoopbackVtep:
    """The dataplane, with the VTEP /32 on ``lo``: no dummy driver here."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    async def ensure_vtep(self, address: str) -> int:
        sh("ip", "addr", "replace", f"{address}/32", "dev", "lo", ns=self.ns)
        return 1

    def __getattr__(self, name: str) -> Any:
        return getattr(dataplane, name)


def node_speaker(node: str, run_dir: Path) -> Speaker:
    """cnid's speaker, its ExaBGP in namespace ``node``."""
    return Speaker(run_dir=run_dir, launcher=("ip", "netns", "exec", node), log_level="INFO")


def node_underlay(speaker: Speaker, node: str, metrics: Metrics) -> UnderlayController:
    """The underlay controller as the daemon makes it (VTEP ``NODE_VTEP`` on
    the node's ``lo``, AS ``NODE_AS``)."""
    return UnderlayController(
        speaker=speaker,
        policy=UnderlayPolicy(vtep=NODE_VTEP, asn=NODE_AS),
        metrics=metrics,
        kernel=LoopbackVtep(node),
        stale_timeout=60,
    )


def leaf_neighbors(*, bfd: bool = False) -> tuple[Neighbor, ...]:
    """The node's eBGP neighbours: each leaf at its end of the link."""
    return tuple(Neighbor(a, asn=asn, bfd=bfd) for a, _, asn in LEAVES.values())
