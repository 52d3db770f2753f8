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
from ._evpn import ApplyResult, EvpnRoute, FdbEntry, KernelEvpn, NeighEntry, apply_evpn, dump_evpn
from ._hostpath import HostState, apply_host
from ._hostplan import (
    PRIO_EGRESS,
    PRIO_POLICY,
    PRIO_PROBE,
    PRIO_REPLY,
    HostDomain,
    HostPlan,
    HostPolicy,
    HostSettings,
    LeakRoute,
    NodePorts,
    PolicyMatch,
    host_group,
    plan,
)
from ._names import (
    LINK_ALIAS_PREFIX,
    ROUTE_PROTO,
    ROUTE_PROTO_EVPN,
    bridge_alias,
    bridge_mac,
    host_ifname,
    pod_mac,
    vrf_name,
    vrf_number,
    vxlan_alias,
)
from ._netns import NetnsFd, NetnsPoisoned, checked_netns, inside, is_netns_fd, set_node_netns
from ._nft import apply_table, flush_conntrack, list_table
from ._pod import CheckFailed, PodLink, PodWiring, check_pod, list_pod_links, unwire_pod, wire_pod
from ._podspec import PodSpec, plan_pod
from ._rules import FR_ACT_UNREACHABLE, FibRule, apply_rules, dump_rules
from ._tables import table_routes
from ._underlay import Underlay, discover_underlay

__all__ = [
    "FR_ACT_UNREACHABLE",
    "LINK_ALIAS_PREFIX",
    "PRIO_EGRESS",
    "PRIO_POLICY",
    "PRIO_PROBE",
    "PRIO_REPLY",
    "ROUTE_PROTO",
    "ROUTE_PROTO_EVPN",
    "ApplyResult",
    "CheckFailed",
    "EvpnRoute",
    "FdbEntry",
    "FibRule",
    "HostDomain",
    "HostPlan",
    "HostPolicy",
    "HostSettings",
    "HostState",
    "KernelDomain",
    "KernelEvpn",
    "LeakRoute",
    "NeighEntry",
    "NetnsFd",
    "NetnsPoisoned",
    "NodePorts",
    "PodLink",
    "PodSpec",
    "PodWiring",
    "PolicyMatch",
    "Underlay",
    "apply_evpn",
    "apply_host",
    "apply_rules",
    "apply_table",
    "bridge_alias",
    "bridge_mac",
    "check_pod",
    "checked_netns",
    "discover_underlay",
    "dump_evpn",
    "dump_rules",
    "ensure_domain",
    "flush_conntrack",
    "host_group",
    "host_ifname",
    "inside",
    "is_netns_fd",
    "list_domains",
    "list_pod_links",
    "list_table",
    "plan",
    "plan_pod",
    "pod_mac",
    "pod_mtu",
    "remove_attachments",
    "remove_domain",
    "remove_kernel_domain",
    "set_node_netns",
    "table_routes",
    "unwire_pod",
    "vrf_name",
    "vrf_number",
    "vxlan_alias",
    "wire_pod",
]
