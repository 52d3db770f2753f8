"""``python -m bench [NAME] [ARGS...]``: run one benchmark; without a name,
the CNI latency benchmark (what ``./just bench`` runs in the VM tier).

* ``cni_latency``: CNI ADD/DEL against bridge + host-local (needs a VRF)
* ``evpn_kernel``: EVPN kernel state in bulk against ip/bridge -batch (host)
* ``evpn_scale``: 50,000 EVPN routes from GoBGP through an FRR route
  reflector into our node's kernel, against an FRR leaf (host)
* ``evpn_table``: the CPU of the route table for 50,000 received EVPN routes
  (announce, the controller's read, withdraw), without BGP or a kernel
* ``evpn_convergence``: a pod ADD on one node until its route is in another
  node's kernel, full mesh and route reflector, against two FRR leaves (host)
* ``lab_bringup``: how long the lab takes to come up, step by step (VM tier)
* ``lab_convergence``: on the lab, a pod ADD until a pod on another node
  reaches it, l3vni and l2vni (VM tier)
* ``lab_restart``: on the lab, packets lost while one node's daemon
  restarts, route reflectors and full mesh (VM tier)
* ``daemon_start``: where a daemon's start goes, phase by phase (its
  start-up timeline), against interpreter starts (host; VM tier: to ready)
* ``netlink_read``: reading FDB, neighbour and route entries back, and
  creating veths: cnid's netlink code against pyroute2 and ``ip -j`` (host)
* ``speaker_replay``: a daemon attaching to a running speaker with N
  received routes: the attach, the replay of ExaBGP's adj-rib-in, and what
  the adj-rib-in costs in memory (host)
* ``fuzz``: a million seeded inputs each to the CNI frame decoder, the
  control protocol and CNI stdin parsing (host, no privileges)
"""

import sys

from . import (
    cni_latency,
    daemon_start,
    evpn_convergence,
    evpn_kernel,
    evpn_scale,
    evpn_table,
    fuzz,
    lab_bringup,
    lab_convergence,
    lab_restart,
    netlink_read,
    speaker_replay,
)

BENCHMARKS = {
    "cni_latency": cni_latency.main,
    "evpn_kernel": evpn_kernel.main,
    "evpn_scale": evpn_scale.main,
    "evpn_table": evpn_table.main,
    "evpn_convergence": evpn_convergence.main,
    "lab_bringup": lab_bringup.main,
    "lab_convergence": lab_convergence.main,
    "lab_restart": lab_restart.main,
    "daemon_start": daemon_start.main,
    "netlink_read": netlink_read.main,
    "speaker_replay": speaker_replay.main,
    "fuzz": fuzz.main,
}

if len(sys.argv) > 1 and sys.argv[1] in BENCHMARKS:
    name = sys.argv.pop(1)
    sys.argv[0] = f"python -m bench {name}"
    raise SystemExit(BENCHMARKS[name]())
raise SystemExit(cni_latency.main())
