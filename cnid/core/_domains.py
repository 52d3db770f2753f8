"""A domain as cnid runs it: a tenant's VRF and its VNI attachments, as the
seeds define them.

``Domain`` mirrors the ``spec`` of the ``cni.pyroute2.org/v1alpha1``
VRFDomain kind field for field, so the Kubernetes controller can decode a CR
straight into it; the CR itself, with its metadata and status, is
``cnid.kube.VRFDomain``. Standalone, server.ini's default domain is one too.

Route targets (issue 14): ``import_route_targets`` and
``export_route_targets`` name them (``ASN:NN``, ``IPv4:NN``, and ``*:NN``
for import); where a list is empty its targets are derived from the node's
AS and the domain's VNIs by ``route_target_derivation`` (``frr``: FRR's auto
RT ``AS:VNI``; ``rfc8365``: RFC 8365's, imported whatever the AS). The
derivations are ``_rt_policy``'s; ``targets(asn)`` gives the result.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Literal

import msgspec

from ._errors import ConfigError
from ._route_targets import parse_route_target
from ._rt_policy import AutoTargets, DomainTargets, domain_targets, parse_import_target

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

AttachmentType = Literal["l2vni", "l3vni"]


class VniAttachment(msgspec.Struct, frozen=True, rename="camel"):
    type: AttachmentType
    vni: int
    port: int = 4789


class Domain(msgspec.Struct, frozen=True, rename="camel"):
    name: str
    vrf: int
    table: int
    prefix: str
    prefixlen: int
    ipblocklen: int
    attachments: tuple[VniAttachment, ...] = ()
    import_route_targets: tuple[str, ...] = ()
    export_route_targets: tuple[str, ...] = ()
    route_target_derivation: AutoTargets = "frr"

    @property
    def network(self) -> IPNetwork:
        return ipaddress.ip_network(f"{self.prefix}/{self.prefixlen}")

    @property
    def pod_attachment(self) -> VniAttachment:
        """The attachment pods are wired to: l2vni when there is one (the
        seeds: "l2vni is preferred for attaching pods"), else l3vni."""
        for kind in ("l2vni", "l3vni"):
            for att in self.attachments:
                if att.type == kind:
                    return att
        raise ConfigError(f"domain {self.name} has no attachment to wire pods to")

    @property
    def anycast_gateway(self) -> IPAddress:
        """The gateway of an l2vni domain: the first host address of its
        prefix, held by the domain's bridge on every node."""
        return self.network.network_address + 1

    def validated(self) -> Domain:
        """Return self, or raise ConfigError naming the first bad field."""
        try:
            net = ipaddress.ip_network(f"{self.prefix}/{self.prefixlen}")
        except ValueError as exc:
            raise ConfigError(f"domain {self.name}: bad prefix: {exc}") from None
        if not 1 <= self.vrf <= 0xFFFFFFFF or not 1 <= self.table <= 0xFFFFFFFF:
            raise ConfigError(f"domain {self.name}: vrf and table must be 1..2^32-1")
        if self.table in (253, 254, 255):
            raise ConfigError(f"domain {self.name}: table {self.table} is reserved")
        if not net.prefixlen < self.ipblocklen <= net.max_prefixlen - 2:
            raise ConfigError(
                f"domain {self.name}: ipblocklen {self.ipblocklen} must be longer than "
                f"prefixlen {net.prefixlen} and at most {net.max_prefixlen - 2}"
            )
        if not self.attachments:
            raise ConfigError(f"domain {self.name}: no attachments")
        for att in self.attachments:
            if not 1 <= att.vni < 2**24:
                raise ConfigError(f"domain {self.name}: vni {att.vni} out of range")
            if not 1 <= att.port <= 65535:
                raise ConfigError(f"domain {self.name}: port {att.port} out of range")
        if self.route_target_derivation not in ("frr", "rfc8365"):
            raise ConfigError(
                f"domain {self.name}: routeTargetDerivation must be frr or rfc8365, "
                f"not {self.route_target_derivation!r}"
            )
        checks: list[tuple[str, str, Callable[[str], object]]]
        checks = [("importRouteTargets", t, parse_import_target) for t in self.import_route_targets]
        checks += [("exportRouteTargets", t, parse_route_target) for t in self.export_route_targets]
        for field, text, parse in checks:
            try:
                parse(text)
            except ConfigError as exc:
                raise ConfigError(f"domain {self.name}: {field}: {exc.msg}") from None
        return self

    def targets(self, asn: int) -> DomainTargets:
        """The route targets the domain imports and exports on a node of AS
        ``asn``: the explicit ones, else derived from its VNIs."""
        return domain_targets(
            self.name,
            asn,
            (a.vni for a in self.attachments),
            imports=self.import_route_targets,
            exports=self.export_route_targets,
            auto=self.route_target_derivation,
        )


class DomainLinks(msgspec.Struct, frozen=True):
    """What the kernel holds of a domain on this node: its VRF and table, and
    the bridge, VXLAN device and router MAC of its pod attachment."""

    vrf: str
    table: int
    bridge: str | None
    vxlan: str | None
    router_mac: str | None
