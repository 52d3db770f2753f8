"""``cnid run --config server.ini``: the node daemon's command line
(``cnid speaker --run-dir DIR``: the BGP speaker's, ``cnid.bgp._supervisor``).

A configuration or environment problem (a bad value, a missing file, a
state directory that cannot be written, another daemon on the same
sockets) is one line on stderr and exit status 2, never a traceback: the
configuration is checked whole before the daemon starts, and a CnidError
that ends the daemon later is unwrapped from trio's ExceptionGroup.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import trio

from ..core._errors import CnidError, ConfigError
from ..core._gc import tune_gc
from ..core._protocol import printable
from ..core._sockets import claim_path, raise_nofile_limit
from ..core._startup import Startup
from ..kube import KubeConfigError
from ..kube import load_config as load_kube_config
from ._config import Config, load_config
from ._daemon import level_of, serve

#: Exit status of a configuration or environment problem.
EXIT_CONFIG = 2
#: Exit status of a failure while running.
EXIT_FAILURE = 1


class PrintableFormatter(logging.Formatter):
    """Every log message on one line: control characters a peer put into
    a message (a newline in a cniVersion, a terminal escape in a pod name)
    are shown escaped, so no line can be forged. Tracebacks stay as they are."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message, limit=8192)
        return super().formatMessage(record)


def preflight(config: Config) -> None:
    """What the daemon needs from its environment, checked before it starts:
    ConfigError naming the key whose value does not work here."""
    state_dir = Path(config.network.state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        if not state_dir.is_dir():
            raise NotADirectoryError(20, "not a directory")
        if not os.access(state_dir, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as exc:
        raise ConfigError(
            f"[network] state_dir = {config.network.state_dir}: {exc.strerror or exc}"
        ) from None
    for key in ("socket_path_api", "socket_path_ctl"):
        path = Path(getattr(config.api, key))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"[api] {key} = {path}: {exc.strerror}") from None
        try:
            claim_path(path)
        except ConfigError as exc:
            raise ConfigError(f"[api] {key} = {path}: {exc.msg}") from None
    config.bgp.password()  # ConfigError naming password_file
    config.bgp.explicit_neighbors()  # ... or [neighbor ADDRESS] password_file
    if config.kubernetes.wanted() and config.kubernetes.kubeconfig:
        try:
            load_kube_config(config.kubernetes.kubeconfig)
        except CnidError as exc:
            raise ConfigError(
                f"[kubernetes] kubeconfig = {config.kubernetes.kubeconfig}: {exc.msg}"
            ) from None


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


def fatal_problem(exc: BaseException) -> CnidError | OSError | None:
    """The CnidError (or OSError) that ended the daemon, out of whatever
    ExceptionGroups trio wrapped it in; None when it is something else (a
    bug: its traceback is worth showing)."""
    found: CnidError | OSError | None = None
    for leaf in _leaves(exc):
        if isinstance(leaf, (CnidError, OSError)):
            found = found or leaf
        elif not isinstance(leaf, (trio.Cancelled, KeyboardInterrupt)):
            return None
    return found


def describe(problem: CnidError | OSError) -> str:
    if isinstance(problem, CnidError):
        return printable(problem.msg, limit=2000)
    where = f": {problem.filename}" if problem.filename else ""
    return printable(f"{problem.strerror or problem}{where}", limit=2000)


def main(argv: list[str] | None = None) -> int:
    startup = Startup()
    startup.mark("main")
    parser = argparse.ArgumentParser(prog="cnid", description="cnid node daemon")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run the node daemon")
    run.add_argument("--config", "-c", help="server.ini (default: built-in defaults)")
    sub.add_parser(
        "speaker",
        help="run the BGP speaker (ExaBGP), which outlives the daemon",
        add_help=False,
    )
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["speaker"]:
        from ..bgp import speaker_main

        return speaker_main(argv[1:])
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        preflight(config)
    except CnidError as exc:
        print(f"cnid: {describe(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    startup.mark("config")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level_of(config.logging.level), handlers=[handler])
    limit = raise_nofile_limit()
    logging.getLogger("cnid").debug("open files limit %d", limit)
    tune_gc()
    try:
        trio.run(serve, config, startup)
    except BaseException as exc:  # unwrapped and reported, or re-raised
        problem = fatal_problem(exc)
        if problem is None:
            raise
        print(f"cnid: fatal: {describe(problem)}", file=sys.stderr)
        if isinstance(problem, (ConfigError, KubeConfigError, OSError)):
            return EXIT_CONFIG
        return EXIT_FAILURE
    return 0
