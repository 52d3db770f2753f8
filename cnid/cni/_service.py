"""The CNI verbs: what ADD, DEL, CHECK, STATUS and GC do on this node.

Each verb reads as a list of steps over three collaborators: the address pool
(IPAM), the journal (what this node has attached) and the dataplane (the
kernel). Requests for different attachments run concurrently; requests for
the same attachment are serialised by a per-attachment lock.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import msgspec
import trio

from ..core._domains import Domain
from ..core._errors import (
    CnidError,
    InvalidNetconf,
    KernelError,
    NotAvailable,
    TryAgainLater,
    UnknownContainer,
)
from ..core._journal import Journal, PodRecord
from ..core._metrics import Metrics
from ..core._pods import Attachment, PodResult, ResultInterface, ResultIP, ResultRoute
from ..core._readiness import Readiness
from ..core._tenants import DomainRegistry
from ..dataplane import NetnsFd, PodLink, PodSpec, PodWiring, plan_pod
from ..ipam import AddressPool, Lease, Owner
from ._invocation import Invocation
from ._results import render_result, render_version
from ._versions import SUPPORTED_VERSIONS

log = logging.getLogger("cnid.cni")


class Dataplane(Protocol):
    """What the CNI verbs need from the kernel (cnid.dataplane, or a fake)."""

    def is_netns_fd(self, fd: int) -> bool: ...

    async def wire_pod(self, netns: NetnsFd, spec: PodSpec) -> PodWiring: ...

    async def unwire_pod(
        self, *, container_id: str, ifname: str, address: str | None, domain: Domain | None
    ) -> None: ...

    async def check_pod(self, netns: NetnsFd, spec: PodSpec) -> None: ...

    async def list_pod_links(self) -> list[PodLink]: ...


class _Locks:
    """One lock per attachment, created on demand, dropped when unused."""

    def __init__(self) -> None:
        self._locks: dict[Attachment, tuple[trio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, att: Attachment) -> AsyncIterator[None]:
        lock, users = self._locks.get(att, (trio.Lock(), 0))
        self._locks[att] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[att]
            if users == 1:
                del self._locks[att]
            else:
                self._locks[att] = (lock, users - 1)

    def busy(self) -> set[Attachment]:
        return set(self._locks)


class CniService:
    def __init__(
        self,
        *,
        pool: AddressPool,
        journal: Journal,
        dataplane: Dataplane,
        domains: DomainRegistry,
        readiness: Readiness,
        metrics: Metrics,
        mtu: int,
    ) -> None:
        self.pool = pool
        self.journal = journal
        self.dataplane = dataplane
        self.domains = domains
        self.readiness = readiness
        self.metrics = metrics
        self.mtu = mtu
        self._locks = _Locks()

    # -- the verbs --------------------------------------------------------

    async def handle(self, inv: Invocation, netns_fd: int | None) -> dict[str, Any] | None:
        """Run one verb; the returned dict is printed as the result (None:
        nothing is printed). Raises CnidError for the error result."""
        if inv.command == "VERSION":
            return render_version(inv.cni_version, SUPPORTED_VERSIONS)
        if inv.command == "STATUS":
            self.status()
            return None
        if inv.command == "ADD":
            return await self.add(inv, netns_fd)
        if inv.command == "DEL":
            await self.delete(inv.attachment)
            return None
        if inv.command == "CHECK":
            await self.check(inv, netns_fd)
            return None
        if inv.command == "GC":
            await self.gc(inv.valid_attachments())
            return None
        raise InvalidNetconf(f"unsupported command {inv.command}")

    def status(self) -> None:
        if not self.readiness.ready:
            raise NotAvailable(
                "this node cannot take pods now", details="; ".join(self.readiness.reasons())
            )

    async def add(self, inv: Invocation, netns_fd: int | None) -> dict[str, Any]:
        if not self.readiness.ready:
            raise TryAgainLater(
                "the node is not ready", details="; ".join(self.readiness.reasons())
            )
        netns = self._netns(inv, netns_fd)
        domain = self.domains.for_namespace(inv.pod_namespace)
        if self.domains.links(domain.name) is None:
            raise TryAgainLater(f"domain {domain.name} is not set up on this node yet")
        async with self._locks.hold(inv.attachment):
            existing = self.journal.get(inv.attachment)
            if existing is not None and existing.state == "ready" and existing.result:
                log.info("ADD %s/%s: already attached, same result", *_ids(inv))
                return render_result(existing.result, inv.cni_version)
            if existing is not None:
                await self._undo(existing)
            result = await self._attach(inv, netns, domain)
        self.metrics.pods_attached.labels(vrf=str(domain.vrf)).inc()
        return render_result(result, inv.cni_version)

    async def _attach(self, inv: Invocation, netns: NetnsFd, domain: Domain) -> PodResult:
        owner = Owner(
            container_id=inv.container_id,
            ifname=inv.ifname,
            pod_namespace=inv.pod_namespace,
            pod_name=inv.pod_name,
            pod_uid=inv.pod_uid,
        )
        lease = await self.pool.allocate(domain, owner)
        spec = self._plan(domain, inv.attachment, lease.address, lease.gateway)
        record = self.journal.put(
            PodRecord(
                container_id=inv.container_id,
                ifname=inv.ifname,
                state="pending",
                network_name=inv.network_name,
                netns=inv.netns,
                domain=domain.name,
                vrf=domain.vrf,
                host_ifname=spec.host_ifname,
                address=spec.address,
                prefixlen=spec.prefixlen,
                gateway=spec.gateway,
                pod_namespace=inv.pod_namespace,
                pod_name=inv.pod_name,
                pod_uid=inv.pod_uid,
            )
        )
        try:
            with trio.CancelScope(shield=True):
                wiring = await self.dataplane.wire_pod(netns, spec)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._undo(record)
            raise
        result = _pod_result(inv, spec, wiring)
        self.journal.put(msgspec.structs.replace(record, state="ready", result=result))
        log.info(
            "ADD %s/%s: %s in %s via %s",
            *_ids(inv),
            lease.address,
            domain.name,
            wiring.host_ifname,
        )
        return result

    async def delete(self, att: Attachment) -> None:
        async with self._locks.hold(att):
            record = self.journal.get(att)
            if record is None:
                await self._forget(att)
                return
            await self._undo(record)
            if record.state == "ready":
                self.metrics.pods_attached.labels(vrf=str(record.vrf)).dec()
        log.info("DEL %s/%s: removed", att.container_id, att.ifname)

    async def check(self, inv: Invocation, netns_fd: int | None) -> None:
        netns = self._netns(inv, netns_fd)
        record = self.journal.get(inv.attachment)
        if record is None or record.state != "ready":
            raise UnknownContainer(f"no attachment {inv.container_id}/{inv.ifname} on this node")
        prev = inv.prev_result
        if prev is not None:
            addresses = {ip.get("address", "").split("/")[0] for ip in prev.get("ips", [])}
            if record.address not in addresses:
                raise InvalidNetconf(
                    f"prevResult does not hold this attachment's address {record.address}"
                )
        domain = self.domains.get(record.domain)
        if domain is None:
            raise UnknownContainer(f"domain {record.domain} of this attachment is gone")
        # the record holds what ADD planned; planned again from it, the
        # spec is the same (an l2vni pod's addressing is the domain's)
        spec = self._plan(domain, record.attachment, record.address, record.gateway)
        await self.dataplane.check_pod(netns, spec)

    async def gc(self, valid: set[Attachment]) -> list[Attachment]:
        """Release every attachment of this node that is not in ``valid``
        (and not being worked on right now). Returns what was released."""
        released: list[Attachment] = []
        for record in self.journal.all():
            if record.attachment in valid or record.attachment in self._locks.busy():
                continue
            await self.delete(record.attachment)
            released.append(record.attachment)
        known = {r.attachment for r in self.journal.all()}
        for link in await self.dataplane.list_pod_links():
            att = Attachment(link.container_id, link.ifname)
            if att in valid or att in known or att in self._locks.busy():
                continue
            async with self._locks.hold(att):
                await self.dataplane.unwire_pod(
                    container_id=att.container_id, ifname=att.ifname, address=None, domain=None
                )
            released.append(att)

        def keep(lease: Lease) -> bool:
            # Asked under the VRF's lock: an ADD that allocated after this
            # pass began holds its attachment's lock (busy) until its
            # journal record is ready, so it is seen here either way.
            att = Attachment(lease.owner.container_id, lease.owner.ifname)
            return (
                att in valid
                or att in known
                or self.journal.get(att) is not None
                or att in self._locks.busy()
            )

        for lease in await self.pool.gc(keep):
            released.append(Attachment(lease.owner.container_id, lease.owner.ifname))
        if released:
            log.info("GC released %d attachment(s)", len(released))
        return released

    async def recover(self) -> None:
        """At start-up: roll back what a previous run left half done, forget
        pods whose host link is gone, adopt the rest."""
        present = {link.host_ifname for link in await self.dataplane.list_pod_links()}
        for record in self.journal.all():
            if record.state == "pending":
                log.warning(
                    "recovery: rolling back interrupted ADD %s/%s",
                    record.container_id,
                    record.ifname,
                )
                await self._undo(record)
            elif record.host_ifname not in present:
                log.warning(
                    "recovery: %s/%s has no host link any more, releasing %s",
                    record.container_id,
                    record.ifname,
                    record.address,
                )
                await self._undo(record)
            else:
                self.metrics.pods_attached.labels(vrf=str(record.vrf)).inc()
        await self.gc({r.attachment for r in self.journal.all()})

    # -- helpers ----------------------------------------------------------

    def _plan(self, domain: Domain, att: Attachment, address: str, block_gateway: str) -> PodSpec:
        return plan_pod(
            domain=domain,
            container_id=att.container_id,
            ifname=att.ifname,
            address=address,
            block_gateway=block_gateway,
            mtu=self.mtu,
        )

    def _netns(self, inv: Invocation, fd: int | None) -> NetnsFd:
        """The one check of the descriptor the plugin sent: the fact is
        carried as its type from here down to the kernel."""
        if fd is None or not self.dataplane.is_netns_fd(fd):
            raise UnknownContainer(f"{inv.netns} is not a network namespace")
        return NetnsFd(fd)

    async def _undo(self, record: PodRecord) -> None:
        """Remove the record's kernel objects, release its address, forget it."""
        domain = self.domains.get(record.domain)
        try:
            await self.dataplane.unwire_pod(
                container_id=record.container_id,
                ifname=record.ifname,
                address=record.address or None,
                domain=domain,
            )
        except KernelError as exc:
            log.error("cannot unwire %s/%s: %s", record.container_id, record.ifname, exc.msg)
            raise
        await self.pool.release(record.vrf, record.container_id, record.ifname)
        self.journal.delete(record.attachment)

    async def _forget(self, att: Attachment) -> None:
        """DEL of an attachment without a record (never seen, or already
        deleted): remove whatever of it may still exist; success either way."""
        await self.dataplane.unwire_pod(
            container_id=att.container_id, ifname=att.ifname, address=None, domain=None
        )
        for lease in await self.pool.leases():
            if (lease.owner.container_id, lease.owner.ifname) == (att.container_id, att.ifname):
                await self.pool.release(lease.vrf, att.container_id, att.ifname)


def _ids(inv: Invocation) -> tuple[str, str]:
    return inv.container_id[:12], inv.ifname


def _pod_result(inv: Invocation, spec: PodSpec, wiring: PodWiring) -> PodResult:
    default = "0.0.0.0/0" if spec.host_prefixlen == 32 else "::/0"
    return PodResult(
        interfaces=(
            ResultInterface(name=wiring.host_ifname, mac=wiring.host_mac, mtu=wiring.mtu),
            ResultInterface(
                name=wiring.pod_ifname, mac=wiring.pod_mac, sandbox=inv.netns, mtu=wiring.mtu
            ),
        ),
        ips=(
            ResultIP(address=f"{spec.address}/{spec.prefixlen}", gateway=spec.gateway, interface=1),
        ),
        routes=(ResultRoute(dst=default, gw=spec.gateway),),
    )


def error_from(exc: BaseException) -> CnidError:
    """Translate anything that escaped a verb into a CnidError (the boundary)."""
    if isinstance(exc, CnidError):
        return exc
    log.exception("unexpected failure")
    return CnidError(f"internal error: {type(exc).__name__}: {exc}")
