"""Run a blocking dataplane operation in a trio worker thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")


async def in_thread(fn: Callable[[], T]) -> T:
    """Each call gets a worker thread of its own (trio's thread cache), so
    concurrent pod operations run in parallel and share no netlink object.
    The operation itself is not abandoned on cancellation: it finishes (it is
    a few milliseconds) so rollbacks are never cut in half."""
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=False)
