"""Prometheus metrics, in a registry of the daemon's own (several daemons
can live in one test process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cnid_cni_requests",
            "CNI requests served, by command and result (ok or the CNI error code)",
            ["command", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "cnid_cni_request_duration_seconds",
            "Time from a CNI request's arrival to its answer, by command",
            ["command"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pods_attached = Gauge(
            "cnid_pods_attached",
            "Pod attachments wired on this node, by VRF",
            ["vrf"],
            registry=self.registry,
        )
        self.ready = Gauge(
            "cnid_ready", "1 when the node can take pods, 0 otherwise", registry=self.registry
        )
        self.protocol_errors = Counter(
            "cnid_protocol_errors",
            "Malformed, truncated or oversize frames received on a socket",
            ["socket"],
            registry=self.registry,
        )

        self.bgp_session = Gauge(
            "cnid_bgp_session_established",
            "1 when the BGP session to the peer is established, 0 otherwise",
            ["peer"],
            registry=self.registry,
        )
        self.exabgp_restarts = Counter(
            "cnid_exabgp_restarts",
            "Times the ExaBGP process ended without being asked to and was started again",
            registry=self.registry,
        )
        self.evpn_announced = Gauge(
            "cnid_evpn_routes_announced",
            "EVPN routes this node announces, by route type",
            ["type"],
            registry=self.registry,
        )
        self.evpn_received = Gauge(
            "cnid_evpn_routes_received",
            "EVPN paths received from the peers (stale ones included), by route type",
            ["type"],
            registry=self.registry,
        )
        self.evpn_skipped = Counter(
            "cnid_evpn_routes_skipped",
            "Received EVPN routes not programmed, by reason (malformed, unknown-vni, ...)",
            ["reason"],
            registry=self.registry,
        )
        self.evpn_max_prefix = Counter(
            "cnid_evpn_max_prefix_exceeded",
            "Times a peer sent more EVPN routes than [bgp] max_prefix, by peer and action "
            "(warning: the rest held back; restart: the session torn down)",
            ["peer", "action"],
            registry=self.registry,
        )
        self.evpn_programming = Histogram(
            "cnid_evpn_update_to_kernel_seconds",
            "Time from a received EVPN update to the kernel being programmed",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.evpn_kernel_entries = Gauge(
            "cnid_evpn_kernel_entries",
            "Kernel entries programmed from EVPN routes, by kind (fdb, flood, neigh, route)",
            ["kind"],
            registry=self.registry,
        )
        self.evpn_kernel_errors = Counter(
            "cnid_evpn_kernel_errors",
            "EVPN kernel entries the kernel refused (each attempt; retried with backoff)",
            registry=self.registry,
        )
        self.evpn_refused = Gauge(
            "cnid_evpn_kernel_refused",
            "EVPN kernel entries the kernel refuses now, by errno name",
            ["error"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
