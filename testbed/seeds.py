"""The example custom resources of the seeds (shared/seeds/001), verbatim:
the manifests existing pyroute2-cni users apply. Tests of every tier use
these, so "the seeds' examples work" means the same text everywhere."""

from __future__ import annotations

import copy
from typing import Any

import yaml

VRFNODECONFIG = """\
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFNodeConfig
metadata:
  name: k8s02-vrnc
spec:
  nodeRef:
    name: k8s02
  routerId: 192.168.124.2
  routeReflectors:
    - 192.168.124.1
  interfaces:
    - name: eth1
      local: 192.168.124.2
"""

VRFDOMAIN = """\
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFDomain
metadata:
  name: vrf-200
spec:
  vrf: 200
  table: 10200
  prefix: 10.1.0.0
  prefixlen: 16
  ipblocklen: 26
  attachments:
    - type: l3vni
      vni: 60200
      port: 4789
"""

VRFDOMAINBINDING = """\
apiVersion: cni.pyroute2.org/v1alpha1
kind: VRFDomainBinding
metadata:
  name: test02-vrf-200
spec:
  namespaceRef:
    name: test02
  vrfDomainRef:
    name: vrf-200
"""

_PARSED = {text: yaml.safe_load(text) for text in (VRFNODECONFIG, VRFDOMAIN, VRFDOMAINBINDING)}


def parsed(text: str) -> dict[str, Any]:
    """One of the examples as kubectl sends it (YAML -> JSON); a fresh copy."""
    return copy.deepcopy(_PARSED[text])
