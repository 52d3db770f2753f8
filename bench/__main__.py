"""``python -m bench [NAME] [ARGS...]``: run one benchmark; without a name,
the CNI latency benchmark (what ``./just bench`` runs in the VM tier).

* ``cni_latency``: CNI ADD/DEL against bridge + host-local (needs a VRF)
* ``evpn_kernel``: EVPN kernel state in bulk against ip/bridge -batch (host)
"""

import sys

from . import cni_latency, evpn_kernel

BENCHMARKS = {"cni_latency": cni_latency.main, "evpn_kernel": evpn_kernel.main}

if len(sys.argv) > 1 and sys.argv[1] in BENCHMARKS:
    name = sys.argv.pop(1)
    sys.argv[0] = f"python -m bench {name}"
    raise SystemExit(BENCHMARKS[name]())
raise SystemExit(cni_latency.main())
