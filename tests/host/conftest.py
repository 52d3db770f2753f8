"""Fixtures shared by the host-tier tests (real kernel, no VRF)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cnid_plugin() -> Path:
    """The static C plugin, built with its Makefile into build/cnid-plugin."""
    subprocess.run(["make", "-s", "-C", str(REPO / "plugin_go_free")], check=True)
    path = REPO / "build" / "cnid-plugin"
    assert path.is_file()
    return path
