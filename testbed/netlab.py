"""Small pieces to wire labs out of network namespaces: a LAN segment (a
namespace holding a bridge), a veth from a namespace into that bridge, a
veth between two namespaces, and a ``Lab`` that owns all of them.

    lab = Lab(f"bp{os.getpid()}")                  # names: bp<pid>-<name>
    lan = lab.lan("lan", "192.168.79.0/24")        # netns bp<pid>-lan with br0
    rr_ns = lab.netns("rr", lan=lan, index=1)      # eth0 192.168.79.1/24 in br0
    rr = lab.add(route_reflector("rr", rr_ns, ...)).start()
    ...
    lab.stop()          # members' stop() in reverse order, then every namespace

The LAN is the same shape as testbed.cluster's (a namespace with a bridge
``br0``), so a ``CnidNode(lan=lan.netns)`` plugs into it too. Nothing here
touches the root namespace: every veth is created inside a lab namespace
with its peer placed directly into the other one.
"""

from __future__ import annotations

import ipaddress
import re
import signal
import subprocess
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .node import netns_add, netns_del, sh

__all__ = [
    "Lab",
    "Lan",
    "Pinger",
    "namespaces",
    "netns_add",
    "netns_del",
    "plug",
    "sh",
    "silence",
    "unsilence",
    "veth",
]

BRIDGE = "br0"


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str, *, mtu: int | None = None) -> None:
    """A veth pair ``ns_a:if_a`` <-> ``ns_b:if_b``, both ends up, no address."""
    sh("ip", "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", ns_b, ns=ns_a)
    for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
        if mtu is not None:
            sh("ip", "link", "set", ifname, "mtu", str(mtu), ns=ns)
        sh("ip", "link", "set", ifname, "up", ns=ns)


def address(ns: str, ifname: str, cidr: str) -> None:
    sh("ip", "addr", "add", cidr, "dev", ifname, ns=ns)


@dataclass
class Lan:
    """A broadcast segment: namespace ``netns`` with bridge ``br0``.

    ``address`` (optional) is put on the bridge itself, e.g. a gateway; most
    BGP labs need none. ``subnet`` is informational (what plugs should use).
    """

    netns: str
    subnet: str = "192.168.79.0/24"
    address: str | None = None
    ports: dict[str, str] = field(default_factory=dict)  # port in the LAN -> its namespace
    _created: bool = False

    def up(self) -> Lan:
        netns_add(self.netns)
        self._created = True
        sh("ip", "link", "add", BRIDGE, "type", "bridge", ns=self.netns)
        # no STP delays, no multicast snooping surprises on the segment
        sh("ip", "link", "set", BRIDGE, "type", "bridge", "forward_delay", "0",
           "mcast_snooping", "0", ns=self.netns)  # fmt: skip
        if self.address:
            address(self.netns, BRIDGE, self.address)
        sh("ip", "link", "set", BRIDGE, "up", ns=self.netns)
        return self

    def host(self, index: int) -> str:
        """The ``index``-th address of ``subnet`` (no prefix length)."""
        return str(ipaddress.ip_network(self.subnet)[index])

    def cidr(self, index: int) -> str:
        """The ``index``-th address with the subnet's prefix length."""
        return f"{self.host(index)}/{ipaddress.ip_network(self.subnet).prefixlen}"

    def plug(self, ns: str, cidr: str | None = None, ifname: str = "eth0") -> str:
        """A veth from namespace ``ns`` (``ifname``, with ``cidr`` if given)
        into the bridge; returns ``ns``."""
        port = f"p{len(self.ports)}"
        while port in self.ports:
            port += "x"
        veth(ns, ifname, self.netns, port)
        sh("ip", "link", "set", port, "master", BRIDGE, ns=self.netns)
        self.ports[port] = ns
        if cidr:
            address(ns, ifname, cidr)
        return ns

    def unplug(self, ns: str) -> None:
        """Remove the ports of ``ns`` (a veth goes with either end)."""
        for port, owner in list(self.ports.items()):
            if owner == ns:
                sh("ip", "link", "del", port, ns=self.netns, check=False)
                del self.ports[port]

    def down(self) -> None:
        if self._created:
            netns_del(self.netns)
            self._created = False
        self.ports.clear()


def plug(ns: str, lan: Lan, cidr: str | None = None, ifname: str = "eth0") -> str:
    """``lan.plug(ns, cidr, ifname)``."""
    return lan.plug(ns, cidr, ifname)


def namespaces() -> list[str]:
    """The machine's named network namespaces (``ip netns list``)."""
    out = subprocess.run(["ip", "netns", "list"], text=True, capture_output=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


class _Stoppable(Protocol):
    def stop(self) -> None: ...


M = TypeVar("M", bound=_Stoppable)


@dataclass
class Lab:
    """Namespaces, LANs and members (anything with ``stop()``: routers,
    daemons) of one lab, all named ``<prefix>-<name>``; ``stop()`` removes
    everything, members first (newest first), and is idempotent."""

    prefix: str
    members: list[_Stoppable] = field(default_factory=list)
    lans: list[Lan] = field(default_factory=list)
    made: list[str] = field(default_factory=list)

    def name(self, name: str) -> str:
        """The full namespace name for ``name`` (nothing is created)."""
        return f"{self.prefix}-{name}"

    def lan(self, name: str, subnet: str, address: str | None = None) -> Lan:
        lan = Lan(self.name(name), subnet, address).up()
        self.lans.append(lan)
        return lan

    def netns(
        self, name: str, *, lan: Lan | None = None, index: int | None = None,
        cidr: str | None = None,
    ) -> str:  # fmt: skip
        """A new namespace; with ``lan``, plugged into it as ``eth0`` with
        ``cidr`` or the LAN's ``index``-th address."""
        ns = self.name(name)
        netns_add(ns)
        self.made.append(ns)
        if lan is not None:
            lan.plug(ns, cidr or (lan.cidr(index) if index is not None else None))
        return ns

    def add(self, member: M) -> M:
        self.members.append(member)
        return member

    def leftovers(self) -> list[str]:
        """Namespaces of this lab still on the machine."""
        return [ns for ns in namespaces() if ns.startswith(self.prefix + "-")]

    def stop(self) -> None:
        errors: list[BaseException] = []
        for member in reversed(self.members):
            try:
                member.stop()
            except Exception as exc:  # stop the rest all the same
                errors.append(exc)
        self.members.clear()
        for ns in reversed(self.made):
            netns_del(ns)
        self.made.clear()
        for lan in reversed(self.lans):
            lan.down()
        self.lans.clear()
        if errors:
            raise errors[0]


def silence(ns: str, table: str = "silent", *, through: bool = False) -> None:
    """Everything in and out of namespace ``ns`` dropped (an nftables table
    ``table``): its processes fall silent, with no link event on either side.
    ``through``: what it forwards and its ARP too (a router that neither
    answers nor carries traffic, as ``ClusterLab.silence`` does it)."""
    ruleset = (
        f"table inet {table} {{\n"
        "  chain in { type filter hook input priority -10; policy drop; }\n"
        "  chain out { type filter hook output priority -10; policy drop; }\n"
    )
    if through:
        ruleset += (
            "  chain through { type filter hook forward priority -10; policy drop; }\n"
            f"}}\ntable arp {table} {{\n"
            "  chain in { type filter hook input priority -10; policy drop; }\n"
            "  chain out { type filter hook output priority -10; policy drop; }\n"
        )
    ruleset += "}\n"
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset, text=True,
                   check=True)  # fmt: skip


def unsilence(ns: str, table: str = "silent") -> None:
    """``silence(ns, table)`` undone: ``ns`` speaks again."""
    sh("nft", "delete", "table", "inet", table, ns=ns)
    sh("nft", "delete", "table", "arp", table, ns=ns, check=False)  # ``through``'s


class Pinger:
    """A continuous ``ping`` from a namespace; ``stop()`` returns (sent, received)."""

    def __init__(self, ns: str, address: str, interval: float = 0.2) -> None:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "ping", "-n", "-i", f"{interval:g}", "-W", "1", address],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stop(self) -> tuple[int, int]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert found, out[-500:]
        return int(found.group(1)), int(found.group(2))
