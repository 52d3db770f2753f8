"""The Store contract (MemoryStore and FileStore alike) and FileStore's file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from cnid.core import AllocationRecord, Domain, StoreConflict, StoreUnavailable
from cnid.ipam import AddressPool, BlockRecord, FileStore, MemoryStore, Owner, Store, StoreCorrupt
from testbed.domains import VRF42

GW = AllocationRecord(kind="gateway")


def record(
    name: str = "vrf-42-10-244-0-0-26", cidr: str = "10.244.0.0/26", node: str = "n1", vrf: int = 42
) -> BlockRecord:
    gateway = cidr.split("/")[0][:-1] + "1"
    return BlockRecord(
        name=name, cidr=cidr, node=node, vrf=vrf, gateway=gateway, allocations={gateway: GW}
    )


def pod(cid: str) -> AllocationRecord:
    return AllocationRecord(kind="pod", container_id=cid, ifname="eth0", pod_name=f"p-{cid}")


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        yield FileStore(tmp_path / "ipam.json")


async def test_create_get_list(store: Store) -> None:
    a = await store.create_block(record())
    b = await store.create_block(record("vrf-42-10-244-0-64-26", "10.244.0.64/26", node="n2"))
    c = await store.create_block(record("vrf-7-10-244-0-0-26", "10.244.0.0/26", vrf=7))
    assert a.version and b.version and c.version
    assert len({a.version, b.version, c.version}) == 3
    assert await store.get_block(a.name) == a
    assert await store.get_block("nope") is None
    assert {r.name for r in await store.list_blocks()} == {a.name, b.name, c.name}
    assert {r.name for r in await store.list_blocks(vrf=42)} == {a.name, b.name}
    assert {r.name for r in await store.list_blocks(node="n1")} == {a.name, c.name}
    assert [r.name for r in await store.list_blocks(vrf=42, node="n2")] == [b.name]
    assert await store.list_blocks(vrf=99) == []


async def test_create_existing_name_conflicts(store: Store) -> None:
    await store.create_block(record())
    with pytest.raises(StoreConflict, match="exists"):
        await store.create_block(record(node="other"))
    stored = await store.get_block(record().name)
    assert stored is not None and stored.node == "n1"


async def test_update_checks_the_version(store: Store) -> None:
    v1 = await store.create_block(record())
    v2 = await store.update_block(
        msgspec.structs.replace(v1, allocations={**v1.allocations, "10.244.0.2": pod("a")})
    )
    assert v2.version != v1.version
    assert set(v2.allocations) == {"10.244.0.1", "10.244.0.2"}
    # A writer that read v1 loses, and changes nothing.
    with pytest.raises(StoreConflict, match="changed"):
        await store.update_block(
            msgspec.structs.replace(v1, allocations={**v1.allocations, "10.244.0.2": pod("b")})
        )
    assert await store.get_block(v1.name) == v2
    # A record never stored (or deleted meanwhile) cannot be updated.
    with pytest.raises(StoreConflict, match="gone"):
        await store.update_block(record("vrf-1-10-0-0-0-26", "10.0.0.0/26", vrf=1))


async def test_delete_checks_the_version_and_is_idempotent(store: Store) -> None:
    v1 = await store.create_block(record())
    v2 = await store.update_block(msgspec.structs.replace(v1, node="n1"))
    with pytest.raises(StoreConflict):
        await store.delete_block(v1)
    assert await store.get_block(v1.name) is not None
    await store.delete_block(v2)
    assert await store.get_block(v1.name) is None
    await store.delete_block(v2)  # gone already: fine
    # The name is free again.
    v3 = await store.create_block(record(node="n2"))
    assert v3.version not in (v1.version, v2.version)


async def test_stored_records_share_nothing_with_the_caller(store: Store) -> None:
    rec = record()
    stored = await store.create_block(rec)
    rec.allocations["10.244.0.9"] = pod("sneaky")
    assert "10.244.0.9" not in stored.allocations
    again = await store.get_block(rec.name)
    assert again is not None and "10.244.0.9" not in again.allocations


# -- FileStore's file -----------------------------------------------------


async def test_filestore_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ipam.json"  # the directory is created
    first = FileStore(path)
    v1 = await first.create_block(record())
    v2 = await first.update_block(
        msgspec.structs.replace(v1, allocations={**v1.allocations, "10.244.0.2": pod("a")})
    )
    other = await first.create_block(record("vrf-7-10-1-0-0-26", "10.1.0.0/26", vrf=7))
    await first.delete_block(other)

    reopened = FileStore(path)
    assert await reopened.list_blocks() == [v2]
    # Versions survive, so a stale writer still loses after the restart...
    with pytest.raises(StoreConflict):
        await reopened.update_block(v1)
    # ... and new versions never repeat old ones.
    v3 = await reopened.update_block(v2)
    assert int(v3.version) > int(v2.version) > int(v1.version)
    assert int(v3.version) > int(other.version)
    # No temporary file left behind, and the file is plain JSON.
    assert sorted(p.name for p in path.parent.iterdir()) == ["ipam.json"]
    doc = json.loads(path.read_text())
    assert doc["format"] == 1
    assert doc["blocks"][0]["allocations"]["10.244.0.2"]["containerId"] == "a"


async def test_filestore_missing_file_is_empty(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "absent.json")
    assert await store.list_blocks() == []
    assert not (tmp_path / "absent.json").exists()  # nothing written by reading


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is corrupt"),
        (b"{not json", "is corrupt"),
        (b'{"format": 1, "serial": 3, "blocks": [{"name": 5}]}', "is corrupt"),
        (b'{"format": 2, "serial": 0, "blocks": []}', "has format 2"),
        (
            b'{"format": 1, "serial": 1, "blocks": [{"name": "vrf-1-10-0-0-0-26", '
            b'"cidr": "10.0.0.0/31", "node": "n", "vrf": 1, "gateway": "10.0.0.1"}]}',
            "too small",
        ),
        (
            b'{"format": 1, "serial": 1, "blocks": [{"name": "wrong", '
            b'"cidr": "10.0.0.0/26", "node": "n", "vrf": 1, "gateway": "10.0.0.1"}]}',
            "misnamed",
        ),
    ],
)
def test_filestore_corrupt_file_names_the_file(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "ipam.json"
    path.write_bytes(content)
    with pytest.raises(StoreCorrupt, match=match) as info:
        FileStore(path)
    assert str(path) in str(info.value)


def test_filestore_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    path.mkdir()  # reading a directory fails with EISDIR, as root too
    with pytest.raises(StoreCorrupt, match="cannot read") as info:
        FileStore(path)
    assert str(path) in str(info.value)


async def test_filestore_write_failure_changes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    path = blocker / "ipam.json"
    store = FileStore(path)
    blocker.write_text("a file where the directory should be")
    with pytest.raises(StoreUnavailable, match="cannot write"):
        await store.create_block(record())
    assert await store.list_blocks() == []
    os.unlink(blocker)
    stored = await store.create_block(record())
    assert await FileStore(path).list_blocks() == [stored]


def domain42() -> Domain:
    return VRF42


async def test_pool_over_filestore_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "ipam.json"
    pool = AddressPool(FileStore(path), "n1")
    a = await pool.allocate(domain42(), Owner("c1", "eth0", pod_name="a"))
    b = await pool.allocate(domain42(), Owner("c2", "eth0", pod_name="b"))
    assert (a.address, b.address) == ("10.244.0.2", "10.244.0.3")

    restarted = AddressPool(FileStore(path), "n1")
    assert await restarted.leases() == [a, b]
    # A repeated ADD after the restart gets the same address.
    assert await restarted.allocate(domain42(), Owner("c2", "eth0")) == b
    c = await restarted.allocate(domain42(), Owner("c3", "eth0"))
    assert c.address == "10.244.0.4"
    assert await restarted.release(42, "c1", "eth0") == a
    assert await AddressPool(FileStore(path), "n1").leases() == [b, c]
