"""``python -m testbed.kubeapi``: serve the emulation for other processes.

Writes DIR/ca.crt, DIR/token, DIR/kubeconfig (admin), with --rbac also
DIR/sa-token and DIR/sa-kubeconfig (the restricted user), DIR/url, and
DIR/ready once it listens (on --listen and, with --unix, the socket too);
removes DIR/ready (and the socket) and ends on SIGTERM or SIGINT, writing
--state first.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

import trio

from ._kubeapi import DEFAULT_RBAC_USER, open_kubeapi

log = logging.getLogger("testbed.kubeapi")


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m testbed.kubeapi", description=__doc__)
    parser.add_argument("--listen", type=_listen, default=("127.0.0.1", 6443), help="HOST:PORT")
    parser.add_argument("--dir", type=Path, required=True, help="where the files go")
    parser.add_argument("--crds", nargs="+", action="extend", default=[], help="files or dirs")
    parser.add_argument("--rbac", type=Path, help="YAML with the restricted user's ClusterRoles")
    parser.add_argument("--rbac-user", default=DEFAULT_RBAC_USER)
    parser.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds")
    parser.add_argument("--advertise", help="the address the kubeconfigs name")
    parser.add_argument("--san", action="append", default=[], help="extra certificate name")
    parser.add_argument(
        "--unix", type=Path, help="also serve plain HTTP (same tokens) on a UNIX socket here"
    )
    parser.add_argument(
        "--state", type=Path, help="load objects from this file if it exists, save them at exit"
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    host, port = args.listen
    ready = args.dir / "ready"
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_kubeapi(
            args.crds,
            args.rbac,
            args.bookmark_interval,
            host=host,
            port=port,
            rbac_user=args.rbac_user,
            directory=args.dir,
            advertise=args.advertise,
            sans=args.san,
            unix_path=args.unix,
            state_path=args.state,
        ) as api:
            (args.dir / "url").write_text(api.url)
            ready.write_text(api.url)
            where = f"{api.url} and {api.unix_path}" if api.unix_path else api.url
            log.info("serving on %s (files in %s)", where, args.dir)
            try:
                async for signum in signals:
                    log.info("got signal %d, stopping", signum)
                    break
            finally:
                ready.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    try:
        trio.run(serve, args)
    except ValueError as error:
        print(f"kubeapi: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
