"""RBAC as the real authorizer evaluates a ClusterRole's rules, and a
Role's in its own namespace only
(k8s.io/kubernetes/pkg/apis/rbac/v1/evaluation_helpers.go). Bindings are not
read: every rule of the file is the service account's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# What every authenticated user may read (system:discovery, system:public-info-viewer).
PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz", "/api", "/apis", "/openapi"})


@dataclass(frozen=True)
class Rule:
    verbs: tuple[str, ...]
    api_groups: tuple[str, ...]
    resources: tuple[str, ...]
    resource_names: tuple[str, ...]
    non_resource_urls: tuple[str, ...]
    #: A Role's namespace ("": a ClusterRole's rule, every namespace).
    namespace: str = ""

    def allows(
        self,
        verb: str,
        group: str,
        resource: str,
        subresource: str,
        name: str,
        namespace: str = "",
    ) -> bool:
        if self.namespace and namespace != self.namespace:
            return False
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        if "*" not in self.api_groups and group not in self.api_groups:
            return False
        combined = f"{resource}/{subresource}" if subresource else resource
        if not any(
            r in ("*", combined) or (subresource and r == f"*/{subresource}")
            for r in self.resources
        ):
            return False
        return not self.resource_names or name in self.resource_names

    def allows_path(self, verb: str, path: str) -> bool:
        if self.namespace:
            return False  # non-resource URLs are a ClusterRole's only
        if "*" not in self.verbs and verb not in self.verbs:
            return False
        return any(
            u == path or u == "*" or (u.endswith("*") and path.startswith(u[:-1]))
            for u in self.non_resource_urls
        )


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or [])


def load_rules(path: str | Path) -> list[Rule]:
    """The rules of every ClusterRole and Role in a (multi-document) YAML file."""
    rules: list[Rule] = []
    with open(path) as file:
        for doc in yaml.safe_load_all(file):
            if not isinstance(doc, dict) or doc.get("kind") not in ("ClusterRole", "Role"):
                continue
            namespace = ""
            if doc["kind"] == "Role":
                namespace = str((doc.get("metadata") or {}).get("namespace") or "default")
            for rule in doc.get("rules") or []:
                rules.append(
                    Rule(
                        verbs=_strings(rule.get("verbs")),
                        api_groups=_strings(rule.get("apiGroups")),
                        resources=_strings(rule.get("resources")),
                        resource_names=_strings(rule.get("resourceNames")),
                        non_resource_urls=_strings(rule.get("nonResourceURLs")),
                        namespace=namespace,
                    )
                )
    return rules


def refusal(
    user: str, verb: str, group: str, resource: str, subresource: str, namespace: str
) -> str:
    """The authorizer's reason, as the Forbidden message shows it."""
    combined = f"{resource}/{subresource}" if subresource else resource
    where = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    return f'User "{user}" cannot {verb} resource "{combined}" in API group "{group}" {where}'
