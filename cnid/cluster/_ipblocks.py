"""IPBlocks as custom resources: the AddressPool's Store over the API.

A block is an ``ipam.pyroute2.org/v1alpha1`` IPBlock named deterministically
(``vrf-42-10-244-0-0-26``), so two nodes claiming the same block collide on
the name and exactly one create succeeds. Its allocations live in the
status, and every status write carries the resourceVersion it was based on:
the API server's optimistic concurrency is the store's (see
docs/kubernetes.md).

Claiming takes two writes because the API server drops ``status`` on
create: the create (spec and labels), then the status with the gateway and
the first pod. A block whose status was never written (the node died in
between) still has its gateway: ``spec.gateway`` is always read as
allocated.
"""

from __future__ import annotations

import logging

import msgspec

from ..core import AllocationRecord
from ..core._errors import ConfigError, StoreConflict, StoreUnavailable
from ..ipam import BlockRecord, block_of
from ..kube import (
    IP_BLOCKS,
    AlreadyExists,
    ApiError,
    Conflict,
    IPBlock,
    IPBlockSpec,
    IPBlockStatus,
    KubeClient,
    NotFound,
    ObjectMeta,
)

log = logging.getLogger("cnid.ipam")

NODE_LABEL = "ipam.pyroute2.org/node"
VRF_LABEL = "ipam.pyroute2.org/vrf"

_GATEWAY = AllocationRecord(kind="gateway")


#: status.capacity is an int64: an IPv6 block larger than /65 shows this.
_INT64_MAX = 2**63 - 1


def _capacity(cidr: str) -> int:
    try:
        return min(block_of(cidr).capacity, _INT64_MAX)
    except ConfigError:  # a record we did not write: show it, allocate nothing
        return 0


def to_record(obj: IPBlock) -> BlockRecord:
    allocations = dict(obj.status.allocations)
    gateway = obj.spec.gateway
    if gateway and gateway not in allocations:
        allocations[gateway] = _GATEWAY
    return BlockRecord(
        name=obj.metadata.name,
        cidr=obj.spec.cidr,
        node=obj.spec.node,
        vrf=obj.spec.vrf,
        gateway=gateway,
        allocations=allocations,
        version=obj.metadata.resource_version,
    )


def to_resource(rec: BlockRecord) -> IPBlock:
    return IPBlock(
        metadata=ObjectMeta(
            name=rec.name,
            labels={NODE_LABEL: rec.node, VRF_LABEL: str(rec.vrf)},
            resource_version=rec.version,
        ),
        spec=IPBlockSpec(cidr=rec.cidr, node=rec.node, vrf=rec.vrf, gateway=rec.gateway),
        status=IPBlockStatus(
            allocated=len(rec.allocations),
            capacity=_capacity(rec.cidr),
            allocations=dict(rec.allocations),
        ),
    )


def _unavailable(what: str, exc: ApiError) -> StoreUnavailable:
    return StoreUnavailable(f"IPBlock store: {what}: {exc.msg}")


class KubeStore:
    """The Store protocol (cnid.ipam) over IPBlock custom resources."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def list_blocks(
        self, vrf: int | None = None, node: str | None = None
    ) -> list[BlockRecord]:
        selector = []
        if node is not None:
            selector.append(f"{NODE_LABEL}={node}")
        if vrf is not None:
            selector.append(f"{VRF_LABEL}={vrf}")
        try:
            found = await self.client.list(IP_BLOCKS, label_selector=",".join(selector) or None)
        except ApiError as exc:
            raise _unavailable("list", exc) from exc
        for bad in found.invalid:
            log.warning("IPBlock %s cannot be read, ignored: %s", bad.name, bad.error)
        records = [to_record(obj) for obj in found.items]
        # The labels are ours to trust only as an index: the spec decides.
        return [
            r for r in records if (vrf is None or r.vrf == vrf) and (node is None or r.node == node)
        ]

    async def get_block(self, name: str) -> BlockRecord | None:
        try:
            return to_record(await self.client.get(IP_BLOCKS, name))
        except NotFound:
            return None
        except ApiError as exc:
            raise _unavailable(f"get {name}", exc) from exc

    async def create_block(self, rec: BlockRecord) -> BlockRecord:
        resource = to_resource(msgspec.structs.replace(rec, version=""))
        try:
            created = await self.client.create(IP_BLOCKS, resource)
        except AlreadyExists as exc:
            raise StoreConflict(f"block {rec.name} exists already") from exc
        except ApiError as exc:
            raise _unavailable(f"create {rec.name}", exc) from exc
        log.info("claimed block %s (%s) for node %s", rec.name, rec.cidr, rec.node)
        return await self.update_block(
            msgspec.structs.replace(rec, version=created.metadata.resource_version)
        )

    async def update_block(self, rec: BlockRecord) -> BlockRecord:
        try:
            stored = await self.client.replace_status(IP_BLOCKS, to_resource(rec))
        except (Conflict, NotFound) as exc:
            raise StoreConflict(f"block {rec.name} changed or is gone: {exc.msg}") from exc
        except ApiError as exc:
            raise _unavailable(f"update {rec.name}", exc) from exc
        return to_record(stored)

    async def delete_block(self, rec: BlockRecord) -> None:
        try:
            await self.client.delete(IP_BLOCKS, rec.name, resource_version=rec.version or None)
        except NotFound:
            return
        except Conflict as exc:
            raise StoreConflict(f"block {rec.name} changed: {exc.msg}") from exc
        except ApiError as exc:
            raise _unavailable(f"delete {rec.name}", exc) from exc
        log.info("released block %s (%s) of node %s", rec.name, rec.cidr, rec.node)
