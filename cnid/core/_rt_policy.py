"""Which route targets a domain imports and exports, which route
distinguishers a node's VRFs and VNIs carry, and which domains a received
route belongs to (pure).

Derivations, each as FRR does it (bgpd/bgp_evpn.c, bgpd/bgpd.c):

* ``auto_route_target(asn, vni)``: FRR's auto RT for an L2VNI and for an
  L3VNI alike (``form_auto_rt``): a two-octet-AS target whose administrator
  is the AS's low 16 bits (``bgp->as & 0xFFFF``: a four-octet AS is folded,
  as FRR folds it) and whose number is the VNI.
* ``rfc8365_route_target(asn, vni)``: RFC 8365 section 5.1.2.1's
  auto-derivation: the local administrator is ``A | Type | D-ID | Service
  ID`` = 1 bit A (0: auto-derived), 3 bits type (1: VXLAN), 4 bits domain
  ID, 24 bits VNI; FRR's ``advertise_autort_rfc8365`` sets the same bits
  (``EVPN_AUTORT_VXLAN`` = 0x10000000). In an eBGP fabric each leaf has its
  own AS, so a domain importing by this rule ignores the administrator
  (``*:NN``, FRR's ``route-target import *:NN``, matched as FRR's
  ``mask_ecom_global_admin`` does).
* ``frr_rd(router_id, index)``: the RD FRR derives for a VRF and for a VNI,
  ``router-id:index`` (type 1), the index from one id space per node
  (``bm->rd_idspace``, index 0 reserved, lowest free index first, kept while
  the VRF or VNI exists); ``assign_rd_indexes`` keeps the same rule.

Import by route target (issue 14): a route is installed in every domain one
of whose import targets it carries, and only there, whatever VNI it names; a
route matching no domain is skipped with ``SKIP_NO_ROUTE_TARGET``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Literal, TypeVar

import msgspec

from ._errors import ConfigError
from ._route_targets import RouteDistinguisher, RouteTarget, parse_route_target

AutoTargets = Literal["frr", "rfc8365"]

#: The reason (a metric label, as cnid's other skip reasons) of a route that
#: no domain imports.
SKIP_NO_ROUTE_TARGET = "no-route-target"

#: RFC 8365 5.1.2.1: A = 0 (auto-derived), type 1 (VXLAN), in the local
#: administrator's top byte; FRR's EVPN_AUTORT_VXLAN.
RFC8365_VXLAN = 1 << 28

MAX_RD_INDEX = 2**16 - 1

K = TypeVar("K", bound=Hashable)


def _check_vni(vni: int) -> None:
    if not 0 < vni < 2**24:
        raise ConfigError(f"VNI {vni} out of range (1..16777215)")


def _check_asn(asn: int) -> None:
    if not 0 < asn < 2**32:
        raise ConfigError(f"AS {asn} out of range (1..4294967295)")


def auto_route_target(asn: int, vni: int) -> RouteTarget:
    """FRR's auto RT ``AS:VNI`` for an L2VNI or an L3VNI."""
    _check_asn(asn)
    _check_vni(vni)
    return RouteTarget(0, asn & 0xFFFF, vni)


def rfc8365_route_target(asn: int, vni: int, domain_id: int = 0) -> RouteTarget:
    """RFC 8365 section 5.1.2.1's auto-derived RT for a VXLAN VNI."""
    _check_asn(asn)
    _check_vni(vni)
    if not 0 <= domain_id < 16:
        raise ConfigError(f"RFC 8365 domain ID {domain_id} out of range (0..15)")
    return RouteTarget(0, asn & 0xFFFF, RFC8365_VXLAN | domain_id << 24 | vni)


def frr_rd(router_id: str, index: int) -> RouteDistinguisher:
    """``router-id:index``, the RD FRR derives for a VRF or a VNI."""
    try:
        rid = ipaddress.IPv4Address(router_id)
    except ValueError:
        raise ConfigError(f"router ID {router_id!r} is not an IPv4 address") from None
    if not 0 < index <= MAX_RD_INDEX:
        raise ConfigError(f"RD index {index} out of range (1..{MAX_RD_INDEX})")
    return RouteDistinguisher(1, int(rid), index)


def assign_rd_indexes(previous: Mapping[K, int], wanted: Sequence[K]) -> dict[K, int]:
    """An RD index per wanted owner (a VRF, a VNI), unique on the node: an
    owner keeps the index it had, a new one takes the lowest free index from
    1, in ``wanted``'s order (FRR's ``bf_assign_index`` over ``rd_idspace``).
    ConfigError when the 65535 indexes are used up."""
    out: dict[K, int] = {}
    used: set[int] = set()
    for owner in wanted:
        index = previous.get(owner)
        if index is not None and owner not in out and 0 < index <= MAX_RD_INDEX:
            if index not in used:
                out[owner] = index
                used.add(index)
    free = 1
    for owner in wanted:
        if owner in out:
            continue
        while free in used:
            free += 1
        if free > MAX_RD_INDEX:
            raise ConfigError(f"no route distinguisher index left for {owner!r}")
        out[owner] = free
        used.add(free)
    return out


class ImportTarget(msgspec.Struct, frozen=True):
    """A target a domain imports; ``any_admin``: the administrator is not
    compared (``*:NN``)."""

    target: RouteTarget
    any_admin: bool = False

    def matches(self, rt: RouteTarget) -> bool:
        if rt.kind != self.target.kind or rt.number != self.target.number:
            return False
        return self.any_admin or rt.admin == self.target.admin

    def __str__(self) -> str:
        return f"*:{self.target.number}" if self.any_admin else str(self.target)


def parse_import_target(text: str) -> ImportTarget:
    """A route target, or ``*:NN`` (any AS, a 4-octet number)."""
    if isinstance(text, str) and text.startswith("*:"):
        number = text[2:]
        if not (number.isascii() and number.isdigit()) or len(number) > 10:
            raise ConfigError(f"route target {text!r} is not *:NN")
        if int(number) >= 2**32:
            raise ConfigError(f"route target {text!r}: number {number} over 4294967295")
        return ImportTarget(RouteTarget(0, 0, int(number)), any_admin=True)
    return ImportTarget(parse_route_target(text))


class DomainTargets(msgspec.Struct, frozen=True):
    """A domain's targets on this node, explicit or derived."""

    name: str
    imports: tuple[ImportTarget, ...]
    exports: tuple[RouteTarget, ...]


def domain_targets(
    name: str,
    asn: int,
    vnis: Iterable[int],
    *,
    imports: Iterable[str] = (),
    exports: Iterable[str] = (),
    auto: AutoTargets = "frr",
) -> DomainTargets:
    """The targets of domain ``name``: the explicit ones where given (text,
    as a VRFDomain names them), else derived from ``asn`` and the domain's
    VNIs (its L2VNIs and its L3VNI) by ``auto``. ConfigError names the
    domain and the text at fault."""
    try:
        explicit_in = tuple(parse_import_target(t) for t in imports)
        explicit_out = tuple(parse_route_target(t) for t in exports)
        vni_list = sorted(set(vnis))
        if not (explicit_in and explicit_out) and not vni_list:
            raise ConfigError("no VNI to derive route targets from")
        if auto == "rfc8365":
            derived_out = tuple(rfc8365_route_target(asn, v) for v in vni_list)
            derived_in = tuple(ImportTarget(RouteTarget(0, 0, t.number), True) for t in derived_out)
        else:
            derived_out = tuple(auto_route_target(asn, v) for v in vni_list)
            derived_in = tuple(ImportTarget(t) for t in derived_out)
    except ConfigError as e:
        raise ConfigError(f"domain {name}: {e}") from None
    return DomainTargets(
        name,
        imports=_unique(explicit_in or derived_in),
        exports=_unique(explicit_out or derived_out),
    )


def _unique(items: tuple[K, ...]) -> tuple[K, ...]:
    return tuple(dict.fromkeys(items))


class ImportDecision(msgspec.Struct, frozen=True):
    """The domains a received route is installed in (sorted), or none and
    why."""

    domains: tuple[str, ...]
    skip_reason: str = ""


def import_domains(
    route_targets: Iterable[RouteTarget], domains: Iterable[DomainTargets]
) -> ImportDecision:
    """The domains whose import targets the route carries; the VNI the
    route names plays no part."""
    carried = tuple(route_targets)
    hits = sorted(
        {d.name for d in domains if any(i.matches(rt) for i in d.imports for rt in carried)}
    )
    if not hits:
        return ImportDecision((), SKIP_NO_ROUTE_TARGET)
    return ImportDecision(tuple(hits))
