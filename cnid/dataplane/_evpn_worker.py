"""``apply_evpn``'s batches, planned and sent in a process of their own.

Planning and encoding a batch is Python work, about a third of the node's
CPU when a table of 50,000 routes arrives. In a thread of the daemon it held
the daemon's one GIL while the daemon decoded and translated the next
UPDATEs: the two took turns on one core. The worker is a process (one,
long-lived, started by the first batch), so the two run on two cores, as
FRR's bgpd and zebra do. It imports only the encoders (``_evpn_apply``:
about 19 MiB resident; the ``cnid.dataplane`` package would bring trio and
the rest of the dataplane, 27 MiB).

The netlink socket of each batch is made by the daemon, in the node's
namespace, and handed to the worker with the batch (SCM_RIGHTS): the worker
never enters a namespace and holds no socket between batches.

Protocol, over a UNIX stream socketpair: the daemon sends a 4-octet length
(with the netlink socket) and the batch (``_Call``, msgpack), the worker
answers with a length and an ``_Answer``. The worker ends when the daemon's
end closes (the daemon went away). A worker that dies, or answers what
cannot be read, fails its batch (KernelError: the reconciler reads the
kernel back and tries again); the next batch starts another worker.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import msgspec

from ..core._errors import KernelError
from ..core._gc import tune_gc
from . import _netlink as nl
from ._evpn_apply import SOCKET_BUFFER, apply_batch
from ._evpn_values import ApplyResult, EvpnRoute, FdbEntry, KernelEvpn, NeighEntry

_LEN = struct.Struct("!I")
#: The largest message either side accepts (a batch of 100,000 entries is
#: about 8 MiB).
MAX_MESSAGE = 256 << 20


class _Call(msgspec.Struct, frozen=True, array_like=True):
    add: KernelEvpn
    remove: KernelEvpn
    #: ``routes_now`` as (table, prefix, routes); None: read the tables.
    routes_now: list[tuple[int, str, list[EvpnRoute]]] | None


class _RefusedFdb(msgspec.Struct, frozen=True, array_like=True, tag=0):
    op: str
    entry: FdbEntry
    why: str


class _RefusedNeigh(msgspec.Struct, frozen=True, array_like=True, tag=1):
    op: str
    entry: NeighEntry
    why: str


class _RefusedRoute(msgspec.Struct, frozen=True, array_like=True, tag=2):
    op: str
    entry: EvpnRoute
    why: str


_Refused = _RefusedFdb | _RefusedNeigh | _RefusedRoute


class _Answer(msgspec.Struct, frozen=True, array_like=True):
    applied: int = 0
    failed: list[tuple[str, str]] = []
    #: In ``ApplyResult.refused``'s order.
    refused: list[_Refused] = []
    #: A KernelError's message and errno (the batch raised: no result).
    error: str = ""
    errno: int = 0

    @classmethod
    def of(cls, result: ApplyResult) -> _Answer:
        refused: list[_Refused] = []
        for op, entry, why in result.refused:
            if isinstance(entry, FdbEntry):
                refused.append(_RefusedFdb(op, entry, why))
            elif isinstance(entry, NeighEntry):
                refused.append(_RefusedNeigh(op, entry, why))
            else:
                refused.append(_RefusedRoute(op, entry, why))
        return cls(applied=result.applied, failed=list(result.failed), refused=refused)

    def result(self) -> ApplyResult:
        if self.error:
            raise KernelError(self.error, self.errno)
        return ApplyResult(
            applied=self.applied,
            failed=tuple(self.failed),
            refused=tuple((r.op, r.entry, r.why) for r in self.refused),
        )


_encoder = msgspec.msgpack.Encoder()
_call_decoder = msgspec.msgpack.Decoder(_Call)
_answer_decoder = msgspec.msgpack.Decoder(_Answer)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    if size > MAX_MESSAGE:
        raise EOFError(f"a message of {size} octets")
    chunks: list[bytes] = []
    while size:
        chunk = sock.recv(min(size, 1 << 20))
        if not chunk:
            raise EOFError("the other end closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _send(sock: socket.socket, payload: bytes, fd: int | None = None) -> None:
    head = _LEN.pack(len(payload))
    if fd is None:
        sock.sendall(head + payload)
        return
    socket.send_fds(sock, [head], [fd])
    sock.sendall(payload)


class Worker:
    """The daemon's end: one batch at a time (a lock), the worker started
    (again) when needed. Blocking: call it from a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def apply(
        self,
        netlink: socket.socket,
        add: KernelEvpn,
        remove: KernelEvpn,
        routes_now: Mapping[tuple[int, str], Iterable[EvpnRoute]] | None,
    ) -> ApplyResult:
        """One batch on ``netlink`` (a NETLINK_ROUTE socket of the node's
        namespace; the caller closes it)."""
        known = None
        if routes_now is not None:
            known = [(table, prefix, list(paths)) for (table, prefix), paths in routes_now.items()]
        payload = _encoder.encode(_Call(add, remove, known))
        with self._lock:
            sock = self._started()
            try:
                _send(sock, payload, netlink.fileno())
                (size,) = _LEN.unpack(_recv_exactly(sock, _LEN.size))
                answer = _answer_decoder.decode(_recv_exactly(sock, size))
            except (OSError, EOFError, msgspec.DecodeError) as exc:
                self._stop()
                raise KernelError(f"the EVPN kernel worker failed: {exc}") from None
        return answer.result()

    def start(self) -> None:
        """Start the worker ahead of its first batch (its imports take about
        0.1 s: not on the first batch's way)."""
        with self._lock:
            self._started()

    def _started(self) -> socket.socket:
        if self._sock is not None and self._proc is not None and self._proc.poll() is None:
            return self._sock
        self._stop()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-s", "-P", "-c", _BOOTSTRAP, str(_ROOT), str(theirs.fileno())],
                env=_ENV,
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:
            mine.close()
            raise KernelError(f"cannot start the EVPN kernel worker: {exc}") from None
        finally:
            theirs.close()
        self._sock = mine
        return mine

    def _stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """End the worker (it also ends by itself when the daemon does)."""
        with self._lock:
            self._stop()


#: The worker's environment: none of the daemon's PYTHON* settings, and
#: glibc's allocator for Python's objects, so that ``_trim`` gives a batch's
#: memory back (Python's own allocator kept 7 MiB of every 10,000 entries
#: in half-used arenas).
_ENV = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {
    "PYTHONMALLOC": "malloc"
}

#: The directory that holds the ``cnid`` package.
_ROOT = Path(__file__).resolve().parents[2]

#: The worker's start: ``cnid`` and the two packages it needs as empty
#: packages (their ``__init__`` would import the daemon), then ``serve``.
_BOOTSTRAP = """\
import sys, types
root, fd = sys.argv[1], int(sys.argv[2])
for name in ("cnid", "cnid.core", "cnid.dataplane"):
    package = types.ModuleType(name)
    package.__path__ = [root + "/" + name.replace(".", "/")]
    sys.modules[name] = package
from cnid.dataplane._evpn_worker import serve
serve(fd)
"""


def serve(fd: int) -> None:
    """The worker: answer batches on ``fd`` until the daemon's end closes."""
    tune_gc()  # a batch allocates tuples and lists per entry: 15-25 % in collections
    sock = socket.socket(fileno=fd)
    while True:
        try:
            head, fds, _flags, _addr = socket.recv_fds(sock, _LEN.size, 1)
            if not head:
                return  # the daemon went away
            if len(head) < _LEN.size:
                head += _recv_exactly(sock, _LEN.size - len(head))
            (size,) = _LEN.unpack(head)
            call = _call_decoder.decode(_recv_exactly(sock, size))
        except (OSError, EOFError, msgspec.DecodeError) as exc:
            print(f"cnid EVPN kernel worker: {exc}", file=sys.stderr)
            return
        if len(fds) != 1:
            for extra in fds:
                os.close(extra)
            answer = _Answer(error="a batch without its netlink socket")
        else:
            answer = _run(fds[0], call)
        try:
            _send(sock, _encoder.encode(answer))
        except OSError:
            return
        del call, answer
        _trim()


def _trim() -> None:
    """Give the batch's memory back to the system: glibc keeps the freed
    heap of a 10,000-entry batch (about 10 MiB resident) otherwise."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc


def _run(fd: int, call: _Call) -> _Answer:
    known = None
    if call.routes_now is not None:
        known = {(table, prefix): routes for table, prefix, routes in call.routes_now}
    try:
        with nl.Netlink(socket.socket(fileno=fd), strict=True, bufsize=SOCKET_BUFFER) as netlink:
            return _Answer.of(apply_batch(netlink, call.add, call.remove, known))
    except KernelError as exc:
        return _Answer(error=exc.msg, errno=exc.errno)
    except Exception as exc:  # a bug here fails one batch, not the worker
        return _Answer(error=f"unexpected {type(exc).__name__} in the EVPN kernel worker: {exc}")
