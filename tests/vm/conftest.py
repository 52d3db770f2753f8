"""The VM tier: every test here needs the VRF device and is marked ``vrf``.

Run: .venv/bin/python -m testbed.vm -- .venv/bin/pytest -m vrf tests/vm -q
A vrf-marked test fails (never skips) when the kernel has no VRF device.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

_HERE = Path(__file__).parent
_vrf_ok: bool | None = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.vrf)


def _vrf_available() -> bool:
    global _vrf_ok
    if _vrf_ok is None:
        # in a throwaway namespace, gone when the command exits
        probe = subprocess.run(
            ["unshare", "--net", "ip", "link", "add", "vrfprobe0", "type", "vrf", "table", "9"],
            capture_output=True, check=False,
        )  # fmt: skip
        _vrf_ok = probe.returncode == 0
    return _vrf_ok


@pytest.fixture(autouse=True)
def _require_vrf(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("vrf") and not _vrf_available():
        pytest.fail("this test needs the VRF device: run it in the VM tier (python -m testbed.vm)")
