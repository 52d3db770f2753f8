"""containerlab topology files, read for the lab (testbed/lab.py).

    topo = load("containerlab/cnid.clab.yml")
    topo.name                      # "cnid"
    topo.nodes["k8s01"].role       # "node"
    topo.nodes["k8s01"].address    # "192.168.124.11" (its first interface's)
    topo.links[0]                  # Link(Endpoint("kapi", "eth1"), Endpoint("cnid-fabric", ...))

The file is containerlab's own format (``name``, ``topology.defaults``,
``topology.kinds``, ``topology.nodes`` with ``kind`` and ``image``,
``topology.links`` with ``endpoints``); a node's settings are merged as
containerlab merges them (defaults, then its kind's, then its own; ``labels``
and ``env`` key by key). cnid's settings are node labels ``cnid.*`` (see the
comment at the top of containerlab/cnid.clab.yml):

    cnid.role             kube-api | route-reflector | leaf | spine | node | host
    cnid.<ifname>         an address of that interface (CIDR)
    cnid.asn, cnid.cluster-id, cnid.listen-range, cnid.neighbors,
    cnid.route-reflectors, cnid.l3vni, cnid.route-target, cnid.networks,
    cnid.gateway, cnid.vtep

An eBGP fabric (containerlab/cnid-ebgp.clab.yml) adds spines, a ``cnid.asn``
per node, ``cnid.neighbors`` on leaves, spines and cnid nodes, and
``cnid.vtep`` (a /32: a leaf's loopback VTEP, a cnid node's routed
underlay). Two neighbours with a link between them peer over it
(``Topology.peer_address``); the routed underlay is point-to-point links.

``load`` checks both: what containerlab itself would refuse (unknown keys,
endpoints that are not ``node:interface``, links to nodes that do not exist,
interface names the kernel refuses) and what the lab cannot realise (a role
it does not know, an address that does not parse, a reflector that is not a
reflector). Every problem is listed in one ``TopologyError``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "NEIGHBOR_ROLES",
    "ROLES",
    "Endpoint",
    "Link",
    "Node",
    "Topology",
    "TopologyError",
    "load",
    "parse",
]

#: The roles the lab realises.
ROLES = ("kube-api", "route-reflector", "leaf", "spine", "node", "host")
#: Which roles a role may name in ``cnid.neighbors`` (a BGP session each).
NEIGHBOR_ROLES = {
    "leaf": ("route-reflector", "spine", "node"),
    "spine": ("leaf",),
    "node": ("leaf",),
}
#: Node kinds without Docker: a linux node is a namespace, a bridge is a
#: namespace holding a bridge.
KINDS = ("linux", "bridge", "ovs-bridge")

# containerlab's top-level keys and node keys (its JSON schema; additional
# properties are refused there too)
_TOP_KEYS = {"name", "prefix", "mgmt", "topology", "settings"}
_TOPOLOGY_KEYS = {"nodes", "kinds", "defaults", "links", "groups"}
_NODE_KEYS = {
    "kind",
    "image",
    "image-pull-policy",
    "restart-policy",
    "type",
    "group",
    "license",
    "startup-config",
    "startup-delay",
    "enforce-startup-config",
    "suppress-startup-config",
    "auto-remove",
    "exec",
    "binds",
    "ports",
    "env",
    "env-files",
    "user",
    "entrypoint",
    "cmd",
    "publish",
    "labels",
    "runtime",
    "mgmt-ipv4",
    "mgmt-ipv6",
    "mgmt_ipv4",
    "mgmt_ipv6",
    "network-mode",
    "cpu",
    "memory",
    "cpu-set",
    "sysctls",
    "extras",
    "config",
    "wait-for",
    "dns",
    "certificate",
    "healthcheck",
    "devices",
    "cap-add",
    "shm-size",
    "aliases",
    "stages",
    "components",
}
_LINK_KEYS = {"endpoints", "labels", "vars", "mtu", "type"}
_MAP_KEYS = ("labels", "env")  # merged key by key, as containerlab does
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
_NODE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # DNS label: Kubernetes too


class TopologyError(ValueError):
    """The file cannot be realised; ``problems`` lists every reason."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass(frozen=True)
class Endpoint:
    node: str
    ifname: str

    def __str__(self) -> str:
        return f"{self.node}:{self.ifname}"


@dataclass(frozen=True)
class Link:
    a: Endpoint
    b: Endpoint

    @property
    def endpoints(self) -> tuple[Endpoint, Endpoint]:
        return (self.a, self.b)


@dataclass
class Node:
    """One node with its settings merged (defaults < kind < node)."""

    name: str
    kind: str
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    #: ifname -> address (CIDR), from the ``cnid.<ifname>`` labels, in file order
    addresses: dict[str, str] = field(default_factory=dict)

    @property
    def is_bridge(self) -> bool:
        return self.kind in ("bridge", "ovs-bridge")

    @property
    def role(self) -> str:
        return self.labels.get("cnid.role", "")

    def label(self, key: str, default: str = "") -> str:
        return self.labels.get(f"cnid.{key}", default)

    def words(self, key: str) -> list[str]:
        """A label holding a list (space or comma separated)."""
        return self.label(key).replace(",", " ").split()

    @property
    def address(self) -> str:
        """The address of its first interface (no prefix length): the
        node's address on the fabric, its router ID, its VTEP."""
        for cidr in self.addresses.values():
            return cidr.split("/")[0]
        return ""

    @property
    def ifname(self) -> str:
        """The interface holding ``address``."""
        return next(iter(self.addresses), "")

    @property
    def asn(self) -> int:
        return int(self.label("asn", "65000"))

    @property
    def vtep(self) -> str:
        """Its VTEP address: ``cnid.vtep`` (a /32, no prefix length here),
        else ``address`` (a VTEP on the segment, as in the default lab)."""
        vtep = self.label("vtep")
        return vtep.split("/")[0] if vtep else self.address


@dataclass
class Topology:
    name: str
    nodes: dict[str, Node]
    links: list[Link]
    source: str = "<string>"
    #: the file's text (what a lab records, so it can be read back as it was)
    text: str = ""

    def role(self, role: str) -> list[Node]:
        """The nodes of ``role``, in file order."""
        return [n for n in self.nodes.values() if n.role == role]

    def links_of(self, node: str) -> list[tuple[Endpoint, Endpoint]]:
        """(this node's end, the other end) of each of its links."""
        out = []
        for link in self.links:
            if link.a.node == node:
                out.append((link.a, link.b))
            elif link.b.node == node:
                out.append((link.b, link.a))
        return out

    def bridge_of(self, node: str, ifname: str) -> str | None:
        """The bridge node an interface is plugged into, if any."""
        for mine, other in self.links_of(node):
            if mine.ifname == ifname and self.nodes[other.node].is_bridge:
                return other.node
        return None

    def addresses_of(self, names: list[str]) -> list[str]:
        return [self.nodes[n].address for n in names]

    @property
    def routed(self) -> bool:
        """A routed underlay: some cnid node has its own VTEP (``cnid.vtep``)."""
        return any(n.label("vtep") for n in self.role("node"))

    def link_between(self, a: str, b: str) -> tuple[Endpoint, Endpoint] | None:
        """(a's end, b's end) of a direct link between two nodes, if any."""
        for mine, other in self.links_of(a):
            if other.node == b:
                return mine, other
        return None

    def peer_address(self, me: str, other: str) -> str:
        """The address ``me`` peers with ``other`` at: other's address on a
        link between them, else on a bridge both are on, else "" (none)."""
        direct = self.link_between(me, other)
        peer = self.nodes[other]
        if direct is not None:
            return peer.addresses.get(direct[1].ifname, "").split("/")[0]
        mine = {self.bridge_of(me, e.ifname) for e, _ in self.links_of(me)} - {None}
        for end, _ in self.links_of(other):
            if self.bridge_of(other, end.ifname) in mine and end.ifname in peer.addresses:
                return peer.addresses[end.ifname].split("/")[0]
        return ""

    def neighbor_addresses(self, node: str) -> list[str]:
        """The peer addresses of a node's ``cnid.neighbors``, in its order."""
        return [self.peer_address(node, n) for n in self.nodes[node].words("neighbors")]


def load(path: str | Path) -> Topology:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse(text, str(path))


def parse(text: str, source: str = "<string>") -> Topology:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(source, [f"not YAML: {exc}"]) from None
    problems: list[str] = []
    topo = _build(doc, problems)
    if topo is not None:
        topo.source = source
        topo.text = text
        _check(topo, problems)
    if problems or topo is None:
        raise TopologyError(source, problems or ["empty"])
    return topo


# -- containerlab's structure -------------------------------------------------------


def _strings(value: Any, where: str, problems: list[str]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(f"{where}: must be a map")
        return {}
    out = {}
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            problems.append(f"{where}.{k}: must be a string or a number, not {v!r}")
            continue
        out[str(k)] = str(v)
    return out


def _merged(layers: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in _MAP_KEYS and isinstance(value, dict):
                out[key] = {**out.get(key, {}), **value}
            else:
                out[key] = value
    return out


def _build(doc: Any, problems: list[str]) -> Topology | None:
    if not isinstance(doc, dict):
        problems.append("the file must be a map with name and topology")
        return None
    for key in sorted(set(doc) - _TOP_KEYS):
        problems.append(f"unknown top-level key {key!r} (containerlab refuses it)")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        problems.append("name: required, a string")
        name = ""
    elif not _NODE_NAME.match(name):
        problems.append(f"name {name!r}: use lower-case letters, digits and '-'")
    topology = doc.get("topology")
    if not isinstance(topology, dict):
        problems.append("topology: required, a map")
        return None
    for key in sorted(set(topology) - _TOPOLOGY_KEYS):
        problems.append(f"topology: unknown key {key!r}")
    defaults = topology.get("defaults") or {}
    kinds = topology.get("kinds") or {}
    raw_nodes = topology.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        problems.append("topology.nodes: required, a map of nodes")
        return None
    if not isinstance(defaults, dict) or not isinstance(kinds, dict):
        problems.append("topology.defaults and topology.kinds must be maps")
        return None
    nodes: dict[str, Node] = {}
    for node_name, raw in raw_nodes.items():
        node = _node(str(node_name), raw or {}, defaults, kinds, problems)
        if node is not None:
            nodes[node.name] = node
    links = _links(topology.get("links") or [], problems)
    return Topology(name=name, nodes=nodes, links=links)


def _node(
    name: str, raw: Any, defaults: dict[str, Any], kinds: dict[str, Any], problems: list[str]
) -> Node | None:
    where = f"node {name}"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a map")
        return None
    for key in sorted(set(raw) - _NODE_KEYS):
        problems.append(f"{where}: unknown key {key!r} (containerlab refuses it)")
    kind = raw.get("kind", defaults.get("kind"))
    if not isinstance(kind, str):
        problems.append(f"{where}: no kind (its own or topology.defaults.kind)")
        return None
    kind_layer = kinds.get(kind) or {}
    merged = _merged([defaults, kind_layer if isinstance(kind_layer, dict) else {}, raw])
    merged["kind"] = kind
    if not _NODE_NAME.match(name):
        problems.append(f"{where}: a node name is a DNS label (lower-case letters, digits, '-')")
    if kind not in KINDS:
        problems.append(f"{where}: kind {kind!r} cannot be realised here (only {', '.join(KINDS)})")
    image = merged.get("image", "")
    if kind == "linux" and not image:
        problems.append(f"{where}: a linux node needs an image (containerlab requires one)")
    labels = _strings(merged.get("labels"), f"{where}.labels", problems)
    env = _strings(merged.get("env"), f"{where}.env", problems)
    node = Node(name=name, kind=kind, image=str(image), labels=labels, env=env, raw=merged)
    return node


def _links(raw: Any, problems: list[str]) -> list[Link]:
    if not isinstance(raw, list):
        problems.append("topology.links: must be a list")
        return []
    links = []
    for i, item in enumerate(raw):
        where = f"links[{i}]"
        if not isinstance(item, dict) or "endpoints" not in item:
            problems.append(f"{where}: needs endpoints")
            continue
        for key in sorted(set(item) - _LINK_KEYS):
            problems.append(f"{where}: unknown key {key!r}")
        eps = item["endpoints"]
        if not isinstance(eps, list) or len(eps) != 2:
            problems.append(f"{where}: endpoints must be two 'node:interface' strings")
            continue
        parsed = []
        for ep in eps:
            node, sep, ifname = str(ep).partition(":")
            if not sep or not node or not ifname:
                problems.append(f"{where}: endpoint {ep!r} is not 'node:interface'")
                continue
            parsed.append(Endpoint(node, ifname))
        if len(parsed) == 2:
            links.append(Link(parsed[0], parsed[1]))
    return links


# -- what the lab needs ---------------------------------------------------------------


def _check(topo: Topology, problems: list[str]) -> None:
    seen: dict[str, set[str]] = {}
    for i, link in enumerate(topo.links):
        for ep in link.endpoints:
            if ep.node not in topo.nodes:
                problems.append(f"links[{i}]: {ep}: no node {ep.node!r}")
                continue
            if not _IFNAME.match(ep.ifname):
                problems.append(f"links[{i}]: {ep}: not an interface name (at most 15 characters)")
            names = seen.setdefault(ep.node, set())
            if ep.ifname in names:
                problems.append(f"links[{i}]: {ep}: interface used twice")
            names.add(ep.ifname)
        if all(ep.node in topo.nodes and topo.nodes[ep.node].is_bridge for ep in link.endpoints):
            problems.append(f"links[{i}]: a link between two bridges")
    bridge_ports = [
        ep.ifname
        for link in topo.links
        for ep in link.endpoints
        if ep.node in topo.nodes and topo.nodes[ep.node].is_bridge
    ]
    for port in sorted({p for p in bridge_ports if bridge_ports.count(p) > 1}):
        problems.append(f"bridge port {port!r} used twice (they share the host's namespace)")
    for node in topo.nodes.values():
        _check_node(topo, node, seen.get(node.name, set()), problems)
    for node in topo.nodes.values():  # once every node's addresses are known
        if not node.is_bridge and node.role in ROLES:
            _check_neighbors(topo, node, problems)
    apis = topo.role("kube-api")
    if topo.role("node") and len(apis) != 1:
        problems.append(f"a cluster needs exactly one kube-api node, not {len(apis)}")


def _check_node(topo: Topology, node: Node, ifnames: set[str], problems: list[str]) -> None:
    where = f"node {node.name}"
    if node.is_bridge:
        return
    role = node.role
    if role not in ROLES:
        problems.append(f"{where}: cnid.role {role!r} is not one of {', '.join(ROLES)}")
        return
    for key, value in node.labels.items():
        ifname = key.removeprefix("cnid.")
        if key == ifname or ifname not in ifnames:
            continue
        try:
            iface = ipaddress.ip_interface(value)
        except ValueError:
            problems.append(f"{where}: {key}: {value!r} is not an address with its prefix length")
            continue
        if iface.network.prefixlen == iface.max_prefixlen:
            problems.append(f"{where}: {key}: give the prefix length of the segment, not /32")
        node.addresses[ifname] = value
    stray = [
        k
        for k in node.labels
        if k.startswith("cnid.")
        and _IFNAME.match(k[5:])
        and k[5:].startswith("eth")
        and k[5:] not in ifnames
    ]
    for key in stray:
        problems.append(f"{where}: {key}: no link uses interface {key[5:]!r}")
    if not node.addresses:
        problems.append(f"{where}: no address (a cnid.<ifname> label for one of its links)")
    try:
        node.asn  # noqa: B018
    except ValueError:
        problems.append(f"{where}: cnid.asn {node.label('asn')!r} is not a number")
    for key in ("cluster-id", "gateway"):
        value = node.label(key)
        if value:
            _address(value, f"{where}: cnid.{key}", problems)
    for key in ("listen-range", "networks"):
        for value in node.words(key):
            try:
                ipaddress.ip_network(value)
            except ValueError:
                problems.append(f"{where}: cnid.{key}: {value!r} is not a prefix")
    for peer in node.words("route-reflectors"):
        other = topo.nodes.get(peer)
        if other is None:
            problems.append(f"{where}: cnid.route-reflectors: no node {peer!r}")
        elif other.role != "route-reflector":
            what = other.role or other.kind
            problems.append(f"{where}: cnid.route-reflectors: {peer} is a {what}")
    vtep = node.label("vtep")
    if vtep:
        try:
            iface = ipaddress.ip_interface(vtep)
        except ValueError:
            problems.append(f"{where}: cnid.vtep: {vtep!r} is not an address")
        else:
            if iface.network.prefixlen != iface.max_prefixlen:
                problems.append(f"{where}: cnid.vtep: {vtep!r} is a /32 of its own")
        if role not in ("leaf", "node"):
            problems.append(f"{where}: cnid.vtep is for a leaf or a cnid node, not a {role}")
    if role == "spine" and not node.words("neighbors"):
        problems.append(f"{where}: a spine needs cnid.neighbors (its leaves)")
    if role == "node" and node.words("neighbors") and not node.label("vtep"):
        problems.append(f"{where}: a node peering with leaves needs cnid.vtep (routed underlay)")
    if role == "route-reflector" and not node.label("listen-range"):
        problems.append(f"{where}: a route reflector needs cnid.listen-range")
    if role == "leaf":
        if not node.words("neighbors"):
            problems.append(f"{where}: a leaf needs cnid.neighbors")
        l3vni = node.label("l3vni")
        if l3vni and not (l3vni.isdigit() and 0 < int(l3vni) < 2**24):
            problems.append(f"{where}: cnid.l3vni {l3vni!r} is not a VNI")


def _check_neighbors(topo: Topology, node: Node, problems: list[str]) -> None:
    """``cnid.neighbors``: nodes of a role this one may peer with, reachable
    (a link or a shared bridge), naming this one back (except reflectors,
    which accept whoever connects from their listen range)."""
    where = f"node {node.name}: cnid.neighbors"
    allowed = NEIGHBOR_ROLES.get(node.role, ())
    for peer in node.words("neighbors"):
        other = topo.nodes.get(peer)
        if other is None:
            problems.append(f"{where}: no node {peer!r}")
            continue
        if other.role not in allowed:
            what = other.role or other.kind
            problems.append(f"{where}: a {node.role} does not peer with a {what} ({peer})")
            continue
        if not topo.peer_address(node.name, peer):
            problems.append(f"{where}: {peer} has no address on a link or bridge shared with it")
        if other.role != "route-reflector" and node.name not in other.words("neighbors"):
            problems.append(f"{where}: {peer} does not name {node.name} in its cnid.neighbors")


def _address(value: str, where: str, problems: list[str]) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        problems.append(f"{where}: {value!r} is not an address")
