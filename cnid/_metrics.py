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

    def render(self) -> bytes:
        return bytes(generate_latest(self.registry))
