"""The tenant domains the tests share: vrf-42 (the default domain, l3vni 42)
and vrf-300 (an l2vni), as server.ini and the lab define them."""

from __future__ import annotations

from cnid.core import Domain, VniAttachment

__all__ = ["VRF42", "VRF300"]

VRF42 = Domain(
    name="vrf-42",
    vrf=42,
    table=42,
    prefix="10.244.0.0",
    prefixlen=16,
    ipblocklen=26,
    attachments=(VniAttachment(type="l3vni", vni=42),),
)
VRF300 = Domain(
    name="vrf-300",
    vrf=300,
    table=300,
    prefix="10.3.0.0",
    prefixlen=16,
    ipblocklen=26,
    attachments=(VniAttachment(type="l2vni", vni=300),),
)
