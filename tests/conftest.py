"""Fixtures shared by every tier."""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.node import CnidNode

REPO = Path(__file__).resolve().parents[1]
_serial = itertools.count()


@pytest.fixture(scope="session")
def cnid_plugin() -> Path:
    """The static C plugin, built with its Makefile into build/cnid-plugin."""
    subprocess.run(["make", "-s", "-C", str(REPO / "plugin_go_free")], check=True)
    path = REPO / "build" / "cnid-plugin"
    assert path.is_file()
    return path


@pytest.fixture
def cnid_node(cnid_plugin: Path, request: pytest.FixtureRequest) -> Iterator[CnidNode]:
    """A ready cnid node in a namespace of its own (needs a VRF-capable kernel).
    ``.netns`` is its namespace, ``.socket`` the CNI socket (CNID_SOCKET)."""
    marker = request.node.get_closest_marker("node_ini")
    extra = marker.args[0] if marker else ""
    node = CnidNode(name=f"cnode{os.getpid()}-{next(_serial)}", ini_extra=extra)
    try:
        node.create().start()
        yield node
    finally:
        node.stop()
