"""The patches of ExaBGP's receive path (``cnid.bgp._exabgp_fast``) give
ExaBGP's own output: the ``raw`` hex of the EVPN NLRIs captured from FRR and
GoBGP, and debug messages only when debug logging is on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from exabgp.bgp.message import Action
from exabgp.bgp.message.update.nlri.nlri import NLRI
from exabgp.logger import log
from exabgp.logger.option import option
from exabgp.protocol.family import AFI, SAFI

from cnid.bgp import _exabgp_fast as fast

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "evpn"


def captured_raws() -> list[str]:
    out = []
    for name in ("from_frr.jsonl", "from_gobgp.jsonl", "type5_from_frr_l3vni.jsonl"):
        for line in (FIXTURES / name).read_text().splitlines():
            if not line.strip():
                continue
            update = json.loads(line)["neighbor"]["message"].get("update", {})
            for by_nh in update.get("announce", {}).values():
                for nlris in by_nh.values():
                    out += [n["raw"] for n in nlris if "raw" in n]
    return out


def test_raw_is_exabgps_hex_of_the_captured_nlris() -> None:
    raws = captured_raws()
    assert len(raws) >= 5
    for raw in raws:
        nlri, left = NLRI.unpack_nlri(
            AFI.l2vpn, SAFI.evpn, bytes.fromhex(raw), Action.ANNOUNCE, False
        )
        assert left == b""
        exabgps = "".join(f"{b:02X}" for b in nlri.pack_nlri())
        assert fast._raw(nlri) == exabgps == raw.upper()
        assert nlri._raw() == exabgps  # the patch is in place


def test_debug_only_when_on(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def message() -> str:
        calls.append("built")
        return "m"

    monkeypatch.setitem(option.logit, "DEBUG", False)
    log.debug(message, "parser")
    assert calls == []
    monkeypatch.setitem(option.logit, "DEBUG", True)
    monkeypatch.setitem(option.enabled, "parser", False)
    log.debug(message, "parser")
    assert calls == []
