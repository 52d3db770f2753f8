"""The resource types cnid uses, each with the verbs it uses on it.

The verb sets are the whole of what cnid may do in the API: the client
refuses any other (VerbNotAllowed), and the ClusterRole in kube/deploy/rbac.yaml
grants exactly these (``policy_rules`` renders them; a test keeps the two
equal). Adding a call means adding its verb here, which shows in review as
an RBAC change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ._errors import ProgrammingError, VerbNotAllowed
from ._models import (
    CNI_GROUP,
    IPAM_GROUP,
    IPBlock,
    KubeObject,
    Namespace,
    Node,
    Pod,
    Secret,
    VRFDomain,
    VRFDomainBinding,
    VRFNodeConfig,
    VRFRoutingPolicy,
)

T = TypeVar("T", bound=KubeObject)

VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete"})
STATUS_VERBS = frozenset({"get", "update", "patch"})


@dataclass(frozen=True)
class ResourceType(Generic[T]):
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool
    model: type[T]
    verbs: frozenset[str]
    status_verbs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        assert self.verbs <= VERBS, self.verbs - VERBS
        assert self.status_verbs <= STATUS_VERBS, self.status_verbs - STATUS_VERBS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def __repr__(self) -> str:
        return f"ResourceType({self.plural}.{self.group or 'core'}/{self.version})"

    def check(self, verb: str, *, status: bool = False) -> None:
        """VerbNotAllowed unless ``verb`` (on the status subresource when
        ``status``) is declared."""
        declared = self.status_verbs if status else self.verbs
        if verb not in declared:
            target = f"{self.plural}/status" if status else self.plural
            raise VerbNotAllowed(
                f"{verb} on {target}.{self.group or 'core'} is not declared: "
                "add it to the resource type (and so to the RBAC rules) first"
            )

    def path(self, *, namespace: str | None = None, name: str = "", subresource: str = "") -> str:
        """The URL path: a collection (``name`` empty), an object, or an
        object's subresource."""
        if namespace is not None and not self.namespaced:
            raise ProgrammingError(f"{self.kind} is cluster-scoped: no namespace")
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            base = f"{base}/namespaces/{namespace}"
        out = f"{base}/{self.plural}"
        if name:
            out = f"{out}/{name}"
            if subresource:
                out = f"{out}/{subresource}"
        return out


def _rt(
    group: str,
    plural: str,
    model: type[T],
    *,
    namespaced: bool,
    verbs: str,
    status_verbs: str = "",
) -> ResourceType[T]:
    return ResourceType(
        group=group,
        version="v1alpha1" if group else "v1",
        plural=plural,
        kind=model.__name__,
        namespaced=namespaced,
        model=model,
        verbs=frozenset(verbs.split()),
        status_verbs=frozenset(status_verbs.split()),
    )


NAMESPACES = _rt("", "namespaces", Namespace, namespaced=False, verbs="get list watch")
NODES = _rt("", "nodes", Node, namespaced=False, verbs="get list watch")
PODS = _rt("", "pods", Pod, namespaced=True, verbs="get list watch")
#: Not in RESOURCE_TYPES (the ClusterRole): the daemon gets one Secret, in its
#: own namespace (a VRFNodeConfig neighbour's MD5 password), which a Role of
#: that namespace grants by name (kube/deploy/rbac.yaml).
SECRETS = _rt("", "secrets", Secret, namespaced=True, verbs="get")
VRF_DOMAINS = _rt(
    CNI_GROUP,
    "vrfdomains",
    VRFDomain,
    namespaced=False,
    verbs="get list watch create patch update",
    status_verbs="get patch update",
)
VRF_DOMAIN_BINDINGS = _rt(
    CNI_GROUP,
    "vrfdomainbindings",
    VRFDomainBinding,
    namespaced=False,
    verbs="get list watch",
    status_verbs="get patch update",
)
VRF_NODE_CONFIGS = _rt(
    CNI_GROUP,
    "vrfnodeconfigs",
    VRFNodeConfig,
    namespaced=False,
    verbs="get list watch",
    status_verbs="get patch update",
)
VRF_ROUTING_POLICIES = _rt(
    CNI_GROUP,
    "vrfroutingpolicies",
    VRFRoutingPolicy,
    namespaced=False,
    verbs="get list watch",
    status_verbs="get patch update",
)
IP_BLOCKS = _rt(
    IPAM_GROUP,
    "ipblocks",
    IPBlock,
    namespaced=False,
    verbs="get list watch create update patch delete",
    status_verbs="get update patch",
)

RESOURCE_TYPES: tuple[ResourceType[Any], ...] = (
    NAMESPACES,
    NODES,
    PODS,
    VRF_DOMAINS,
    VRF_DOMAIN_BINDINGS,
    VRF_NODE_CONFIGS,
    VRF_ROUTING_POLICIES,
    IP_BLOCKS,
)


def policy_rules() -> list[dict[str, list[str]]]:
    """The ClusterRole rules granting RESOURCE_TYPES' verbs, no more: one
    rule per resource and one per status subresource, verbs sorted."""
    rules: list[dict[str, list[str]]] = []
    for rt in RESOURCE_TYPES:
        rules.append({"apiGroups": [rt.group], "resources": [rt.plural], "verbs": sorted(rt.verbs)})
        if rt.status_verbs:
            rules.append(
                {
                    "apiGroups": [rt.group],
                    "resources": [f"{rt.plural}/status"],
                    "verbs": sorted(rt.status_verbs),
                }
            )
    return rules
