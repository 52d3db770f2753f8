"""AddressPool: one node's view of the IPAM, over a shared Store.

A node allocates from the blocks it holds in the domain's VRF, lowest block
and lowest free address first. When none has a free address it claims the
lowest block of the domain that no node holds, creating it with its gateway
and the new pod's address in one write. Blocks held by other nodes are
never borrowed from: every block is routed to exactly one node.

Concurrency, in two layers:

* inside the process, one trio lock per VRF serialises every read-modify-
  write of that VRF's blocks (allocate, release, gc, release_domain), so
  two tasks never pick the same free address and GC never interleaves with
  an allocation; different VRFs do not wait for each other;
* across processes and nodes, the Store's versions: a write based on a
  stale read raises StoreConflict, and the pool re-reads and tries again,
  up to MAX_ATTEMPTS times with a short random backoff. A claim that loses
  the race for a block name sees the winner's block on the next read and
  moves to the next block.

A call returns only once the store has recorded its change.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec
import trio

from ..core._domains import Domain
from ..core._errors import AddressExhausted, ConfigError, StoreConflict
from ..core._notify import Notifier
from ..core._pods import AllocationRecord
from ..core._reconcile import Backoff
from ._block import IPNetwork, block_name, block_of, lowest_free_block
from ._lease import BlockUsage, Lease, Owner
from ._store import BlockRecord, Store

T = TypeVar("T")

#: Attempts of one operation before StoreConflict reaches the caller (whose
#: CNI code, 11 "try again later", makes the runtime retry the ADD).
MAX_ATTEMPTS = 32
#: The backoff after the n-th conflict is uniform in [0, min(cap, base*2^n)).
BACKOFF_BASE = 0.0005
BACKOFF_CAP = 0.05

_GATEWAY = AllocationRecord(kind="gateway")


@functools.lru_cache(maxsize=4096)
def _network(cidr: str) -> IPNetwork | None:
    """A stored CIDR, or None if it does not parse (a record we did not
    write must not stop allocation)."""
    try:
        return ipaddress.ip_network(cidr)
    except ValueError:
        return None


@functools.lru_cache(maxsize=65536)
def _address_int(address: str) -> int:
    return int(ipaddress.ip_address(address))


def _sort_key(rec: BlockRecord) -> tuple[int, int, str]:
    net = _network(rec.cidr)
    if net is None:
        return (99, 0, rec.name)
    return (net.version, int(net.network_address), rec.name)


def _within(net: IPNetwork, outer: IPNetwork) -> bool:
    return (
        net.version == outer.version
        and int(outer.network_address) <= int(net.network_address)
        and int(net.broadcast_address) <= int(outer.broadcast_address)
    )


def _find(rec: BlockRecord, container_id: str, ifname: str) -> str | None:
    for addr, alloc in rec.allocations.items():
        if alloc.kind == "pod" and alloc.container_id == container_id and alloc.ifname == ifname:
            return addr
    return None


def _is_empty(rec: BlockRecord) -> bool:
    return all(alloc.kind == "gateway" for alloc in rec.allocations.values())


def _lease(rec: BlockRecord, addr: str) -> Lease:
    alloc = rec.allocations[addr]
    return Lease(
        address=addr,
        block=rec.cidr,
        block_name=rec.name,
        gateway=rec.gateway,
        vrf=rec.vrf,
        owner=Owner(
            container_id=alloc.container_id,
            ifname=alloc.ifname,
            pod_namespace=alloc.pod_namespace,
            pod_name=alloc.pod_name,
            pod_uid=alloc.pod_uid,
        ),
    )


def _pod_leases(rec: BlockRecord) -> list[Lease]:
    return [_lease(rec, addr) for addr, alloc in rec.allocations.items() if alloc.kind == "pod"]


def _lease_key(lease: Lease) -> tuple[int, int, int]:
    ip = lease.ip
    return (lease.vrf, ip.version, int(ip))


class AddressPool:
    """The IPAM of node ``node`` over ``store`` (see the module docstring)."""

    def __init__(self, store: Store, node: str, notifier: Notifier | None = None) -> None:
        self.store = store
        self.node = node
        #: Bumped when this node claims or removes a block.
        self.notifier = notifier or Notifier()
        self._locks: dict[int, trio.Lock] = {}

    def _lock(self, vrf: int) -> trio.Lock:
        lock = self._locks.get(vrf)
        if lock is None:
            lock = self._locks[vrf] = trio.Lock()
        return lock

    async def _retry(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        backoff = Backoff(BACKOFF_BASE, BACKOFF_CAP)  # full jitter: racing nodes spread out
        for n in range(MAX_ATTEMPTS):
            try:
                return await attempt()
            except StoreConflict as exc:
                if n + 1 == MAX_ATTEMPTS:
                    raise StoreConflict(
                        f"{what}: gave up after {MAX_ATTEMPTS} conflicting writes", str(exc)
                    ) from exc
                await backoff.sleep()
        raise AssertionError("unreachable")

    # -- allocate ---------------------------------------------------------

    async def allocate(self, domain: Domain, owner: Owner) -> Lease:
        """The address of ``owner`` in ``domain``: the one it holds already
        (an ADD repeated), else a new one. AddressExhausted when this node's
        blocks are full and no block of the domain is left to claim."""
        network = domain.network
        async with self._lock(domain.vrf):
            return await self._retry(
                f"allocating for {owner.container_id}/{owner.ifname} in vrf {domain.vrf}",
                lambda: self._allocate_once(domain, network, owner),
            )

    async def _allocate_once(self, domain: Domain, network: IPNetwork, owner: Owner) -> Lease:
        mine = sorted(await self.store.list_blocks(vrf=domain.vrf, node=self.node), key=_sort_key)
        for rec in mine:
            addr = _find(rec, owner.container_id, owner.ifname)
            if addr is not None:
                return _lease(rec, addr)
        alloc = AllocationRecord(
            kind="pod",
            container_id=owner.container_id,
            ifname=owner.ifname,
            pod_namespace=owner.pod_namespace,
            pod_name=owner.pod_name,
            pod_uid=owner.pod_uid,
        )
        for rec in mine:
            net = _network(rec.cidr)
            # Blocks outside the domain (its prefix changed) keep their
            # leases but give no new address.
            if net is None or not _within(net, network):
                continue
            geometry = block_of(rec.cidr)
            if len(rec.allocations) >= geometry.capacity:
                continue  # full: no need to look at its addresses
            base = int(net.network_address)
            offset = geometry.next_free({_address_int(a) - base for a in rec.allocations})
            if offset is None:
                continue
            addr = str(geometry.address(offset))
            stored = await self.store.update_block(
                msgspec.structs.replace(rec, allocations={**rec.allocations, addr: alloc})
            )
            return _lease(stored, addr)
        return await self._claim(domain, network, alloc)

    async def _claim(self, domain: Domain, network: IPNetwork, alloc: AllocationRecord) -> Lease:
        everyone = await self.store.list_blocks(vrf=domain.vrf)
        taken = [net for rec in everyone if (net := _network(rec.cidr)) is not None]
        net = lowest_free_block(network, domain.ipblocklen, taken)
        if net is None:
            raise AddressExhausted(
                f"domain {domain.name} (vrf {domain.vrf}, {network}) is exhausted: node "
                f"{self.node} has no free address and every /{domain.ipblocklen} block is held"
            )
        geometry = block_of(str(net))
        gateway = str(geometry.gateway)
        addr = str(geometry.address(geometry.first + 1))
        rec = BlockRecord(
            name=block_name(domain.vrf, net),
            cidr=str(net),
            node=self.node,
            vrf=domain.vrf,
            gateway=gateway,
            allocations={gateway: _GATEWAY, addr: alloc},
        )
        stored = await self.store.create_block(rec)
        self.notifier.bump()
        return _lease(stored, addr)

    # -- release ----------------------------------------------------------

    async def release(self, vrf: int, container_id: str, ifname: str) -> Lease | None:
        """Free the address of ``(container_id, ifname)`` in ``vrf``; the
        lease it had, or None if it had none (a repeated DEL)."""
        async with self._lock(vrf):
            return await self._retry(
                f"releasing {container_id}/{ifname} in vrf {vrf}",
                lambda: self._release_once(vrf, container_id, ifname),
            )

    async def _release_once(self, vrf: int, container_id: str, ifname: str) -> Lease | None:
        for rec in await self.store.list_blocks(vrf=vrf, node=self.node):
            addr = _find(rec, container_id, ifname)
            if addr is None:
                continue
            lease = _lease(rec, addr)
            allocations = dict(rec.allocations)
            del allocations[addr]
            await self.store.update_block(msgspec.structs.replace(rec, allocations=allocations))
            return lease
        return None

    # -- queries ----------------------------------------------------------

    async def lookup(self, vrf: int, container_id: str, ifname: str) -> Lease | None:
        for rec in await self.store.list_blocks(vrf=vrf, node=self.node):
            addr = _find(rec, container_id, ifname)
            if addr is not None:
                return _lease(rec, addr)
        return None

    async def leases(self, vrf: int | None = None) -> list[Lease]:
        """This node's pod leases (gateways excluded), by VRF and address."""
        found: list[Lease] = []
        for rec in await self.store.list_blocks(vrf=vrf, node=self.node):
            found.extend(_pod_leases(rec))
        return sorted(found, key=_lease_key)

    async def blocks(self) -> list[BlockUsage]:
        """Every block in the store, every node's, sorted by name."""
        usage = []
        for rec in await self.store.list_blocks():
            try:
                capacity = block_of(rec.cidr).capacity
            except ConfigError:
                capacity = 0  # a record we did not write; show it anyway
            usage.append(
                BlockUsage(
                    name=rec.name,
                    cidr=rec.cidr,
                    node=rec.node,
                    vrf=rec.vrf,
                    allocated=len(rec.allocations),
                    capacity=capacity,
                )
            )
        return sorted(usage, key=lambda u: u.name)

    # -- garbage collection -----------------------------------------------

    async def gc(self, keep: Callable[[Lease], bool]) -> list[Lease]:
        """Release every lease of this node for which ``keep`` is False, then
        the empty blocks of this node (only their gateway left). The node
        keeps one block per VRF: when every block of a VRF is empty, the
        lowest stays as a spare, so the next pod there needs no claim and
        the node's gateway and route stay put. An empty block beside
        non-empty ones goes: it would stay unused until they fill up, and
        blocks are what the cluster runs out of. Returns the released
        leases.

        ``keep`` runs under the VRF's lock, so no allocation happens between
        its verdict and the release; the caller must count a pod whose ADD is
        in flight as alive."""
        released: list[Lease] = []
        vrfs = sorted({rec.vrf for rec in await self.store.list_blocks(node=self.node)})
        for vrf in vrfs:
            async with self._lock(vrf):
                await self._retry(
                    f"collecting garbage in vrf {vrf}",
                    functools.partial(self._gc_once, vrf, keep, released),
                )
        return released

    async def _gc_once(
        self, vrf: int, keep: Callable[[Lease], bool], released: list[Lease]
    ) -> None:
        # ``released`` survives a retry: what an earlier attempt released
        # is gone from the store and will not be seen again.
        mine = sorted(await self.store.list_blocks(vrf=vrf, node=self.node), key=_sort_key)
        current: list[BlockRecord] = []
        for rec in mine:
            drop = [lease for lease in _pod_leases(rec) if not keep(lease)]
            if drop:
                allocations = dict(rec.allocations)
                for lease in drop:
                    del allocations[lease.address]
                rec = await self.store.update_block(
                    msgspec.structs.replace(rec, allocations=allocations)
                )
                released.extend(drop)
            current.append(rec)
        empty = [rec for rec in current if _is_empty(rec)]
        if len(empty) == len(current):
            empty = empty[1:]  # the VRF's last block stays, as a spare
        for rec in empty:
            await self.store.delete_block(rec)
            self.notifier.bump()

    async def release_domain(self, vrf: int) -> None:
        """Remove every block of this node in ``vrf``, leases included: the
        domain was deleted."""
        async with self._lock(vrf):
            await self._retry(f"releasing the blocks of vrf {vrf}", lambda: self._drop_vrf(vrf))

    async def _drop_vrf(self, vrf: int) -> None:
        for rec in await self.store.list_blocks(vrf=vrf, node=self.node):
            await self.store.delete_block(rec)
            self.notifier.bump()
