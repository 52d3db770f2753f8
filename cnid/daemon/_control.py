"""The control socket behind ``cnictl``: operator views of the node."""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec
import trio

from .. import __version__
from ..core._errors import CnidError, ProtocolError
from ..core._journal import Journal
from ..core._metrics import Metrics
from ..core._protocol import (
    CTL_VERSIONS,
    MAX_CTL_REQUEST,
    CtlResponse,
    ctl_answer_frames,
    decode_ctl_request,
    frame,
    printable,
)
from ..core._readiness import Readiness
from ..core._sockets import READ_TIMEOUT, read_frame, send_all
from ..core._startup import Startup
from ..core._tenants import DomainRegistry
from ..dataplane import vrf_name
from ..evpn import EvpnController, UnderlayController
from ..ipam import AddressPool
from ._views import bgp_summary, evpn_duplicates, evpn_routes, vrf_routes

log = logging.getLogger("cnid.control")

View = Callable[[dict[str, str]], Awaitable[Any]]

#: Control requests answered at a time (a view and its frames in memory);
#: the others wait, within their connection's read deadline.
CONCURRENT_ANSWERS = 4


class ControlServer:
    def __init__(
        self,
        *,
        node: str,
        readiness: Readiness,
        journal: Journal,
        pool: AddressPool,
        domains: DomainRegistry,
        metrics: Metrics,
        evpn: EvpnController | None = None,
        underlay: UnderlayController | None = None,
        startup: Startup | None = None,
    ) -> None:
        self.node = node
        self.readiness = readiness
        self.journal = journal
        self.pool = pool
        self.domains = domains
        self.metrics = metrics
        self.evpn = evpn
        self.underlay = underlay
        self.startup = startup
        self.started = time.time()
        self.answering = trio.CapacityLimiter(CONCURRENT_ANSWERS)
        self.views: dict[str, View] = {
            "status": self.view_status,
            "pods": self.view_pods,
            "ipam": self.view_ipam,
            "bgp-summary": self.view_bgp_summary,
            "evpn-routes": self.view_evpn_routes,
            "evpn-duplicates": self.view_evpn_duplicates,
            "vrf-routes": self.view_vrf_routes,
            "underlay-routes": self.view_underlay_routes,
        }

    async def view_status(self, args: dict[str, str]) -> dict[str, Any]:
        records = self.journal.all()
        domains = []
        for d in self.domains.all():
            links = self.domains.links(d.name)
            domains.append(
                {
                    "name": d.name,
                    "vrf": d.vrf,
                    "table": d.table,
                    "prefix": f"{d.prefix}/{d.prefixlen}",
                    "attachments": [msgspec.to_builtins(a) for a in d.attachments],
                    "links": msgspec.to_builtins(links) if links else None,
                    "pods": sum(1 for r in records if r.domain == d.name),
                }
            )
        return {
            "node": self.node,
            "version": __version__,
            "ready": self.readiness.ready,
            "components": self.readiness.snapshot(),
            "uptime_seconds": round(time.time() - self.started, 1),
            "pods": sum(1 for r in records if r.state == "ready"),
            "domains": domains,
            # milestone -> seconds since the process started, in order reached
            "startup": self.startup.timeline() if self.startup else {},
        }

    async def view_pods(self, args: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for r in sorted(self.journal.all(), key=lambda r: (r.pod_namespace, r.pod_name)):
            out.append(
                {
                    "namespace": r.pod_namespace,
                    "pod": r.pod_name,
                    "container_id": r.container_id,
                    "ifname": r.ifname,
                    "domain": r.domain,
                    "vrf": r.vrf,
                    "address": f"{r.address}/{r.prefixlen}" if r.address else "",
                    "gateway": r.gateway,
                    "host_ifname": r.host_ifname,
                    "state": r.state,
                }
            )
        return out

    async def view_ipam(self, args: dict[str, str]) -> list[dict[str, Any]]:
        node_only = args.get("all") != "true"
        if args.get("allocations") == "true":
            return await self._allocations(None if not node_only else self.node)
        blocks = await self.pool.blocks()
        return [msgspec.to_builtins(b) for b in blocks if not node_only or b.node == self.node]

    def _evpn(self) -> EvpnController:
        if self.evpn is None:
            raise CnidError("BGP and EVPN are not running on this node (yet)")
        return self.evpn

    async def view_bgp_summary(self, args: dict[str, str]) -> dict[str, Any]:
        return bgp_summary(self._evpn())

    async def view_evpn_routes(self, args: dict[str, str]) -> list[dict[str, Any]]:
        try:
            rtype = int(args["type"]) if args.get("type") else None
            vni = int(args["vni"]) if args.get("vni") else None
        except ValueError:
            raise CnidError("--type and --vni take numbers") from None
        if rtype not in (None, 2, 3, 5):
            raise CnidError(f"route type {rtype}: cnid speaks types 2, 3 and 5")
        return evpn_routes(self._evpn(), rtype=rtype, vni=vni)

    async def view_evpn_duplicates(self, args: dict[str, str]) -> dict[str, Any]:
        return evpn_duplicates(self._evpn())

    async def view_vrf_routes(self, args: dict[str, str]) -> dict[str, Any]:
        name = args.get("vrf", "")
        domain = next(
            (d for d in self.domains.all() if name in (d.name, str(d.vrf), vrf_name(d.vrf))), None
        )
        if domain is None:
            known = ", ".join(d.name for d in self.domains.all()) or "none"
            raise CnidError(f"no domain {name!r} on this node (domains: {known})")
        return await vrf_routes(domain, self.evpn)

    async def view_underlay_routes(self, args: dict[str, str]) -> dict[str, Any]:
        if self.underlay is None:
            raise CnidError(
                "no routed underlay on this node ([underlay] vtep_address or the"
                " VRFNodeConfig's underlay.vtepAddress)"
            )
        return {**self.underlay.summary(), "entries": self.underlay.routes()}

    async def _allocations(self, node: str | None) -> list[dict[str, Any]]:
        rows = []
        for rec in await self.pool.store.list_blocks(node=node):
            for address, alloc in rec.allocations.items():
                rows.append(
                    {
                        "block": rec.name,
                        "node": rec.node,
                        "address": address,
                        "kind": alloc.kind,
                        "container_id": alloc.container_id,
                        "ifname": alloc.ifname,
                        "pod_namespace": alloc.pod_namespace,
                        "pod_name": alloc.pod_name,
                    }
                )
        return sorted(rows, key=lambda r: (r["block"], ipaddress.ip_address(r["address"])))

    async def answer(self, payload: bytes) -> Iterator[bytes]:
        """The frames answering one request's payload; never raises. An
        error about a request whose version is unknown is a version-1
        frame, which every cnictl reads."""
        version = 1
        try:
            request = decode_ctl_request(payload)
            version = request.version
            view = self.views.get(request.command)
            if view is None:
                raise CnidError(
                    f"unknown command {request.command!r}; known: {', '.join(sorted(self.views))}"
                )
            frames = ctl_answer_frames(version, await view(request.args))
            first = next(frames)
        except CnidError as exc:
            if isinstance(exc, ProtocolError):
                self.metrics.protocol_errors.labels(socket="control").inc()
            return self.error_frames(version, exc.msg)
        except Exception as exc:
            log.exception("control: answering failed")
            return self.error_frames(version, f"internal error: {type(exc).__name__}: {exc}")
        return _chain(first, frames)

    @staticmethod
    def error_frames(version: int, msg: str) -> Iterator[bytes]:
        version = version if version in CTL_VERSIONS else 1
        return iter([frame(CtlResponse(version, False, None, msg[:4096]))])

    async def handle_connection(self, conn: trio.socket.SocketType) -> None:
        fds: list[int] = []
        try:
            with trio.fail_after(READ_TIMEOUT):
                payload, fds = await read_frame(conn, MAX_CTL_REQUEST)
            if fds:
                raise ProtocolError("the control socket takes no file descriptors")
        except trio.TooSlowError:
            frames = self.error_frames(1, "request timed out")
        except ProtocolError as exc:
            self.metrics.protocol_errors.labels(socket="control").inc()
            log.info("control: %s", printable(exc.msg))
            frames = self.error_frames(1, exc.msg)
        else:
            async with self.answering:
                for data in await self.answer(payload):
                    await send_all(conn, data)
            return
        finally:
            for fd in fds:
                os.close(fd)
        for data in frames:
            await send_all(conn, data)


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest
