"""The node's watches of the cluster, and the readiness they imply."""

from __future__ import annotations

import logging
from typing import Any

import trio

from ..core._readiness import Readiness
from ..kube import (
    NAMESPACES,
    NODES,
    PODS,
    VRF_DOMAIN_BINDINGS,
    VRF_DOMAINS,
    VRF_NODE_CONFIGS,
    KubeClient,
    Namespace,
    Node,
    Pod,
    Reflector,
    VRFDomain,
    VRFDomainBinding,
    VRFNodeConfig,
)

log = logging.getLogger("cnid.cluster")

COMPONENT = "kube-api"


class Watches:
    """One reflector per kind the node needs; Pods only of this node."""

    def __init__(self, client: KubeClient, node: str, readiness: Readiness) -> None:
        self.readiness = readiness
        self.domains: Reflector[VRFDomain] = Reflector(client, VRF_DOMAINS, name="vrfdomains")
        self.bindings: Reflector[VRFDomainBinding] = Reflector(
            client, VRF_DOMAIN_BINDINGS, name="vrfdomainbindings"
        )
        self.nodeconfigs: Reflector[VRFNodeConfig] = Reflector(
            client, VRF_NODE_CONFIGS, name="vrfnodeconfigs"
        )
        self.namespaces: Reflector[Namespace] = Reflector(client, NAMESPACES, name="namespaces")
        self.nodes: Reflector[Node] = Reflector(client, NODES, name="nodes")
        self.pods: Reflector[Pod] = Reflector(
            client, PODS, field_selector=f"spec.nodeName={node}", name="pods"
        )
        self.all: list[Reflector[Any]] = [
            self.domains,
            self.bindings,
            self.nodeconfigs,
            self.namespaces,
            self.nodes,
            self.pods,
        ]
        readiness.expect(COMPONENT)

    def problem(self) -> str:
        """Why the node's view of the cluster is not current ("" if it is)."""
        for r in self.all:
            if not r.synced.is_set():
                return f"{r.name}: not listed yet" + (f" ({r.last_error})" if r.last_error else "")
            if not r.connected:
                return f"{r.name}: {r.last_error or 'disconnected'}"
        return ""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for r in self.all:
                await nursery.start(r.run)
            task_status.started()
            last = None
            while True:
                problem = self.problem()
                if problem != last:
                    if problem:
                        self.readiness.set_not_ready(COMPONENT, problem)
                        log.warning("cluster view not current: %s", problem)
                    else:
                        self.readiness.set_ready(COMPONENT)
                        log.info("cluster view current: every watch synced")
                    last = problem
                await trio.sleep(0.2)

    async def wait_synced(self) -> None:
        for r in self.all:
            await r.synced.wait()
