"""The garbage collector's settings for a process that holds a large table.

A node that receives a table of 50,000 EVPN routes allocates millions of
small objects in a second or two. With CPython's defaults (a young
collection every 700 allocations, a full one whenever the long-lived
objects have grown by a quarter) the node made 7 full collections during
the add, each walking every entry of the route table's dictionaries: 0.25 s
of its 1.2 s of CPU (``bench evpn_scale``). The large structures hold no
reference cycles (frozen Structs of strings and numbers, not even tracked:
``gc=False``); cycles come from tasks and exceptions, few and small, and are
still collected. So: a young collection every 10,000 allocations, the older
generations 50 and 100 times less often, and what the process made before it
started serving frozen (never walked again: modules, classes, functions).
"""

from __future__ import annotations

import gc

#: ``gc.set_threshold``'s three generations (CPython's default: 700, 10, 10).
THRESHOLDS = (10_000, 50, 100)


def tune_gc() -> None:
    """Call once, after the imports and before serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
