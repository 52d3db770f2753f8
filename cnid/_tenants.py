"""Which tenant (VRFDomain) a pod belongs to, and what each domain's kernel
objects are on this node.

Until the Kubernetes controllers exist, the registry holds the default
domain from server.ini; bindings (namespace -> domain) are the seeds'
VRFDomainBinding and come with the CRD controllers.
"""

from __future__ import annotations

from ._domains import VrfDomain
from .dataplane import DomainLinks


class DomainRegistry:
    def __init__(self, default: VrfDomain) -> None:
        self.default = default
        self._domains: dict[str, VrfDomain] = {default.name: default}
        self._bindings: dict[str, str] = {}
        self._links: dict[str, DomainLinks] = {}

    def all(self) -> list[VrfDomain]:
        return list(self._domains.values())

    def get(self, name: str) -> VrfDomain | None:
        return self._domains.get(name)

    def bind(self, namespace: str, domain_name: str) -> None:
        self._bindings[namespace] = domain_name

    def for_namespace(self, namespace: str) -> VrfDomain:
        """The domain of a pod's namespace: its binding when the bound domain
        exists, else the default domain."""
        bound = self._bindings.get(namespace)
        if bound is not None and bound in self._domains:
            return self._domains[bound]
        return self.default

    def links(self, name: str) -> DomainLinks | None:
        return self._links.get(name)

    def set_links(self, name: str, links: DomainLinks) -> None:
        self._links[name] = links
