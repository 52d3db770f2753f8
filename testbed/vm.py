"""The VM tier: run a command under Debian's kernel (which has the VRF device).

    python -m testbed.vm [--memory 4G] [--cpus 2] -- <command...>

boots the newest /boot/vmlinuz-* with virtme-ng under QEMU (TCG: KVM does
not work on these machines), with the host's filesystem as the guest's root,
loads the vrf module, runs the command in the repository and exits with its
status. The guest's output goes to our stdout. Standard input is not used.

Writable in the guest: /tmp, /run (so /var/run/netns), /var (so /var/lib),
/etc, /home, /opt, /usr as overlays that virtme-ng sets up over the host's
files (writes stay in the guest); the repository is added as an overlay too
(pytest caches, __pycache__). Nothing the guest writes reaches the host.
"""

from __future__ import annotations

import argparse
import glob
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"


def find_kernel() -> str:
    kernels = sorted(glob.glob("/boot/vmlinuz-*"))
    if not kernels:
        raise SystemExit("testbed.vm: no /boot/vmlinuz-* (apt-get install linux-image-amd64)")
    return kernels[-1]


#: The guest mounts these again with 9p's ``cache=loose`` (read-only): the
#: guest then keeps their directory entries and attributes instead of asking
#: the host for every stat() of every import, which under emulation made a
#: daemon's imports take 18 s instead of 7.5 s. Python's own prefix (where
#: it is not the system's /usr, which the guest overlays) and the venv.
def python_dirs() -> list[str]:
    dirs = [str(REPO / ".venv")]
    base = os.path.realpath(sys.base_prefix)
    if not (base == "/usr" or base.startswith(("/usr/", "/etc", "/var"))) and base != "/":
        dirs.insert(0, base)
    return [d for d in dirs if os.path.isdir(d)]


#: Guest shell: each ``--rodir`` export (virtme.initmountN) mounted again
#: with ``cache=loose``; a failure leaves the path as the root export shows it.
_LOOSE = (
    "awk '$1 ~ /^virtme.initmount/ {print $1, $2}' /proc/mounts | "
    'while read -r tag dir; do umount "$dir" && mount -t 9p -o '
    'trans=virtio,version=9p2000.L,access=any,msize=512000,cache=loose,ro "$tag" "$dir"; done; '
)


def vng_command(command: list[str], memory: str, cpus: int, kernel: str) -> list[str]:
    script = f"{_LOOSE}modprobe vrf && cd {shlex.quote(str(REPO))} && exec {shlex.join(command)}"
    rodirs = [arg for d in python_dirs() for arg in ("--rodir", d)]
    return [
        str(VENV_BIN / "vng"),
        "--run", kernel,
        "--disable-kvm",
        "--cpus", str(cpus),
        "--memory", memory,
        "--user", "root",
        "--overlay-rwdir", str(REPO),
        "--cwd", str(REPO),
        # QEMU's emulated HPET is the default clocksource, and every clock
        # read is then a system call and an emulated device access (trio's
        # loop reads the clock on every pass); the TSC is read in user space.
        "--append", "clocksource=tsc",
        "--append", "tsc=reliable",
        *rodirs,
        "--", script,
    ]  # fmt: skip


def precompile() -> None:
    """Byte-compile the repository's Python on the host first: the guest
    sees the host's files through 9p under emulation, where compiling a
    module costs a hundred times what it does here, and every process of
    a fresh clone would do it (each daemon of the lab at once)."""
    subprocess.run(
        [str(VENV_BIN / "python"), "-m", "compileall", "-q", "-j", "0",
         *(str(REPO / d) for d in ("cnid", "testbed", "bench", "tests"))],
        stdout=subprocess.DEVNULL,
        check=False,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed.vm", description=__doc__)
    parser.add_argument("--memory", default="4G")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--kernel", default="")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (python -m testbed.vm -- <command...>)")
    env = dict(os.environ, PATH=f"{VENV_BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    precompile()
    cmd = vng_command(command, args.memory, args.cpus, args.kernel or find_kernel())
    started = time.monotonic()
    status = subprocess.run(cmd, stdin=subprocess.DEVNULL, env=env, check=False).returncode
    print(f"testbed.vm: exit {status} after {time.monotonic() - started:.1f} s", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
