"""The convergence helpers themselves: json_cmp's matching rules and the
messages of wait_for / async_wait_for."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
import trio.testing

from testbed.jsoncmp import MAX_DIFFS, async_wait_for, json_cmp, wait_for

SUMMARY = {
    "routerId": "192.168.79.11",
    "peers": {
        "192.168.79.1": {"state": "Established", "pfxRcd": 4, "remoteAs": 65000},
        "192.168.79.20": {"state": "Active", "pfxRcd": 0, "remoteAs": 65000},
    },
    "routes": [
        {"type": 2, "mac": "aa:bb:cc:00:00:01", "vni": 100, "labels": [100, 4242]},
        {"type": 3, "ip": "192.168.79.12", "vni": 100},
        {"type": 5, "prefix": "10.1.2.0/24", "vni": 4242, "rmac": "02:00:00:00:00:12"},
    ],
}


# -- matching ------------------------------------------------------------------


def test_identical_and_subset_documents_match() -> None:
    assert json_cmp(SUMMARY, SUMMARY) is None
    assert json_cmp(SUMMARY, {}) is None
    assert json_cmp(SUMMARY, {"peers": {"192.168.79.1": {"state": "Established"}}}) is None


def test_scalars_are_compared_by_value_and_type() -> None:
    assert json_cmp(3, 3) is None
    assert json_cmp(3, 3.0) is None
    assert json_cmp("3", 3) is not None
    assert json_cmp(1, True) is not None
    assert json_cmp(True, True) is None
    assert json_cmp(None, 0) is not None


def test_list_items_match_in_any_order() -> None:
    expected = {"routes": [{"type": 5, "vni": 4242}, {"type": 2, "mac": "aa:bb:cc:00:00:01"}]}
    assert json_cmp(SUMMARY, expected) is None
    # two expected items may match the same actual item
    assert json_cmp([{"a": 1, "b": 2}], [{"a": 1}, {"b": 2}]) is None


def test_nested_lists_match_recursively() -> None:
    assert json_cmp(SUMMARY, {"routes": [{"labels": [4242]}]}) is None
    assert json_cmp([[1, 2], [3, [4, 5]]], [[[5]], [2]]) is None
    diff = json_cmp(SUMMARY, {"routes": [{"labels": [7]}]})
    assert diff is not None
    assert diff.startswith("$.routes: expected item 0")
    assert "$.routes[0].labels: expected item 0 7 matches none of 2 items" in diff


def test_exact_lists_compare_length_and_order() -> None:
    assert json_cmp([1, 2, 3], [3, 1]) is None
    assert json_cmp([1, 2, 3], [1, 2, 3], exact_lists=True) is None
    diff = json_cmp([1, 2, 3], [1, 3], exact_lists=True)
    assert diff is not None
    assert "$: expected 2 items, got 3" in diff
    assert "$[1]: expected 3, got 2" in diff
    # dicts inside stay partial
    assert json_cmp([{"a": 1, "b": 2}], [{"a": 1}], exact_lists=True) is None


# -- absent keys -----------------------------------------------------------------


def test_none_means_the_key_must_be_absent() -> None:
    assert json_cmp(SUMMARY, {"peers": {"192.168.79.99": None}}) is None
    diff = json_cmp(SUMMARY, {"peers": {"192.168.79.20": None}})
    assert diff is not None
    assert diff.startswith('$.peers["192.168.79.20"]: must be absent, is {')


def test_missing_key_is_reported_with_the_expected_value() -> None:
    assert json_cmp({"a": {}}, {"a": {"b": [1]}}) == "$.a.b: missing (expected [1])"


# -- mismatches and their paths ---------------------------------------------------


def test_mismatch_names_the_json_path() -> None:
    diff = json_cmp(SUMMARY, {"peers": {"192.168.79.20": {"state": "Established"}}})
    assert diff == '$.peers["192.168.79.20"].state: expected "Established", got "Active"'


def test_several_differences_are_listed_one_per_line() -> None:
    diff = json_cmp({"a": 1, "b": 2, "c": 3}, {"a": 0, "b": 2, "c": 0, "d": 1})
    assert diff is not None
    assert diff.splitlines() == [
        "$.a: expected 0, got 1",
        "$.c: expected 0, got 3",
        "$.d: missing (expected 1)",
    ]


def test_type_mismatches_say_what_was_found() -> None:
    assert json_cmp([1], {"a": 1}) == "$: expected an object, got array [1]"
    assert json_cmp({"a": "x"}, {"a": [1]}) == '$.a: expected an array, got string "x"'


def test_list_item_mismatch_reports_the_closest_item() -> None:
    expected = {"routes": [{"type": 5, "prefix": "10.1.2.0/24", "vni": 9999}]}
    diff = json_cmp(SUMMARY, expected)
    assert diff is not None
    assert "matches none of 3 items; the closest, [2], differs:" in diff
    assert "$.routes[2].vni: expected 9999, got 4242" in diff


def test_empty_actual_list() -> None:
    assert json_cmp({"r": []}, {"r": [{"a": 1}]}) == (
        '$.r: expected item 0 {"a": 1} matches none of 0 items'
    )
    assert json_cmp({"r": []}, {"r": []}) is None


def test_number_of_differences_is_bounded() -> None:
    actual = {f"k{i}": i for i in range(50)}
    diff = json_cmp(actual, {f"k{i}": -1 for i in range(50)})
    assert diff is not None
    lines = diff.splitlines()
    assert len(lines) == MAX_DIFFS + 1
    assert lines[-1].startswith("... and ")


def test_odd_keys_are_quoted_in_paths() -> None:
    assert json_cmp({"a b": {"1": 2}}, {"a b": {"1": 3}}) == '$["a b"]["1"]: expected 3, got 2'


# -- wait_for ----------------------------------------------------------------------


def test_wait_for_returns_the_first_matching_value() -> None:
    states = iter(["Connect", "OpenSent", "Established", "Idle"])
    seen = wait_for(
        "the session",
        lambda: {"state": next(states)},
        {"state": "Established"},
        timeout=5,
        interval=0,
    )
    assert seen == {"state": "Established"}


def test_wait_for_timeout_message_holds_what_the_timeout_and_the_last_diff() -> None:
    counter = itertools.count()
    with pytest.raises(AssertionError) as info:
        wait_for("peers up", lambda: {"n": next(counter)}, {"n": -1}, timeout=0.2, interval=0.05)
    message = str(info.value)
    assert "waiting for peers up" in message
    assert "0.2s" in message
    last = next(counter) - 1
    assert message.endswith(f"last diff:\n$.n: expected -1, got {last}")


def test_wait_for_counts_a_raising_probe_as_a_mismatch() -> None:
    calls: list[int] = []

    def probe() -> Any:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("vtysh: daemon not up")
        return {"ok": True}

    assert wait_for("daemon", probe, {"ok": True}, timeout=5, interval=0) == {"ok": True}

    with pytest.raises(AssertionError) as info:
        wait_for("daemon", _always_fails, {"ok": True}, timeout=0.1, interval=0.02)
    assert "probe raised RuntimeError: connection refused" in str(info.value)


def _always_fails() -> Any:
    raise RuntimeError("connection refused")


def test_wait_for_exact_lists_option() -> None:
    with pytest.raises(AssertionError) as info:
        wait_for("three", lambda: [1, 2, 3], [1, 2], timeout=0, interval=0, exact_lists=True)
    assert "expected 2 items, got 3" in str(info.value)


# -- async_wait_for ----------------------------------------------------------------


async def test_async_wait_for_with_an_async_probe(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    counter = itertools.count()

    async def probe() -> dict[str, int]:
        await trio.sleep(1)
        return {"n": next(counter)}

    seen = await async_wait_for("n reaches 3", probe, {"n": 3}, timeout=60, interval=2)
    assert seen == {"n": 3}
    assert trio.current_time() - start == pytest.approx(4 * 1 + 3 * 2)


async def test_async_wait_for_with_a_sync_probe(autojump_clock: trio.testing.MockClock) -> None:
    counter = itertools.count()
    seen = await async_wait_for("n reaches 2", lambda: [next(counter)], [2], timeout=60)
    assert seen == [2]


async def test_async_wait_for_timeout_has_the_last_diff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    with pytest.raises(AssertionError) as info:
        await async_wait_for(
            "routes gone", lambda: {"routes": [1]}, {"routes": None}, timeout=10, interval=1
        )
    assert trio.current_time() - start == pytest.approx(10)
    message = str(info.value)
    assert "after 10s" in message and "routes gone" in message
    assert message.endswith("last diff:\n$.routes: must be absent, is [1]")
