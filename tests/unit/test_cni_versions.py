"""The CNI versions: one list in Python, compiled into the C plugin from a
header generated from it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cnid.cni import LATEST, SUPPORTED_VERSIONS, _versions

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "plugin_go_free" / "cni-versions.h"


def test_the_plugins_header_is_generated_from_the_python_list() -> None:
    assert HEADER.read_text() == _versions.c_header(), (
        "plugin_go_free/cni-versions.h is stale: run `make -C plugin_go_free versions`"
    )


def test_the_header_names_every_version_and_the_latest() -> None:
    text = _versions.c_header()
    assert '#define CNI_LATEST_VERSION "1.1.0"' in text
    listed = '"[' + ",".join(f'\\"{v}\\"' for v in SUPPORTED_VERSIONS) + ']"'
    assert f"#define CNI_SUPPORTED_VERSIONS_JSON {listed}" in text
    assert LATEST == SUPPORTED_VERSIONS[-1] == "1.1.0"


def test_the_generator_runs_as_a_plain_script() -> None:
    """The Makefile runs it with the system python3 and no cnid installed."""
    out = subprocess.run(
        [sys.executable, "-I", str(REPO / "cnid" / "cni" / "_versions.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert out.stdout == HEADER.read_text()
