"""cnid as a cluster citizen: watches of the custom resources and the
built-in kinds, the controllers of VRFDomains, VRFDomainBindings and
VRFNodeConfigs, IPBlocks as the address store, and garbage collection."""

from ._bindings import BindingController, resolve
from ._conditions import finalizer_node, node_finalizer, same_conditions, set_condition
from ._domains import DomainController, accept, domain_from
from ._gc import GarbageCollector, Grace
from ._ipblocks import NODE_LABEL, VRF_LABEL, KubeStore, to_record, to_resource
from ._member import ClusterMember, MemberTimings
from ._nodeconfig import NodeConfigController, NodeSettings, mine, settings_from
from ._peering import Peering, neighbors_for, node_address
from ._policies import RoutingPolicyController, policy_from
from ._watches import Watches

__all__ = [
    "NODE_LABEL",
    "VRF_LABEL",
    "BindingController",
    "ClusterMember",
    "DomainController",
    "GarbageCollector",
    "Grace",
    "KubeStore",
    "MemberTimings",
    "NodeConfigController",
    "NodeSettings",
    "Peering",
    "RoutingPolicyController",
    "Watches",
    "accept",
    "domain_from",
    "finalizer_node",
    "mine",
    "neighbors_for",
    "node_address",
    "node_finalizer",
    "policy_from",
    "resolve",
    "same_conditions",
    "set_condition",
    "settings_from",
    "to_record",
    "to_resource",
]
