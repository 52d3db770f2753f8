"""FileStore: the node-local durable Store, one JSON file.

Used until the Kubernetes-backed store exists. The whole state (every block
record and the version serial) is one msgspec JSON document. Each change is
written to a temporary file beside it and ``os.replace``d over it, so the
file always holds either the state before a change or the state after it,
whatever moment the daemon dies at.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import msgspec
import trio

from ..core._errors import CniCode, CnidError, StoreUnavailable
from ._block import block_name, block_of
from ._store import BlockRecord, BlockTable, MemoryStore

T = TypeVar("T")

FORMAT = 1


class StoreCorrupt(CnidError):
    """The IPAM state file cannot be read or decoded. Starting empty instead
    would hand out addresses that running pods hold, so this is fatal until
    an operator looks at the file the message names."""

    code = CniCode.IO_FAILURE


class _State(msgspec.Struct, frozen=True):
    format: int
    serial: int
    blocks: list[BlockRecord]


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(_State)


def _load(path: Path) -> BlockTable:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return BlockTable()
    except OSError as exc:
        raise StoreCorrupt(f"cannot read the IPAM state file {path}: {exc.strerror}") from None
    try:
        state = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise StoreCorrupt(f"the IPAM state file {path} is corrupt: {exc}") from None
    if state.format != FORMAT:
        raise StoreCorrupt(
            f"the IPAM state file {path} has format {state.format}, this cnid reads {FORMAT}"
        )
    blocks: dict[str, BlockRecord] = {}
    serial = state.serial
    for rec in state.blocks:
        try:
            geometry = block_of(rec.cidr)
        except CnidError as exc:
            raise StoreCorrupt(f"the IPAM state file {path}: {exc.msg}") from None
        if rec.name in blocks or rec.name != block_name(rec.vrf, geometry.network):
            raise StoreCorrupt(
                f"the IPAM state file {path}: block {rec.name!r} ({rec.cidr}, vrf {rec.vrf}) "
                "is duplicated or misnamed"
            )
        if rec.version.isdigit():
            serial = max(serial, int(rec.version))
        blocks[rec.name] = rec
    return BlockTable(blocks, serial)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class FileStore(MemoryStore):
    """A Store kept in one JSON file (see the module docstring).

    Loading happens in the constructor: a missing file is an empty store, an
    unreadable or corrupt one raises StoreCorrupt naming the file.

    Writes do not fsync, on purpose. ``os.replace`` already makes each write
    atomic against a crash of the daemon (the kernel keeps the data of a
    process that dies). What fsync would add is durability across a crash
    of the node itself, and that is not needed: such a crash takes every
    pod of the node with it, and the daemon's start-up reconciliation
    releases every lease whose container no longer exists, so a state file
    that lost its last writes only lacks leases of pods that are gone. The
    price of fsync (milliseconds per pod ADD on a busy disk) buys nothing.

    Writes are serialised by a lock and done in a worker thread; the
    in-memory state changes only once the file holds the new state, so a
    failed write (StoreUnavailable) changes nothing. One daemon per file:
    two processes writing the same file would lose each other's changes.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._table = _load(self.path)
        self._lock = trio.Lock()

    async def _commit(self, change: Callable[[BlockTable], T]) -> T:
        async with self._lock:
            table = self._table.copy()
            result = change(table)
            state = _State(
                format=FORMAT,
                serial=table.serial,
                blocks=sorted(table.blocks.values(), key=lambda r: r.name),
            )
            data = _encoder.encode(state)
            try:
                await trio.to_thread.run_sync(_write, self.path, data)
            except OSError as exc:
                raise StoreUnavailable(
                    f"cannot write the IPAM state file {self.path}: {exc.strerror}"
                ) from None
            # No checkpoint between the write and this line: a cancellation
            # arriving during the write is delivered after it.
            self._table = table
            return result

    # list_blocks and get_block are MemoryStore's: reads come from memory.

    async def create_block(self, rec: BlockRecord) -> BlockRecord:
        return await self._commit(lambda table: table.create(rec))

    async def update_block(self, rec: BlockRecord) -> BlockRecord:
        return await self._commit(lambda table: table.update(rec))

    async def delete_block(self, rec: BlockRecord) -> None:
        if rec.name not in self._table.blocks:
            await trio.lowlevel.checkpoint()
            return
        await self._commit(lambda table: table.delete(rec))
