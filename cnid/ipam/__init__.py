"""IPAM: VRF domains carved into per-node blocks, pod addresses leased
from them, recorded in a Store (IPBlock records with optimistic
concurrency)."""

from ._block import Block, block_name, block_of, lowest_free_block
from ._filestore import FileStore, StoreCorrupt
from ._lease import BlockUsage, Lease, Owner
from ._pool import MAX_ATTEMPTS, AddressPool
from ._store import BlockRecord, MemoryStore, Store

__all__ = [
    "MAX_ATTEMPTS",
    "AddressPool",
    "Block",
    "BlockRecord",
    "BlockUsage",
    "FileStore",
    "Lease",
    "MemoryStore",
    "Owner",
    "Store",
    "StoreCorrupt",
    "block_name",
    "block_of",
    "lowest_free_block",
]
