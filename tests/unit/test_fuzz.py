"""Seeded, bounded fuzzing of what cnid decodes from its peers (bench/fuzz.py
holds the generators and properties; ``python -m bench fuzz`` runs a million
each). What fuzzing found, and the inputs of issue 13, are replayed from
tests/fixtures/fuzz/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench import fuzz

INPUTS = 10_000
FIXTURES = sorted(fuzz.fixtures_dir().glob("*.bin"))


@pytest.mark.parametrize("target", fuzz.TARGETS)
def test_ten_thousand_inputs_break_no_property(target: str) -> None:
    start = time.monotonic()
    findings = fuzz.fuzz(target, INPUTS, seed=13)
    assert findings == [], [f"{f.error}: {f.data[:80]!r}" for f in findings]
    assert time.monotonic() - start < 10


def test_the_generators_reach_past_the_decoder() -> None:
    import random

    from cnid.core import HEADER, ProtocolError, decode_cni_request, payload_length

    decoded = 0
    for _, data in zip(range(2000), fuzz.cni_frame_inputs(random.Random(13)), strict=False):
        try:
            decode_cni_request(data[HEADER.size : HEADER.size + payload_length(data[:4])])
            decoded += 1
        except ProtocolError:
            pass
    assert decoded > 50


def test_fixtures_exist() -> None:
    assert len(FIXTURES) >= 8


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_replays(path: Path) -> None:
    fuzz.replay(path)
