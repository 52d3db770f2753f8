"""Network namespaces from worker threads.

Python 3.11 has no ``os.setns``: it is called through libc. ``setns`` moves
only the calling thread, so it is used in short, bracketed sections of a
worker thread: switch in, open a socket or a /proc/sys file (both stay bound
to the namespace they were opened in), switch back, always. A socket opened
inside keeps working from any thread once we are back.

If switching back fails the thread sits in a foreign namespace. It is then
poisoned: ``NetnsPoisoned`` (a BaseException, so nothing catches it by
accident) is raised now and on every later switch attempt in that thread.
The daemon must treat it as fatal and exit.

Whether a descriptor is a network namespace is checked once, where it
enters (``checked_netns``, or the CNI service through ``is_netns_fd``), and
carried as its type, ``NetnsFd``; nothing below checks again. ``setns``
itself refuses a descriptor that is no namespace (EINVAL).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NewType

from ..core._errors import KernelError, UnknownContainer

CLONE_NEWNET = 0x40000000
NSFS_MAGIC = 0x6E736673
NS_GET_NSTYPE = 0xB703

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.fstatfs.argtypes = [ctypes.c_int, ctypes.c_void_p]
_state = threading.local()

NetnsFd = NewType("NetnsFd", int)
"""A descriptor known to be an open network namespace (``checked_netns``)."""

_node_fd: NetnsFd | None = None

#: Where /proc/sys is: a container with a read-only /proc/sys (no `privileged`)
#: gets the node's procfs mounted elsewhere (kube/README.md, "Privileges").
#: A /proc/sys/net file belongs to the namespace of the thread that opens it,
#: whichever procfs mount it is opened through.
PROCFS = os.environ.get("CNID_PROCFS", "/proc")


class NetnsPoisoned(BaseException):
    """A worker thread could not return to its namespace. Fatal."""


def set_node_netns(fd: int | None) -> None:
    """Run every node-side operation in the namespace ``fd`` instead of the
    process's own. For test beds only; the daemon runs inside the node's
    namespace and leaves this at None. The caller keeps ``fd`` open."""
    global _node_fd
    _node_fd = None if fd is None else checked_netns(fd)


def node_netns() -> NetnsFd | None:
    return _node_fd


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def is_netns_fd(fd: int) -> bool:
    """True when ``fd`` is an open network-namespace file (nsfs, type NET)."""
    buf = ctypes.create_string_buffer(128)
    if _libc.fstatfs(fd, buf) != 0:
        return False
    if int.from_bytes(buf.raw[:8], "little") != NSFS_MAGIC:
        return False
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False


def checked_netns(fd: int) -> NetnsFd:
    """``fd`` as a NetnsFd; UnknownContainer when it is not a network namespace."""
    if not is_netns_fd(fd):
        raise UnknownContainer(f"descriptor {fd} is not a network namespace")
    return NetnsFd(fd)


@contextmanager
def inside(fd: NetnsFd | None) -> Iterator[None]:
    """Run the block with this thread in the namespace ``fd`` (None: stay)."""
    if fd is None:
        yield
        return
    if getattr(_state, "poisoned", False):
        raise NetnsPoisoned("this thread is stuck in a foreign network namespace")
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            _setns(fd)
        except OSError as exc:
            raise UnknownContainer(f"cannot enter network namespace: {exc.strerror}") from None
        try:
            yield
        finally:
            try:
                _setns(home)
            except OSError as exc:
                _state.poisoned = True
                raise NetnsPoisoned(f"cannot return to the original namespace: {exc}") from exc
    finally:
        os.close(home)


def netlink_socket(fd: NetnsFd | None) -> socket.socket:
    """A NETLINK_ROUTE socket bound to namespace ``fd`` (None: the node's)."""
    with inside(fd if fd is not None else _node_fd):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)


def write_sysctl(fd: NetnsFd | None, path: str, value: str, missing_ok: bool = False) -> None:
    """Write ``value`` to /proc/sys/``path`` ("net/ipv4/ip_forward") of the
    namespace ``fd`` (None: the node's). The namespace of a /proc/sys/net file
    is that of the thread that opens it."""
    write_sysctls(fd, [(path, value)], missing_ok)


def write_sysctls(
    fd: NetnsFd | None, items: list[tuple[str, str]], missing_ok: bool = False
) -> None:
    """Several sysctls of one namespace, with one switch in and out.
    ``missing_ok``: a file that does not exist (IPv6 disabled) is skipped."""
    files: list[tuple[int, str, str]] = []
    try:
        with inside(fd if fd is not None else _node_fd):
            for path, value in items:
                try:
                    files.append(
                        (os.open(f"{PROCFS}/sys/{path}", os.O_WRONLY | os.O_CLOEXEC), path, value)
                    )
                except FileNotFoundError:
                    if missing_ok:
                        continue
                    raise KernelError(f"sysctl {path} does not exist", errno=errno.ENOENT) from None
                except OSError as exc:
                    raise KernelError(
                        f"sysctl {path}: {exc.strerror}", errno=exc.errno or 0
                    ) from None
        for f, path, value in files:
            try:
                os.write(f, value.encode())
            except OSError as exc:
                raise KernelError(
                    f"sysctl {path}={value}: {exc.strerror}", errno=exc.errno or 0
                ) from None
    finally:
        for f, _, _ in files:
            os.close(f)


def read_sysctl(fd: NetnsFd | None, path: str) -> str:
    with inside(fd if fd is not None else _node_fd):
        with open(f"{PROCFS}/sys/{path}") as f:
            return f.read().strip()
