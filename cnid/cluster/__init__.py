"""cnid as a cluster citizen: watches of the custom resources and the
built-in kinds, the controllers of VRFDomains, VRFDomainBindings and
VRFNodeConfigs, IPBlocks as the address store, and garbage collection."""

from ._bindings import BindingController
from ._domains import DomainController, accept, domain_from
from ._gc import GarbageCollector, Grace
from ._ipblocks import KubeStore
from ._member import ClusterMember, MemberTimings
from ._nodeconfig import NodeConfigController, NodeSettings
from ._peering import Peering, neighbors_for, node_address
from ._watches import Watches

__all__ = [
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
    "Watches",
    "accept",
    "domain_from",
    "neighbors_for",
    "node_address",
]
