"""cnid's BFD in a process of its own, for interop tests: run it inside a
namespace, read what it sees from a JSON state file.

    python -m testbed.bfd_peer --state /tmp/s.json \\
        --peer 10.99.0.1@10.99.0.2 --multihop 10.98.0.1@10.98.0.2 --tx 300 --rx 300 --mult 3

``--peer PEER@LOCAL`` (single hop) and ``--multihop PEER@LOCAL`` repeat.
The state file (rewritten atomically every 50 ms) holds ``peers`` (the
service's ``peers()``), ``counters`` and ``changes`` (every state change:
time, peer, old, new, diag).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import msgspec
import trio

from cnid.bfd import BfdService, PeerConfig, StateChange


async def main(args: argparse.Namespace) -> None:
    bfd = BfdService()
    changes: list[dict[str, Any]] = []

    def record(change: StateChange) -> None:
        changes.append(
            {
                "time": time.time(),
                "peer": change.key.peer,
                "multihop": change.key.multihop,
                "old": change.old.name.lower(),
                "new": change.new.name.lower(),
                "diag": change.diag.name.lower(),
            }
        )

    bfd.subscribe(record)
    config = PeerConfig(
        desired_min_tx_ms=args.tx, required_min_rx_ms=args.rx, detect_multiplier=args.mult
    )
    for spec, multihop in [(p, False) for p in args.peer] + [(p, True) for p in args.multihop]:
        peer, _, local = spec.partition("@")
        bfd.add_peer(peer, local=local or None, multihop=multihop, config=config)
    state = Path(args.state)
    async with trio.open_nursery() as nursery:
        await nursery.start(bfd.run)
        while True:
            doc = {"peers": bfd.peers(), "counters": bfd.counters, "changes": changes}
            tmp = state.with_suffix(".tmp")
            tmp.write_bytes(msgspec.json.encode(doc))
            os.replace(tmp, state)
            await trio.sleep(0.05)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", required=True)
    parser.add_argument("--peer", action="append", default=[])
    parser.add_argument("--multihop", action="append", default=[])
    parser.add_argument("--tx", type=int, default=300)
    parser.add_argument("--rx", type=int, default=300)
    parser.add_argument("--mult", type=int, default=3)
    trio.run(main, parser.parse_args())
