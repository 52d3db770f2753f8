"""The kernel dataplane: VRF domains, bridges, VXLAN devices and pod veths.

Every operation is a coroutine that runs its netlink work in a trio worker
thread of its own (see docs/dataplane.md for why and what it costs).
"""

from ._domain import (
    DomainLinks,
    KernelDomain,
    ensure_domain,
    list_domains,
    remove_attachments,
    remove_domain,
    remove_kernel_domain,
)
from ._names import LINK_ALIAS_PREFIX, ROUTE_PROTO, bridge_mac, host_ifname
from ._netns import NetnsPoisoned, is_netns_fd, set_node_netns
from ._pod import (
    CheckFailed,
    PodLink,
    PodWiring,
    check_pod,
    list_pod_links,
    unwire_pod,
    wire_pod,
)
from ._underlay import Underlay, discover_underlay

__all__ = [
    "LINK_ALIAS_PREFIX",
    "ROUTE_PROTO",
    "CheckFailed",
    "DomainLinks",
    "KernelDomain",
    "NetnsPoisoned",
    "PodLink",
    "PodWiring",
    "Underlay",
    "bridge_mac",
    "check_pod",
    "discover_underlay",
    "ensure_domain",
    "host_ifname",
    "is_netns_fd",
    "list_domains",
    "list_pod_links",
    "remove_attachments",
    "remove_domain",
    "remove_kernel_domain",
    "set_node_netns",
    "unwire_pod",
    "wire_pod",
]
