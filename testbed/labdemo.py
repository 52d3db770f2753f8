"""What ``./just lab`` shows on the lab: the demo tenants, a pod of each on
every node, convergence, and the summary with its ping matrix.

Tenants (namespace -> VRFDomain):

* default -> vrf-42, the default domain (server.ini), 10.244.0.0/16, l3vni 42:
  the FRR leaf serves it (host h1 behind the leaf);
* test02 -> vrf-200, the seeds' VRFDomain and VRFDomainBinding verbatim,
  10.1.0.0/16, l3vni 60200;
* test03 -> vrf-201, the same prefix as vrf-200's, l3vni 60201;
* l2 -> vrf-300, 10.30.0.0/16, l2vni 300 (bridged, anycast gateway).

On a topology whose route targets are set by hand (the eBGP lab,
containerlab/cnid-ebgp.clab.yml) each VRFDomain gets ``<admin>:<vni>`` as
import and export route targets (``demo_documents``); the leaf with hosts is
the one with an L3VNI (``served_leaf``), the next hops are VTEPs.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from . import seeds
from .jsoncmp import wait_for
from .lab import TIMEOUT, ClusterLab, Pod, ping, with_route_targets
from .node import sh
from .topology import Node, Topology

__all__ = [
    "DEMO_CRS",
    "TENANTS",
    "Endpoint",
    "MatrixResult",
    "Tenant",
    "apply_demo",
    "converged_probe",
    "demo_documents",
    "ping_matrix",
    "print_summary",
    "served_leaf",
    "start_pods",
]


@dataclass(frozen=True)
class Tenant:
    namespace: str
    domain: str
    kind: str  # l3vni / l2vni


TENANTS = (
    Tenant("default", "vrf-42", "l3vni"),
    Tenant("test02", "vrf-200", "l3vni"),
    Tenant("test03", "vrf-201", "l3vni"),
    Tenant("l2", "vrf-300", "l2vni"),
)

_TWIN = """\
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFDomain
metadata:
  name: vrf-201
spec:
  vrf: 201
  table: 10201
  prefix: 10.1.0.0
  prefixlen: 16
  ipblocklen: 26
  attachments:
    - type: l3vni
      vni: 60201
      port: 4789
---
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFDomainBinding
metadata:
  name: test03-vrf-201
spec:
  namespaceRef:
    name: test03
  vrfDomainRef:
    name: vrf-201
"""

_L2 = """\
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFDomain
metadata:
  name: vrf-300
spec:
  vrf: 300
  table: 300
  prefix: 10.30.0.0
  prefixlen: 16
  ipblocklen: 26
  attachments:
    - type: l2vni
      vni: 300
---
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFDomainBinding
metadata:
  name: l2-vrf-300
spec:
  namespaceRef:
    name: l2
  vrfDomainRef:
    name: vrf-300
"""

#: The demo's custom resources: the seeds' vrf-200 and its binding to
#: test02, a twin with the same prefix bound to test03, an l2vni tenant.
DEMO_CRS = "---\n".join([seeds.VRFDOMAIN, seeds.VRFDOMAINBINDING, _TWIN, _L2])


def _domain_states(lab: ClusterLab, name: str) -> dict[str, str]:
    obj = lab.kubectl.get("vrfdomains", name)
    return {n: s.get("state", "") for n, s in obj.get("status", {}).get("nodes", {}).items()}


def _binding_resolved(lab: ClusterLab, name: str) -> str:
    obj = lab.kubectl.get("vrfdomainbindings", name)
    conds = obj.get("status", {}).get("conditions", [])
    return next((c["status"] for c in conds if c["type"] == "Resolved"), "")


def demo_documents(topo: Topology | None) -> list[dict[str, Any]]:
    """The demo's custom resources for a topology: ``DEMO_CRS``, each
    VRFDomain with the fabric's hand-set route targets where it has some
    (testbed.lab.with_route_targets: the eBGP lab)."""
    docs = [d for d in yaml.safe_load_all(DEMO_CRS) if d]
    return docs if topo is None else [with_route_targets(topo, d) for d in docs]


def apply_demo(lab: ClusterLab, timeout: float = TIMEOUT) -> None:
    """The tenants' namespaces and CRs; returns once every node programmed
    every domain and every binding resolved."""
    for tenant in TENANTS:
        lab.kubectl.add_namespace(tenant.namespace)
    for doc in demo_documents(lab.topo):
        lab.kubectl.apply(doc)
    nodes = lab.node_names()
    wait_for(
        "every demo domain Ready on every node, every binding Resolved",
        lambda: {
            "domains": {t.domain: _domain_states(lab, t.domain) for t in TENANTS},
            "bindings": {
                b: _binding_resolved(lab, b)
                for b in ("test02-vrf-200", "test03-vrf-201", "l2-vrf-300")
            },
        },
        {
            "domains": {t.domain: dict.fromkeys(nodes, "Ready") for t in TENANTS},
            "bindings": dict.fromkeys(("test02-vrf-200", "test03-vrf-201", "l2-vrf-300"), "True"),
        },
        timeout,
        1.0,
    )


def start_pods(lab: ClusterLab, name: Callable[[int, str], str] | None = None) -> list[Pod]:
    """A pod of every tenant on every node (``web-<n>`` on the n-th node),
    node after node, so the blocks go to the nodes in order."""
    pods = []
    naming = name or (lambda i, node: f"web-{i}")
    for i, node in enumerate(lab.node_names(), start=1):
        with concurrent.futures.ThreadPoolExecutor(len(TENANTS)) as pool:
            futures = [
                pool.submit(lab.add_pod, node, t.namespace, naming(i, node)) for t in TENANTS
            ]
            pods += [f.result() for f in futures]
    for pod in pods:
        pod.domain = tenant_of(pod).domain
        pod.mac = pod_mac(lab, pod)
    lab._save()
    return pods


def tenant_of(pod: Pod) -> Tenant:
    return next(t for t in TENANTS if t.namespace == pod.namespace)


def pod_mac(lab: ClusterLab, pod: Pod) -> str:
    """The MAC of the pod's eth0, as the pod's namespace shows it."""
    link = json.loads(sh("ip", "-j", "link", "show", "eth0", ns=pod.netns).stdout)
    return str(link[0]["address"])


# -- convergence ------------------------------------------------------------------------


def l3_domains(lab: ClusterLab) -> dict[str, int]:
    """Domain name -> VRF of the domains with an l3vni."""
    out = {}
    for d in lab.kubectl.list("vrfdomains"):
        if any(a["type"] == "l3vni" for a in d["spec"]["attachments"]):
            out[d["metadata"]["name"]] = int(d["spec"]["vrf"])
    return out


def served_leaf(topo: Topology) -> Node | None:
    """The leaf with an L3VNI (the one hosts sit behind), if any."""
    return next((n for n in topo.role("leaf") if n.label("l3vni")), None)


def leaf_domain(lab: ClusterLab) -> str | None:
    """The domain whose l3vni the leaf with hosts serves."""
    leaf = served_leaf(lab.topo)
    if leaf is None:
        return None
    vni = int(leaf.label("l3vni"))
    for d in lab.kubectl.list("vrfdomains"):
        for a in d["spec"]["attachments"]:
            if a["type"] == "l3vni" and int(a["vni"]) == vni:
                return str(d["metadata"]["name"])
    return None


def converged_probe(lab: ClusterLab, pods: list[Pod]) -> tuple[Callable[[], Any], Any]:
    """(probe, expectation) for "every node has every remote block of every
    l3vni domain in its VRF, the leaf's prefixes in the leaf's domain, the
    type-2 of every remote l2vni pod programmed; the leaf has every block
    of its domain as a type-5"."""
    domains = l3_domains(lab)
    blocks = lab.kubectl.ipblocks()
    served = leaf_domain(lab)
    leaf = served_leaf(lab.topo)
    nodes = lab.node_names()
    want: dict[str, Any] = {}
    for node in nodes:
        per: dict[str, Any] = {}
        for name, vrf in domains.items():
            routes = [
                {"prefix": b["spec"]["cidr"], "protocol": "evpn"}
                for b in blocks
                if int(b["spec"]["vrf"]) == vrf and b["spec"]["node"] != node
            ]
            if leaf is not None and name == served:
                routes += [
                    {"prefix": p, "protocol": "evpn", "nexthops": [{"via": leaf.vtep}]}
                    for p in leaf.words("networks")
                ]
            if routes:
                per[name] = {"routes": routes}
        type2 = [
            {"route": f"[2]:[0]:[48]:[{p.mac}]:[32]:[{p.ip}]", "state": "programmed"}
            for p in pods
            if p.node != node and tenant_of(p).kind == "l2vni" and p.mac
        ]
        if type2:
            per["type-2"] = type2
        want[node] = per
    leaf_want: list[dict[str, Any]] = []
    kernel_want: dict[str, Any] = {}
    if leaf is not None and served is not None:
        vni = int(leaf.label("l3vni"))
        served_blocks = [b for b in blocks if int(b["spec"]["vrf"]) == domains.get(served, -1)]
        leaf_want = [{"type": 5, "prefix": b["spec"]["cidr"], "vni": vni} for b in served_blocks]
        addresses = {n.name: n.vtep for n in lab.topo.role("node")}
        for b in served_blocks:
            vtep = addresses[b["spec"]["node"]]
            entry = kernel_want.setdefault(
                vtep, {"prefixes": [], "router-mac": "resolved", "fdb": "to this VTEP"}
            )
            entry["prefixes"].append(b["spec"]["cidr"])
    hosts = {h.name: {"default via": h.label("gateway")} for h in lab.topo.role("host")}

    def probe() -> Any:
        out: dict[str, Any] = {}
        for node in nodes:
            per: dict[str, Any] = {}
            for name in want[node]:
                if name == "type-2":
                    per[name] = lab.ctl(node, "evpn", "routes", "--type", "2")
                else:
                    per[name] = lab.ctl(node, "vrf", "routes", name)
            out[node] = per
        if leaf_want and leaf is not None:
            out["leaf"] = lab.routers[leaf.name].evpn_routes()
            out["leaf kernel"] = lab.routers[leaf.name].l3vni_kernel(int(leaf.label("l3vni")))
        out["hosts"] = {name: host_routes(lab, name) for name in hosts}
        return out

    expected: dict[str, Any] = dict(want)
    if leaf_want:
        expected["leaf"] = leaf_want
        expected["leaf kernel"] = kernel_want
    expected["hosts"] = hosts
    return probe, expected


def host_routes(lab: ClusterLab, host: str) -> dict[str, Any]:
    """A host behind the fabric: its default route's gateway."""
    out = sh("ip", "-j", "route", "show", "default", ns=lab.namespaces[host], check=False)
    routes = json.loads(out.stdout or "[]")
    return {"default via": routes[0].get("gateway") if routes else None}


def wait_converged(
    lab: ClusterLab, pods: list[Pod], timeout: float = TIMEOUT, out: Any = None
) -> None:
    """Every router's view converged: each node's VRFs and EVPN table, the
    FRR leaf's EVPN table and kernel (routes, the router MACs' neighbour
    and FDB entries: ``FrrRouter.wait_l3vni_kernel``, which also deals with
    FRR 8.4's lost router MACs), the hosts' routes."""
    probe, expected = converged_probe(lab, pods)
    kernel = expected.pop("leaf kernel", None)
    wait_for("the EVPN routes of every block and pod, everywhere", probe, expected, timeout, 1.0)
    leaf = served_leaf(lab.topo)
    if kernel is None or leaf is None:
        return
    stream = out or sys.stdout

    def say(text: str) -> None:
        print(f"      {text}", file=stream, flush=True)

    lab.routers[leaf.name].wait_l3vni_kernel(
        int(leaf.label("l3vni")),
        {vtep: entry["prefixes"] for vtep, entry in kernel.items()},
        timeout=30.0,
        say=say,
    )


# -- the ping matrix ------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A row/column of the matrix: a pod or a host behind the fabric."""

    label: str
    where: str  # node name, or "fabric"
    netns: str
    ip: str
    tenant: str  # domain name

    @classmethod
    def of(cls, pod: Pod) -> Endpoint:
        return cls(pod.key, pod.node, pod.netns, pod.ip, pod.domain or tenant_of(pod).domain)


@dataclass
class MatrixResult:
    endpoints: list[Endpoint]
    reached: dict[tuple[int, int], bool]
    #: For each pair not as expected: what the kernels on its way hold.
    why: dict[tuple[int, int], list[str]] = field(default_factory=dict)

    def expected(self, i: int, j: int) -> bool:
        src, dst = self.endpoints[i], self.endpoints[j]
        return dst.ip in {e.ip for e in self.endpoints if e.tenant == src.tenant}

    @property
    def mismatches(self) -> list[tuple[Endpoint, Endpoint, bool]]:
        return [
            (self.endpoints[i], self.endpoints[j], got)
            for (i, j), got in sorted(self.reached.items())
            if got != self.expected(i, j)
        ]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def counts(self) -> tuple[int, int]:
        """(pings that got a reply, pings that got none)."""
        yes = sum(1 for v in self.reached.values() if v)
        return yes, len(self.reached) - yes

    def cell(self, i: int, j: int) -> str:
        if i == j or (i, j) not in self.reached:  # not pinged (a partial matrix)
            return "  "
        src, dst = self.endpoints[i], self.endpoints[j]
        got, want = self.reached[(i, j)], self.expected(i, j)
        if dst.tenant != src.tenant and want:  # the address is also its own tenant's
            return "==" if got else "!="
        if got == want:
            return "ok" if got else "--"
        return "!!"

    def render(self) -> str:
        n = len(self.endpoints)
        width = max(len(e.label) for e in self.endpoints)
        head = " " * (width + 33) + "".join(f"{j + 1:>3}" for j in range(n))
        lines = [head]
        for i, e in enumerate(self.endpoints):
            row = "".join(f" {self.cell(i, j):>2}" for j in range(n))
            lines.append(
                f"{i + 1:>2} {e.label:<{width}}  {e.where:<7} {e.tenant:<8} {e.ip:<13}{row}"
            )
        return "\n".join(lines)


def endpoints(lab: ClusterLab, pods: list[Pod]) -> list[Endpoint]:
    order = {t.namespace: k for k, t in enumerate(TENANTS)}
    out = [
        Endpoint.of(p)
        for p in sorted(pods, key=lambda p: (order.get(p.namespace, 99), p.node, p.name))
    ]
    served = leaf_domain(lab)
    for host in lab.topo.role("host"):
        out.append(
            Endpoint(host.name, "fabric", lab.namespaces[host.name], host.address, served or "-")
        )
    return out


def ping_many(ns: str, addresses: list[str], count: int = 2, wait: int = 1) -> dict[str, bool]:
    """``address -> replied`` for pings from namespace ``ns`` to every
    address at once: one ``ip netns exec`` for all of them (a process
    costs dearly under the VM tier's emulation), as ``lab.ping`` each."""
    targets = sorted(set(addresses))
    deadline = wait + 1
    script = " ".join(
        f"(ping -n -q -c {count} -i 0.2 -W {wait} -w {deadline} {ip} >/dev/null 2>&1"
        f" && echo {ip} ok || echo {ip} no) &"
        for ip in targets
    )
    out = sh("sh", "-c", f"{script} wait", ns=ns, check=False).stdout.split()
    said = dict(zip(out[::2], out[1::2], strict=False))
    return {ip: said.get(ip) == "ok" for ip in targets}


def ping_matrix(
    lab: ClusterLab,
    pods: list[Pod],
    workers: int = 4,
    retries: int = 3,
    retry_wait: float = 2.0,
    sources: Callable[[Endpoint], bool] | None = None,
) -> MatrixResult:
    """Every endpoint pings every other (each source all its destinations at
    once, ``workers`` sources at a time); a pair not as expected says why
    (``MatrixResult.why``). ``sources``: only the rows it accepts (a
    partial matrix: the other rows render empty)."""
    eps = endpoints(lab, pods)

    def from_source(i: int) -> dict[tuple[int, int], bool]:
        others = [j for j in range(len(eps)) if j != i]
        got = ping_many(eps[i].netns, [eps[j].ip for j in others])
        return {(i, j): got[eps[j].ip] for j in others}

    rows = [i for i, e in enumerate(eps) if sources is None or sources(e)]
    reached: dict[tuple[int, int], bool] = {}
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for part in pool.map(from_source, rows):
            reached.update(part)
    result = MatrixResult(eps, reached)
    # A reply missing where one is expected is asked again, a bounded number
    # of times (a first packet can wait for a neighbour entry, a route can
    # still be on its way); an unexpected reply is final (isolation broken).
    for _ in range(retries):
        missing = [
            (i, j) for (i, j), got in result.reached.items() if not got and result.expected(i, j)
        ]
        if not missing:
            break
        time.sleep(retry_wait)
        for i, j in missing:
            result.reached[(i, j)] = ping(eps[i].netns, eps[j].ip, count=5)
    for (i, j), got in result.reached.items():
        if got != result.expected(i, j):
            result.why[(i, j)] = diagnose(lab, eps[i], eps[j])
    return result


def diagnose(lab: ClusterLab, src: Endpoint, dst: Endpoint) -> list[str]:
    """What the kernels on the way from ``src`` to ``dst`` hold for it: each
    end's route to the other (a node's in its tenant's VRF), and where a
    host behind the leaf is involved, the leaf's entries for the node."""
    lines: list[str] = []
    leaf = served_leaf(lab.topo)
    for a, b in ((src, dst), (dst, src)):
        if a.where == "fabric":
            if leaf is not None:
                node = next((n for n in lab.topo.role("node") if n.name == b.where), None)
                kernel = lab.routers[leaf.name].l3vni_kernel(int(leaf.label("l3vni")))
                view = kernel.get(node.vtep if node else "", "nothing")
                lines.append(f"leaf {leaf.name}: for {b.where}'s VTEP: {view}")
            continue
        out = sh(
            "ip", "-j", "route", "get", b.ip, "vrf", a.tenant,
            ns=lab.namespaces[a.where], check=False,
        )  # fmt: skip
        got = out.stdout.strip() or out.stderr.strip()
        lines.append(f"{a.where} ({a.tenant}): route to {b.ip}: {got}")
    return lines


LEGEND = (
    "row pings column: ok = replies (same tenant), -- = no reply (another tenant: isolated),\n"
    "== = the column's address is also one of the row's own tenant (overlapping prefixes):\n"
    "     the reply comes from the row's tenant; !! or != = not as expected"
)


# -- the summary ------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[k]) for r in rows)) if rows else len(h) for k, h in enumerate(headers)
    ]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [headers, *rows]
    )


def _uptime(seconds: float | int | None) -> str:
    if not seconds:
        return "never"
    s = int(seconds)
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def nodes_table(lab: ClusterLab) -> str:
    rows = []
    for node in lab.topo.nodes.values():
        if node.is_bridge:
            continue
        what = ""
        if node.role == "kube-api":
            what = f"API server emulation, https://{node.address}:6443, on {lab.segment}'s bridge"
            ns = lab.ns(lab.segment)
        else:
            ns = lab.namespaces.get(node.name, "")
        if node.role == "route-reflector":
            what = f"FRR bgpd, cluster-id {node.label('cluster-id') or node.address}"
        elif node.role == "leaf" and not lab.topo.routed:
            what = (
                f"FRR zebra+bgpd, L3VNI {node.label('l3vni')}, "
                f"announces {', '.join(node.words('networks'))}"
            )
        elif node.role == "leaf":
            what = f"FRR zebra+bgpd, AS {node.asn}, VTEP {node.vtep}"
            if node.label("l3vni"):
                what += (
                    f", L3VNI {node.label('l3vni')} (RT {node.label('route-target')}), "
                    f"announces {', '.join(node.words('networks'))}"
                )
        elif node.role == "spine":
            what = f"FRR zebra+bgpd, AS {node.asn}, EVPN next hops unchanged"
        elif node.role == "host":
            what = f"behind the leaf, default via {node.label('gateway')}"
        elif node.role == "node":
            try:
                status = lab.ctl(node.name, "status")
                what = (
                    f"cnid {status['version']}, {'ready' if status['ready'] else 'NOT READY'}, "
                    f"{status['pods']} pods, {len(status['domains'])} domains"
                )
            except RuntimeError as exc:
                what = f"daemon not answering: {exc}"
            if node.label("vtep"):
                what = f"AS {node.asn}, VTEP {node.vtep}; {what}"
        rows.append([node.name, node.role, node.address, ns, what])
    return _table(["NODE", "ROLE", "ADDRESS", "NAMESPACE", "WHAT"], rows)


def sessions_table(lab: ClusterLab) -> str:
    by_address = {
        cidr.split("/")[0]: n.name for n in lab.topo.nodes.values() for cidr in n.addresses.values()
    }
    rows = []
    for name in lab.node_names():
        try:
            summary = lab.ctl(name, "bgp", "summary")
        except RuntimeError as exc:
            rows.append([name, "-", str(exc), "", "", ""])
            continue
        for p in summary["peers"]:
            peer = f"{by_address.get(p['address'], '?')} {p['address']}"
            rows.append(
                [
                    name,
                    peer,
                    p["state"],
                    _uptime(p["uptime_seconds"]),
                    str(p["received"]),
                    str(p["sent"]),
                ]
            )
    for name, router in lab.routers.items():
        try:
            peers = router.summary().get("peers", {})
        except Exception as exc:
            rows.append([name, "-", f"vtysh: {exc}", "", "", ""])
            continue
        for address, p in sorted(peers.items(), key=lambda kv: ipaddress.ip_address(kv[0])):
            peer = f"{by_address.get(address, '?')} {address}"
            rows.append(
                [
                    name,
                    peer,
                    str(p.get("state", "?")).lower(),
                    str(p.get("peerUptime", "")),
                    str(p.get("pfxRcd", "")),
                    str(p.get("pfxSnt", "")),
                ]
            )
    return _table(["SPEAKER", "PEER", "STATE", "UP/DOWN", "PFXRCD", "PFXSNT"], rows)


def ipblocks_text(lab: ClusterLab) -> str:
    node = lab.node_names()[0]
    out = lab.nodes[node].cnictl("ipam", "--all")
    return out.stdout.rstrip() if out.returncode == 0 else f"(cnictl ipam --all: {out.stderr})"


def pods_table(lab: ClusterLab, pods: list[Pod]) -> str:
    order = {t.namespace: k for k, t in enumerate(TENANTS)}
    rows = [
        [p.key, p.node, p.domain or tenant_of(p).domain, tenant_of(p).kind, p.ip, p.mac]
        for p in sorted(pods, key=lambda p: (order.get(p.namespace, 99), p.node))
    ]
    return _table(["POD", "NODE", "DOMAIN", "ATTACHMENT", "ADDRESS", "MAC"], rows)


def print_summary(lab: ClusterLab, pods: list[Pod], matrix: MatrixResult | None, out: Any) -> None:
    def section(title: str, body: str) -> None:
        print(f"\n== {title}\n{body}", file=out, flush=True)

    section("Nodes", nodes_table(lab))
    section("BGP sessions (l2vpn evpn)", sessions_table(lab))
    section(
        "IP blocks: cnictl ipam --all (the table of kubectl get ipblocks.ipam.pyroute2.org)",
        ipblocks_text(lab),
    )
    section("Pods", pods_table(lab, pods))
    if matrix is not None:
        yes, no = matrix.counts()
        verdict = (
            f"as expected: {yes} pings answered inside the tenants, {no} unanswered across them"
            if matrix.ok
            else f"NOT as expected: {len(matrix.mismatches)} of {len(matrix.reached)} pings"
        )
        section(f"Ping matrix ({verdict})", matrix.render() + "\n\n" + LEGEND)
        for (i, j), got in sorted(matrix.reached.items()):
            if got == matrix.expected(i, j):
                continue
            src, dst = matrix.endpoints[i], matrix.endpoints[j]
            what = "replied (a leak)" if got else "got no reply"
            print(f"   {src.label} -> {dst.label} ({dst.ip}) {what}", file=out)
            for line in matrix.why.get((i, j), []):
                print(f"      {line}", file=out)
