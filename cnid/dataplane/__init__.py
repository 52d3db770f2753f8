"""The kernel dataplane: VRF domains, bridges, VXLAN devices and pod veths,
and the state learned from EVPN (FDB, neighbour entries, type-5 routes).

Every operation is a coroutine that runs its netlink work in a trio worker
thread of its own (see docs/dataplane.md for why and what it costs).
"""

from ._domain import (
    KernelDomain,
    ensure_domain,
    list_domains,
    pod_mtu,
    remove_attachments,
    remove_domain,
    remove_kernel_domain,
)
from ._evpn import (
    ApplyResult,
    EvpnRoute,
    FdbEntry,
    KernelEvpn,
    NeighEntry,
    apply_evpn,
    dump_evpn,
)
from ._names import (
    LINK_ALIAS_PREFIX,
    ROUTE_PROTO,
    ROUTE_PROTO_EVPN,
    bridge_mac,
    host_ifname,
    pod_mac,
    vrf_name,
)
from ._netns import NetnsFd, NetnsPoisoned, checked_netns, is_netns_fd, set_node_netns
from ._pod import (
    CheckFailed,
    PodLink,
    PodWiring,
    check_pod,
    list_pod_links,
    unwire_pod,
    wire_pod,
)
from ._podspec import PodSpec, plan_pod
from ._underlay import Underlay, discover_underlay

__all__ = [
    "LINK_ALIAS_PREFIX",
    "ROUTE_PROTO",
    "ROUTE_PROTO_EVPN",
    "ApplyResult",
    "CheckFailed",
    "EvpnRoute",
    "FdbEntry",
    "KernelDomain",
    "KernelEvpn",
    "NeighEntry",
    "NetnsFd",
    "NetnsPoisoned",
    "PodLink",
    "PodSpec",
    "PodWiring",
    "Underlay",
    "apply_evpn",
    "bridge_mac",
    "check_pod",
    "checked_netns",
    "discover_underlay",
    "dump_evpn",
    "ensure_domain",
    "host_ifname",
    "is_netns_fd",
    "list_domains",
    "list_pod_links",
    "plan_pod",
    "pod_mac",
    "pod_mtu",
    "remove_attachments",
    "remove_domain",
    "remove_kernel_domain",
    "set_node_netns",
    "unwire_pod",
    "vrf_name",
    "wire_pod",
]
