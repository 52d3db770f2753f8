"""``cnictl [--json] status|pods|ipam``: query the daemon's control socket."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import sys
from typing import Any, NamedTuple

from ..core._errors import CnidError
from ..core._protocol import (
    CTL_PROTOCOL_VERSION,
    HEADER,
    CtlAnswer,
    CtlRequest,
    CtlResponse,
    decode_ctl_response,
    frame,
    payload_length,
)
from ._tables import render

DEFAULT_SOCKET = "/run/cnid/ctl.sock"


def query(path: str, command: str, args: dict[str, str], timeout: float = 10.0) -> CtlResponse:
    """Ask the daemon once; the whole answer, reassembled from as many
    frames as it took (``timeout`` applies to each read)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(frame(CtlRequest(CTL_PROTOCOL_VERSION, command, args)))
        answer = CtlAnswer()
        while True:
            header = _recv_exact(sock, HEADER.size)
            whole = answer.add(decode_ctl_response(_recv_exact(sock, payload_length(header))))
            if whole is not None:
                return whole


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        count = sock.recv_into(view[got:], min(n - got, 1 << 20))
        if not count:
            raise ConnectionError("the daemon closed the connection early")
        got += count
    view.release()
    return bytes(buf)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnictl", description="operator views of a cnid node")
    parser.add_argument(
        "--socket",
        default=os.environ.get("CNID_CTL_SOCKET", DEFAULT_SOCKET),
        help=f"the daemon's control socket (default {DEFAULT_SOCKET}, env CNID_CTL_SOCKET)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="node readiness, domains and their kernel objects")
    sub.add_parser("pods", help="pod attachments on this node")
    ipam = sub.add_parser("ipam", help="IP blocks of this node (as kubectl get ipblocks)")
    ipam.add_argument("--all", action="store_true", help="blocks of every node")
    ipam.add_argument(
        "--allocations", action="store_true", help="every allocated address and its holder"
    )
    bgp = sub.add_parser("bgp", help="BGP (what vtysh's show bgp l2vpn evpn summary showed)")
    bgp.add_argument("what", choices=["summary"], nargs="?", default="summary")
    evpn = sub.add_parser(
        "evpn",
        help="EVPN routes, local and received (show bgp l2vpn evpn); MACs flagged as duplicates",
    )
    evpn.add_argument("what", choices=["routes", "duplicates"])
    evpn.add_argument("--type", type=int, choices=[2, 3, 5], help="only routes of this type")
    evpn.add_argument("--vni", type=int, help="only routes of this VNI")
    vrf = sub.add_parser("vrf", help="a VRF's routing table (show ip route vrf NAME)")
    vrf.add_argument("what", choices=["routes"])
    vrf.add_argument("vrf", help="the domain: its name (vrf-42) or its VRF number (42)")
    underlay = sub.add_parser(
        "underlay", help="the routed underlay's VTEP routes in the main table (show ip route bgp)"
    )
    underlay.add_argument("what", choices=["routes"])
    return parser


def _request(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    call_args: dict[str, str] = {}
    for flag in ("all", "allocations"):
        if getattr(args, flag, False):
            call_args[flag] = "true"
    for option in ("type", "vni", "vrf"):
        value = getattr(args, option, None)
        if value is not None:
            call_args[option] = str(value)
    command = args.command
    if command in ("bgp", "evpn", "vrf", "underlay"):
        command = f"{command}-{args.what}"
    return command, call_args


def ctl_request(argv: list[str]) -> tuple[str, dict[str, str]]:
    """cnictl's command line as its control request (``evpn routes --type
    2`` -> ``("evpn-routes", {"type": "2"})``), for callers that ask the
    socket themselves; a bad command line raises SystemExit as cnictl's."""
    return _request(_parser().parse_args(argv))


class Outcome(NamedTuple):
    """What cnictl would exit with and print."""

    returncode: int
    stdout: str
    stderr: str


def run(argv: list[str]) -> Outcome:
    """cnictl with the command line ``argv``, without printing: what ``main``
    prints and its exit status (2 for a command line argparse refuses).
    Test beds call it in their own process: under the VM tier's emulation an
    interpreter start costs seconds."""
    parser = _parser()
    errors = io.StringIO()
    try:
        with contextlib.redirect_stderr(errors):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        return Outcome(exc.code if isinstance(exc.code, int) else 2, "", errors.getvalue())
    command, call_args = _request(args)
    try:
        response = query(args.socket, command, call_args)
    except (OSError, CnidError) as exc:
        msg = exc.msg if isinstance(exc, CnidError) else str(exc)
        return Outcome(2, "", f"cnictl: cannot reach the daemon at {args.socket}: {msg}\n")
    if not response.ok:
        return Outcome(1, "", f"cnictl: {response.error}\n")
    data: Any = response.data
    if args.json:
        return Outcome(0, json.dumps(data, indent=2, sort_keys=True) + "\n", "")
    view = "ipam-allocations" if getattr(args, "allocations", False) else command
    return Outcome(0, render(view, data) + "\n", "")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or "-h" in args or "--help" in args:
        _parser().parse_args(args)  # argparse prints its help (or usage) and exits
    outcome = run(args)
    sys.stdout.write(outcome.stdout)
    sys.stderr.write(outcome.stderr)
    return outcome.returncode
