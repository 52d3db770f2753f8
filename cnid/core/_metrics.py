"""Prometheus metrics, in a registry of the daemon's own (several daemons
can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The daemon's metrics, registered in this order (the order of
    ``render``'s output): the node's (CNI requests, pods, readiness,
    sockets), BGP's, EVPN's, the routed underlay's."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._node(self.registry)
        self._bgp(self.registry)
        self._evpn(self.registry)
        self._underlay(self.registry)

    def _node(self, r: CollectorRegistry) -> None:
        self.requests = Counter(
            "cnid_cni_requests",
            "CNI requests served, by command and result (ok or the CNI error code)",
            ["command", "result"],
            registry=r,
        )
        self.latency = Histogram(
            "cnid_cni_request_duration_seconds",
            "Time from a CNI request's arrival to its answer, by command",
            ["command"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.pods_attached = Gauge(
            "cnid_pods_attached",
            "Pod attachments wired on this node, by VRF",
            ["vrf"],
            registry=r,
        )
        self.ready = Gauge("cnid_ready", "1 when the node can take pods, 0 otherwise", registry=r)
        self.protocol_errors = Counter(
            "cnid_protocol_errors",
            "Malformed, truncated or oversize frames received on a socket",
            ["socket"],
            registry=r,
        )

    def _bgp(self, r: CollectorRegistry) -> None:
        self.bgp_session = Gauge(
            "cnid_bgp_session_established",
            "1 when the BGP session to the peer is established, 0 otherwise",
            ["peer"],
            registry=r,
        )
        self.exabgp_restarts = Counter(
            "cnid_exabgp_restarts",
            "Times the ExaBGP process ended without being asked to and was started again",
            registry=r,
        )

    def _evpn(self, r: CollectorRegistry) -> None:
        self.evpn_announced = Gauge(
            "cnid_evpn_routes_announced",
            "EVPN routes this node announces, by route type",
            ["type"],
            registry=r,
        )
        self.evpn_received = Gauge(
            "cnid_evpn_routes_received",
            "EVPN paths received from the peers (stale ones included), by route type",
            ["type"],
            registry=r,
        )
        self.evpn_skipped = Counter(
            "cnid_evpn_routes_skipped",
            "Received EVPN routes not programmed, by reason (malformed, unknown-vni, ...)",
            ["reason"],
            registry=r,
        )
        self.evpn_max_prefix = Counter(
            "cnid_evpn_max_prefix_exceeded",
            "Times a peer sent more EVPN routes than [bgp] max_prefix, by peer and action "
            "(warning: the rest held back; restart: the session torn down)",
            ["peer", "action"],
            registry=r,
        )
        self.evpn_mac_moves = Counter(
            "cnid_evpn_mac_moves",
            "MAC moves seen (RFC 7432 MAC mobility): a local MAC's sequence raised, or a "
            "received MAC won by another VTEP with a higher sequence",
            registry=r,
        )
        self.evpn_mac_duplicates = Counter(
            "cnid_evpn_mac_duplicates",
            "MACs flagged as duplicates ([evpn] dup_max_moves moves within dup_time seconds)",
            registry=r,
        )
        self.evpn_mac_duplicates_flagged = Gauge(
            "cnid_evpn_mac_duplicates_flagged",
            "MACs flagged as duplicates now (cnictl evpn duplicates)",
            registry=r,
        )
        self.evpn_programming = Histogram(
            "cnid_evpn_update_to_kernel_seconds",
            "Time from a received EVPN update to the kernel being programmed",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.evpn_kernel_entries = Gauge(
            "cnid_evpn_kernel_entries",
            "Kernel entries programmed from EVPN routes, by kind (fdb, flood, neigh, route)",
            ["kind"],
            registry=r,
        )
        self.evpn_kernel_errors = Counter(
            "cnid_evpn_kernel_errors",
            "EVPN kernel entries the kernel refused (each attempt; retried with backoff)",
            registry=r,
        )
        self.evpn_refused = Gauge(
            "cnid_evpn_kernel_refused",
            "EVPN kernel entries the kernel refuses now, by errno name",
            ["error"],
            registry=r,
        )

    def _underlay(self, r: CollectorRegistry) -> None:
        self.underlay_routes = Gauge(
            "cnid_underlay_routes",
            "Routes of the routed underlay installed in the main table (other nodes' VTEPs)",
            registry=r,
        )
        self.underlay_skipped = Counter(
            "cnid_underlay_routes_skipped",
            "Received ipv4 unicast routes not installed, by reason (own-vtep, default-route, ...)",
            ["reason"],
            registry=r,
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
