"""The EVPN interop fabric of the host tests: one LAN, all in AS 65000, an
FRR route reflector, an FRR EVPN leaf with a host behind it, and GoBGP;
the cnid node under test (``testbed.evpn_node``) joins the LAN at ``.11``.

    lan <prefix><pid>-lan: br0, <net>.0/24
     |-- rr    .1   FRR route reflector (listen range; GoBGP as a static client)
     |-- leaf  .4   FRR EVPN leaf: the caller's L2VNIs and L3VNI
     |      `-- h1  the caller's routed and bridged legs
     |-- gb    .20  GoBGP (passive: the RR connects to it)
     `-- node  .11  cnid (the test's ``EvpnNode``)

    with evpn_fabric("ei", "192.168.83", l2vnis=[L2Vni(300)]) as fabric:
        with fabric.node("node", tmp_path, [VRF300]) as node:
            await up_with_reflector(node, nursery, fabric.rr.router_id, 30.0)

Tests whose fabric differs in the leaf's VNIs, route targets or host pass
those; the addresses, sessions and cleanup are the same for all of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from cnid.core import Domain

from .evpn_node import EvpnNode, on_lan
from .frr import FrrRouter, Host, L2Vni, L3Vni, Neighbor, evpn_leaf, route_reflector
from .gobgp import GoBgp, GoBgpNeighbor
from .jsoncmp import async_wait_for, wait_for
from .netlab import Lab, Lan

__all__ = ["ASN", "EvpnFabric", "addresses", "evpn_fabric", "up_with_reflector"]

ASN = 65000


def addresses(net: str) -> tuple[str, str, str, str]:
    """The RR's, the leaf's, GoBGP's and the node's addresses on ``<net>.0/24``."""
    return f"{net}.1", f"{net}.4", f"{net}.20", f"{net}.11"


@dataclass
class EvpnFabric:
    lab: Lab
    lan: Lan
    rr: FrrRouter
    leaf: FrrRouter
    gb: GoBgp
    net: str  # the LAN's first three octets

    @property
    def host(self) -> Host:
        """The host behind the leaf."""
        assert self.leaf.leaf is not None
        return self.leaf.leaf.hosts[0]

    def node(
        self, name: str, workdir: Path, domains: Sequence[Domain], **kwargs: Any
    ) -> AbstractContextManager[EvpnNode]:
        """cnid at ``.11`` with ``domains``, its files in ``workdir/node``
        (``kwargs``: EvpnNode's own), closed and unplugged afterwards."""
        return on_lan(self.lan, name, addresses(self.net)[3], workdir / "node", domains, **kwargs)


@contextmanager
def evpn_fabric(
    prefix: str,
    net: str,
    *,
    l2vnis: Sequence[L2Vni],
    l3vni: L3Vni | None = None,
    routed: tuple[str, str] | None = None,
    bridged: dict[int, str] | None = None,
    timeout: float = 30.0,
) -> Iterator[EvpnFabric]:
    """The fabric in a lab named ``<prefix><pid>`` on ``<net>.0/24``, its
    sessions established; stopped (and checked for leftovers) on exit. The
    leaf's host ``h1`` has the ``routed`` (leaf side, host side) and
    ``bridged`` ({vni: CIDR}) legs of ``testbed.frr.Host``."""
    rr_ip, leaf_ip, gb_ip, _ = addresses(net)
    lab = Lab(f"{prefix}{os.getpid() % 100000}")
    try:
        lan = lab.lan("lan", f"{net}.0/24")
        rr = lab.add(
            route_reflector(
                "rr",
                lab.netns("rr", lan=lan, index=1),
                ASN,
                rr_ip,
                listen_range=f"{net}.0/24",
                neighbors=[Neighbor(gb_ip, rr_client=True)],
            )
        )
        leaf = lab.add(
            evpn_leaf(
                "leaf",
                lab.netns("leaf", lan=lan, index=4),
                ASN,
                leaf_ip,
                vtep=leaf_ip,
                neighbors=[Neighbor(rr_ip)],
                l2vnis=list(l2vnis),
                l3vni=l3vni,
                hosts=[Host(lab.name("h1"), routed=routed, bridged=dict(bridged or {}))],
            )
        )
        gb = lab.add(
            GoBgp("gb", lab.netns("gb", lan=lan, index=20), ASN, gb_ip,
                  neighbors=[GoBgpNeighbor(rr_ip, ASN, passive=True)])
        )  # fmt: skip
        rr.start()
        leaf.start()
        gb.start()
        wait_for("the leaf's session", leaf.peers, {rr_ip: "Established"}, timeout)
        wait_for("GoBGP's session", gb.peers, {rr_ip: "established"}, timeout)
        yield EvpnFabric(lab, lan, rr, leaf, gb, net)
    finally:
        lab.stop()
        assert not lab.leftovers()


async def up_with_reflector(node: EvpnNode, nursery: trio.Nursery, rr: str, timeout: float) -> None:
    """``node`` started in ``nursery``, its session to the reflector ``rr`` up."""
    await nursery.start(node.run)
    node.speaker.configure(node.reflectors(rr))
    await async_wait_for(
        "the session to the RR", lambda: {rr: node.speaker.peers[rr].state}, {rr: "up"}, timeout
    )
