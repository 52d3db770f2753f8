"""One batch of EVPN entries planned, sent and answered on one netlink
socket (``apply_evpn``'s work, run in its worker process: see
``_evpn_worker``). Imports nothing but the encoders, so that the worker
process stays small."""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Iterable, Mapping

from . import _netlink as nl
from ._evpn_bridge import _plan_fdb, _plan_neigh
from ._evpn_devices import _Devices
from ._evpn_plan import _Plan
from ._evpn_routes import _plan_routes
from ._evpn_values import ApplyResult, EvpnRoute, KernelEvpn

SOCKET_BUFFER = 8 << 20
"""SO_SNDBUFFORCE / SO_RCVBUFFORCE (the kernel doubles it): about 16 MiB of
requests per send() and room for the error ACKs of 13,000 refused requests
(docs/dataplane.md, "EVPN state", has the measurements)."""


def apply_batch(
    sock: nl.Netlink,
    add: KernelEvpn,
    remove: KernelEvpn,
    routes_now: Mapping[tuple[int, str], Iterable[EvpnRoute]] | None = None,
) -> ApplyResult:
    plan = _Plan()
    sets = (add.fdb, add.neigh, add.routes, remove.fdb, remove.neigh, remove.routes)
    total = sum(len(s) for s in sets)
    if not total:
        return ApplyResult(applied=0, failed=())
    vnis = {e.vni for s in sets for e in s if type(e.vni) is int and 0 < e.vni < 1 << 24}
    devs = _Devices(sock, vnis)
    _plan_fdb(sock, devs, add.fdb, remove.fdb, plan)
    _plan_neigh(sock, devs, add.neigh, remove.neigh, plan)
    _plan_routes(sock, devs, add.routes, remove.routes, plan, routes_now)
    errors = sock.batch_errors(plan.requests())
    for index, error in enumerate(errors):
        if error is not None and not (error.errno == errno_mod.ENOENT and plan.gone(index)):
            for name, e in plan.names(index):
                plan.fail(name, e, error.msg, _errno_name(error.errno))
    failed = tuple(sorted(plan.failed.items()))
    refused = tuple((op, e, why) for (op, e), why in plan.refused.items())
    return ApplyResult(applied=total - len(failed), failed=failed, refused=refused)


def _errno_name(number: int) -> str:
    return errno_mod.errorcode.get(number, f"errno {number}") if number else "refused"
