"""The routed underlay's ``cnid-vtep`` on a kernel with the dummy driver
(the VM tier: the host tier's kernel has none), and a domain's VXLAN device
with the VTEP as its local address.

node namespace: cnid-vtep (dummy, alias cnid:vtep) 10.255.0.11/32
                vrf-42 / br-4242 <- vx-4242 local 10.255.0.11
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio

from cnid import dataplane as dp
from cnid.core import Domain, KernelError, VniAttachment
from testbed.netns import Netns, netns

VTEP = "10.255.0.11"
L3 = Domain(
    name="blue", vrf=42, table=42, prefix="10.244.0.0", prefixlen=16, ipblocklen=24,
    attachments=(VniAttachment(type="l3vni", vni=4242),),
)  # fmt: skip


@pytest.fixture
def node() -> Iterator[Netns]:
    with netns("vmvtep") as ns:
        dp.set_node_netns(ns.fd)
        try:
            yield ns
        finally:
            dp.set_node_netns(None)


def addresses(ns: Netns) -> list[str]:
    return ns.ip("-o", "-4", "addr", "show", "dev", dp.VTEP_DEVICE).split()


def test_vtep_device_is_idempotent_tagged_and_the_vxlan_local(node: Netns) -> None:
    async def main() -> None:
        index = await dp.ensure_vtep(VTEP)
        assert await dp.ensure_vtep(VTEP) == index  # adopted, not made again
        detail = node.ip("-d", "link", "show", dp.VTEP_DEVICE)
        assert "dummy" in detail and "alias cnid:vtep" in detail and ",UP" in detail
        assert f"{VTEP}/32" in addresses(node)
        # the node's VTEP is the VXLAN devices' local address
        underlay = await dp.discover_underlay("", VTEP)
        assert (underlay.ifname, underlay.address) == (dp.VTEP_DEVICE, VTEP)
        await dp.ensure_domain(L3, underlay)
        assert f"local {VTEP}" in node.ip("-d", "link", "show", "vx-4242")
        # a new VTEP replaces the old address
        assert await dp.ensure_vtep("10.255.0.12") == index
        assert "10.255.0.12/32" in addresses(node) and f"{VTEP}/32" not in addresses(node)
        assert await dp.remove_vtep()
        assert not await dp.remove_vtep()
        assert dp.VTEP_DEVICE not in node.ip("link", "show")
        # a device of that name that is not ours is neither adopted nor removed
        node.ip("link", "add", dp.VTEP_DEVICE, "type", "dummy")
        with pytest.raises(KernelError, match="not ours"):
            await dp.ensure_vtep(VTEP)
        assert not await dp.remove_vtep()
        assert dp.VTEP_DEVICE in node.ip("link", "show")

    trio.run(main)
