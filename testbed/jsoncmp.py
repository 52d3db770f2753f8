"""Convergence assertions in the manner of FRR's topotests: compare a JSON
view against a partial expectation, and poll until it matches.

``json_cmp(actual, expected)`` returns ``None`` when ``actual`` satisfies
``expected``, else a readable description of the first differences, each
with its JSON path (``$.routes["10.0.0.0/24"][0].nexthop``). The rules:

* a dict in ``expected`` is a subset: every key it names must be in
  ``actual`` and match there; keys it does not name are ignored;
* ``None`` as a dict value means "this key must be absent";
* a list in ``expected``: every expected item must match some item of the
  actual list (in any order; two expected items may match the same actual
  item). With ``exact_lists=True`` the lists must have the same length and
  match item by item, in order;
* anything else must be equal (``1 == 1.0``, but ``True`` is not ``1``).

``wait_for(what, probe, expected)`` calls ``probe()`` until its result
matches and returns that result; on timeout it raises ``AssertionError``
naming ``what``, the timeout and the last diff. A probe that raises counts
as a mismatch (a daemon still starting, a command failing) and its
exception is the diff. ``async_wait_for`` does the same in a trio task,
with an async or a sync probe (a sync probe runs on the event loop thread:
keep it short).
"""

from __future__ import annotations

import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["async_wait_for", "json_cmp", "wait_for"]

#: At most this many differences are described.
MAX_DIFFS = 10

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def json_cmp(actual: Any, expected: Any, *, exact_lists: bool = False) -> str | None:
    """``None`` if ``actual`` satisfies the partial expectation ``expected``,
    else the first differences (at most ``MAX_DIFFS``), one per line."""
    diffs: list[str] = []
    _cmp(actual, expected, "$", diffs, exact_lists)
    if not diffs:
        return None
    return "\n".join(diffs[:MAX_DIFFS]) + (
        f"\n... and {len(diffs) - MAX_DIFFS} more" if len(diffs) > MAX_DIFFS else ""
    )


def _key_path(path: str, key: object) -> str:
    if isinstance(key, str) and _IDENT.match(key):
        return f"{path}.{key}"
    shown = json.dumps(key) if isinstance(key, str) else repr(key)
    return f"{path}[{shown}]"


def _short(value: Any, limit: int = 160) -> str:
    try:
        text = json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _cmp(actual: Any, expected: Any, path: str, diffs: list[str], exact: bool) -> None:
    if len(diffs) > MAX_DIFFS:
        return
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            diffs.append(f"{path}: expected an object, got {_kind(actual)} {_short(actual)}")
            return
        for key, want in expected.items():
            sub = _key_path(path, key)
            if want is None:
                if key in actual:
                    diffs.append(f"{sub}: must be absent, is {_short(actual[key])}")
            elif key not in actual:
                diffs.append(f"{sub}: missing (expected {_short(want)})")
            else:
                _cmp(actual[key], want, sub, diffs, exact)
        return
    if isinstance(expected, list | tuple):
        if not isinstance(actual, list | tuple):
            diffs.append(f"{path}: expected an array, got {_kind(actual)} {_short(actual)}")
            return
        if exact:
            if len(actual) != len(expected):
                diffs.append(f"{path}: expected {len(expected)} items, got {len(actual)}")
            for i, (got, want) in enumerate(zip(actual, expected, strict=False)):
                _cmp(got, want, f"{path}[{i}]", diffs, exact)
            return
        for i, want in enumerate(expected):
            _cmp_item(actual, want, path, i, diffs)
        return
    if not _scalar_eq(actual, expected):
        diffs.append(f"{path}: expected {_short(expected)}, got {_short(actual)}")


def _cmp_item(
    actual: list[Any] | tuple[Any, ...], want: Any, path: str, i: int, diffs: list[str]
) -> None:
    """Expected item ``i`` must match some item of ``actual``; if none does,
    report the closest one (fewest differences) and how it differs."""
    best: list[str] | None = None
    best_index = -1
    for index, got in enumerate(actual):
        sub: list[str] = []
        _cmp(got, want, f"{path}[{index}]", sub, False)
        if not sub:
            return
        if best is None or len(sub) < len(best):
            best, best_index = sub, index
    head = f"{path}: expected item {i} {_short(want)} matches none of {len(actual)} items"
    if best is None:
        diffs.append(head)
        return
    diffs.append(f"{head}; the closest, [{best_index}], differs: " + "; ".join(best[:3]))


def _scalar_eq(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(actual, int | float) and isinstance(expected, int | float):
        return actual == expected
    return type(actual) is type(expected) and bool(actual == expected)


def _describe(exc: BaseException) -> str:
    return f"probe raised {type(exc).__name__}: {exc}"


def _timeout_message(what: str, timeout: float, attempts: int, diff: str | None) -> str:
    return (
        f"timed out after {timeout:g}s ({attempts} probes) waiting for {what}; last diff:\n{diff}"
    )


def wait_for(
    what: str,
    probe: Callable[[], Any],
    expected: Any,
    timeout: float = 30.0,
    interval: float = 0.25,
    *,
    exact_lists: bool = False,
) -> Any:
    """Poll ``probe()`` every ``interval`` seconds until its result matches
    ``expected`` (``json_cmp``); return that result. Raise AssertionError
    with ``what``, ``timeout`` and the last diff when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            actual = probe()
        except Exception as exc:
            diff: str | None = _describe(exc)
        else:
            diff = json_cmp(actual, expected, exact_lists=exact_lists)
            if diff is None:
                return actual
        if time.monotonic() >= deadline:
            raise AssertionError(_timeout_message(what, timeout, attempts, diff))
        time.sleep(max(0.0, min(interval, deadline - time.monotonic())))


async def async_wait_for(
    what: str,
    probe: Callable[[], Awaitable[Any]] | Callable[[], Any],
    expected: Any,
    timeout: float = 30.0,
    interval: float = 0.25,
    *,
    exact_lists: bool = False,
) -> Any:
    """``wait_for`` for trio: ``probe`` may be a coroutine function or a
    plain function; time is trio's clock (so a MockClock works)."""
    deadline = trio.current_time() + timeout
    attempts = 0
    while True:
        attempts += 1
        try:
            actual = probe()
            if inspect.isawaitable(actual):
                actual = await actual
        except Exception as exc:
            diff: str | None = _describe(exc)
        else:
            diff = json_cmp(actual, expected, exact_lists=exact_lists)
            if diff is None:
                return actual
        if trio.current_time() >= deadline:
            raise AssertionError(_timeout_message(what, timeout, attempts, diff))
        await trio.sleep(max(0.0, min(interval, deadline - trio.current_time())))
