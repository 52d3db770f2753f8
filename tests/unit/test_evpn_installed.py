"""The controller's record of its kernel entries (``Installed``): what
``apply_evpn`` merges an ECMP route's paths with."""

from __future__ import annotations

from cnid.dataplane import EvpnRoute, FdbEntry, NeighEntry
from cnid.evpn import Installed, kernel_batch

A = EvpnRoute(table=100, prefix="10.1.0.0/26", vtep="192.0.2.1", vni=42)
B = EvpnRoute(table=100, prefix="10.1.0.0/26", vtep="192.0.2.2", vni=42)
C = EvpnRoute(table=100, prefix="10.1.0.64/26", vtep="192.0.2.1", vni=42)
FDB = FdbEntry(vni=42, mac="02:00:00:00:00:01", vtep="192.0.2.1")
NEIGH = NeighEntry(vni=42, ip="192.0.2.1", mac="02:00:00:00:00:01")


def test_routes_now_holds_every_path_of_the_touched_prefixes_that_have_any() -> None:
    installed = Installed()
    for entry in (A, B, FDB, NEIGH):
        installed.add(entry)
    assert installed.routes_now([A, C, FDB], []) == {(100, "10.1.0.0/26"): frozenset({A, B})}
    assert installed.kinds() == {"fdb": 1, "flood": 0, "neigh": 1, "route": 2}


def test_paths_come_and_go_one_by_one() -> None:
    installed = Installed()
    installed.add(A)
    installed.add(A)  # again: still one path
    assert installed.routes_now([A], []) == {(100, "10.1.0.0/26"): frozenset({A})}
    installed.add(B)
    installed.remove(A)
    assert installed.routes_now([A], []) == {(100, "10.1.0.0/26"): frozenset({B})}
    installed.remove(A)  # gone already
    installed.add(A)
    installed.remove(B)
    installed.remove(A)
    assert installed.routes_now([A, B], []) == {}
    assert installed.entries == {}
    assert installed.kinds()["route"] == 0


def test_replace_starts_from_what_the_kernel_holds() -> None:
    installed = Installed()
    installed.add(C)
    installed.replace({("route", 100, "10.1.0.0/26", v.vtep): v for v in (A, B)})
    assert installed.routes_now([A, C], []) == {(100, "10.1.0.0/26"): frozenset({A, B})}


def test_a_batchs_removals_are_left_out_of_its_record() -> None:
    """``apply_evpn`` takes the batch's removals as held: a prefix whose
    every path the batch removes is no record at all."""
    installed = Installed()
    for entry in (A, B, C):
        installed.add(entry)
    assert installed.routes_now([], [A, C]) == {(100, "10.1.0.0/26"): frozenset({B})}
    assert installed.routes_now([], [A, B, C]) == {}
    assert installed.routes_now([A], [C]) == {(100, "10.1.0.0/26"): frozenset({A, B})}


def test_kernel_batch_sorts_entries_by_kind() -> None:
    batch = kernel_batch([A, FDB, NEIGH, C])
    assert batch.routes == {A, C} and batch.fdb == {FDB} and batch.neigh == {NEIGH}
