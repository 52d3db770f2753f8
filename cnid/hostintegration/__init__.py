"""Host integration: the node's rules, leak routes and nftables table kept
equal to what the domains, this node's blocks and the VRFRoutingPolicies ask
for. The plan and its application stay in ``dataplane`` (the host plan is
the typed intent the kernel side takes, as a pod's spec is); this package is
the controller that keeps them applied."""

from ._controller import COMPONENT, HostIntegration, PolicySource

__all__ = [
    "COMPONENT",
    "HostIntegration",
    "PolicySource",
]
