"""nftables: one table of our own, replaced whole and atomically.

cnid renders its whole table (``inet cnid``) as nft text and hands it to
``nft -f`` as one transaction: create the table if it is missing, delete
it, create it anew. Either all of it is in place or none of the change is;
nothing of anyone else's table is read or touched, and nothing of ours is
ever found by its position. The table's comment holds a digest of what was
rendered, so a daemon that restarts finds its table as it left it and
applies nothing.

Conntrack entries are flushed through ctnetlink (``NETLINK_NETFILTER``)
with a mark filter, for the connections of a domain that is removed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import socket
import struct

import trio

from ..core._errors import KernelError
from . import _netlink as nl
from ._netns import inside, node_netns
from ._run import in_thread

TABLE_FAMILY = "inet"
TABLE_NAME = "cnid"
NFT = os.environ.get("CNID_NFT", "nft")

_DIGEST = re.compile(r'comment "cnid host integration; digest ([0-9a-f]+)"')
_COUNTER = re.compile(r"counter packets \d+ bytes \d+")


def digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def render_table(body: str) -> str:
    """The nft script that replaces our table with ``body`` (chains, maps)
    in one transaction. The digest of ``body`` goes into the comment."""
    return (
        f"table {TABLE_FAMILY} {TABLE_NAME}\n"
        f"delete table {TABLE_FAMILY} {TABLE_NAME}\n"
        f"table {TABLE_FAMILY} {TABLE_NAME} {{\n"
        f'\tcomment "cnid host integration; digest {digest(body)}"\n'
        f"{body}}}\n"
    )


def table_digest(listing: str) -> str | None:
    """The digest in the comment of a listing of our table."""
    found = _DIGEST.search(listing)
    return found.group(1) if found else None


def canonical(listing: str) -> str:
    """A listing without what changes by itself (counter values)."""
    return _COUNTER.sub("counter", listing)


async def run_nft(*args: str, stdin: str | None = None) -> str:
    """Run ``nft`` in the node's namespace; its stdout. KernelError with
    nft's message when it fails (EINVAL), or ENOENT when the nft command is
    missing."""
    cmd = [NFT, *args]
    fd = node_netns()
    pass_fds: tuple[int, ...] = ()
    if fd is not None:  # test beds: enter the node namespace first
        cmd = ["nsenter", f"--net=/proc/self/fd/{fd}", *cmd]
        pass_fds = (fd,)
    try:
        done = await trio.run_process(
            cmd,
            stdin=stdin.encode() if stdin is not None else b"",
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            pass_fds=pass_fds,
        )
    except FileNotFoundError:
        raise KernelError(f"{cmd[0]} not found: nftables is needed", errno=errno.ENOENT) from None
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip()
        raise KernelError(f"nft {' '.join(args)}: {why}", errno=errno.EINVAL)
    return done.stdout.decode(errors="replace")


async def list_table() -> str | None:
    """Our table as nft lists it, or None when it does not exist."""
    try:
        return await run_nft("list", "table", TABLE_FAMILY, TABLE_NAME)
    except KernelError as exc:
        if "No such file or directory" in exc.msg:
            return None
        raise


async def apply_table(body: str) -> None:
    await run_nft("-f", "-", stdin=render_table(body))


# -- conntrack ---------------------------------------------------------------

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_DELETE = 2
CTA_MARK = 8
CTA_MARK_MASK = 21
_NFGENMSG = struct.Struct("=BBH")


def _flush(mark: int, mask: int) -> None:
    with inside(node_netns()):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    with nl.Netlink(sock) as link:
        body = (
            _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
            + nl.nla(CTA_MARK, struct.pack(">I", mark))
            + nl.nla(CTA_MARK_MASK, struct.pack(">I", mask))
        )
        msg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
        link.batch(
            [nl.Request(msg_type, 0, body, f"conntrack flush mark {mark:#x}/{mask:#x}")],
            ignore=(errno.ENOENT,),
        )


async def flush_conntrack(mark: int, mask: int) -> None:
    """Delete every conntrack entry whose mark & ``mask`` == ``mark``."""
    await in_thread(lambda: _flush(mark, mask))
