"""``python -m testbed.lab``: the lab from a containerlab file (``./just lab``).

    python -m testbed.lab [-t FILE] [--name N] [--mesh] [up]   bring it up, demo, summary
    python -m testbed.lab ... run                              the same, then down
    python -m testbed.lab ... summary                          the summary of a running lab
    python -m testbed.lab ... shell NODE|POD [-- CMD...]       a shell in a node (cnictl works)
    python -m testbed.lab ... down                             remove it (also after a crash)

Where the kernel has the VRF device, ``up`` leaves the lab running until
``down``. Where it has none (the VRF module is missing, as on the project's
machines), the lab runs inside the VM tier (testbed.vm: Debian's kernel
under QEMU) and ends with the VM: ``up`` is then ``run`` inside the VM
(up, demo, summary, down), and ``shell NODE`` boots a VM, brings the lab
up, opens the shell and takes everything down when the shell exits.

The exit status of ``up`` and ``run`` is 0 only if every ping of the
matrix went as expected (replies inside each tenant, none across).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from .lab import DEFAULT_TOPOLOGY, ClusterLab, LabError, Progress, shell, vrf_available
from .labdemo import (
    TENANTS,
    apply_demo,
    ping_matrix,
    print_summary,
    start_pods,
    wait_converged,
)
from .labstate import LabFiles, sweep
from .node import REPO, VENV_BIN
from .topology import TopologyError, load

DEMO_STEPS = 4


def _vm_command(inner: list[str], interactive: bool = False) -> int:
    """Run ``python -m testbed.lab INNER`` inside the VM tier."""
    from . import vm

    command = [str(VENV_BIN / "python"), "-m", "testbed.lab", *inner]
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    vm.precompile()
    argv = vm.vng_command(command, "4G", 2, vm.find_kernel())
    started = time.monotonic()
    if interactive:  # the terminal goes to the guest's shell
        status = subprocess.run(argv, env=env, check=False, cwd=REPO).returncode
    else:
        # through a pipe: QEMU reopens its standard output, and a file
        # there would be written over from its start
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        assert proc.stdout is not None
        for chunk in iter(lambda: proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        status = proc.wait()
    print(
        f"testbed.lab: the VM exited {status} after {time.monotonic() - started:.0f} s",
        file=sys.stderr,
    )
    return status


def demo(lab: ClusterLab) -> bool:
    """Tenants, pods, convergence, the matrix and the summary; True if the
    matrix is as expected."""
    p = lab.progress
    names = ", ".join(f"{t.domain} -> {t.namespace}" for t in TENANTS[1:])
    with p.step(f"demo CRs: {names} (vrf-201 has vrf-200's prefix)", "crs"):
        apply_demo(lab)
    nodes = lab.node_names()
    with p.step(
        f"pods: one per tenant on each of {', '.join(nodes)}, as kubelet starts them "
        "(Pod object, netns, cnid-plugin ADD)",
        "pods",
    ):
        pods = start_pods(lab)
        p.detail(f"{len(pods)} pods")
    with p.step(
        "EVPN convergence: every remote block, type-5 and type-2 route in every router's kernel",
        "converge",
    ):
        wait_converged(lab, pods)
    with p.step("ping matrix: every pod and host pings every other", "matrix"):
        matrix = ping_matrix(lab, pods)
    print_summary(lab, pods, matrix, sys.stdout)
    return matrix.ok


def _pods(lab: ClusterLab) -> list:  # type: ignore[type-arg]
    return list(lab.pods.values())


def cmd_up(args: argparse.Namespace, then_down: bool) -> int:
    topo = load(args.topology)
    name = args.name or topo.name
    if not vrf_available():
        print(
            "testbed.lab: this kernel has no VRF device, so the lab runs inside a VM "
            "(Debian's kernel under QEMU, python -m testbed.vm) and ends with it: "
            "up, demo, summary, down.",
            flush=True,
        )
        return _vm_command([*_common(args, name), "run"])
    files = LabFiles(name)
    if files.exists() and not then_down:
        print(f"testbed.lab: lab {name!r} is up already (./just lab down removes it)")
        return cmd_summary(args)
    progress = Progress(total=ClusterLab.STEPS + DEMO_STEPS)
    lab = ClusterLab(topo, name=name, mesh=args.mesh, progress=progress)
    print(
        f"lab {name}: {topo.source}: {len(topo.nodes)} nodes, {len(topo.links)} links", flush=True
    )
    ok = False
    try:
        lab.up()
        ok = demo(lab)
        print(
            f"\nlab {name} up in {progress.elapsed:.0f} s; the matrix is "
            f"{'as expected' if ok else 'NOT as expected'}."
        )
    except Exception as exc:  # reported with the daemons' logs, then the lab goes
        print(f"\ntestbed.lab: FAILED: {type(exc).__name__}: {exc}", flush=True)
        for node in lab.nodes.values():
            print(f"--- {node.name}: the daemon's log ---\n{node.log_tail(25)}")
        ok = False
    finally:
        if then_down or not ok:
            print(f"\nremoving lab {name}" + (" (it failed)" if not ok and not then_down else ""))
            lab.down()
    if ok and not then_down:
        print(
            f"\nnext: ./just lab shell {lab.node_names()[0]}   (cnictl bgp summary, "
            f"cnictl evpn routes, cnictl vrf routes vrf-42)\n      ./just lab down"
        )
    return 0 if ok else 1


def cmd_summary(args: argparse.Namespace) -> int:
    name = args.name or load(args.topology).name
    lab = ClusterLab.attach(name)
    try:
        pods = _pods(lab)
        matrix = ping_matrix(lab, pods) if pods else None
        print_summary(lab, pods, matrix, sys.stdout)
        return 0 if matrix is None or matrix.ok else 1
    finally:
        lab.detach()


def cmd_shell(args: argparse.Namespace) -> int:
    name = args.name or load(args.topology).name
    command = [c for c in args.command if c != "--"]
    if not vrf_available():
        print(
            "testbed.lab: this kernel has no VRF device: booting a VM with the lab up and "
            f"a shell in {args.target}; the lab goes when the shell exits.",
            flush=True,
        )
        inner = [*_common(args, name), "shell", "--ephemeral", args.target, *command]
        return _vm_command(inner, interactive=sys.stdin.isatty())
    if args.ephemeral:
        lab = ClusterLab(
            load(args.topology),
            name=name,
            mesh=args.mesh,
            progress=Progress(total=ClusterLab.STEPS + DEMO_STEPS),
        )
        try:
            lab.up()
            demo(lab)
            print(f"\nshell in {args.target} (exit to take the lab down)", flush=True)
            return shell(lab, args.target, command or None)
        finally:
            lab.down()
    lab = ClusterLab.attach(name)
    try:
        return shell(lab, args.target, command or None)
    finally:
        lab.detach()


def cmd_down(args: argparse.Namespace) -> int:
    name = args.name or load(args.topology).name
    found = sweep(name)
    if not any(found.values()):
        where = "" if vrf_available() else " (without VRFs the lab lives in a VM that is gone)"
        print(f"lab {name}: nothing to remove{where}")
    else:
        print(
            f"lab {name}: stopped {found['processes']} processes, "
            f"removed {found['namespaces']} namespaces"
            + (" and its files" if found["files"] else "")
        )
    return 0


def _common(args: argparse.Namespace, name: str) -> list[str]:
    out = ["-t", str(args.topology), "--name", name]
    return out + (["--mesh"] if args.mesh else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testbed.lab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-t",
        "--topology",
        default=str(DEFAULT_TOPOLOGY),
        help="a containerlab topology file (default: %(default)s)",
    )
    parser.add_argument("--name", default="", help="the lab's name (default: the topology's)")
    parser.add_argument(
        "--mesh", action="store_true", help="a full iBGP mesh: ignore the nodes' route reflectors"
    )
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("up", help="bring the lab up, start the demo, print the summary")
    sub.add_parser("run", help="up, demo, summary, then down")
    sub.add_parser("summary", help="the summary of the running lab")
    sub.add_parser("down", help="remove the lab")
    sh = sub.add_parser("shell", help="a shell in a node or pod")
    sh.add_argument("target", help="a node (k8s01, rr1, leaf, h1) or a pod (web-1, test02/web-1)")
    sh.add_argument("command", nargs=argparse.REMAINDER, help="a command instead of a shell")
    sh.add_argument("--ephemeral", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("testbed.lab: needs root (it creates network namespaces)", file=sys.stderr)
        return 2
    try:
        if args.command in (None, "up"):
            return cmd_up(args, then_down=False)
        if args.command == "run":
            return cmd_up(args, then_down=True)
        if args.command == "summary":
            return cmd_summary(args)
        if args.command == "shell":
            return cmd_shell(args)
        return cmd_down(args)
    except (TopologyError, LabError) as exc:
        print(f"testbed.lab: {exc}", file=sys.stderr)
        return 2
