"""cnid's BFD against FRR's bfdd (FRR 8.4), single hop (RFC 5881) and
multihop (RFC 5883).

    ns "bfdf" (FRR: zebra, bgpd, bfdd)          ns "bfdc" (testbed.bfd_peer)
      lo   10.98.0.1/32 ---- multihop ---------- lo   10.98.0.2/32
      bfda 10.99.0.1/24 ====== veth ============= bfdc 10.99.0.2/24

The intervals differ per side so the negotiation shows: FRR asks TX 200 /
RX 400 ms, cnid TX 300 / RX 250 ms, both x3. cnid then sends every
max(300, 400) = 400 ms and FRR every max(200, 250) = 250 ms; cnid detects
a failure in 3 x 250 = 750 ms, FRR in 3 x 400 = 1.2 s. The link is cut by
an nftables table dropping everything in cnid's namespace (the peer falls
silent, no link event), then restored; then FRR shuts its single-hop peer
down administratively and back up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testbed.frr import FrrRouter
from testbed.netlab import silence, unsilence
from testbed.netns import Netns

REPO = Path(__file__).resolve().parents[2]
SINGLE, MULTI = "10.99.0.2", "10.98.0.2"  # cnid's addresses, as FRR's peers

FRR_BFD = """\
bfd
 peer 10.99.0.2 local-address 10.99.0.1
  transmit-interval 200
  receive-interval 400
  detect-multiplier 3
 exit
 peer 10.98.0.2 multihop local-address 10.98.0.1
  transmit-interval 200
  receive-interval 400
  detect-multiplier 3
 exit
exit
"""

pytestmark = pytest.mark.skipif(
    not Path("/usr/lib/frr/bfdd").exists() or os.geteuid() != 0,
    reason="needs FRR's bfdd and root",
)


@dataclass
class Pair:
    frr: FrrRouter
    cnid_ns: Netns
    state_file: Path

    def frr_peers(self) -> dict[str, dict[str, Any]]:
        return {p["peer"]: p for p in self.frr.vtysh_json("show bfd peers json")}

    def cnid(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"peers": [], "changes": [], "counters": {}}
        return doc

    def cnid_peers(self) -> dict[str, dict[str, Any]]:
        return {p["peer"]: p for p in self.cnid()["peers"]}

    def states(self) -> dict[str, tuple[str, str]]:
        """cnid's address -> (FRR's state, cnid's state)."""
        frr, ours = self.frr_peers(), self.cnid_peers()
        back = {SINGLE: "10.99.0.1", MULTI: "10.98.0.1"}
        return {
            a: (frr.get(a, {}).get("status", "?"), ours.get(back[a], {}).get("state", "?"))
            for a in (SINGLE, MULTI)
        }


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               last: Callable[[], object]) -> float:  # fmt: skip
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not within {timeout}s; last: {last()}")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    frr_ns, cnid_ns = Netns("bfdf"), Netns("bfdc")
    frr: FrrRouter | None = None
    proc: subprocess.Popen[bytes] | None = None
    try:
        frr_ns.ip("link", "add", "bfda", "type", "veth", "peer", "name", "bfdc",
                  "netns", cnid_ns.name)  # fmt: skip
        for ns, dev, me, other in ((frr_ns, "bfda", "1", "2"), (cnid_ns, "bfdc", "2", "1")):
            ns.ip("addr", "add", f"10.99.0.{me}/24", "dev", dev)
            ns.ip("addr", "add", f"10.98.0.{me}/32", "dev", "lo")
            ns.ip("link", "set", dev, "up")
            ns.ip("route", "add", f"10.98.0.{other}/32", "via", f"10.99.0.{other}")
        frr = FrrRouter(name="bfdfrr", netns=frr_ns.name, asn=65000, router_id="10.98.0.1",
                        zebra=True, bfdd=FRR_BFD)  # fmt: skip
        frr.start()
        state = tmp_path / "bfd.json"
        proc = cnid_ns.spawn(
            "env", f"PYTHONPATH={REPO}", sys.executable, "-m", "testbed.bfd_peer",
            "--state", str(state), "--tx", "300", "--rx", "250", "--mult", "3",
            "--peer", "10.99.0.1@10.99.0.2", "--multihop", "10.98.0.1@10.98.0.2",
        )  # fmt: skip
        yield Pair(frr, cnid_ns, state)
    finally:
        if proc is not None:  # the BFD process, by PID
            proc.kill()
            proc.wait()
        cnid_ns.close()
        if frr is not None:
            frr.stop()
        frr_ns.close()


def test_bfd_with_frr_bfdd(pair: Pair) -> None:
    both_up = {SINGLE: ("up", "up"), MULTI: ("up", "up")}
    wait_until(lambda: pair.states() == both_up, 20, "both sessions Up", pair.states)

    # the negotiated intervals are what both asked
    frr, ours = pair.frr_peers(), pair.cnid_peers()
    for addr in (SINGLE, MULTI):
        f = frr[addr]
        assert (f["remote-transmit-interval"], f["remote-receive-interval"]) == (300, 250), f
        assert f["remote-detect-multiplier"] == 3
        assert (f["transmit-interval"], f["receive-interval"]) == (200, 400), f
        assert f["multihop"] is (addr == MULTI)
    for addr in ("10.99.0.1", "10.98.0.1"):
        o = ours[addr]
        assert (o["remote_desired_min_tx_ms"], o["remote_required_min_rx_ms"]) == (200, 400), o
        assert (o["tx_interval_ms"], o["rx_interval_ms"]) == (400, 250), o
        assert o["detection_time_ms"] == 750 and o["remote_detect_multiplier"] == 3
        assert o["remote_discr"] == frr[SINGLE if addr == "10.99.0.1" else MULTI]["id"]
        assert o["multihop"] is (addr == "10.98.0.1")
    assert pair.cnid()["counters"]["discarded"] == {}

    # the peer falls silent: both sides go Down within their detection time
    # (750 ms for cnid, 1.2 s for FRR; margin for a shared, noisy machine)
    changes_before = len(pair.cnid()["changes"])
    silence(pair.cnid_ns.name)
    cut = time.time()
    both_down = {SINGLE: ("down", "down"), MULTI: ("down", "down")}
    frr_elapsed = wait_until(lambda: pair.states() == both_down, 10, "both Down", pair.states)
    assert frr_elapsed < 1.2 + 1.5
    downs = [c for c in pair.cnid()["changes"][changes_before:] if c["new"] == "down"]
    assert len(downs) == 2, downs
    for change in downs:
        assert change["diag"] == "control_detection_time_expired"
        assert change["time"] - cut < 0.75 + 1.0, change
    frr = pair.frr_peers()
    assert frr[SINGLE]["diagnostic"] == "control detection time expired", frr[SINGLE]

    # the link back: Up again, one flap each
    unsilence(pair.cnid_ns.name)
    wait_until(lambda: pair.states() == both_up, 15, "both Up again", pair.states)
    assert all(p["flaps"] == 1 for p in pair.cnid()["peers"])

    # FRR shuts its single-hop peer down (AdminDown on the wire): cnid goes
    # Down at once, the peer said so; and Up again after ``no shutdown``
    peer_cmd = "peer 10.99.0.2 local-address 10.99.0.1"
    changes_before = len(pair.cnid()["changes"])
    pair.frr.vtysh("configure terminal", "bfd", peer_cmd, "shutdown")
    wait_until(lambda: pair.states()[SINGLE] == ("shutdown", "down"), 5, "FRR shut down",
               pair.states)  # fmt: skip
    [change] = pair.cnid()["changes"][changes_before:]
    assert change["diag"] == "neighbor_signaled_session_down", change
    assert pair.states()[MULTI] == ("up", "up")
    pair.frr.vtysh("configure terminal", "bfd", peer_cmd, "no shutdown")
    wait_until(lambda: pair.states() == both_up, 15, "Up after no shutdown", pair.states)
