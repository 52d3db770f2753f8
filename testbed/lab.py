"""A containerlab topology file realised without Docker: the lab.

    lab = ClusterLab(load("containerlab/cnid.clab.yml")).up()
    pod = lab.add_pod("k8s01", "default", "web-1")     # Pod object, netns, real plugin ADD
    lab.ctl("k8s02", "vrf", "routes", "vrf-42")         # cnictl --json on a node
    lab.routers["leaf"].evpn_routes()                   # FRR's view
    lab.down()                                          # or, from anywhere: sweep(name)

What each part of the file becomes:

* a ``bridge`` node: a namespace ``lab-N-<bridge>`` holding bridge ``br0``
  (its ports are named as the link endpoints say);
* the ``kube-api`` node: the API server emulation (testbed.kubeapi: HTTPS,
  the CRDs, RBAC) on the segment's bridge itself, at the node's address,
  the first of a /24 (testbed.cluster's layout);
* a ``route-reflector``: FRR's bgpd alone (``-Z``) in namespace
  ``lab-N-<node>`` (testbed.frr);
* a ``leaf``: FRR's zebra + bgpd, its L3VNI on the default VRF, its
  ``cnid.networks`` announced as type-5 routes; in a routed fabric
  (``cnid.vtep`` on the nodes: containerlab/cnid-ebgp.clab.yml) eBGP with its
  AS, its ``cnid.vtep`` on its loopback, the underlay in IPv4 unicast;
* a ``spine``: FRR's zebra + bgpd, eBGP, IPv4 unicast with ECMP, EVPN passed
  on with next hops unchanged;
* a ``node``: cnid's daemon in ``lab-N-<node>`` with its own server.ini,
  sockets and state (testbed.node), a Node object and a VRFNodeConfig (its
  interface, router ID and route reflectors, as in the seeds; with a
  ``cnid.vtep``: its AS, its leaves as eBGP neighbours, its VTEP);
* a ``host``: a namespace with its addresses and default route;
* a link: a veth pair named as its endpoints; into a bridge: enslaved to br0.

Pods are made the way kubelet makes them: the Pod object, a namespace
``lab-N-<node>-<namespace>-<pod>``, then the real plugin executed with the
CNI environment (testbed.node.CnidNode.plugin).

Everything lives in namespaces the lab creates; nothing is added to the root
namespace. Files go to /run/cnid-lab/N/ (testbed.labstate), with a
``state.json`` that another process reads to print the summary, open a
shell, or remove the lab (``sweep``) even after the lab's process crashed.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cnid.core import CnidError
from cnid.ctl import ctl_request
from cnid.ctl import query as ctl_query

from .cluster import API_PORT, Cluster
from .frr import (
    BFDD_CONF,
    FrrRouter,
    L3Vni,
    Neighbor,
    Underlay,
    bfd_line,
    evpn_leaf,
    route_reflector,
    spine,
)
from .jsoncmp import wait_for
from .kubectl import Kubectl
from .labstate import TAG, LabFiles, ns_prefix, sweep
from .node import (
    REPO,
    VENV_BIN,
    CnidNode,
    PluginRun,
    conflist_conf,
    netns_add,
    netns_del,
    sh,
    with_external_speaker,
)
from .topology import Endpoint, Node, Topology, parse

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TOPOLOGY",
    "FRR_ROLES",
    "ClusterLab",
    "LabError",
    "LabNode",
    "Pod",
    "Progress",
    "kernel_nexthops",
    "ping",
    "vrf_available",
]

DEFAULT_TOPOLOGY = REPO / "containerlab" / "cnid.clab.yml"
#: FRR's BGP timers (keepalive, hold) and the nodes' hold time: the recipe of
#: tests/vm/test_evpn.py, quick enough to see a session go under emulation.
FRR_TIMERS = (3, 9)
BGP_INI = "[bgp]\nhold_time = 9\nstale_timeout = 60\n"
#: Garbage collection in the lab: quick, so a departed node's blocks and a
#: vanished pod's address come back within seconds (production: 120 s).
GC_GRACE = 10.0
GC_INTERVAL = 5.0
#: Under TCG (the VM tier) everything is about seven times slower.
TIMEOUT = 240.0
#: A daemon's start: Python's imports alone take minutes under TCG on a
#: loaded machine (a bound, not a wait: it returns as soon as it is ready).
START_TIMEOUT = 900.0


class LabError(RuntimeError):
    """The lab cannot be built as the file says."""


def vrf_available() -> bool:
    """Whether this kernel has the VRF device (probed in a throwaway namespace)."""
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "add", "vrfprobe0", "type", "vrf", "table", "9"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


# -- progress ---------------------------------------------------------------------------


class Progress:
    """Numbered steps with their duration: ``[3/9] FRR ... ok (2.1 s)``."""

    def __init__(self, total: int = 0, out: Any = None, quiet: bool = False) -> None:
        self.total = total
        self.count = 0
        self.out = out or sys.stdout
        self.quiet = quiet
        self.started = time.monotonic()
        self.times: dict[str, float] = {}

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.out, flush=True)

    @contextmanager
    def step(self, what: str, key: str = "") -> Iterator[None]:
        self.count += 1
        total = f"/{self.total}" if self.total else ""
        self.say(f"[{self.count}{total}] {what}")
        t0 = time.monotonic()
        try:
            yield
        except BaseException:
            self.say(f"      FAILED after {time.monotonic() - t0:.1f} s")
            raise
        took = time.monotonic() - t0
        self.times[key or what] = took
        self.say(f"      ok ({took:.1f} s)")

    def detail(self, text: str) -> None:
        self.say(f"      {text}")

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


# -- the pieces -------------------------------------------------------------------------


@dataclass
class LabNode(CnidNode):
    """A cnid node whose interfaces are the topology's links (the lab makes
    them): its namespace and config only; the underlay interface and
    address are named in server.ini."""

    host_if: str = "eth1"
    address: str = ""
    #: A routed underlay (its VTEP a /32 of its own, VRFNodeConfig
    #: spec.underlay): no ``host_if``/``ipaddr`` in server.ini, whose
    #: interface would otherwise be taken for the VTEP.
    routed: bool = False

    def config_text(self) -> str:
        underlay = "" if self.routed else f"host_if = {self.host_if}\nipaddr = {self.address}\n"
        return with_external_speaker(
            f"[api]\nsocket_path_api = {self.socket}\nsocket_path_ctl = {self.ctl_socket}\n"
            f"[network]\nnode_name = {self.name}\nstate_dir = {self.state_dir}\n"
            f"{underlay}"
            f"[readiness]\nhost = 127.0.0.1\nport = 24800\n"
            f"[logging]\nlevel = info\n{self.ini_extra}"
        )

    def create(self) -> LabNode:
        netns_add(self.netns)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "server.ini").write_text(self.config_text())
        return self

    def stop(self) -> None:
        self.kill()
        self.kill_speaker()
        for pod in list(self.pods):
            netns_del(pod)
        self.pods.clear()
        netns_del(self.netns)


@dataclass
class _LabCluster(Cluster):
    """testbed.cluster's API server and LAN, on the topology's segment."""

    segment: str = ""

    @property
    def lan(self) -> str:
        return self.segment


@dataclass
class Pod:
    node: str
    namespace: str
    name: str
    netns: str
    ip: str
    container_id: str
    uid: str
    domain: str = ""
    mac: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def _batch(ns: str, commands: list[str]) -> None:
    """``ip -n NS -batch -``: several commands, one process."""
    out = subprocess.run(
        ["ip", "-n", ns, "-batch", "-"],
        input="\n".join(commands) + "\n",
        text=True,
        capture_output=True,
        check=False,
    )
    if out.returncode != 0:
        raise LabError(f"ip -n {ns} -batch: {out.stderr.strip()} (in {commands})")


def pruned(sent: Any, stored: Any, path: str) -> list[str]:
    """The paths of ``sent`` missing from ``stored`` (what an API server
    pruned as unknown fields), map keys only."""
    if not isinstance(sent, dict):
        return []
    if not isinstance(stored, dict):
        return [path]
    out: list[str] = []
    for key, value in sent.items():
        if key not in stored:
            out.append(f"{path}.{key}")
        else:
            out += pruned(value, stored[key], f"{path}.{key}")
    return out


def kernel_nexthops(ns: str, prefix: str) -> list[str]:
    """The gateways of the main table's route to ``prefix`` in namespace
    ``ns``, sorted (several: ECMP; none: no such route)."""
    out = sh("ip", "-j", "route", "show", "exact", prefix, ns=ns, check=False)
    routes = json.loads(out.stdout or "[]") if out.returncode == 0 else []
    gateways: list[str] = []
    for route in routes:
        hops = route.get("nexthops") or [route]
        gateways += [str(h["gateway"]) for h in hops if h.get("gateway")]
    return sorted(gateways)


def ping(ns: str, address: str, count: int = 3, wait: int = 1) -> bool:
    """At least one echo reply of ``count`` (0.2 s apart, ``wait`` seconds
    for each) from namespace ``ns`` to ``address``."""
    deadline = wait + math.ceil(0.2 * count)
    cmd = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", str(wait)]
    cmd += ["-w", str(deadline), address]
    return sh(*cmd, ns=ns, check=False).returncode == 0


def _nodeconfig(node: str, address: str, ifname: str, reflectors: list[str]) -> dict[str, Any]:
    """The seeds' VRFNodeConfig for one node."""
    spec: dict[str, Any] = {
        "nodeRef": {"name": node},
        "routerId": address,
        "interfaces": [{"name": ifname, "local": address}],
    }
    if reflectors:
        spec["routeReflectors"] = reflectors
    return {
        "apiVersion": "cni.pyroute2.org/v1alpha1",
        "kind": "VRFNodeConfig",
        "metadata": {"name": f"{node}-vrnc"},
        "spec": spec,
    }


#: The roles played by FRR.
FRR_ROLES = ("route-reflector", "leaf", "spine")


def shares_asn(topo: Topology, node: Node) -> bool:
    """Whether another cnid node has this one's AS (one AS per rack): its
    own AS then comes back in the paths of its rack mates' routes, which
    it must accept (``allowas-in 1``)."""
    return any(n.asn == node.asn for n in topo.role("node") if n is not node)


def frr_neighbors(topo: Topology, node: Node) -> list[Neighbor]:
    """A leaf's or spine's ``cnid.neighbors`` as FRR neighbours: iBGP with
    reflectors of its AS; in a routed fabric eBGP (the peer's AS) with the
    underlay's IPv4 unicast, EVPN next hops unchanged, and ``allowas-in``
    towards cnid nodes that share an AS."""
    out = []
    for name in node.words("neighbors"):
        other = topo.nodes[name]
        address = topo.peer_address(node.name, name)
        if other.asn == node.asn:
            out.append(Neighbor(address))
            continue
        out.append(
            Neighbor(
                address,
                remote_as=other.asn,
                ipv4_unicast=topo.routed,
                allowas_in=1 if other.role == "node" and shares_asn(topo, other) else 0,
                evpn_nexthop_unchanged=True,
            )
        )
    return out


def underlay(topo: Topology, node: Node) -> Underlay | None:
    """The routed underlay of a leaf or spine (None in a topology without
    one): its loopback VTEP announced, the fabric's VTEPs let through."""
    if not topo.routed:
        return None
    vteps = [n.label("vtep") for n in topo.nodes.values() if n.label("vtep")]
    return Underlay(announce=[node.label("vtep")] if node.label("vtep") else [], vteps=vteps)


def frr_router(topo: Topology, node: Node, netns: str, workdir: Path) -> FrrRouter:
    """The FRR instance of a ``route-reflector``, ``leaf`` or ``spine`` node
    (testbed.frr), in namespace ``netns``, its files in ``workdir``."""
    if node.role == "route-reflector":
        router = route_reflector(
            node.name,
            netns,
            node.asn,
            node.address,
            listen_range=node.label("listen-range"),
            cluster_id=node.label("cluster-id") or None,
            timers=FRR_TIMERS,
        )
    elif node.role == "leaf":
        l3vni = node.label("l3vni")
        router = evpn_leaf(
            node.name,
            netns,
            node.asn,
            node.vtep,
            vtep=node.vtep,
            neighbors=frr_neighbors(topo, node),
            l3vni=L3Vni(int(l3vni), rt=node.label("route-target") or None) if l3vni else None,
            networks=node.words("networks"),
            timers=FRR_TIMERS,
            underlay=underlay(topo, node),
        )
    elif node.role == "spine":
        fabric = underlay(topo, node)
        if fabric is None:
            raise LabError(f"{node.name}: a spine needs a routed underlay (cnid.vtep on the nodes)")
        router = spine(
            node.name,
            netns,
            node.asn,
            node.address,
            neighbors=frr_neighbors(topo, node),
            underlay=fabric,
            timers=FRR_TIMERS,
        )
    else:
        raise LabError(f"{node.name} is a {node.role}, not an FRR router")
    router.workdir = workdir
    return router


def _bfd_fields(timers: tuple[int, int]) -> dict[str, Any]:
    """A VRFNodeConfig neighbour's BFD fields for (multiplier, interval ms)."""
    multiplier, interval = timers
    return {"bfd": True, "bfdIntervalMs": interval, "bfdMultiplier": multiplier}


def nodeconfig(
    node: Node,
    reflectors: list[str],
    topo: Topology | None = None,
    bfd: dict[str, tuple[int, int]] | None = None,
) -> dict[str, Any]:
    """The VRFNodeConfig of a cnid node. The seeds' kind: its interface and
    address, its router ID, its route reflectors (none: the full mesh). A
    node with ``cnid.vtep`` (a routed underlay, ``topo`` given): its AS, its
    eBGP neighbours (each leaf of ``cnid.neighbors`` at its address on
    their link, with ``allowAsIn: 1`` where another node shares the AS),
    the VTEP as ``underlay.vtepAddress`` and router ID, no interfaces.
    ``bfd``: peer address -> (multiplier, interval ms) of the neighbours
    with BFD (a reflector among them becomes an explicit iBGP neighbour
    too, which keeps it a reflector and gives it its settings)."""
    bfd = bfd or {}
    vtep = node.label("vtep")
    if not vtep or topo is None:
        doc = _nodeconfig(node.name, node.address, node.ifname, reflectors)
        explicit = [
            {"address": rr, "asn": node.asn, **_bfd_fields(bfd[rr])}
            for rr in reflectors
            if rr in bfd
        ]
        if explicit:  # no spec.asn: a changed AS takes a restart, neighbours do not
            doc["spec"]["neighbors"] = explicit
        return doc
    neighbors: list[dict[str, Any]] = []
    for name in node.words("neighbors"):
        peer: dict[str, Any] = {
            "address": topo.peer_address(node.name, name),
            "asn": topo.nodes[name].asn,
        }
        if shares_asn(topo, node):
            peer["allowAsIn"] = 1
        if peer["address"] in bfd:
            peer.update(_bfd_fields(bfd[peer["address"]]))
        neighbors.append(peer)
    spec: dict[str, Any] = {
        "nodeRef": {"name": node.name},
        "routerId": node.vtep,
        "asn": node.asn,
        "neighbors": neighbors,
        "underlay": {"vtepAddress": node.vtep},
    }
    if reflectors:
        spec["routeReflectors"] = reflectors
    return {
        "apiVersion": "cni.pyroute2.org/v1alpha1",
        "kind": "VRFNodeConfig",
        "metadata": {"name": f"{node.name}-vrnc"},
        "spec": spec,
    }


#: The default domain of server.ini ([default]: vrf 42, its table, its
#: prefix, l3vni 42), as a VRFDomain: a topology with hand-set route targets
#: creates it with them before any node starts (a node creates the default
#: domain only where there is no VRFDomain at all).
DEFAULT_DOMAIN: dict[str, Any] = {
    "apiVersion": "cni.pyroute2.org/v1alpha1",
    "kind": "VRFDomain",
    "metadata": {"name": "vrf-42"},
    "spec": {
        "vrf": 42,
        "table": 42,
        "prefix": "10.244.0.0",
        "prefixlen": 16,
        "ipblocklen": 26,
        "attachments": [{"type": "l3vni", "vni": 42, "port": 4789}],
    },
}


def route_target_admin(topo: Topology) -> str:
    """The administrator part of the hand-set route targets ("" where they
    are derived): that of the route target of the routed fabric's leaf
    (``cnid.route-target: 65000:42`` -> ``65000``)."""
    if not topo.routed:
        return ""
    for leaf in topo.role("leaf"):
        rt = leaf.label("route-target")
        if rt:
            return rt.rsplit(":", 1)[0]
    return ""


def with_route_targets(topo: Topology, doc: dict[str, Any]) -> dict[str, Any]:
    """A VRFDomain with the topology's hand-set route targets,
    ``<admin>:<vni>`` of its first attachment, in both lists (the document
    as it is where the topology has none, or for another kind)."""
    admin = route_target_admin(topo)
    attachments = doc.get("spec", {}).get("attachments") or []
    if doc.get("kind") != "VRFDomain" or not admin or not attachments:
        return doc
    rt = f"{admin}:{attachments[0]['vni']}"
    spec = {**doc["spec"], "importRouteTargets": [rt], "exportRouteTargets": [rt]}
    return {**doc, "spec": spec}


def node_ini(node: Node, kubeconfig: Path, gc_grace: float = GC_GRACE) -> str:
    """The server.ini sections a lab node adds to testbed.node's."""
    return (
        f"[kubernetes]\nkubeconfig = {kubeconfig}\n"
        f"gc_grace_seconds = {gc_grace:g}\ngc_interval_seconds = {GC_INTERVAL:g}\n"
        f"{BGP_INI}asn = {node.asn}\n"
    )


# -- the lab ----------------------------------------------------------------------------


@dataclass
class ClusterLab:
    """One topology, realised. ``name`` defaults to the topology's (two labs
    of one name cannot run at once, as with containerlab); ``mesh=True``
    ignores the nodes' ``cnid.route-reflectors`` (a full iBGP mesh)."""

    topo: Topology
    name: str = ""
    mesh: bool = False
    progress: Progress = field(default_factory=Progress)
    gc_grace: float = GC_GRACE
    nodes: dict[str, LabNode] = field(default_factory=dict)
    routers: dict[str, FrrRouter] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    namespaces: dict[str, str] = field(default_factory=dict)  # node -> its namespace
    cluster: _LabCluster | None = None
    #: bfdd on every FRR router from the start (reflectors then run zebra
    #: too: bgpd reaches bfdd through zebra); leaves and spines can have it
    #: started later (``set_bfd``), reflectors cannot
    bfdd: bool = False
    #: FRR router -> (multiplier, interval ms): BFD on all its sessions (set_bfd)
    bfd: dict[str, tuple[int, int]] = field(default_factory=dict)
    _kubectl: Kubectl | None = None
    _made: list[str] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self.name = self.name or self.topo.name
        self.files = LabFiles(self.name)

    # -- names -------------------------------------------------------------------

    @property
    def workdir(self) -> Path:
        return self.files.root

    def ns(self, node: str) -> str:
        return f"{ns_prefix(self.name)}{node}"

    def pod_ns(self, node: str, namespace: str, pod: str) -> str:
        return f"{self.ns(node)}-{namespace}-{pod}"

    @property
    def api_node(self) -> Node:
        return self.topo.role("kube-api")[0]

    @property
    def segment(self) -> str:
        """The bridge the API server and the nodes share."""
        api = self.api_node
        bridge = self.topo.bridge_of(api.name, api.ifname)
        if bridge is None:
            raise LabError(f"{api.name}: its interface {api.ifname} is not on a bridge")
        return bridge

    @property
    def kubectl(self) -> Kubectl:
        if self._kubectl is None:
            self._kubectl = Kubectl.over_unix(self.workdir / "cluster" / "api")
        return self._kubectl

    def node_names(self) -> list[str]:
        return [n.name for n in self.topo.role("node")]

    def reflectors_of(self, node: Node) -> list[str]:
        if self.mesh:
            return []
        return self.topo.addresses_of(node.words("route-reflectors"))

    # -- bring-up ------------------------------------------------------------------

    def check(self) -> None:
        """What this realisation needs beyond a valid file."""
        api = self.api_node
        iface = ipaddress.ip_interface(api.addresses[api.ifname])
        if iface.network.prefixlen != 24 or int(iface.ip) & 0xFF != 1:
            raise LabError(
                f"{api.name}: the API server is served from the segment's bridge at the first "
                f"address of a /24 (testbed.cluster), not {iface}"
            )
        for node in self.topo.role("node"):
            if self.topo.bridge_of(node.name, node.ifname) != self.segment:
                raise LabError(f"{node.name}: {node.ifname} must be on {self.segment}")

    STEPS = 7

    def up(self) -> ClusterLab:
        """Build everything and wait until every BGP session is up."""
        self.check()
        os.environ[TAG] = self.name  # inherited by every process started from here on
        p = self.progress
        if self.topo.routed and p.total:
            p.total += 1  # the underlay's step
        try:
            with p.step(f"removing what is left of an earlier lab {self.name!r}", "cleanup"):
                found = sweep(self.name)
                if found["processes"] or found["namespaces"]:
                    p.detail(f"{found['processes']} processes, {found['namespaces']} namespaces")
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.workdir.chmod(0o755)  # FRR (user frr) reads its configs below it
            self._save()
            with p.step(self._api_text(), "api"):
                self._start_api()
            with p.step(self._wiring_text(), "wiring"):
                self._wire()
            routers = [n for n in self.topo.nodes.values() if n.role in FRR_ROLES]
            with p.step("FRR: " + ", ".join(f"{n.name} ({n.role})" for n in routers), "frr"):
                self._start_routers(routers)
            with p.step(self._objects_text(), "objects"):
                self._kube_objects()
            names = self.node_names()
            with p.step(f"cnid daemons on {', '.join(names)} (in parallel)", "daemons"):
                self._start_daemons(names)
            with p.step("BGP sessions: " + self._sessions_text(), "bgp"):
                self.wait_sessions()
            if self.topo.routed:
                with p.step(
                    "underlay: every node's VTEP in every kernel, ECMP over a rack's leaves",
                    "underlay",
                ):
                    self.wait_underlay()
        except BaseException:
            self._save()
            raise
        self._save()
        return self

    def _api_text(self) -> str:
        api = self.api_node
        return (
            f"segment {self.segment} and the Kubernetes API server on "
            f"{api.address}:{API_PORT} (HTTPS, RBAC, the CRDs of kube/crds)"
        )

    def _wiring_text(self) -> str:
        linux = [n for n in self.topo.nodes.values() if n.kind == "linux" and n.role != "kube-api"]
        return f"namespaces for {len(linux)} nodes, {len(self.topo.links)} links (veth pairs)"

    def _objects_text(self) -> str:
        if self.topo.routed:
            admin = route_target_admin(self.topo)
            return (
                "Kubernetes objects: Nodes, VRFNodeConfigs (AS, eBGP neighbours, VTEP), "
                f"VRFDomain vrf-42 (route targets {admin}:42)"
            )
        mode = "full iBGP mesh" if self.mesh else "route reflectors from cnid.route-reflectors"
        return f"Kubernetes objects: Nodes, VRFNodeConfigs ({mode})"

    def _sessions_text(self) -> str:
        if self.topo.routed:
            return "every node with its leaves, every leaf with its spines (eBGP)"
        if self.mesh:
            return "every node with every other (full mesh)"
        rrs = ", ".join(n.name for n in self.topo.role("route-reflector"))
        return f"every node and the leaf with {rrs}"

    def _start_api(self) -> None:
        api = self.api_node
        subnet = api.address.rsplit(".", 1)[0]
        lan = self.ns(self.segment)
        self._record(lan)
        self.cluster = _LabCluster(
            name=self.name,
            subnet=subnet,
            gc_grace=self.gc_grace,
            gc_interval=GC_INTERVAL,
            workdir=self.workdir / "cluster",
            segment=lan,
        )
        self.cluster.workdir.mkdir(parents=True, exist_ok=True)
        # testbed.cluster's segment (what Cluster.up makes), with a bound
        # for the API server's start that a loaded machine under TCG needs
        self._make_segment()
        self.cluster.start_api(wait=START_TIMEOUT)
        self._kubectl = self.cluster.kubectl
        self._save()

    def _make_segment(self) -> None:
        """The segment's namespace and bridge, the API server's address on it."""
        lan = self.ns(self.segment)
        self._record(lan)
        netns_add(lan)
        bridge = ["br0", "type", "bridge", "forward_delay", "0", "mcast_snooping", "0"]
        sh("ip", "link", "add", *bridge, ns=lan)
        sh("ip", "addr", "add", self.api_node.addresses[self.api_node.ifname], "dev", "br0", ns=lan)
        sh("ip", "link", "set", "br0", "up", ns=lan)

    def up_fabric(self) -> ClusterLab:
        """The fabric alone, for testing it without cnid (no VRF needed):
        namespaces and links, the segment's bridge, every FRR router
        started, the hosts; no API server, no daemon (the cnid nodes'
        namespaces are there, wired and addressed, empty)."""
        self.check()
        os.environ[TAG] = self.name
        try:
            sweep(self.name)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.workdir.chmod(0o755)
            self._make_segment()
            self._wire()
            self._start_routers([n for n in self.topo.nodes.values() if n.role in FRR_ROLES])
        finally:
            self._save()
        return self

    def _record(self, ns: str) -> None:
        if ns not in self._made:
            self._made.append(ns)
            self._save()

    def _wire(self) -> None:
        """Namespaces, then in two ``ip -batch`` runs per namespace (a
        process costs dearly under TCG): the veths made from it, then
        links up, bridge ports, addresses and routes."""
        for node in self.topo.nodes.values():
            if node.is_bridge and node.name != self.segment:
                ns = self.ns(node.name)
                self._record(ns)
                subprocess.run(["ip", "netns", "add", ns], check=True)
                _batch(
                    ns,
                    [
                        "link set lo up",
                        "link add br0 type bridge forward_delay 0 mcast_snooping 0",
                        "link set br0 up",
                    ],
                )
        for node in self.topo.nodes.values():
            if node.is_bridge or node.role == "kube-api":
                continue
            ns = self.ns(node.name)
            self._record(ns)
            self.namespaces[node.name] = ns
            if node.role == "node" and self.cluster is not None:
                self._make_node(node).create()
            else:
                subprocess.run(["ip", "netns", "add", ns], check=True)
                _batch(ns, ["link set lo up"])
        self._plug([(link.a, link.b) for link in self.topo.links], list(self.namespaces))

    def _plug(self, links: list[tuple[Endpoint, Endpoint]], nodes: list[str]) -> None:
        """The veth pairs of ``links``, then the addresses and routes of ``nodes``."""
        made: dict[str, list[str]] = {}
        later: dict[str, list[str]] = {}
        for a, b in links:
            if self.topo.nodes[a.node].is_bridge:
                a, b = b, a
            if a.node == self.api_node.name:
                continue  # the API server sits on the segment's bridge itself
            ns_a = self.namespaces[a.node]
            bridge = self.topo.nodes[b.node].is_bridge
            ns_b = self.ns(b.node) if bridge else self.namespaces[b.node]
            made.setdefault(ns_a, []).append(
                f"link add {a.ifname} type veth peer name {b.ifname} netns {ns_b}"
            )
            later.setdefault(ns_a, []).append(f"link set {a.ifname} up")
            later.setdefault(ns_b, []).append(
                f"link set {b.ifname} master br0 up" if bridge else f"link set {b.ifname} up"
            )
            far = self.topo.nodes[b.node]
            if not bridge and b.node not in nodes and b.ifname in far.addresses:
                # a node (re)joining: its link's other end is new too
                later[ns_b].append(f"addr add {far.addresses[b.ifname]} dev {b.ifname}")
        for name in nodes:
            node = self.topo.nodes[name]
            ns = self.namespaces[name]
            for ifname, cidr in node.addresses.items():
                later.setdefault(ns, []).append(f"addr add {cidr} dev {ifname}")
            if node.role == "leaf" and node.label("vtep"):  # a node's: the daemon's device
                later.setdefault(ns, []).append(f"addr add {node.label('vtep')} dev lo")
            gateway = node.label("gateway")
            if gateway:
                later.setdefault(ns, []).append(f"route add default via {gateway}")
        for ns, commands in made.items():
            _batch(ns, commands)
        for ns, commands in later.items():
            _batch(ns, commands)

    def _make_node(self, node: Node) -> LabNode:
        assert self.cluster is not None
        extra = node_ini(node, self.cluster.api_dir / "sa-kubeconfig", self.gc_grace)
        lab_node = LabNode(
            name=node.name,
            ns_name=self.ns(node.name),
            workdir=self.workdir / node.name,
            lan=self.ns(self.segment),
            ini_extra=extra,
            host_if=node.ifname,
            address=node.address,
            routed=bool(node.label("vtep")),
        )
        self.nodes[node.name] = lab_node
        assert self.cluster is not None
        self.cluster.nodes[node.name] = lab_node
        return lab_node

    def _router(self, node: Node) -> FrrRouter:
        router = frr_router(self.topo, node, self.namespaces[node.name], self.workdir / node.name)
        if self.bfdd:
            router.bfdd = BFDD_CONF
            router.zebra = True  # bgpd reaches bfdd through zebra (a reflector runs -Z otherwise)
        return router

    def _start_routers(self, nodes: list[Node]) -> None:
        # one at a time: four at once was no quicker under TCG (the eBGP
        # lab's ten routers: 25.4 s one by one, 23.8 and 29.1 s four at once)
        for node in nodes:
            router = self._router(node)
            self.routers[node.name] = router
            router.start(wait=START_TIMEOUT)
            self._save()

    def _kube_objects(self) -> None:
        kubectl = self.kubectl
        kubectl.add_namespace("default")
        if route_target_admin(self.topo):
            self._apply_whole(with_route_targets(self.topo, DEFAULT_DOMAIN))
        for node in self.topo.role("node"):
            self._apply_whole(self.nodeconfig(node.name))
            kubectl.add_node(node.name, node.address)

    def nodeconfig(self, name: str) -> dict[str, Any]:
        """A cnid node's VRFNodeConfig as the lab has it now (``set_bfd``)."""
        node = self.topo.nodes[name]
        bfd = {
            self.topo.peer_address(name, peer): timers
            for peer, timers in self.bfd.items()
            if self.topo.peer_address(name, peer)
        }
        return nodeconfig(node, self.reflectors_of(node), self.topo, bfd)

    def _apply_whole(self, doc: dict[str, Any]) -> None:
        """Apply a resource; LabError if the API server pruned fields of its
        spec (its CRD in kube/crds does not know them): a lab whose nodes
        miss their settings would only time out later."""
        stored = self.kubectl.apply(doc)
        lost = pruned(doc.get("spec", {}), stored.get("spec", {}), "spec")
        if lost:
            raise LabError(
                f"{doc['kind']} {doc['metadata']['name']}: the API server dropped "
                f"{', '.join(lost)}: the CRD in kube/crds does not have these fields"
            )

    def _start_daemons(self, names: list[str]) -> None:
        with concurrent.futures.ThreadPoolExecutor(len(names) or 1) as pool:
            futures = {pool.submit(self.nodes[n].start, START_TIMEOUT): n for n in names}
            for future in concurrent.futures.as_completed(futures):
                future.result()
                self._save()

    # -- sessions ------------------------------------------------------------------

    def expected_sessions(self) -> dict[str, dict[str, str]]:
        """speaker -> {peer address: "established"} for every speaker."""
        want: dict[str, dict[str, str]] = {}
        nodes = self.topo.role("node")
        for node in nodes:
            peers = self.reflectors_of(node) + self.topo.neighbor_addresses(node.name)
            peers = peers or [n.address for n in nodes if n is not node]
            want[node.name] = dict.fromkeys(peers, "established")
        for node in [*self.topo.role("leaf"), *self.topo.role("spine")]:
            if self.mesh and not self.topo.routed:
                continue  # its reflectors' clients are gone
            peers = self.topo.neighbor_addresses(node.name)
            want[node.name] = dict.fromkeys(peers, "established")
        return want

    def sessions(self, speaker: str) -> dict[str, str]:
        """peer address -> state (lower case) as the speaker sees it."""
        if speaker in self.nodes:
            return {p["address"]: p["state"] for p in self.ctl(speaker, "bgp", "summary")["peers"]}
        return {a: s.lower() for a, s in self.routers[speaker].peers().items()}

    def wait_sessions(self, timeout: float = TIMEOUT) -> None:
        want = self.expected_sessions()
        wait_for(
            "every BGP session established",
            lambda: {s: self.sessions(s) for s in want},
            want,
            timeout,
            1.0,
        )

    # -- the routed underlay ------------------------------------------------------

    def running(self, name: str) -> bool:
        """Whether a router's daemons or a node's daemon run (True for a
        node the lab does not run itself: a test plays it)."""
        if name in self.routers:
            return bool(self.routers[name].pids)
        if name in self.nodes:
            return self.nodes[name].pid is not None
        return True

    def expected_underlay(self, speakers: list[str] | None = None) -> dict[str, dict[str, str]]:
        """speaker -> {a cnid node's VTEP /32: its next hops in the speaker's
        kernel, sorted, space separated} for every running leaf, spine and
        node (or ``speakers``) of a routed fabric: a leaf or spine (FRR,
        ECMP over equal AS paths) through the neighbours closest to the
        VTEP's node, a cnid node through every neighbour that sends it
        (testbed.topology: cnid nodes pass nothing on). Stopped routers and
        nodes are not in the fabric."""
        topo = self.topo
        if not topo.routed:
            return {}
        up = {n.name for n in topo.nodes.values() if n.role in ("node", *FRR_ROLES)}
        up = {n for n in up if self.running(n)}
        want: dict[str, dict[str, str]] = {}
        targets = [n for n in topo.role("node") if n.label("vtep") and n.name in up]
        for target in targets:
            hops = self._hops_to(target.name, up)
            for name in speakers or sorted(up):
                node = topo.nodes[name]
                if name == target.name or node.role not in ("node", "leaf", "spine"):
                    continue
                peers = [p for p in node.words("neighbors") if p in hops]
                if not peers:
                    continue
                if node.role != "node":
                    best = min(hops[p] for p in peers)
                    peers = [p for p in peers if hops[p] == best]
                gateways = sorted(topo.peer_address(name, p) for p in peers)
                want.setdefault(name, {})[f"{target.vtep}/32"] = " ".join(gateways)
        return want

    def _hops_to(self, target: str, up: set[str]) -> dict[str, int]:
        """BGP hops from each running speaker to ``target``'s routes, over
        ``cnid.neighbors`` (cnid nodes originate, never pass on)."""
        hops = {target: 0}
        frontier = [target]
        while frontier:
            nxt = []
            for name in frontier:
                if name != target and self.topo.nodes[name].role == "node":
                    continue
                for peer in self.topo.nodes[name].words("neighbors"):
                    if peer in up and peer not in hops:
                        hops[peer] = hops[name] + 1
                        nxt.append(peer)
            frontier = nxt
        return hops

    def underlay_view(self, speakers: list[str]) -> dict[str, dict[str, str]]:
        """What ``expected_underlay`` says, as the kernels hold it."""
        vteps = [f"{n.vtep}/32" for n in self.topo.role("node") if n.label("vtep")]
        return {
            s: {v: " ".join(kernel_nexthops(self.namespaces[s], v)) for v in vteps}
            for s in speakers
        }

    def wait_underlay(self, timeout: float = TIMEOUT) -> None:
        """Every running speaker's kernel routes every node's VTEP through
        the expected next hops (ECMP over a rack's two leaves)."""
        want = self.expected_underlay()
        wait_for(
            "the underlay: every node's VTEP in every kernel, ECMP",
            lambda: self.underlay_view(sorted(want)),
            want,
            timeout,
            1.0,
        )

    # -- failures: a silent peer, BFD ------------------------------------------------

    SILENT = "cnidsilent"

    def silence(self, name: str) -> None:
        """A router or node falls silent without closing anything: nftables
        in its namespace drop everything in, out and through it (IPv4, IPv6,
        ARP). No link goes down: its peers see no carrier loss, only
        silence (BFD's detection time, else BGP's hold time)."""
        ruleset = (
            f"table inet {self.SILENT} {{\n"
            "  chain silent_in { type filter hook input priority -10; policy drop; }\n"
            "  chain silent_fwd { type filter hook forward priority -10; policy drop; }\n"
            "  chain silent_out { type filter hook output priority -10; policy drop; }\n"
            "}\n"
            f"table arp {self.SILENT} {{\n"
            "  chain silent_in { type filter hook input priority -10; policy drop; }\n"
            "  chain silent_out { type filter hook output priority -10; policy drop; }\n"
            "}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", self.namespaces[name], "nft", "-f", "-"],
            input=ruleset,
            text=True,
            check=True,
        )

    def unsilence(self, name: str) -> None:
        """``silence(name)`` undone."""
        for family in ("inet", "arp"):
            self.run(name, "nft", "delete", "table", family, self.SILENT)

    def peer_addresses(self, name: str) -> set[str]:
        """Every address of a node of the topology (no prefix length)."""
        return {a.split("/")[0] for a in self.topo.nodes[name].addresses.values()}

    def bfd_sessions(self, name: str) -> dict[str, str]:
        """A cnid node's BFD sessions (peer -> state) or an FRR router's
        (``show bfd peers json``: peer -> status)."""
        if name in self.nodes:
            return {p["peer"]: p["state"] for p in self.ctl(name, "bfd", "peers")["peers"]}
        peers = self.routers[name].vtysh_json("show bfd peers json") or []
        return {p["peer"]: p["status"] for p in peers if isinstance(p, dict)}

    def set_bfd(
        self, peer: str, interval_ms: int = 300, multiplier: int = 3, timeout: float = TIMEOUT
    ) -> None:
        """BFD on every BGP session of FRR router ``peer`` (a leaf, a spine, a
        route reflector), at both ends: bfdd started where it does not run
        yet (a reflector needs the lab's ``bfdd``: its bgpd runs without
        zebra otherwise), ``neighbor X bfd`` in bgpd (at once through vtysh,
        and in its configuration for a restart), ``bfd: true`` on the cnid
        nodes' VRFNodeConfig neighbour. Returns once every session is
        established again and BFD is Up on every one of them."""
        timers = (multiplier, interval_ms)
        router = self.routers[peer]
        mine = self.peer_addresses(peer)
        ends: dict[str, list[str]] = {}  # FRR router -> the neighbour keys to set
        if router.reflector is not None:
            router.reflector.bfd = timers
            ends[peer] = [router.reflector.group]
        for n in router.neighbors:
            n.bfd = timers
            ends.setdefault(peer, []).append(n.address)
        for name, other in self.routers.items():
            for n in other.neighbors if name != peer else []:
                if n.address in mine:
                    n.bfd = timers
                    ends.setdefault(name, []).append(n.address)
        nodes = [n for n in self.node_names() if mine & set(self.expected_sessions().get(n, {}))]
        for name, keys in ends.items():
            frr = self.routers[name]
            try:
                frr.start_bfdd(START_TIMEOUT)
            except Exception as exc:
                raise LabError(f"BFD on {name}: {exc} (bring the lab up with bfdd=True)") from None
            frr.vtysh(
                "configure terminal",
                f"router bgp {frr.asn}",
                *(bfd_line(k, timers).strip() for k in keys),
            )
        self.bfd[peer] = timers
        for name in nodes:
            self._apply_whole(self.nodeconfig(name))
        self._save()
        self.wait_sessions(timeout)
        want: dict[str, dict[str, Any]] = {
            n: {self.topo.peer_address(n, peer): "up"} for n in nodes
        }
        want[peer] = {"up": len(self.routers[peer].peers())}

        def view() -> dict[str, dict[str, Any]]:
            out: dict[str, dict[str, Any]] = {
                n: {a: s for a, s in self.bfd_sessions(n).items() if a in want[n]} for n in nodes
            }
            states = list(self.bfd_sessions(peer).values())
            out[peer] = {"up": sum(1 for s in states if s == "up")}
            return out

        wait_for(f"BFD Up on every session of {peer}", view, want, timeout, 1.0)

    # -- views ---------------------------------------------------------------------

    def ctl(self, node: str, *args: str) -> Any:
        """What ``cnictl --json ARGS`` prints on a node, as data (RuntimeError
        if it fails). Asked over the control socket from this process, as
        cnictl asks it: polling with a Python process per probe would cost
        seconds each under TCG."""
        try:
            command, call_args = ctl_request(list(args))
        except SystemExit:  # argparse has said why on stderr
            raise ValueError(f"cnictl {' '.join(args)}: not a cnictl command") from None
        try:
            response = ctl_query(self.nodes[node].ctl_socket, command, call_args)
        except (OSError, CnidError) as exc:
            raise RuntimeError(f"cnictl {' '.join(args)} on {node}: {exc}") from None
        if not response.ok:
            raise RuntimeError(f"cnictl {' '.join(args)} on {node}: {response.error}")
        return json.loads(json.dumps(response.data))

    def run(self, node: str, *cmd: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """A command in a node's namespace."""
        return sh(*cmd, ns=self.namespaces[node], check=check)

    def ip_json(self, node: str, *args: str) -> Any:
        out = self.run(node, "ip", "-j", *args)
        return json.loads(out.stdout or "[]") if out.returncode == 0 else []

    # -- pods ------------------------------------------------------------------------

    def add_pod(self, node: str, namespace: str, name: str, retry_for: float = TIMEOUT) -> Pod:
        """What kubelet does: the Pod object, its namespace, the plugin's ADD
        (retried while the node answers 11, "try again later", as kubelet
        would, e.g. before a new binding reached the node)."""
        kubectl = self.kubectl
        lab_node = self.nodes[node]
        netns = self.pod_ns(node, namespace, name)
        cid = f"{namespace}-{name}"
        uid = kubectl.add_pod(namespace, name, node)
        deadline = time.monotonic() + retry_for
        while True:
            path = lab_node.add_pod(netns)
            run = lab_node.plugin(
                "ADD",
                container_id=cid,
                netns=path,
                pod=(namespace, name),
                pod_uid=uid,
                conf=conflist_conf(version="1.0.0"),
            )
            if run.rc == 0:
                break
            code = (run.json or {}).get("code") if run.stdout.strip().startswith("{") else None
            self._plugin_del(lab_node, cid, namespace, name)
            lab_node.del_pod_netns(netns)
            if code != 11 or time.monotonic() > deadline:
                kubectl.delete("pods", name, namespace)
                raise LabError(f"ADD {namespace}/{name} on {node}: exit {run.rc}: {run.stdout}")
            time.sleep(1.0)
        result = run.json
        ip = str(result["ips"][0]["address"].split("/")[0])
        mac = next((i.get("mac", "") for i in result.get("interfaces", []) if i.get("sandbox")), "")
        pod = Pod(node, namespace, name, netns, ip, cid, uid, mac=mac)
        with self._lock:  # pods come and go from several threads (the churn)
            self.pods[pod.key] = pod
            self._write_state()
        return pod

    def _plugin_del(self, node: LabNode, cid: str, namespace: str, name: str) -> PluginRun:
        return node.plugin(
            "DEL", container_id=cid, pod=(namespace, name), conf=conflist_conf(version="1.0.0")
        )

    def delete_pod(self, pod: Pod) -> None:
        """The plugin's DEL, the namespace, the Pod object."""
        lab_node = self.nodes[pod.node]
        run = self._plugin_del(lab_node, pod.container_id, pod.namespace, pod.name)
        if run.rc != 0:
            raise LabError(f"DEL {pod.key} on {pod.node}: exit {run.rc}: {run.stdout}")
        lab_node.del_pod_netns(pod.netns)
        self.kubectl.delete("pods", pod.name, pod.namespace)
        with self._lock:
            self.pods.pop(pod.key, None)
            self._write_state()

    # -- nodes come and go ---------------------------------------------------------

    def stop_daemon(self, node: str) -> None:
        self.nodes[node].kill()
        self._save()

    def start_daemon(self, node: str) -> None:
        self.nodes[node].start(START_TIMEOUT)
        self._save()

    def remove_node(self, name: str) -> None:
        """A node leaves for good, as a machine that is switched off and
        deleted from the cluster: its daemon stops, its pods' objects go
        (the node controller's eviction), its Node object is deleted, and
        its namespace with everything in it (its kernel) is gone."""
        lab_node = self.nodes[name]
        with self._lock:
            gone = [p for p in self.pods.values() if p.node == name]
        for pod in gone:
            self.kubectl.delete("pods", pod.name, pod.namespace)
            with self._lock:
                del self.pods[pod.key]
        lab_node.stop()
        self.kubectl.delete("nodes", name)
        del self.nodes[name]
        assert self.cluster is not None
        self.cluster.nodes.pop(name, None)
        self._save()

    def join_node(self, name: str) -> LabNode:
        """A node (back) in the cluster, fresh: a new namespace and links as
        the file says, a new state directory, its Node object, the daemon."""
        node = self.topo.nodes[name]
        remove_tree(self.workdir / name)
        lab_node = self._make_node(node).create()
        self._plug(self.topo.links_of(name), [name])
        self.kubectl.add_node(name, node.address)
        lab_node.start(START_TIMEOUT)
        self._save()
        want = {name: self.expected_sessions()[name]}
        wait_for(f"{name}'s BGP sessions", lambda: {name: self.sessions(name)}, want, TIMEOUT, 1.0)
        return lab_node

    # -- teardown ------------------------------------------------------------------

    def down(self) -> dict[str, int]:
        """Stop everything in order, then sweep whatever is left."""
        errors: list[BaseException] = []
        for node in self.nodes.values():
            try:
                node.kill()
                node.kill_speaker()
            except Exception as exc:
                errors.append(exc)
        for router in reversed(list(self.routers.values())):
            try:
                router.stop()
            except Exception as exc:
                errors.append(exc)
        if self._kubectl is not None:
            self._kubectl.close()
            self._kubectl = None
        if self.cluster is not None:
            self.cluster.nodes.clear()  # stopped above; their namespaces go in the sweep
            try:
                self.cluster.stop()
            except Exception as exc:
                errors.append(exc)
        found = sweep(self.name)
        if os.environ.get(TAG) == self.name:
            del os.environ[TAG]
        if errors:
            raise errors[0]
        return found

    # -- state -------------------------------------------------------------------------

    def _save(self) -> None:
        with self._lock:
            self._write_state()

    def _write_state(self) -> None:
        state = {
            "name": self.name,
            "topology": self.topo.source,
            "topology_text": self.topo.text,
            "mesh": self.mesh,
            "workdir": str(self.workdir),
            "namespaces": sorted(
                {*self._made, *self.namespaces.values(), *(p.netns for p in self.pods.values())}
            ),
            "processes": self._processes(),
            "nodes": {
                n: {"netns": v.netns, "workdir": str(v.workdir)} for n, v in self.nodes.items()
            },
            "routers": {n: {"netns": r.netns} for n, r in self.routers.items()},
            "pods": [asdict(p) for p in self.pods.values()],
            "api_dir": str(self.workdir / "cluster" / "api"),
        }
        self.files.write(state)

    def _processes(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.cluster is not None and self.cluster.api_pid:
            out.append({"pid": self.cluster.api_pid, "what": "kubeapi"})
        for name, node in self.nodes.items():
            if node.pid:
                out.append({"pid": node.pid, "what": f"cnid {name}"})
        for name, router in self.routers.items():
            out += [{"pid": pid, "what": f"{d} {name}"} for d, pid in router.pids.items()]
        return out

    @classmethod
    def attach(cls, name: str, progress: Progress | None = None) -> ClusterLab:
        """The lab another process brought up, from its state.json: views,
        pods and shells work; its processes are not ours to reap."""
        files = LabFiles(name)
        state = files.read()
        if not state:
            raise LabError(f"no lab {name!r} is up (no {files.state_path})")
        topo = parse(state["topology_text"], state["topology"])
        lab = cls(topo, name=name, mesh=state.get("mesh", False), progress=progress or Progress())
        lab._made = list(state.get("namespaces", []))
        for node in topo.role("node"):
            info = state["nodes"].get(node.name)
            if info is None:
                continue
            lab.namespaces[node.name] = info["netns"]
            lab.nodes[node.name] = LabNode(
                name=node.name,
                ns_name=info["netns"],
                workdir=Path(info["workdir"]),
                lan=lab.ns(lab.segment),
                host_if=node.ifname,
                address=node.address,
                routed=bool(node.label("vtep")),
            )
        for node in topo.nodes.values():
            if node.name in state["routers"]:
                lab.namespaces[node.name] = state["routers"][node.name]["netns"]
                router = lab._router(node)
                lab.routers[node.name] = router
            elif node.role == "host":
                lab.namespaces[node.name] = lab.ns(node.name)
        for raw in state.get("pods", []):
            pod = Pod(**raw)
            lab.pods[pod.key] = pod
            lab.nodes[pod.node].pods.append(pod.netns)
        return lab

    def detach(self) -> None:
        """Forget an attached lab without stopping anything."""
        if self._kubectl is not None:
            self._kubectl.close()
            self._kubectl = None


def apply_yaml(lab: ClusterLab, text: str) -> list[Any]:
    return [lab.kubectl.apply(doc) for doc in yaml.safe_load_all(text) if doc]


def wait_until(what: str, probe: Callable[[], Any], expected: Any, timeout: float = TIMEOUT) -> Any:
    """testbed.jsoncmp.wait_for with the lab's timeout and a 0.5 s poll."""
    return wait_for(what, probe, expected, timeout, 0.5)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _shell_env(lab: ClusterLab, target: str) -> tuple[str, dict[str, str], Path]:
    """The namespace of a node or pod, the environment and an rcfile."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    env.pop(TAG, None)
    lines = [
        "[ -f /etc/bash.bashrc ] && . /etc/bash.bashrc",
        f"export PATH={env['PATH']}",
    ]
    if target in lab.nodes:
        node = lab.nodes[target]
        ns = node.netns
        env["CNID_CTL_SOCKET"] = node.ctl_socket
        env["CNID_SOCKET"] = node.socket
        lines += [
            f"export CNID_CTL_SOCKET={node.ctl_socket} CNID_SOCKET={node.socket}",
            f"echo 'lab {lab.name}: node {target} (namespace {ns}); try: cnictl status, "
            "cnictl bgp summary, cnictl evpn routes, cnictl vrf routes vrf-42, cnictl ipam --all'",
        ]
    elif target in lab.routers:
        ns = lab.routers[target].netns
        lines += [
            f"alias vtysh='vtysh -N {ns}'",
            f"echo 'lab {lab.name}: FRR {target} (namespace {ns}); try: "
            'vtysh -c "show bgp l2vpn evpn summary"\'',
        ]
    elif target in lab.namespaces:
        ns = lab.namespaces[target]
        lines.append(f"echo 'lab {lab.name}: {target} (namespace {ns})'")
    else:
        pods = {p.name: p for p in lab.pods.values()} | lab.pods
        if target not in pods:
            known = sorted([*lab.namespaces, *lab.pods])
            raise LabError(f"no node or pod {target!r} in lab {lab.name} ({', '.join(known)})")
        pod = pods[target]
        ns = pod.netns
        lines.append(f"echo 'lab {lab.name}: pod {pod.key} on {pod.node}, {pod.ip}'")
    lines.append(f"PS1='[{lab.name}:{target}] \\w\\$ '")
    rc = lab.workdir / f"shell-{target.replace('/', '_')}.rc"
    rc.write_text("\n".join(lines) + "\n")
    return ns, env, rc


def shell(lab: ClusterLab, target: str, command: list[str] | None = None) -> int:
    """An interactive shell (or ``command``) in a node's or pod's namespace."""
    ns, env, rc = _shell_env(lab, target)
    argv = ["ip", "netns", "exec", ns, *(command or ["bash", "--rcfile", str(rc), "-i"])]
    return subprocess.run(argv, env=env, check=False).returncode


if __name__ == "__main__":
    from .labcli import main

    sys.exit(main())
