"""The CNI spec versions cnid speaks: the one list.

The C plugin answers VERSION without the daemon, so it carries the list
too, compiled in from ``plugin_go_free/cni-versions.h``. That header is
generated from this module (``make -C plugin_go_free versions`` runs this
file as a script: no import of cnid, no third-party module), and a unit
test fails when the two differ.
"""

from __future__ import annotations

import json
import sys

SUPPORTED_VERSIONS: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
"""Oldest first."""
LATEST = SUPPORTED_VERSIONS[-1]
"""What results and errors use when the configuration names no version we speak."""


def c_header() -> str:
    """The text of plugin_go_free/cni-versions.h."""
    as_json = json.dumps(list(SUPPORTED_VERSIONS), separators=(",", ":"))
    return (
        "/* Generated from cnid/cni/_versions.py by `make -C plugin_go_free versions`:\n"
        " * do not edit (tests/unit/test_cni_versions.py checks it). */\n"
        "#ifndef CNID_CNI_VERSIONS_H\n"
        "#define CNID_CNI_VERSIONS_H\n"
        "\n"
        "/* The newest CNI spec version: the answer's when stdin names none. */\n"
        f"#define CNI_LATEST_VERSION {json.dumps(LATEST)}\n"
        "/* VERSION's supportedVersions, as a JSON array. */\n"
        f"#define CNI_SUPPORTED_VERSIONS_JSON {json.dumps(as_json)}\n"
        "\n"
        "#endif\n"
    )


if __name__ == "__main__":
    sys.stdout.write(c_header())
