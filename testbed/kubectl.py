"""A small synchronous admin client of the API server emulation, for tests
and the lab (the daemon's own client is cnid.kube; this one must not share
its code, or a bug in it would hide in both)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import yaml

_CORE = {"namespaces": False, "nodes": False, "pods": True, "secrets": True, "configmaps": True}
_CRS = {
    "vrfdomains": "cni.pyroute2.org",
    "vrfdomainbindings": "cni.pyroute2.org",
    "vrfnodeconfigs": "cni.pyroute2.org",
    "vrfroutingpolicies": "cni.pyroute2.org",
    "ipblocks": "ipam.pyroute2.org",
}
_PLURAL = {
    "Namespace": "namespaces",
    "Node": "nodes",
    "Pod": "pods",
    "Secret": "secrets",
    "ConfigMap": "configmaps",
    "VRFDomain": "vrfdomains",
    "VRFDomainBinding": "vrfdomainbindings",
    "VRFNodeConfig": "vrfnodeconfigs",
    "VRFRoutingPolicy": "vrfroutingpolicies",
    "IPBlock": "ipblocks",
}


def path(plural: str, name: str = "", namespace: str | None = None, status: bool = False) -> str:
    if plural in _CORE:
        base = "/api/v1"
        if _CORE[plural] and namespace is not None:
            base += f"/namespaces/{namespace}"
    else:
        base = f"/apis/{_CRS[plural]}/v1alpha1"
    out = f"{base}/{plural}"
    if name:
        out += f"/{name}"
    if status:
        out += "/status"
    return out


class Kubectl:
    def __init__(self, server: str, token: str, ca_file: str | Path) -> None:
        self.http = httpx.Client(
            base_url=server,
            headers={"Authorization": f"Bearer {token}"},
            verify=str(ca_file),
            timeout=30.0,
        )

    @classmethod
    def from_dir(cls, directory: Path, server: str) -> Kubectl:
        return cls(server, (directory / "token").read_text().strip(), directory / "ca.crt")

    @classmethod
    def over_unix(cls, directory: Path) -> Kubectl:
        """Through the emulation's admin UNIX socket (``--unix``)."""
        self = cls.__new__(cls)
        self.http = httpx.Client(
            base_url="http://kubeapi",
            headers={"Authorization": f"Bearer {(directory / 'token').read_text().strip()}"},
            transport=httpx.HTTPTransport(uds=str(directory / "admin.sock")),
            timeout=30.0,
        )
        return self

    def close(self) -> None:
        self.http.close()

    def _ok(self, r: httpx.Response) -> Any:
        if r.status_code >= 400:
            raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
        return r.json()

    def apply(self, obj: dict[str, Any]) -> Any:
        """Create, or replace the spec of an existing object."""
        plural = _PLURAL[obj["kind"]]
        ns = obj.get("metadata", {}).get("namespace")
        r = self.http.post(path(plural, namespace=ns), json=obj)
        if r.status_code != 409:
            return self._ok(r)
        # kubectl apply patches; a replace carries the resourceVersion it
        # read, so a status written meanwhile (the nodes' controllers) is a
        # 409 Conflict: read again and retry, as kubectl does on conflicts
        for _ in range(20):
            current = self.get(plural, obj["metadata"]["name"], ns)
            merged = {**current, **{k: v for k, v in obj.items() if k != "metadata"}}
            merged["metadata"] = {**current["metadata"], **obj["metadata"]}
            merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            r = self.http.put(path(plural, obj["metadata"]["name"], ns), json=merged)
            if r.status_code != 409:
                break
        return self._ok(r)

    def apply_yaml(self, text: str) -> list[Any]:
        return [self.apply(doc) for doc in yaml.safe_load_all(text) if doc]

    def get(self, plural: str, name: str, namespace: str | None = None) -> Any:
        return self._ok(self.http.get(path(plural, name, namespace)))

    def exists(self, plural: str, name: str, namespace: str | None = None) -> bool:
        return self.http.get(path(plural, name, namespace)).status_code == 200

    def list(self, plural: str, namespace: str | None = None, **params: str) -> list[Any]:
        return list(
            self._ok(self.http.get(path(plural, namespace=namespace), params=params))["items"]
        )

    def delete(self, plural: str, name: str, namespace: str | None = None) -> None:
        r = self.http.delete(path(plural, name, namespace))
        if r.status_code != 404:
            self._ok(r)

    def wait_gone(self, plural: str, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.exists(plural, name):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{plural}/{name} still there: {self.get(plural, name)}")
            time.sleep(0.2)

    # -- what kubelet and the node lifecycle would do ---------------------

    def add_node(self, name: str, address: str) -> Any:
        return self.apply(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name},
                "status": {"addresses": [{"type": "InternalIP", "address": address}]},
            }
        )

    def add_namespace(self, name: str) -> Any:
        return self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def add_pod(self, namespace: str, name: str, node: str) -> str:
        """A Pod bound to ``node``; its uid (what kubelet passes as K8S_POD_UID)."""
        obj = self.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "pause"}]},
            }
        )
        return str(obj["metadata"]["uid"])

    def ipblocks(self) -> list[Any]:
        return sorted(self.list("ipblocks"), key=lambda b: b["metadata"]["name"])
