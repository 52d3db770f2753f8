"""The cluster as the controllers' unit tests see it: the emulated API
server in-process (testbed.kubeapi, with the project's CRDs) behind a real
KubeClient, all on trio's virtual clock; and builders of the objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec

from cnid.kube import (
    AttachmentSpec,
    KubeClient,
    KubeConfig,
    KubeObject,
    Node,
    NodeAddress,
    NodeInterface,
    NodeStatus,
    ObjectMeta,
    ObjectRef,
    PolicyMatchSpec,
    ResourceType,
    VRFDomain,
    VRFDomainBinding,
    VRFDomainBindingSpec,
    VRFDomainSpec,
    VRFNodeConfig,
    VRFNodeConfigSpec,
    VRFRoutingPolicy,
    VRFRoutingPolicySpec,
)
from testbed.kubeapi import InProcessKubeApi, open_inprocess_kubeapi

CRDS = Path(__file__).resolve().parents[2] / "kube" / "crds"
CNI_GROUP = "cni.pyroute2.org"


class Admin:
    """The cluster's administrator (kubectl): writes what cnid's client may
    not (its verbs are cnid's RBAC), even during an outage of cnid's view."""

    def __init__(self, api: InProcessKubeApi) -> None:
        self.api = api
        self.http = httpx.AsyncClient(
            base_url=api.url,
            transport=api.admin_transport,
            headers={"Authorization": f"Bearer {api.token}"},
        )

    async def _send(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        response = await self.http.request(method, path, json=body, **kw)
        assert response.is_success, response.text
        return response.json()

    async def create(self, rt: ResourceType[Any], obj: KubeObject) -> None:
        ns = obj.metadata.namespace or None
        await self._send("POST", rt.path(namespace=ns), msgspec.to_builtins(obj))

    async def patch(
        self,
        rt: ResourceType[Any],
        name: str,
        body: dict[str, Any],
        namespace: str = "",
        subresource: str = "",
    ) -> None:
        headers = {"Content-Type": "application/merge-patch+json"}
        path = rt.path(namespace=namespace or None, name=name, subresource=subresource)
        await self._send("PATCH", path, content=msgspec.json.encode(body), headers=headers)

    async def delete(self, rt: ResourceType[Any], name: str, namespace: str = "") -> None:
        await self._send("DELETE", rt.path(namespace=namespace or None, name=name))


@asynccontextmanager
async def cluster(
    retry_deadline: float = 0.0,
    bookmark_interval: float = 5.0,
    crd_paths: tuple[Path, ...] = (CRDS,),
) -> AsyncIterator[tuple[InProcessKubeApi, KubeClient, Admin]]:
    """The API server, cnid's client of it (``retry_deadline`` 0: an error
    reaches the caller at once, as the controllers must then handle it) and
    the administrator's."""
    async with open_inprocess_kubeapi(crd_paths, bookmark_interval=bookmark_interval) as api:
        config = KubeConfig(server=api.url, token=api.token)
        admin = Admin(api)
        async with (
            admin.http,
            KubeClient(config, retry_deadline=retry_deadline, transport=api.transport) as client,
        ):
            yield api, client, admin


def meta(name: str, **kw: Any) -> ObjectMeta:
    return ObjectMeta(name=name, **kw)


def vrfdomain(name: str, vrf: int, prefix: str = "10.1.0.0", prefixlen: int = 16) -> VRFDomain:
    return VRFDomain(
        metadata=meta(name),
        spec=VRFDomainSpec(
            vrf=vrf,
            table=vrf + 10000,
            prefix=prefix,
            prefixlen=prefixlen,
            ipblocklen=26,
            attachments=[AttachmentSpec(type="l3vni", vni=vrf)],
        ),
    )


def binding(name: str, namespace: str, domain: str) -> VRFDomainBinding:
    return VRFDomainBinding(
        metadata=meta(name),
        spec=VRFDomainBindingSpec(
            namespace_ref=ObjectRef(name=namespace), vrf_domain_ref=ObjectRef(name=domain)
        ),
    )


def nodeconfig(
    name: str,
    node: str,
    *,
    router_id: str = "",
    reflectors: tuple[str, ...] = (),
    interface: str = "",
    local: str = "",
) -> VRFNodeConfig:
    return VRFNodeConfig(
        metadata=meta(name),
        spec=VRFNodeConfigSpec(
            node_ref=ObjectRef(name=node),
            router_id=router_id,
            route_reflectors=list(reflectors),
            interfaces=[NodeInterface(name=interface, local=local)] if interface else [],
        ),
    )


def node(name: str, address: str = "") -> Node:
    addresses = [NodeAddress(type="InternalIP", address=address)] if address else []
    return Node(metadata=meta(name), status=NodeStatus(addresses=addresses))


def policy(name: str, domain: str, **match: str) -> VRFRoutingPolicy:
    return VRFRoutingPolicy(
        metadata=meta(name),
        spec=VRFRoutingPolicySpec(
            vrf_domain_ref=ObjectRef(name=domain), match=[PolicyMatchSpec(**match)]
        ),
    )


def conditions(api: InProcessKubeApi, plural: str, name: str) -> dict[str, tuple[str, str]]:
    """An object's conditions as stored: type -> (status, reason)."""
    obj = api.get_object(CNI_GROUP, plural, name)
    assert obj is not None, f"{plural}/{name} is not stored"
    return {
        c["type"]: (c["status"], c["reason"]) for c in obj.get("status", {}).get("conditions", [])
    }


def status_writes(api: InProcessKubeApi, plural: str, name: str = "") -> int:
    """How many status writes of ``plural`` (of ``name``) the server answered."""
    return sum(
        1
        for r in api.requests
        if r.resource == plural
        and r.subresource == "status"
        and r.verb in ("patch", "update")
        and (not name or r.name == name)
    )
