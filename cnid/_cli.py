"""``cnid run --config server.ini``: the node daemon's command line."""

from __future__ import annotations

import argparse
import logging
import sys

import trio

from ._config import load_config
from ._daemon import level_of, serve
from ._errors import CnidError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cnid", description="cnid node daemon")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the node daemon")
    run.add_argument("--config", "-c", help="server.ini (default: built-in defaults)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except CnidError as exc:
        print(f"cnid: {exc.msg}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=level_of(config.logging.level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        trio.run(serve, config)
    except CnidError as exc:
        logging.getLogger("cnid").error("fatal: %s", exc.msg)
        return 1
    return 0
