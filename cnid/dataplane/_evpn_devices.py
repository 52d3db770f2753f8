"""Our bridges and VXLAN devices as the EVPN operations find them: looked
up once per operation, two GETs per VNI in one ``send()``; a missing or
foreign device refuses the entries on it and is never touched."""

from __future__ import annotations

import socket
from collections.abc import Iterable

from . import _netlink as nl
from ._evpn_values import _Invalid, _vni
from ._names import bridge_alias, bridge_name, vxlan_alias, vxlan_name


def _problem(link: nl.Link | None, name: str, alias: str, kind: str) -> str | None:
    if link is None:
        return f"{name} does not exist"
    if link.alias != alias:
        return f"{name} is not ours (alias {link.alias!r}, expected {alias!r})"
    if link.kind != kind:
        return f"{name} is a {link.kind}, expected a {kind}"
    return None


def _vxlan_info(vx: nl.Link) -> tuple[int | None, str | None]:
    """The family of a VXLAN device's local address, and its default remote
    (``remote``/``group``: the kernel's own all-zeros FDB entry)."""
    info = nl.parse_attrs(vx.attrs.get(nl.IFLA_LINKINFO, b""))
    data = nl.parse_attrs(info.get(nl.IFLA_INFO_DATA, b""))
    family = None
    if nl.IFLA_VXLAN_LOCAL in data:
        family = socket.AF_INET
    elif nl.IFLA_VXLAN_LOCAL6 in data:
        family = socket.AF_INET6
    group = None
    for kind, fam in (
        (nl.IFLA_VXLAN_GROUP, socket.AF_INET),
        (nl.IFLA_VXLAN_GROUP6, socket.AF_INET6),
    ):
        raw = data.get(kind)
        if raw and raw != b"\0" * len(raw):
            group = socket.inet_ntop(fam, raw)
    return family, group


def _bridge_vni(link: nl.Link) -> int | None:
    """The VNI of one of our bridges, from its name and alias."""
    tail = link.name.removeprefix("br-")
    if not tail.isdigit() or link.kind != "bridge":
        return None
    vni = int(tail)
    return vni if link.name == bridge_name(vni) and link.alias == bridge_alias(vni) else None


class _Devices:
    """Our bridges and VXLAN devices of some VNIs: two GETs per VNI, all in
    one send(), once per operation (never a lookup per entry)."""

    def __init__(self, sock: nl.Netlink, vnis: Iterable[int]) -> None:
        self._sock = sock
        self.vnis = sorted(set(vnis))
        reqs = []
        for vni in self.vnis:
            for name in (bridge_name(vni), vxlan_name(vni)):
                body = nl.ifinfo() + nl.nla_str(nl.IFLA_IFNAME, name)
                reqs.append(nl.Request(nl.RTM_GETLINK, 0, body, name))
        bodies = sock.get_many(reqs)
        self.bridges: dict[int, nl.Link] = {}
        self.vxlans: dict[int, nl.Link] = {}
        self.bridge_problem: dict[int, str] = {}
        self.vxlan_problem: dict[int, str] = {}
        for i, vni in enumerate(self.vnis):
            br_raw, vx_raw = bodies[2 * i], bodies[2 * i + 1]
            br = None if br_raw is None else nl.decode_link(br_raw)
            vx = None if vx_raw is None else nl.decode_link(vx_raw)
            bp = _problem(br, bridge_name(vni), bridge_alias(vni), "bridge")
            if bp is None and br is not None:
                self.bridges[vni] = br
            else:
                self.bridge_problem[vni] = bp or "?"
            xp = _problem(vx, vxlan_name(vni), vxlan_alias(vni), "vxlan")
            if xp is None and vx is not None:
                self.vxlans[vni] = vx
            else:
                self.vxlan_problem[vni] = xp or "?"
        self._vni_of_index = {br.index: vni for vni, br in self.bridges.items()}
        info = {vni: _vxlan_info(vx) for vni, vx in self.vxlans.items()}
        self.vxlan_family = {vni: family for vni, (family, _) in info.items()}
        self.vxlan_group = {vni: group for vni, (_, group) in info.items()}

    def bridge(self, vni: int) -> nl.Link:
        br = self.bridges.get(vni)
        if br is None:
            _vni(vni)
            raise _Invalid(self.bridge_problem.get(vni, f"{bridge_name(vni)} not looked up"))
        return br

    def vxlan(self, vni: int, as_port: bool, vtep_family: int | None = None) -> nl.Link:
        """``as_port``: it must also be a port of our br-<vni> (unicast MACs
        get the bridge's entry too). The VTEP must be of the family of the
        device's local address (the driver refuses the other with
        EAFNOSUPPORT, after the bridge's entry would have been made)."""
        vx = self.vxlans.get(vni)
        if vx is None:
            _vni(vni)
            raise _Invalid(self.vxlan_problem.get(vni, f"{vxlan_name(vni)} not looked up"))
        local = self.vxlan_family.get(vni)
        if vtep_family is not None and local is not None and local != vtep_family:
            want = "IPv4" if local == socket.AF_INET else "IPv6"
            raise _Invalid(
                f"{vxlan_name(vni)} has an {want} local address: the VTEP must be {want}"
            )
        if as_port:
            br = self.bridge(vni)
            if vx.master != br.index:
                raise _Invalid(f"{vxlan_name(vni)} is not a port of {bridge_name(vni)}")
        return vx

    def vnis_of_indexes(self, indexes: Iterable[int]) -> dict[int, int]:
        """ifindex -> VNI for the route devices among ``indexes`` that are
        our bridges (those of other VNIs looked up by index, in one send)."""
        unknown = sorted(set(indexes) - self._vni_of_index.keys())
        if unknown:
            reqs = [nl.Request(nl.RTM_GETLINK, 0, nl.ifinfo(i), f"index {i}") for i in unknown]
            for raw in self._sock.get_many(reqs):
                if raw is None:
                    continue
                link = nl.decode_link(raw)
                vni = _bridge_vni(link)
                if vni is not None:
                    self._vni_of_index[link.index] = vni
        return self._vni_of_index
