"""server.ini: the seeds' ConfigMap, read into typed settings.

Sections and keys are those of pyroute2-cni ([api], [network], [default],
[logging], [readiness]); cnid adds a few keys of its own, each with a default,
so a server.ini written for pyroute2-cni works unchanged.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from ..bgp._config import BgpOptions, NeighborOptions, check_neighbor
from ..core._domains import Domain, VniAttachment
from ..core._errors import ConfigError
from ..dataplane import vrf_name
from ..dataplane._hostplan import HostSettings, NodePorts


class ApiConfig(msgspec.Struct, frozen=True):
    socket_path_api: str = "/run/cnid/cni.sock"
    socket_path_ctl: str = "/run/cnid/ctl.sock"
    #: pyroute2-cni's separate descriptor socket; accepted, unused (the
    #: descriptor travels with the request).
    socket_path_fd: str = ""


class NetworkConfig(msgspec.Struct, frozen=True):
    node_name: str = ""
    #: The node's address (VTEP). Empty: the primary address of the
    #: default-route interface.
    ipaddr: str = ""
    #: The underlay interface. Empty: the default-route interface.
    host_if: str = ""
    #: Pod MTU. 0: the underlay MTU minus ``mtu_overhead`` (VXLAN's 50).
    mtu: int = 0
    mtu_overhead: int = 50
    state_dir: str = "/var/lib/cnid"
    #: Host integration (README "Host integration"): the cluster's Service
    #: CIDRs, comma-separated (kube-apiserver's --service-cluster-ip-range),
    #: leaked out of every VRF to the root namespace, where kube-proxy is.
    service_cidr: str = "10.96.0.0/12"
    #: Egress: pods' traffic to outside their domain's prefix leaves with
    #: source NAT to the node's address (yes/no).
    masquerade: str = "yes"
    #: The bits of the packet and conntrack marks cnid uses (a domain's VRF
    #: id, shifted into them). Contiguous; never kube-proxy's 0x4000/0x8000.
    fwmark_mask: str = "0xffff0000"
    #: Tenant-to-node policy (README "Host integration"): pods open no
    #: connection to the node's own addresses except DNATed ones (Services
    #: whose endpoint is this node), ICMP and ``node_allow`` (yes/no).
    node_protect: str = "yes"
    #: What pods may reach on the node all the same, comma-separated
    #: ``tcp/53``, ``udp/53``, ``tcp/9100-9102`` (a node-local DNS cache).
    node_allow: str = ""

    def host_settings(self) -> HostSettings:
        """The host integration settings; ConfigError naming a bad value."""
        cidrs = []
        for item in self.service_cidr.split(","):
            if not item.strip():
                continue
            try:
                cidrs.append(str(ipaddress.ip_network(item.strip())))
            except ValueError as exc:
                raise ConfigError(f"[network] service_cidr: {exc}") from None
        flag = self.masquerade.strip().lower()
        if flag not in ("yes", "no", "true", "false", "1", "0", "on", "off"):
            raise ConfigError(f"[network] masquerade must be yes or no, not {self.masquerade!r}")
        try:
            mask = int(self.fwmark_mask, 0)
        except ValueError:
            raise ConfigError(
                f"[network] fwmark_mask {self.fwmark_mask!r} is not a number"
            ) from None
        low = mask & -mask
        if not 0 < mask <= 0xFFFFFFFF or (mask + low) & mask or bin(mask).count("1") < 8:
            raise ConfigError(
                f"[network] fwmark_mask {self.fwmark_mask} must be one run of at least 8 bits"
            )
        if mask & 0xC000:
            raise ConfigError(
                f"[network] fwmark_mask {self.fwmark_mask} overlaps kube-proxy's 0x4000/0x8000"
            )
        return HostSettings(
            service_cidrs=tuple(cidrs),
            masquerade=flag in ("yes", "true", "1", "on"),
            mark_mask=mask,
            node_protect=self.node_protect.strip().lower() in _YES,
            node_allow=tuple(sorted(set(node_ports(self.node_allow) or ()))),
        )


class DefaultDomainConfig(msgspec.Struct, frozen=True):
    vrf: int = 42
    table: int = 0  # 0: same as vrf, as pyroute2-cni does
    vni: int = 0  # 0: same as vrf
    port: int = 4789
    prefix: str = "10.244.0.0"
    prefixlen: int = 16
    ipblocklen: int = 26
    system_vrf_type: str = "l3vni"
    service_vrf_max: int = 512
    gc_interval_seconds: int = 300
    fw_interval_seconds: int = 30
    cni_config_dir: str = "/etc/cni/net.d"
    #: Route targets (issue 14), comma- or space-separated; empty: derived
    #: by ``route_target_derivation`` (frr: AS:VNI; rfc8365).
    import_route_targets: str = ""
    export_route_targets: str = ""
    route_target_derivation: str = "frr"

    def domain(self) -> Domain:
        if self.system_vrf_type not in ("l2vni", "l3vni"):
            raise ConfigError(
                f"[default] system_vrf_type must be l2vni or l3vni, not {self.system_vrf_type!r}"
            )
        att = VniAttachment(
            type=self.system_vrf_type,  # type: ignore[arg-type]
            vni=self.vni or self.vrf,
            port=self.port,
        )
        return Domain(
            name=vrf_name(self.vrf),  # the default domain is named after its VRF device
            vrf=self.vrf,
            table=self.table or self.vrf,
            prefix=self.prefix,
            prefixlen=self.prefixlen,
            ipblocklen=self.ipblocklen,
            attachments=(att,),
            import_route_targets=_words(self.import_route_targets),
            export_route_targets=_words(self.export_route_targets),
            route_target_derivation=self.route_target_derivation,  # type: ignore[arg-type]
        ).validated()


def _words(value: str) -> tuple[str, ...]:
    """``a, b c`` -> ("a", "b", "c")."""
    return tuple(value.replace(",", " ").split())


class LoggingConfig(msgspec.Struct, frozen=True):
    level: str = "info"


class ReadinessConfig(msgspec.Struct, frozen=True):
    host: str = "0.0.0.0"
    port: int = 24800


class KubernetesConfig(msgspec.Struct, frozen=True):
    """cnid's own section: how the daemon reaches the Kubernetes API."""

    #: auto: use the API when running in a pod (the service account) or
    #: when ``kubeconfig`` is set; yes: require it; no: standalone (the
    #: [default] domain and a node-local address store).
    enabled: str = "auto"
    #: A kubeconfig file; empty: the pod's service account.
    kubeconfig: str = ""
    #: How long an address of a pod that is gone from the node, or a block
    #: of a domain or node that is gone, stays before it is released.
    gc_grace_seconds: float = 120.0
    #: How often the garbage collector runs (0: [default] gc_interval_seconds).
    gc_interval_seconds: float = 0.0

    def wanted(self) -> bool:
        if self.enabled not in ("auto", "yes", "no"):
            raise ConfigError(f"[kubernetes] enabled must be auto, yes or no, not {self.enabled!r}")
        if self.enabled == "auto":
            return bool(self.kubeconfig or os.environ.get("KUBERNETES_SERVICE_HOST"))
        return self.enabled == "yes"


class EvpnOptions(msgspec.Struct, frozen=True):
    """``[evpn]``: MAC mobility's duplicate detection, FRR's
    ``dup-addr-detection max-moves N time M`` (0 moves: off)."""

    dup_max_moves: int = 5
    dup_time: float = 180.0


class UnderlayConfig(msgspec.Struct, frozen=True):
    """``[underlay]``: the routed underlay (RFC 7938, docs/evpn.md). With
    ``vtep_address`` set it is on: the address goes on the ``cnid-vtep``
    dummy device as a /32 and is the node's VTEP and default router ID; it
    is announced in ipv4 unicast to every eBGP neighbour, and the routes
    they send are installed in the main table with ECMP."""

    vtep_address: str = ""
    #: Install a default route (0.0.0.0/0) received from the leaves (yes/no).
    default_route: str = "no"
    #: The most prefixes one neighbour may have installed (FRR's
    #: maximum-prefix; the ones beyond are skipped and counted).
    max_routes: int = 4096

    @property
    def enabled(self) -> bool:
        return bool(self.vtep_address)

    @property
    def accept_default(self) -> bool:
        return self.default_route.lower() in _YES


class Config(msgspec.Struct, frozen=True):
    api: ApiConfig = ApiConfig()
    network: NetworkConfig = NetworkConfig()
    default: DefaultDomainConfig = DefaultDomainConfig()
    logging: LoggingConfig = LoggingConfig()
    readiness: ReadinessConfig = ReadinessConfig()
    kubernetes: KubernetesConfig = KubernetesConfig()
    bgp: BgpOptions = BgpOptions()
    evpn: EvpnOptions = EvpnOptions()
    underlay: UnderlayConfig = UnderlayConfig()

    @property
    def node_name(self) -> str:
        return self.network.node_name or os.environ.get("NODE_NAME") or socket.gethostname()


_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "api": ApiConfig,
    "network": NetworkConfig,
    "default": DefaultDomainConfig,
    "logging": LoggingConfig,
    "readiness": ReadinessConfig,
    "kubernetes": KubernetesConfig,
    "bgp": BgpOptions,
    "evpn": EvpnOptions,
    "underlay": UnderlayConfig,
}

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_IFNAME = re.compile(r"^[^/:\s]{1,15}$")
#: sun_path holds 108 bytes with the terminating NUL.
_MAX_SOCKET_PATH = 107


_YES = ("yes", "true", "1", "on")
_FLAGS = (*_YES, "no", "false", "0", "off")
_NODE_PORTS = re.compile(r"^(tcp|udp|sctp)/(\d{1,5})(?:-(\d{1,5}))?$")


def node_ports(value: str) -> list[NodePorts] | None:
    """``[network] node_allow`` as port ranges; None when it is malformed."""
    found = []
    for item in value.split(","):
        item = item.strip().lower()
        if not item:
            continue
        m = _NODE_PORTS.match(item)
        if m is None:
            return None
        first = int(m.group(2))
        last = int(m.group(3) or first)
        if not 1 <= first <= last <= 65535:
            return None
        found.append(NodePorts(m.group(1), first, last))
    return found


def _ip_or_empty(value: str) -> bool:
    if not value:
        return True
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _socket_path(value: str, optional: bool = False) -> bool:
    if optional and not value:
        return True
    return value.startswith("/") and len(os.fsencode(value)) <= _MAX_SOCKET_PATH


def _between(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: low <= v <= high


#: What each key allows, beyond its type: (check, what is allowed).
def _vtep_address(value: str) -> bool:
    if not value:
        return True
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return not (ip.is_unspecified or ip.is_loopback or ip.is_multicast or ip.is_link_local)


_RULES: dict[tuple[str, str], tuple[Callable[[Any], bool], str]] = {
    ("underlay", "vtep_address"): (
        _vtep_address,
        "an IPv4 unicast address (not 0.0.0.0, loopback, link-local or multicast)",
    ),
    ("underlay", "default_route"): (lambda v: v.lower() in _FLAGS, "yes or no"),
    ("underlay", "max_routes"): (lambda v: 1 <= v <= 1_000_000, "1..1000000"),
    ("api", "socket_path_api"): (
        _socket_path,
        f"an absolute path of at most {_MAX_SOCKET_PATH} bytes",
    ),
    ("api", "socket_path_ctl"): (
        _socket_path,
        f"an absolute path of at most {_MAX_SOCKET_PATH} bytes",
    ),
    ("api", "socket_path_fd"): (
        lambda v: _socket_path(v, optional=True),
        f"empty or an absolute path of at most {_MAX_SOCKET_PATH} bytes",
    ),
    ("network", "ipaddr"): (_ip_or_empty, "empty or an IP address"),
    ("network", "host_if"): (
        lambda v: not v or bool(_IFNAME.match(v)),
        "empty or an interface name",
    ),
    ("network", "mtu"): (
        lambda v: v == 0 or 68 <= v <= 65535,
        "0 (from the underlay) or 68..65535",
    ),
    ("network", "mtu_overhead"): (_between(0, 1000), "0..1000"),
    ("network", "state_dir"): (lambda v: v.startswith("/"), "an absolute path"),
    ("network", "node_protect"): (lambda v: v.strip().lower() in _FLAGS, "yes or no"),
    ("network", "node_allow"): (
        lambda v: node_ports(v) is not None,
        "comma-separated PROTO/PORT or PROTO/FIRST-LAST, PROTO tcp, udp or sctp, "
        "ports 1..65535 (e.g. udp/53,tcp/53)",
    ),
    ("default", "vrf"): (_between(1, 2**32 - 1), "1..4294967295"),
    ("default", "table"): (_between(0, 2**32 - 1), "0 (same as vrf) or 1..4294967295"),
    ("default", "vni"): (_between(0, 2**24 - 1), "0 (same as vrf) or 1..16777215"),
    ("default", "port"): (_between(1, 65535), "1..65535"),
    ("default", "prefixlen"): (_between(0, 128), "0..128"),
    ("default", "ipblocklen"): (_between(0, 128), "0..128"),
    ("default", "service_vrf_max"): (_between(1, 2**32 - 1), "a positive number"),
    ("default", "gc_interval_seconds"): (_between(1, 7 * 86400), "1..604800 seconds"),
    ("default", "fw_interval_seconds"): (_between(1, 86400), "1..86400 seconds"),
    ("default", "cni_config_dir"): (lambda v: v.startswith("/"), "an absolute path"),
    ("default", "route_target_derivation"): (lambda v: v in ("frr", "rfc8365"), "frr or rfc8365"),
    ("logging", "level"): (lambda v: v.lower() in LOG_LEVELS, ", ".join(LOG_LEVELS)),
    ("evpn", "dup_max_moves"): (lambda v: v == 0 or 2 <= v <= 1000, "0 (off) or 2..1000"),
    ("evpn", "dup_time"): (_between(2, 1800), "2..1800 seconds"),
    ("readiness", "host"): (
        lambda v: _ip_or_empty(v) or v == "localhost",
        "empty (every address), localhost or an IP address",
    ),
    ("readiness", "port"): (_between(0, 65535), "0 (any free port) or 1..65535"),
    ("kubernetes", "gc_grace_seconds"): (_between(0, 30 * 86400), "0..2592000 seconds"),
    ("kubernetes", "gc_interval_seconds"): (
        _between(0, 7 * 86400),
        "0 ([default] gc_interval_seconds) or up to 604800 seconds",
    ),
}


def _type_name(tp: Any) -> str:
    return {int: "a whole number", float: "a number", bool: "yes or no", str: "text"}.get(
        tp, str(tp)
    )


def _section(name: str, cls: type[msgspec.Struct], raw: dict[str, str], source: str) -> Any:
    """One section, key by key: a value of the wrong type is named alone."""
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        if field.name not in raw:
            continue
        text = raw[field.name]
        try:
            values[field.name] = msgspec.convert(text, field.type, strict=False)
        except msgspec.ValidationError:
            raise ConfigError(
                f"{source}: [{name}] {field.name} = {text!r}: must be {_type_name(field.type)}"
            ) from None
        rule = _RULES.get((name, field.name))
        if rule is not None and not rule[0](values[field.name]):
            raise ConfigError(f"{source}: [{name}] {field.name} = {text!r}: allowed {rule[1]}")
    return cls(**values)


def parse_config(text: str, source: str = "server.ini") -> Config:
    """Parse server.ini text. Unknown sections and keys are ignored (other
    tools share the ConfigMap); a bad value is a ConfigError of one line
    naming the file, section, key, value and what is allowed."""
    parser = configparser.ConfigParser(
        default_section="__none__", interpolation=None, inline_comment_prefixes=("#", ";")
    )
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise ConfigError(f"{source}: {' '.join(str(exc).split())}") from None
    sections: dict[str, object] = {}
    for name, cls in _SECTIONS.items():
        if not parser.has_section(name):
            continue
        fields = set(cls.__struct_fields__)
        raw = {k: v.strip().strip('"') for k, v in parser.items(name) if k in fields}
        sections[name] = _section(name, cls, raw, source)
    config = msgspec.convert(sections, Config, from_attributes=True)
    neighbors = _neighbor_sections(parser, source)
    if neighbors:
        config = msgspec.structs.replace(
            config, bgp=msgspec.structs.replace(config.bgp, neighbor_sections=neighbors)
        )
    try:
        config.default.domain()  # validate the default domain now, not at the first ADD
        config.kubernetes.wanted()
        config.network.host_settings()
        config.bgp.validated()
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc.msg}") from None
    return config


def _neighbor_sections(
    parser: configparser.ConfigParser, source: str
) -> tuple[tuple[str, NeighborOptions], ...]:
    """``[neighbor ADDRESS]`` sections: a standalone node's explicit BGP
    neighbours. Unlike other sections (shared with other tools), an unknown
    key here is an error: a mistyped ``allow_as_in`` must not go unnoticed."""
    out: dict[str, NeighborOptions] = {}
    fields = set(NeighborOptions.__struct_fields__)
    for title in parser.sections():
        kind, _, address = title.partition(" ")
        if kind != "neighbor":
            continue
        address = address.strip()
        try:
            canonical = str(ipaddress.ip_address(address))
        except ValueError:
            raise ConfigError(f"{source}: [{title}]: {address!r} is not an IP address") from None
        if canonical in out:
            raise ConfigError(f"{source}: [{title}]: neighbor {canonical} given twice")
        items = dict(parser.items(title))
        unknown = sorted(set(items) - fields)
        if unknown:
            allowed = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: [{title}] {unknown[0]}: unknown key (allowed: {allowed})")
        if "asn" not in items:
            raise ConfigError(f"{source}: [{title}] asn: required (the neighbour's AS)")
        raw = {k: v.strip().strip('"') for k, v in items.items()}
        if raw.get("bfd", "").lower() in _FLAGS:
            raw["bfd"] = "true" if raw["bfd"].lower() in _YES else "false"
        options: NeighborOptions = _section(title, NeighborOptions, raw, source)
        problem = check_neighbor(
            f"[{title}]",
            canonical,
            options.asn,
            options.multihop,
            options.allow_as_in,
            allow_key="allow_as_in",
        )
        if problem:
            raise ConfigError(f"{source}: {problem}")
        out[canonical] = options
    return tuple(sorted(out.items()))


def load_config(path: str | os.PathLike[str] | None) -> Config:
    if path is None:
        return parse_config("")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse_config(text, source=str(path))
