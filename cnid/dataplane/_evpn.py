"""EVPN-learned state in the kernel, as FRR's zebra programs it: remote MACs
(FDB entries), remote IP -> MAC (neighbour entries) and type-5 prefixes
(routes in a VRF table).

The reconciler diffs what it wants against what ``dump_evpn`` finds, then
calls ``apply_evpn(add, remove)``. Both run in one worker thread each, on one
netlink socket in the node namespace, and send everything in as few
``send()`` calls as the socket buffers allow (``Netlink.batch_errors``: the
kernel only answers the requests it refuses). A refused entry is reported in
``ApplyResult.failed`` and never stops the others.

Ownership, so that a restart adopts exactly what a previous run left and
nothing else:

* devices: only our ``vx-<vni>`` / ``br-<vni>`` (alias ``cnid:vx:<vni>`` /
  ``cnid:br:<vni>``, as ``_domain.py`` creates them); an entry on a missing
  or foreign device is refused, the device is never touched;
* FDB, unicast MACs: the VXLAN driver's entry and the bridge's entry on the
  VXLAN port carry NTF_EXT_LEARNED (an operator's ``bridge fdb add`` does
  not). The driver keeps the flag of the entry's creator: an update with
  NTF_EXT_LEARNED leaves the flags of an entry made over netlink alone, an
  update without it clears it (measured on 6.18). So a MAC someone else
  programmed stays theirs even if we replace its VTEP, and one they
  overwrite becomes theirs;
* FDB, flood entries: the driver has ONE flags field for all the remotes of
  the all-zeros MAC, which the last update sets (any ``bridge fdb append``
  without the flag clears it for every remote). It cannot tell whose a
  remote is, so every flood remote on our ``vx-<vni>`` is ours (the flood
  list of an EVPN VXLAN device is the IMET routes'), except the kernel's own
  default remote of a device made with ``remote``/``group`` (ours never are);
* neighbours: NDA_PROTOCOL = ROUTE_PROTO_EVPN (kernel >= 5.2), else
  NTF_EXT_LEARNED;
* routes: rtm_protocol ROUTE_PROTO_EVPN; the kernel matches the protocol
  when it deletes, and an addition of a prefix we do not hold is CREATE|EXCL,
  so a route of another protocol on the same prefix is refused (EEXIST), not
  replaced.

Values are canonical (lower-case MACs, addresses as ``inet_ntop`` writes
them, prefixes without host bits) so that sets compare exactly with what the
kernel dumps; a non-canonical value is refused with the canonical form in
the error.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterable, Mapping

from ..core._errors import KernelError
from . import _netlink as nl
from ._evpn_apply import SOCKET_BUFFER
from ._evpn_bridge import _fdb_state, _neigh_state
from ._evpn_devices import _Devices
from ._evpn_routes import _route_state
from ._evpn_values import (
    ZERO_MAC,
    ApplyResult,
    EvpnRoute,
    FdbEntry,
    KernelEvpn,
    NeighEntry,
    _Invalid,
    _table,
    _vni,
)
from ._evpn_worker import Worker
from ._netns import netlink_socket
from ._run import in_thread

__all__ = [
    "ZERO_MAC",
    "ApplyResult",
    "EvpnRoute",
    "FdbEntry",
    "KernelEvpn",
    "NeighEntry",
    "apply_evpn",
    "dump_evpn",
]


def _open() -> nl.Netlink:
    return nl.Netlink(netlink_socket(None), strict=True, bufsize=SOCKET_BUFFER)


#: The process that plans and sends the batches (``_evpn_worker``).
WORKER = Worker()


def _apply(
    add: KernelEvpn,
    remove: KernelEvpn,
    routes_now: Mapping[tuple[int, str], Iterable[EvpnRoute]] | None = None,
) -> ApplyResult:
    sets = (add.fdb, add.neigh, add.routes, remove.fdb, remove.neigh, remove.routes)
    if not any(sets):
        return ApplyResult(applied=0, failed=())
    with netlink_socket(None) as sock:  # the node's namespace, for the worker
        return WORKER.apply(sock, add, remove, routes_now)


async def apply_evpn(
    add: KernelEvpn,
    remove: KernelEvpn,
    routes_now: Mapping[tuple[int, str], Iterable[EvpnRoute]] | None = None,
) -> ApplyResult:
    """Remove, then add (one batch: the kernel handles it in that order).
    Idempotent: adding what exists replaces it, removing what is gone is
    done. An entry whose device is missing or not ours, whose value is
    invalid, or that the kernel refuses is in ``failed``; the others are
    applied. A removal and an addition of the same key (a MAC moving to
    another VTEP, an IP to another MAC) is one replace, without a gap.
    Raises KernelError only when the kernel cannot be asked at all.

    ECMP paths are merged with what the kernel holds when the call reads
    it: calls must not overlap on the same prefixes (the reconciler makes
    one at a time). ``routes_now``, when given, is the caller's record of
    our routes of every prefix the call touches, (table, prefix) -> routes:
    it is used instead of reading the tables (a dump of a 40,000-route
    table per call dominated a burst of updates). The routes ``remove``
    names are taken as held (they are of the caller's record) and may be
    left out of it: a withdrawn table is then no record at all, not one
    route per prefix sent to the worker and read back. A prefix of neither
    is created exclusively, so a record that is wrong fails loudly (EEXIST,
    or ENOENT for a removal of what is gone) instead of overwriting what the
    kernel holds.

    The batch is planned and sent by the worker process (``_evpn_worker``),
    on a netlink socket made here in the node's namespace: the daemon's
    own thread only waits for the answer."""
    return await in_thread(lambda: _apply(add, remove, routes_now))


def _valid(check: Callable[[int], int], value: int) -> bool:
    try:
        check(value)
    except _Invalid:
        return False
    return True


def _dump(vnis: tuple[int, ...], tables: tuple[int, ...]) -> KernelEvpn:
    with contextlib.suppress(KernelError):  # the next batch says it again
        WORKER.start()  # what is read is written next: the worker starts meanwhile
    fdb: set[FdbEntry] = set()
    neigh: set[NeighEntry] = set()
    routes: set[EvpnRoute] = set()
    vnis = tuple(v for v in vnis if _valid(_vni, v))
    tables = tuple(t for t in tables if _valid(_table, t))
    with _open() as sock:
        devs = _Devices(sock, vnis)
        for vni, vx in devs.vxlans.items():
            remotes, _bridged = _fdb_state(sock, vx, devs.vxlan_group.get(vni))
            fdb.update(
                FdbEntry(vni=vni, mac=mac, vtep=dst)
                for mac, dsts in remotes.items()
                for dst in dsts
            )
        for vni, br in devs.bridges.items():
            neigh.update(NeighEntry(vni=vni, ip=ip, mac=mac) for ip, mac in _neigh_state(sock, br))
        for table in sorted(set(tables)):
            for family in (socket.AF_INET, socket.AF_INET6):
                state = _route_state(sock, table, family)
                index_vni = devs.vnis_of_indexes(i for paths in state.values() for _, i in paths)
                for prefix, paths in state.items():
                    routes.update(
                        EvpnRoute(table=table, prefix=prefix, vtep=vtep, vni=index_vni[index])
                        for vtep, index in paths
                        if index in index_vni
                    )
    return KernelEvpn(fdb=frozenset(fdb), neigh=frozenset(neigh), routes=frozenset(routes))


async def dump_evpn(vnis: Iterable[int], tables: Iterable[int]) -> KernelEvpn:
    """What the kernel holds of ours: FDB entries with a remote on our
    ``vx-<vni>`` devices (unicast MACs with NTF_EXT_LEARNED, every flood
    remote but the kernel's default one), neighbour entries on our ``br-<vni>``
    bridges with our tag, routes of protocol ROUTE_PROTO_EVPN in ``tables``
    whose paths go out of one of our bridges. Missing or foreign devices,
    and VNIs or tables that cannot exist, are skipped. ``dump_evpn`` after
    ``apply_evpn(X, KernelEvpn())`` returns X. It also starts
    ``apply_evpn``'s worker process (a node reads its state at start, then
    writes): the first batch does not wait for the worker's imports."""
    v = tuple(vnis)
    t = tuple(tables)
    return await in_thread(lambda: _dump(v, t))
