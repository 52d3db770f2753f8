"""EVPN: local state to routes, received routes to kernel intents, and the
controller that runs both (the work zebra does in FRR).

* ``_local``: what this node announces (pure);
* ``_remote``: what a received route asks of the kernel (pure);
* ``_rib``: the received routes and the kernel entries they want (pure);
* ``_mobility``: MAC mobility: sequences, selection, duplicates (pure);
* ``_graceful``: which received paths outlive their session, and how long;
* ``_max_prefix``: a per-peer maximum of received prefixes;
* ``_bfd``: BFD sessions for the neighbours that ask for them, and what a
  BFD failure does to the BGP session and its routes (RFC 5882);
* ``_installed``: what the kernel holds of ours, and what it refused;
* ``_controller``: the service tying them to the speaker and the kernel;
* ``_underlay``: the routed underlay (VTEPs in ipv4 unicast, ECMP routes);
* ``_views``: what ``cnictl bgp summary`` and ``cnictl evpn routes`` show.
"""

import ipaddress

from ._bfd import BFD_HOLD, CEASE_BFD_DOWN, BfdGuard, BfdReaction, bfd_reaction, bfd_sessions
from ._controller import EvpnController, EvpnKernel, Identity
from ._installed import Installed, kernel_batch
from ._local import (
    LocalBlock,
    LocalDomain,
    LocalPod,
    LocalState,
    export_targets,
    local_macs,
    local_paths,
    rd_indexes,
)
from ._mobility import Copy, Duplicate, Mobility
from ._remote import (
    DomainTarget,
    KernelEntry,
    NodeView,
    Skip,
    entry_key,
    importing_domains,
    kernel_entries,
    keyed_entries,
    node_view,
)
from ._rib import MAX_PREFIX, STALE, RouteTable
from ._underlay import UnderlayController, UnderlayPolicy, UnderlayRib


def router_id_for(configured: str, vtep: str) -> str:
    """The BGP router ID: the VRFNodeConfig's routerId, else the VTEP's
    IPv4 address, else (an IPv6 VTEP) the VTEP's last 32 bits."""
    if configured:
        return configured
    ip = ipaddress.ip_address(vtep)
    if ip.version == 4:
        return str(ip)
    return str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))


__all__ = [
    "BFD_HOLD",
    "CEASE_BFD_DOWN",
    "MAX_PREFIX",
    "STALE",
    "BfdGuard",
    "BfdReaction",
    "Copy",
    "DomainTarget",
    "Duplicate",
    "EvpnController",
    "EvpnKernel",
    "Identity",
    "Installed",
    "KernelEntry",
    "LocalBlock",
    "LocalDomain",
    "LocalPod",
    "LocalState",
    "Mobility",
    "NodeView",
    "RouteTable",
    "Skip",
    "UnderlayController",
    "UnderlayPolicy",
    "UnderlayRib",
    "bfd_reaction",
    "bfd_sessions",
    "entry_key",
    "export_targets",
    "importing_domains",
    "kernel_batch",
    "kernel_entries",
    "keyed_entries",
    "local_macs",
    "local_paths",
    "node_view",
    "rd_indexes",
    "router_id_for",
]
