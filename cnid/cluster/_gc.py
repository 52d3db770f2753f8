"""Garbage collection of addresses and blocks, with a grace period.

What goes, once it has been garbage for ``grace`` seconds without a break:

* an attachment of this node whose pod no longer exists on this node (the
  Pod watch, filtered by ``spec.nodeName``): its kernel objects and address,
  through CniService.gc, the path the CNI GC verb takes;
* this node's blocks in a VRF that no VRFDomain has any more;
* blocks of nodes that left the cluster (no Node object): they can be
  claimed again.

A pod that is being created never loses its address: an attachment with an
operation in flight is never garbage (CniService.gc asks under the VRF's
lock), an attachment counts as garbage only from the moment the pod is
seen missing, and nothing is judged before the watches are synced and
connected (a stale cache proves nothing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from ..cni._service import CniService
from ..core._errors import CnidError, StoreConflict
from ..core._journal import Journal
from ..core._pods import Attachment
from ..ipam import AddressPool
from ..kube import Node, Pod, Reflector, VRFDomain

log = logging.getLogger("cnid.gc")


class Grace:
    """When each key was first seen as garbage; ``due`` once ``grace``
    seconds have passed since, ``clear`` as soon as it is not garbage."""

    def __init__(self, grace: float, clock: Callable[[], float]) -> None:
        self.grace = grace
        self.clock = clock
        self._since: dict[object, float] = {}

    def due(self, key: object) -> bool:
        now = self.clock()
        return now - self._since.setdefault(key, now) >= self.grace

    def clear(self, key: object) -> None:
        self._since.pop(key, None)

    def keep_only(self, keys: set[object]) -> None:
        for key in set(self._since) - keys:
            del self._since[key]


class GarbageCollector:
    def __init__(
        self,
        *,
        node: str,
        service: CniService,
        pool: AddressPool,
        journal: Journal,
        pods: Reflector[Pod],
        nodes: Reflector[Node],
        domains: Reflector[VRFDomain],
        interval: float,
        grace: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.node = node
        self.service = service
        self.pool = pool
        self.journal = journal
        self.pods = pods
        self.nodes = nodes
        self.domains = domains
        self.interval = interval
        self._pods = Grace(grace, clock)
        self._vrfs = Grace(grace, clock)
        self._nodes = Grace(grace, clock)

    def _watches_current(self) -> bool:
        return all(r.synced.is_set() and r.connected for r in (self.pods, self.nodes, self.domains))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            try:
                await self.collect()
            except CnidError as exc:
                log.warning("GC: %s; next pass in %.0fs", exc.msg, self.interval)

    async def collect(self) -> list[Attachment]:
        """One pass; what was released."""
        if not self._watches_current():
            log.debug("GC skipped: the watches are not current")
            return []
        released = await self.service.gc(self._alive())
        await self._vanished_domains()
        await self._vanished_nodes()
        return released

    def _alive(self) -> set[Attachment]:
        alive: set[Attachment] = set()
        judged: set[object] = set()
        for record in self.journal.all():
            att = record.attachment
            if record.state != "ready":
                continue  # a leftover of an interrupted ADD (busy ones are spared by gc)
            if not record.pod_name:
                alive.add(att)  # not a Kubernetes pod: only the runtime's GC can tell
                continue
            pod = self.pods.items.get(f"{record.pod_namespace}/{record.pod_name}")
            same = pod is not None and (
                not record.pod_uid or not pod.metadata.uid or pod.metadata.uid == record.pod_uid
            )
            judged.add(att)
            if same:
                self._pods.clear(att)
                alive.add(att)
            elif not self._pods.due(att):
                alive.add(att)
            else:
                log.info(
                    "GC: pod %s/%s is gone from node %s: releasing %s",
                    record.pod_namespace,
                    record.pod_name,
                    self.node,
                    record.address,
                )
        self._pods.keep_only(judged)
        return alive

    async def _vanished_domains(self) -> None:
        known = {o.spec.vrf for o in self.domains.items.values()}
        if self.domains.invalid:
            return  # a domain we cannot read may own any VRF
        mine = {rec.vrf for rec in await self.pool.store.list_blocks(node=self.node)}
        stale = mine - known
        self._vrfs.keep_only(set(stale))
        for vrf in sorted(stale):
            if self._vrfs.due(vrf):
                log.info("GC: no VRFDomain has vrf %d any more: releasing its blocks", vrf)
                await self.pool.release_domain(vrf)

    async def _vanished_nodes(self) -> None:
        members = set(self.nodes.items) | {self.node}
        blocks = [rec for rec in await self.pool.store.list_blocks() if rec.node not in members]
        self._nodes.keep_only({rec.node for rec in blocks})
        for rec in blocks:
            if not self._nodes.due(rec.node):
                continue
            log.info("GC: node %s left the cluster: releasing its block %s", rec.node, rec.name)
            try:
                await self.pool.store.delete_block(rec)
            except StoreConflict:
                pass  # changed under us: the next pass sees it again
