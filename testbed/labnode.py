"""One node of the lab inside a container: the cnid-lab image's entrypoint
when containerlab runs containerlab/cnid.clab.yml with Docker.

    python -m testbed.labnode                     # the entrypoint: this container's role
    python -m testbed.labnode pod add NS NAME     # in a cnid node: a pod, as kubelet makes it
    python -m testbed.labnode pod del NS NAME
    python -m testbed.labnode apply FILE|demo     # custom resources (demo: the lab's demo CRs)

The node is the container's host name (containerlab sets it to the node's
name; ``CNID_NODE`` overrides it). It reads its labels from the topology
file bound in at ``/lab/topology.clab.yml`` (``CNID_TOPOLOGY``), so the
file is the only truth here too. Files shared between the nodes (the API
server's CA, tokens and kubeconfigs) are in ``/lab/state`` (``CNID_LAB_STATE``),
a directory bound into every node.

What it does: waits for the interfaces containerlab adds after the start,
puts the ``cnid.<ifname>`` addresses on them, gives the container's own
network namespace a name (``ip netns attach``: testbed's pieces run
commands with ``ip netns exec NAME``), then by role:

* ``kube-api``: the API server emulation on its address, port 6443;
* ``route-reflector``, ``leaf``, ``spine``: FRR (testbed.frr, the lab's very
  configs; a leaf's ``cnid.vtep`` on its loopback);
* ``node``: registers the Node and its VRFNodeConfig (what kubelet and the
  operator would do), then runs cnid with the sockets at their defaults
  (/run/cnid/cni.sock, /run/cnid/ctl.sock: ``cnictl`` works as is);
* ``host``: its default route (``cnid.gateway``).

It stays in the foreground until SIGTERM (``containerlab destroy``), then
stops what it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from .kubectl import Kubectl
from .lab import (
    DEFAULT_DOMAIN,
    FRR_ROLES,
    GC_GRACE,
    LabError,
    LabNode,
    frr_router,
    node_ini,
    nodeconfig,
    route_target_admin,
    with_route_targets,
)
from .node import REPO, VENV_BIN, conflist_conf, sh
from .topology import Node, Topology, load

TOPOLOGY = Path(os.environ.get("CNID_TOPOLOGY", "/lab/topology.clab.yml"))
STATE = Path(os.environ.get("CNID_LAB_STATE", "/lab/state"))
API_DIR = STATE / "api"
NODE_DIR = Path("/run/cnid")
WORK = Path(os.environ.get("CNID_LAB_WORK", "/var/lib/cnid-lab"))
WAIT = 300.0


def say(text: str) -> None:
    print(f"cnid-lab: {text}", flush=True)


def node_name() -> str:
    return os.environ.get("CNID_NODE") or socket.gethostname()


def wait_interfaces(node: Node, wait: float = WAIT) -> None:
    """containerlab adds a container's links after starting it."""
    deadline = time.monotonic() + wait
    missing = list(node.addresses)
    while missing:
        missing = [i for i in node.addresses if not Path(f"/sys/class/net/{i}").exists()]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise LabError(f"{node.name}: interfaces {missing} never appeared")
        time.sleep(0.5)


def own_netns(name: str) -> str:
    """A name for the namespace this process runs in: the one it already
    has under /run/netns, or ``lab-<name>`` attached now."""
    mine = os.stat("/proc/self/ns/net")
    netns = Path("/run/netns")
    if netns.is_dir():
        for entry in netns.iterdir():
            try:
                st = os.stat(entry)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                return entry.name
    ns = f"lab-{name}"
    subprocess.run(["ip", "netns", "attach", ns, str(os.getpid())], check=True)
    return ns


def configure(node: Node) -> None:
    for ifname, cidr in node.addresses.items():
        sh("ip", "addr", "replace", cidr, "dev", ifname)
        sh("ip", "link", "set", ifname, "up")
    if node.role == "leaf" and node.label("vtep"):  # a cnid node's: the daemon's device
        sh("ip", "addr", "replace", node.label("vtep"), "dev", "lo")
    gateway = node.label("gateway")
    if gateway:
        sh("ip", "route", "replace", "default", "via", gateway)


def wait_file(path: Path, wait: float = WAIT) -> Path:
    deadline = time.monotonic() + wait
    while not path.exists():
        if time.monotonic() > deadline:
            raise LabError(f"{path} did not appear in {wait:g}s (is the kube-api node up?)")
        time.sleep(0.5)
    return path


def admin() -> Kubectl:
    """The admin client: the API server's files in the shared directory."""
    wait_file(API_DIR / "ready")
    return Kubectl.from_dir(API_DIR, (API_DIR / "url").read_text().strip())


def _until_terminated() -> None:
    stop = {"now": False}

    def handler(signum: int, frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop["now"]:
        time.sleep(0.5)


def run_kube_api(node: Node) -> int:
    API_DIR.mkdir(parents=True, exist_ok=True)
    (API_DIR / "ready").unlink(missing_ok=True)
    argv = [
        str(VENV_BIN / "python"),
        "-m",
        "testbed.kubeapi",
        "--listen",
        f"{node.address}:6443",
        "--advertise",
        node.address,
        "--dir",
        str(API_DIR),
        "--crds",
        str(REPO / "kube" / "crds"),
        "--rbac",
        str(REPO / "kube" / "deploy" / "rbac.yaml"),
        "--rbac-user",
        "system:serviceaccount:pyroute2-cni:cnid",
        "--state",
        str(API_DIR / "state.json"),
    ]
    say(f"API server on https://{node.address}:6443, files in {API_DIR}")
    os.execv(argv[0], argv)
    return 1  # not reached


def run_router(topo: Topology, node: Node, ns: str) -> int:
    router = frr_router(topo, node, ns, WORK / node.name)
    WORK.mkdir(parents=True, exist_ok=True)
    WORK.chmod(0o755)  # FRR (user frr) reads its configs below it
    router.start(wait=WAIT)
    say(f"FRR {node.role} {node.name} up")
    try:
        _until_terminated()
    finally:
        router.stop()
    return 0


def run_node(topo: Topology, node: Node, ns: str) -> int:
    kubectl = admin()
    reflectors = topo.addresses_of(node.words("route-reflectors"))
    kubectl.add_namespace("default")
    if route_target_admin(topo):  # before a node would create the default domain
        kubectl.apply(with_route_targets(topo, DEFAULT_DOMAIN))
    kubectl.apply(nodeconfig(node, reflectors, topo))
    kubectl.add_node(node.name, node.address)
    kubectl.close()
    lab_node = LabNode(
        name=node.name,
        ns_name=ns,
        workdir=NODE_DIR,
        ini_extra=node_ini(node, wait_file(API_DIR / "sa-kubeconfig"), GC_GRACE),
        host_if=node.ifname,
        address=node.address,
        routed=bool(node.label("vtep")),
    )
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    (NODE_DIR / "server.ini").write_text(lab_node.config_text())
    lab_node.start(wait=WAIT)
    say(f"cnid on {node.name} ready (cnictl status)")
    try:
        _until_terminated()
    finally:
        lab_node.kill()
        lab_node.kill_speaker()
    return 0


def entrypoint() -> int:
    name = node_name()
    topo = load(TOPOLOGY)
    if name not in topo.nodes:
        raise LabError(f"no node {name!r} in {TOPOLOGY} (set CNID_NODE)")
    node = topo.nodes[name]
    say(f"{name}: {node.role}, waiting for {', '.join(node.addresses)}")
    wait_interfaces(node)
    configure(node)
    if node.role == "kube-api":
        return run_kube_api(node)
    ns = own_netns(name)
    if node.role in FRR_ROLES:
        return run_router(topo, node, ns)
    if node.role == "node":
        return run_node(topo, node, ns)
    say(f"{name}: host, default via {node.label('gateway') or '-'}")
    _until_terminated()
    return 0


# -- pods and resources from inside the containers -------------------------------------


def pod(verb: str, namespace: str, name: str) -> int:
    """A pod on this node, as kubelet makes it (the Pod object, a netns,
    the plugin with the CNI environment)."""
    node = node_name()
    lab_node = LabNode(name=node, ns_name="", workdir=NODE_DIR)
    netns = f"pod-{namespace}-{name}"
    cid = f"{namespace}-{name}"
    kubectl = admin()
    conf = conflist_conf(version="1.0.0")
    try:
        if verb == "add":
            uid = kubectl.add_pod(namespace, name, node)
            subprocess.run(["ip", "netns", "add", netns], check=True)
            sh("ip", "link", "set", "lo", "up", ns=netns)
            run = lab_node.plugin(
                "ADD",
                container_id=cid,
                netns=f"/run/netns/{netns}",
                pod=(namespace, name),
                pod_uid=uid,
                conf=conf,
            )
        else:
            run = lab_node.plugin("DEL", container_id=cid, pod=(namespace, name), conf=conf)
            subprocess.run(["ip", "netns", "del", netns], check=False)
            kubectl.delete("pods", name, namespace)
    finally:
        kubectl.close()
    print(run.stdout.strip() or run.stderr.strip())
    if run.rc == 0 and verb == "add":
        say(f"pod {namespace}/{name}: ip netns exec {netns} ping ...")
    return run.rc


def apply(what: str) -> int:
    from .labdemo import TENANTS, demo_documents

    kubectl = admin()
    try:
        if what == "demo":
            for tenant in TENANTS:
                kubectl.add_namespace(tenant.namespace)
            # the topology's route targets, if it sets some (and is there:
            # ``apply`` may run where the file is not bound in)
            docs = demo_documents(load(TOPOLOGY) if TOPOLOGY.exists() else None)
        else:
            docs = [d for d in yaml.safe_load_all(Path(what).read_text()) if d]
        for doc in docs:
            kubectl.apply(doc)
            say(f"applied {doc['kind']} {doc['metadata']['name']}")
    finally:
        kubectl.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.labnode",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("pod", help="a pod on this node")
    p.add_argument("verb", choices=["add", "del"])
    p.add_argument("namespace")
    p.add_argument("name")
    a = sub.add_parser("apply", help="custom resources from a file, or the lab's demo CRs")
    a.add_argument("what", help="a YAML file, or 'demo'")
    args = parser.parse_args(argv)
    try:
        if args.command == "pod":
            return pod(args.verb, args.namespace, args.name)
        if args.command == "apply":
            return apply(args.what)
        return entrypoint()
    except LabError as exc:
        say(str(exc))
        return 1


if __name__ == "__main__":
    sys.exit(main())
