"""CNI results and errors, rendered for the version the runtime asked for.

The canonical form is the 1.1.0 result; older versions are derived from it:
1.0.0 drops the interface MTU, 0.4.0 and 0.3.x add ``version`` to each IP.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import msgspec

from ..core._errors import CnidError
from ..core._pods import PodResult
from ._invocation import version_tuple


def render_result(result: PodResult, version: str) -> dict[str, Any]:
    v = version_tuple(version)
    interfaces: list[dict[str, Any]] = []
    for itf in result.interfaces:
        entry: dict[str, Any] = {"name": itf.name, "mac": itf.mac}
        if itf.mtu and v >= (1, 1, 0):
            entry["mtu"] = itf.mtu
        if itf.sandbox:
            entry["sandbox"] = itf.sandbox
        interfaces.append(entry)
    ips: list[dict[str, Any]] = []
    for ip in result.ips:
        entry = {"address": ip.address, "gateway": ip.gateway, "interface": ip.interface}
        if v < (1, 0, 0):
            entry["version"] = str(ipaddress.ip_interface(ip.address).version)
        ips.append(entry)
    routes: list[dict[str, Any]] = []
    for route in result.routes:
        r: dict[str, Any] = {"dst": route.dst}
        if route.gw:
            r["gw"] = route.gw
        routes.append(r)
    return {
        "cniVersion": version,
        "interfaces": interfaces,
        "ips": ips,
        "routes": routes,
        "dns": {},
    }


def render_error(exc: CnidError, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"cniVersion": version, "code": int(exc.code), "msg": exc.msg}
    if exc.details:
        out["details"] = exc.details
    return out


def render_version(version: str, supported: tuple[str, ...]) -> dict[str, Any]:
    return {"cniVersion": version, "supportedVersions": list(supported)}


def encode(obj: dict[str, Any]) -> bytes:
    return msgspec.json.encode(obj) + b"\n"
