"""The garbage collector's settings of the daemon (cnid/core/_gc.py), in a
process of their own: they are the whole process's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import gc, json
from cnid.core import tune_gc
tune_gc()
cycle = []
cycle.append(cycle)
del cycle
print(json.dumps({"thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "collected": gc.collect()}))
"""


def test_start_up_objects_are_frozen_and_collections_rarer() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, cwd=REPO
    )
    found = json.loads(out.stdout)
    young, middle, old = found["thresholds"]
    assert young > 700 and middle > 10 and old > 10  # CPython's defaults: 700, 10, 10
    assert found["frozen"] > 1000  # the imports' objects
    assert found["collected"] >= 1  # a cycle made afterwards is still collected
