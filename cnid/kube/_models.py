"""The objects cnid reads and writes, as msgspec Structs.

Only the fields cnid uses are declared; unknown fields are ignored on
decode, so the API server may add to any kind. Every field has a default
where the API server may leave it out (a custom resource without status
decodes), and spec fields that the CRD schema requires are required here
too: an object lacking one does not decode and is reported as invalid
rather than being acted on with a made-up value.

``apiVersion`` and ``kind`` default to the class's own values (list items
of built-in kinds come without them) and are always encoded: their defaults
come from factories, which ``omit_defaults`` does not compare against.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from ..core._pods import AllocationRecord


def _const(value: str) -> Callable[[], str]:
    return lambda: value


class ObjectMeta(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    finalizers: list[str] = []
    deletion_timestamp: str | None = None
    creation_timestamp: str | None = None


class Condition(msgspec.Struct, kw_only=True, rename="camel"):
    """metav1.Condition. Encoded in full (no omitted defaults): the schema
    of metav1.Condition requires reason, message and lastTransitionTime to
    be present, an empty message included."""

    type: str
    status: str  # "True", "False" or "Unknown"
    reason: str = ""
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int = 0


class KubeObject(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """What every kind has. Subclasses give apiVersion and kind their
    values."""

    api_version: str
    kind: str
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)


class ObjectRef(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    name: str


# -- core/v1 --------------------------------------------------------------


class Namespace(KubeObject, kw_only=True, rename="camel", omit_defaults=True):
    api_version: str = msgspec.field(default_factory=_const("v1"))
    kind: str = msgspec.field(default_factory=_const("Namespace"))


class NodeAddress(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    type: str
    address: str


class NodeStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    addresses: list[NodeAddress] = []


class Node(KubeObject, kw_only=True, rename="camel", omit_defaults=True):
    api_version: str = msgspec.field(default_factory=_const("v1"))
    kind: str = msgspec.field(default_factory=_const("Node"))
    status: NodeStatus = msgspec.field(default_factory=NodeStatus)


class PodSpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    node_name: str = ""
    host_network: bool = False


class PodIP(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    ip: str


class PodStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    phase: str = ""
    pod_ips: list[PodIP] = msgspec.field(default_factory=list, name="podIPs")


class Pod(KubeObject, kw_only=True, rename="camel", omit_defaults=True):
    api_version: str = msgspec.field(default_factory=_const("v1"))
    kind: str = msgspec.field(default_factory=_const("Pod"))
    spec: PodSpec = msgspec.field(default_factory=PodSpec)
    status: PodStatus = msgspec.field(default_factory=PodStatus)


class Secret(KubeObject, kw_only=True, rename="camel", omit_defaults=True):
    """``data`` values are base64, as the API gives them."""

    api_version: str = msgspec.field(default_factory=_const("v1"))
    kind: str = msgspec.field(default_factory=_const("Secret"))
    data: dict[str, str] = {}
    type: str = ""


# -- cni.pyroute2.org/v1alpha1 ----------------------------------------------

CNI_GROUP = "cni.pyroute2.org"
IPAM_GROUP = "ipam.pyroute2.org"
_CNI_API = f"{CNI_GROUP}/v1alpha1"
_IPAM_API = f"{IPAM_GROUP}/v1alpha1"


class AttachmentSpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    type: str
    vni: int
    port: int = 4789


class VRFDomainSpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    vrf: int
    table: int
    prefix: str
    prefixlen: int
    ipblocklen: int
    attachments: list[AttachmentSpec] = []
    #: Route targets (issue 14): ``ASN:NN``, ``IPv4:NN`` (``*:NN`` for
    #: import); empty: derived by ``routeTargetDerivation`` (frr | rfc8365).
    import_route_targets: list[str] = []
    export_route_targets: list[str] = []
    route_target_derivation: str = "frr"


class DomainNodeStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """One node's view of a domain, written by that node only."""

    state: str = ""
    message: str = ""
    observed_generation: int = 0


class VRFDomainStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    conditions: list[Condition] = []
    nodes: dict[str, DomainNodeStatus] = {}


class VRFDomain(KubeObject, kw_only=True, rename="camel", omit_defaults=True):
    api_version: str = msgspec.field(default_factory=_const(_CNI_API))
    kind: str = msgspec.field(default_factory=_const("VRFDomain"))
    spec: VRFDomainSpec
    status: VRFDomainStatus = msgspec.field(default_factory=VRFDomainStatus)


class VRFDomainBindingSpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    namespace_ref: ObjectRef
    vrf_domain_ref: ObjectRef


class VRFDomainBindingStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    conditions: list[Condition] = []


class VRFDomainBinding(KubeObject, kw_only=True, rename="camel", omit_defaults=True):
    api_version: str = msgspec.field(default_factory=_const(_CNI_API))
    kind: str = msgspec.field(default_factory=_const("VRFDomainBinding"))
    spec: VRFDomainBindingSpec
    status: VRFDomainBindingStatus = msgspec.field(default_factory=VRFDomainBindingStatus)


class NodeInterface(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    name: str
    local: str = ""


class SecretKeyRef(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """A key of a Secret in the daemon's namespace."""

    name: str
    key: str


class BgpNeighborSpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """An explicit BGP neighbour of a node: eBGP when ``asn`` is not the
    node's AS (a top-of-rack leaf), else an extra iBGP one."""

    address: str
    asn: int
    password_secret_ref: SecretKeyRef | None = None
    #: eBGP multihop TTL (2..255); 0/absent: directly connected.
    multihop: int = 0
    bfd: bool = False
    allow_as_in: int = 0


class UnderlaySpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """The routed underlay (RFC 7938): the node's VTEP /32, announced to its
    eBGP neighbours (owner: the underlay; docs/evpn.md)."""

    vtep_address: str


class VRFNodeConfigSpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    node_ref: ObjectRef
    router_id: str = ""
    route_reflectors: list[str] = []
    interfaces: list[NodeInterface] = []
    #: The node's own AS; 0/absent: server.ini's ``[bgp] asn``.
    asn: int = 0
    neighbors: list[BgpNeighborSpec] = []
    underlay: UnderlaySpec | None = None


class VRFNodeConfigStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    conditions: list[Condition] = []


class VRFNodeConfig(KubeObject, kw_only=True, rename="camel", omit_defaults=True):
    api_version: str = msgspec.field(default_factory=_const(_CNI_API))
    kind: str = msgspec.field(default_factory=_const("VRFNodeConfig"))
    spec: VRFNodeConfigSpec
    status: VRFNodeConfigStatus = msgspec.field(default_factory=VRFNodeConfigStatus)


class PolicyMatchSpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """One routing-policy selector: an ``ip rule`` of these fields."""

    dst: str = ""
    src: str = ""
    iifname: str = ""
    oifname: str = ""


class VRFRoutingPolicySpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    vrf_domain_ref: ObjectRef
    match: list[PolicyMatchSpec]


class VRFRoutingPolicyStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    conditions: list[Condition] = []
    nodes: dict[str, DomainNodeStatus] = {}


class VRFRoutingPolicy(KubeObject, kw_only=True, rename="camel", omit_defaults=True):
    api_version: str = msgspec.field(default_factory=_const(_CNI_API))
    kind: str = msgspec.field(default_factory=_const("VRFRoutingPolicy"))
    spec: VRFRoutingPolicySpec
    status: VRFRoutingPolicyStatus = msgspec.field(default_factory=VRFRoutingPolicyStatus)


# -- ipam.pyroute2.org/v1alpha1 ---------------------------------------------


class IPBlockSpec(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    cidr: str
    node: str
    vrf: int
    gateway: str


class IPBlockStatus(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """Written after the create (the API server drops status on create);
    a block whose status was never written has these defaults."""

    allocated: int = 0
    capacity: int = 0
    allocations: dict[str, AllocationRecord] = {}


class IPBlock(KubeObject, kw_only=True, rename="camel", omit_defaults=True):
    api_version: str = msgspec.field(default_factory=_const(_IPAM_API))
    kind: str = msgspec.field(default_factory=_const("IPBlock"))
    spec: IPBlockSpec
    status: IPBlockStatus = msgspec.field(default_factory=IPBlockStatus)
