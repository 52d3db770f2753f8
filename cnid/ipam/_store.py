"""Where blocks live: the records, the Store protocol, and MemoryStore.

The Store is shaped like the IPBlock custom resource API so that a
Kubernetes-backed store can implement it as thin calls:

* ``create_block`` is a POST: it fails with StoreConflict (HTTP 409) when a
  block of that name exists already (another node claimed it);
* ``update_block`` is a PUT carrying the record's ``version``
  (``metadata.resourceVersion``): it fails with StoreConflict when the record
  changed or vanished since it was read;
* ``delete_block`` is a DELETE with a resourceVersion precondition; deleting
  a record that is gone already is not an error.

Every stored record carries an opaque ``version`` that changes on every
write; callers treat records as immutable values and write new ones with
``msgspec.structs.replace``.
"""

from __future__ import annotations

from typing import Protocol

import msgspec
import trio

from ..core._errors import StoreConflict
from ..core._pods import AllocationRecord


class BlockRecord(msgspec.Struct, frozen=True, rename="camel"):
    """One IPBlock: a subnet of a domain's prefix held by one node.

    ``allocations`` maps an address (its string form) to what holds it; the
    gateway is in it from the claim on. ``version`` is "" for a record not
    yet stored."""

    name: str
    cidr: str
    node: str
    vrf: int
    gateway: str
    allocations: dict[str, AllocationRecord] = {}
    version: str = ""


class Store(Protocol):
    """The IPBlock API the pool works against (see the module docstring)."""

    async def list_blocks(
        self, vrf: int | None = None, node: str | None = None
    ) -> list[BlockRecord]: ...

    async def get_block(self, name: str) -> BlockRecord | None: ...

    async def create_block(self, rec: BlockRecord) -> BlockRecord:
        """Store a new record; StoreConflict if the name exists. Returns the
        stored record (with its version)."""
        ...

    async def update_block(self, rec: BlockRecord) -> BlockRecord:
        """Replace a record; StoreConflict if ``rec.version`` is not the
        stored one or the record is gone. Returns the stored record."""
        ...

    async def delete_block(self, rec: BlockRecord) -> None:
        """Remove a record; StoreConflict if ``rec.version`` is stale. A
        missing record is not an error."""
        ...


class BlockTable:
    """The versioned-record logic shared by MemoryStore and FileStore:
    a dict of records and a serial that makes every version unique for the
    table's lifetime (FileStore persists it, so versions never repeat
    across restarts)."""

    def __init__(self, blocks: dict[str, BlockRecord] | None = None, serial: int = 0) -> None:
        self.blocks: dict[str, BlockRecord] = dict(blocks or {})
        self.serial = serial

    def copy(self) -> BlockTable:
        return BlockTable(self.blocks, self.serial)

    def list(self, vrf: int | None, node: str | None) -> list[BlockRecord]:
        return [
            rec
            for rec in self.blocks.values()
            if (vrf is None or rec.vrf == vrf) and (node is None or rec.node == node)
        ]

    def _stamp(self, rec: BlockRecord) -> BlockRecord:
        self.serial += 1
        # Copy the dict: the caller's record and the stored one share nothing
        # mutable.
        return msgspec.structs.replace(
            rec, allocations=dict(rec.allocations), version=str(self.serial)
        )

    def create(self, rec: BlockRecord) -> BlockRecord:
        if rec.name in self.blocks:
            raise StoreConflict(f"block {rec.name} exists already")
        stored = self._stamp(rec)
        self.blocks[rec.name] = stored
        return stored

    def update(self, rec: BlockRecord) -> BlockRecord:
        current = self.blocks.get(rec.name)
        if current is None:
            raise StoreConflict(f"block {rec.name} is gone")
        if current.version != rec.version:
            raise StoreConflict(
                f"block {rec.name} changed: version {rec.version!r}, stored {current.version!r}"
            )
        stored = self._stamp(rec)
        self.blocks[rec.name] = stored
        return stored

    def delete(self, rec: BlockRecord) -> bool:
        """Remove ``rec``; False if it was gone already."""
        current = self.blocks.get(rec.name)
        if current is None:
            return False
        if current.version != rec.version:
            raise StoreConflict(
                f"block {rec.name} changed: version {rec.version!r}, stored {current.version!r}"
            )
        del self.blocks[rec.name]
        return True


class MemoryStore:
    """A Store in memory, for tests. Several AddressPools sharing one
    MemoryStore behave like several nodes sharing the API server. Every
    call is a trio checkpoint, as a network call would be, so concurrent
    callers really interleave."""

    def __init__(self) -> None:
        self._table = BlockTable()

    async def list_blocks(
        self, vrf: int | None = None, node: str | None = None
    ) -> list[BlockRecord]:
        await trio.lowlevel.checkpoint()
        return self._table.list(vrf, node)

    async def get_block(self, name: str) -> BlockRecord | None:
        await trio.lowlevel.checkpoint()
        return self._table.blocks.get(name)

    async def create_block(self, rec: BlockRecord) -> BlockRecord:
        await trio.lowlevel.checkpoint()
        return self._table.create(rec)

    async def update_block(self, rec: BlockRecord) -> BlockRecord:
        await trio.lowlevel.checkpoint()
        return self._table.update(rec)

    async def delete_block(self, rec: BlockRecord) -> None:
        await trio.lowlevel.checkpoint()
        self._table.delete(rec)
