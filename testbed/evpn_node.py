"""cnid's EVPN control plane in the test process, its dataplane in a node
namespace: the host tier's stand-in for a whole node where the kernel has no
VRF device (the VM tier runs the real daemon).

The node runs the real ``Speaker`` (a real ExaBGP in its namespace), the real
``EvpnController`` with the speaker's BFD (a real ``BfdService`` beside
ExaBGP, its UDP sockets opened in the node's namespace; in the speaker
process with ``speaker_mode = "external"``) and the real dataplane calls, on:

* a node namespace plugged into a LAN (``eth0``, the VTEP address);
* per domain ``br-<vni>`` with ``vx-<vni>`` as its port, tagged as
  ``ensure_domain`` tags them, but no VRF device: a routing table and two
  ``ip rule``s (traffic from the l3vni bridge and from the pods' links looks
  up the domain's table) stand for the VRF;
* "pods": namespaces with a veth to the node, recorded in the journal the way
  the CNI service records them (l2vni pods in the bridge, l3vni pods routed
  by a /32 in the domain's table).

Only one node per test process: the dataplane's node namespace is global
(``dataplane.set_node_netns``).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from cnid import dataplane
from cnid.bgp import BfdLink, Speaker, SpeakerConfig, reflector_neighbors
from cnid.core import (
    Attachment,
    Domain,
    DomainLinks,
    DomainRegistry,
    Journal,
    Metrics,
    PodRecord,
    PodResult,
    ResultInterface,
    ResultIP,
)
from cnid.dataplane import bridge_alias, vxlan_alias
from cnid.evpn import EvpnController, Identity, entry_key
from cnid.ipam import AddressPool, MemoryStore, Owner
from testbed.netns import Netns
from testbed.node import end_process, spawn_speaker

ASN = 65000


@dataclass
class Pod:
    name: str
    netns: Netns
    domain: str
    address: str
    mac: str


@dataclass
class EvpnNode:
    name: str
    address: str
    workdir: Path
    domains: list[Domain]
    lan: Any  # testbed.netlab.Lan
    hold_time: int = 9
    stale_timeout: float = 60.0
    #: ``external``: the speaker is a process of its own (``cnid speaker``,
    #: as the pod's speaker container runs it), started by
    #: ``start_speaker_process`` and outliving ``new_controller``'s restarts;
    #: ``child``: it ends with the node's controller.
    speaker_mode: str = "child"
    speaker_proc: subprocess.Popen[bytes] | None = None
    #: Restore the speaker's journal (``bgp.json``) at ``run()``, as the
    #: daemon does: the previous neighbours and paths before anything else.
    restore: bool = False
    ns: Netns = field(init=False)
    registry: DomainRegistry = field(init=False)
    journal: Journal = field(init=False)
    pool: AddressPool = field(init=False)
    metrics: Metrics = field(init=False)
    speaker: Speaker = field(init=False)
    bfd: BfdLink = field(init=False)
    evpn: EvpnController = field(init=False)
    pods: dict[str, Pod] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ns = Netns(f"en{self.name}")
        prefix = self.lan.subnet.split("/")[1]
        self.lan.plug(self.ns.name, f"{self.address}/{prefix}")
        self.ns.ip("link", "set", "eth0", "mtu", "1500")
        self.ns.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        for d in self.domains:
            self._make_domain(d)
        self.registry = DomainRegistry(self.domains[0], static=True)
        self.registry.set_domains(self.domains)
        for d in self.domains:
            self.registry.set_links(d.name, self.links(d))
        self.journal = Journal(self.workdir / "state")
        self.journal.load()
        self.pool = AddressPool(MemoryStore(), self.name)
        self.metrics = Metrics()
        self.new_controller()

    def new_controller(self) -> None:
        """A fresh speaker and controller (as after a restart of the daemon)."""
        self.speaker = Speaker(
            run_dir=self.workdir / "bgp",
            launcher=("ip", "netns", "exec", self.ns.name),
            log_level="INFO",
            mode=self.speaker_mode,
            journal=self.workdir / "state" / "bgp.json",
            bfd_sockets=self._udp_socket,  # child mode: BFD in the node's namespace
        )
        self.bfd = self.speaker.bfd
        self.evpn = EvpnController(
            speaker=self.speaker,
            identity=Identity(self.address, ASN, self.address),
            registry=self.registry,
            journal=self.journal,
            pool=self.pool,
            node=self.name,
            metrics=self.metrics,
            stale_timeout=self.stale_timeout,
            repair_interval=5.0,
            local_interval=5.0,
            bfd=self.bfd,
        )

    async def _udp_socket(self) -> trio.socket.SocketType:
        """A UDP socket of the node's namespace (opened on a worker thread)."""

        def open_inside() -> socket.socket:
            with dataplane.inside(dataplane.checked_netns(self.ns.fd)):
                return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        return trio.socket.from_stdlib_socket(await trio.to_thread.run_sync(open_inside))

    # -- kernel objects -------------------------------------------------------

    def _make_domain(self, d: Domain) -> None:
        ip = self.ns.ip
        for att in d.attachments:
            br, vx = f"br-{att.vni}", f"vx-{att.vni}"
            mac = ("address", dataplane.bridge_mac(att.vni)) if att.type == "l2vni" else ()
            ip("link", "add", br, *mac, "type", "bridge")
            ip("link", "add", vx, "type", "vxlan", "id", str(att.vni), "local", self.address,
               "dstport", "4789", "nolearning")  # fmt: skip
            ip("link", "set", vx, "master", br, "mtu", "1450")
            ip("link", "set", br, "alias", bridge_alias(att.vni))
            ip("link", "set", vx, "alias", vxlan_alias(att.vni))
            ip("link", "set", br, "up")
            ip("link", "set", vx, "up")
            # the VRF's part: what arrives on the bridge is routed in the table
            ip("rule", "add", "iif", br, "lookup", str(d.table))
            if att.type == "l2vni":
                ip("addr", "add", f"{d.anycast_gateway}/{d.prefixlen}", "dev", br)
                ip("route", "add", f"{d.network}", "dev", br, "table", str(d.table))

    def links(self, d: Domain) -> DomainLinks:
        pod = d.pod_attachment
        l3 = next((a for a in d.attachments if a.type == "l3vni"), None)
        mac = self.link_mac(f"br-{l3.vni}") if l3 else None
        return DomainLinks(
            vrf=f"vrf-{d.vrf}",
            table=d.table,
            bridge=f"br-{pod.vni}",
            vxlan=f"vx-{pod.vni}",
            router_mac=mac,
        )

    def link_mac(self, name: str) -> str:
        return str(json.loads(self.ns.ip("-j", "link", "show", name))[0]["address"])

    # -- pods -----------------------------------------------------------------

    async def add_pod(self, name: str, domain: Domain) -> Pod:
        """A pod wired the way cnid wires it, recorded as the CNI service
        records it (so the controller announces it)."""
        lease = await self.pool.allocate(domain, Owner(f"{name}-cid", "eth0", "default", name))
        pod_ns = Netns(f"ep{name}")
        host_if = f"h{name}"[:15]
        derived = dataplane.pod_mac(str(lease.address))  # as wire_pod makes it
        mac_args = ("address", derived) if derived else ()
        self.ns.ip("link", "add", host_if, "type", "veth", "peer", "name", "eth0", *mac_args,
                   "netns", pod_ns.name)  # fmt: skip
        pod_ns.ip("link", "set", "eth0", "mtu", "1450")
        self.ns.ip("link", "set", host_if, "mtu", "1450", "up")
        pod_ns.ip("link", "set", "eth0", "up")
        address = str(lease.address)
        att = domain.pod_attachment
        if att.type == "l2vni":
            self.ns.ip("link", "set", host_if, "master", f"br-{att.vni}")
            pod_ns.ip("addr", "add", f"{address}/{domain.prefixlen}", "dev", "eth0")
            pod_ns.ip("route", "add", "default", "via", str(domain.anycast_gateway))
        else:
            gw = str(lease.gateway)
            self.ns.ip("addr", "add", f"{gw}/32", "dev", host_if)
            self.ns.ip("route", "add", f"{address}/32", "dev", host_if, "table", str(domain.table))
            self.ns.ip("rule", "add", "iif", host_if, "lookup", str(domain.table))
            pod_ns.ip("addr", "add", f"{address}/32", "dev", "eth0")
            pod_ns.ip("route", "add", gw, "dev", "eth0")
            pod_ns.ip("route", "add", "default", "via", gw)
        mac = str(json.loads(pod_ns.ip("-j", "link", "show", "eth0"))[0]["address"])
        self.journal.put(
            PodRecord(
                container_id=f"{name}-cid",
                ifname="eth0",
                state="ready",
                network_name="cnid",
                netns=f"/run/netns/{pod_ns.name}",
                domain=domain.name,
                vrf=domain.vrf,
                host_ifname=host_if,
                address=address,
                prefixlen=32 if att.type == "l3vni" else domain.prefixlen,
                gateway=str(lease.gateway),
                pod_namespace="default",
                pod_name=name,
                result=PodResult(
                    interfaces=(
                        ResultInterface(host_if, self.link_mac(host_if)),
                        ResultInterface("eth0", mac, sandbox=pod_ns.name),
                    ),
                    ips=(ResultIP(f"{address}/32", str(lease.gateway), 1),),
                ),
            )
        )
        pod = Pod(name, pod_ns, domain.name, address, mac)
        self.pods[name] = pod
        return pod

    async def delete_pod(self, name: str) -> None:
        pod = self.pods.pop(name)
        domain = self.registry.get(pod.domain)
        assert domain is not None
        self.journal.delete(Attachment(f"{name}-cid", "eth0"))
        await self.pool.release(domain.vrf, f"{name}-cid", "eth0")
        pod.netns.close()

    # -- running ----------------------------------------------------------------

    def reflectors(self, *addresses: str) -> SpeakerConfig:
        return SpeakerConfig(
            router_id=self.address,
            local_address=self.address,
            asn=ASN,
            neighbors=reflector_neighbors(addresses),
            hold_time=self.hold_time,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Speaker and controller, as the daemon starts them (the speaker's
        journal restored first)."""
        dataplane.set_node_netns(self.ns.fd)
        if self.restore:
            self.speaker.restore()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.speaker.run)
            await nursery.start(self.evpn.run)
            self.speaker.subscribed()  # as the daemon: the events since start are not kept
            task_status.started()

    def ping(self, pod: str, address: str, count: int = 1) -> bool:
        cmd = ["ping", "-c", str(count), "-W", "1", "-i", "0.2", address]
        return self.pods[pod].netns.run(*cmd, check=False).returncode == 0

    async def dump(self) -> dict[tuple[object, ...], object]:
        """The kernel's EVPN entries of ours, keyed as the controller keys them."""
        found = await dataplane.dump_evpn(
            [a.vni for d in self.domains for a in d.attachments], [d.table for d in self.domains]
        )
        return {entry_key(e): e for e in (*found.fdb, *found.neigh, *found.routes)}

    def kernel(self) -> dict[str, Any]:
        """What the node's kernel holds of EVPN (ip/bridge JSON, ours only)."""
        routes = []
        for d in self.domains:
            shown = self.ns.run("ip", "-j", "route", "show", "table", str(d.table), "proto", "150",
                                check=False)  # fmt: skip
            # an empty table is an error to ip ("FIB table does not exist", and "[" printed)
            out = shown.stdout if shown.returncode == 0 else ""
            routes += [dict(r, table=d.table) for r in json.loads(out or "[]")]
        fdb = json.loads(self.ns.run("bridge", "-j", "fdb", "show").stdout or "[]")
        neigh = json.loads(self.ns.ip("-j", "neigh", "show", "nud", "noarp") or "[]")
        return {
            "routes": routes,
            "fdb": [f for f in fdb if f.get("ifname", "").startswith("vx-") and "dst" in f],
            "neigh": [n for n in neigh if str(n.get("dev", "")).startswith("br-")],
        }

    def start_speaker_process(self) -> int:
        """``cnid speaker`` in the node's namespace, as the pod runs it (its
        own container): the test kills it (``stop_speaker_process``)."""
        self.speaker_proc = spawn_speaker(
            self.ns.name, sys.executable, self.workdir / "bgp", self.workdir / "speaker.log"
        )
        return self.speaker_proc.pid

    def stop_speaker_process(self, sig: int = signal.SIGTERM) -> None:
        proc, self.speaker_proc = self.speaker_proc, None
        if proc is None:
            return
        end_process(proc, sig, 15)

    def close(self) -> None:
        self.stop_speaker_process()
        dataplane.set_node_netns(None)
        for pod in self.pods.values():
            pod.netns.close()
        self.pods.clear()
        self.ns.close()
        subprocess.run(["rm", "-rf", str(self.workdir)], check=False)


@contextmanager
def on_lan(
    lan: Any, name: str, address: str, workdir: Path, domains: Sequence[Domain], **kwargs: Any
) -> Iterator[EvpnNode]:
    """An ``EvpnNode`` plugged into ``lan`` at ``address`` (``kwargs``: its
    own, e.g. ``stale_timeout``), closed and unplugged afterwards."""
    node = EvpnNode(name, address, workdir, list(domains), lan, **kwargs)
    try:
        yield node
    finally:
        node.close()
        lan.unplug(node.ns.name)
