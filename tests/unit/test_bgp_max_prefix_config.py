"""[bgp] max_prefix, max_prefix_action, max_prefix_restart: FRR's
``maximum-prefix N [warning-only | restart M]``, validated."""

from __future__ import annotations

import pytest

from cnid.bgp import BgpOptions
from cnid.core import ConfigError


def test_defaults_are_no_limit() -> None:
    opts = BgpOptions().validated()
    assert (opts.max_prefix, opts.max_prefix_action, opts.max_prefix_restart) == (0, "warning", 60)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_prefix": 1000},
        {"max_prefix": 1000, "max_prefix_action": "restart", "max_prefix_restart": 1},
        {"max_prefix": 2**32 - 1, "max_prefix_restart": 65535},
    ],
)
def test_valid(changes: dict[str, object]) -> None:
    BgpOptions(**changes).validated()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "word"),
    [
        ({"max_prefix": -1}, "max_prefix"),
        ({"max_prefix": 2**32}, "max_prefix"),
        ({"max_prefix_action": "warning-only"}, "max_prefix_action"),
        ({"max_prefix_action": "shutdown"}, "max_prefix_action"),
        ({"max_prefix_restart": 0}, "max_prefix_restart"),
        ({"max_prefix_restart": 65536}, "max_prefix_restart"),
    ],
)
def test_invalid(changes: dict[str, object], word: str) -> None:
    with pytest.raises(ConfigError, match=word):
        BgpOptions(**changes).validated()  # type: ignore[arg-type]
