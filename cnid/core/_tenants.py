"""Which tenant (VRFDomain) a pod belongs to, and what each domain's kernel
objects are on this node.

Standalone (no Kubernetes API), the registry holds the default domain of
server.ini. With the API, the VRFDomain and VRFDomainBinding controllers
replace its contents as the custom resources change.
"""

from __future__ import annotations

from ._domains import Domain, DomainLinks
from ._errors import TryAgainLater
from ._notify import Notifier


class DomainRegistry:
    def __init__(
        self, default: Domain, *, static: bool = True, notifier: Notifier | None = None
    ) -> None:
        #: Bumped when the domains or their kernel objects change.
        self.notifier = notifier or Notifier()
        #: The domain of pods whose namespace has no binding, by name.
        self.default_name = default.name
        self._domains: dict[str, Domain] = {default.name: default} if static else {}
        self._bindings: dict[str, str] = {}
        self._links: dict[str, DomainLinks] = {}

    def all(self) -> list[Domain]:
        return list(self._domains.values())

    def get(self, name: str) -> Domain | None:
        return self._domains.get(name)

    def set_domains(self, domains: list[Domain]) -> None:
        fresh = {d.name: d for d in domains}
        changed = fresh != self._domains
        self._domains = fresh
        for gone in set(self._links) - set(self._domains):
            del self._links[gone]
            changed = True
        if changed:
            self.notifier.bump()

    def bind(self, namespace: str, domain_name: str) -> None:
        self._bindings[namespace] = domain_name

    def set_bindings(self, bindings: dict[str, str]) -> None:
        self._bindings = dict(bindings)

    def bindings(self) -> dict[str, str]:
        return dict(self._bindings)

    def for_namespace(self, namespace: str) -> Domain:
        """The domain of a pod's namespace: its binding's domain, else the
        default domain. A namespace bound to a domain that does not exist
        (yet) gets no address at all rather than one in another tenant's
        network: TryAgainLater, so the runtime retries until it exists."""
        bound = self._bindings.get(namespace)
        name = bound if bound is not None else self.default_name
        domain = self._domains.get(name)
        if domain is None:
            why = (
                f"namespace {namespace} is bound to VRFDomain {name}"
                if bound is not None
                else f"namespace {namespace} has no binding and the default domain {name}"
            )
            raise TryAgainLater(f"{why}, which does not exist or is not accepted")
        return domain

    def links(self, name: str) -> DomainLinks | None:
        return self._links.get(name)

    def set_links(self, name: str, links: DomainLinks) -> None:
        if self._links.get(name) != links:
            self._links[name] = links
            self.notifier.bump()
