"""Hostile CNI input (issue 13): deep JSON, control characters in log lines."""

from __future__ import annotations

import logging

import pytest

from cnid.cni import MAX_DEPTH, parse_invocation, peek_version
from cnid.core import CniCode, DecodeFailure, IncompatibleVersion, printable

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_IFNAME": "eth0",
    "CNI_NETNS": "/proc/self/ns/net",
}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 100_000])
def test_deep_json_is_a_decoding_failure(depth: int) -> None:
    stdin = b'{"cniVersion":"1.0.0","name":"n","x":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(DecodeFailure) as info:
        parse_invocation(ENV, stdin, True)
    assert info.value.code == CniCode.DECODE_FAILURE
    assert peek_version(stdin) in ("1.0.0", "1.1.0")


def test_nesting_within_the_limit_is_fine() -> None:
    depth = MAX_DEPTH - 2
    stdin = b'{"cniVersion":"1.0.0","name":"n","x":' + b"[" * depth + b"]" * depth + b"}"
    assert parse_invocation(ENV, stdin, True).network_name == "n"


def test_control_characters_never_reach_a_log_line() -> None:
    forged = "1.0.0\x00\n2026-01-01 00:00:00 ERROR cnid: forged\x1b[2J\u2028\x85"
    shown = printable(forged)
    assert "\n" not in shown and "\x00" not in shown and "\x1b" not in shown
    assert "\u2028" not in shown and "\x85" not in shown
    assert "forged" in shown
    assert len(printable("x" * 10_000)) < 600


def test_a_forged_version_is_quoted_in_the_error() -> None:
    stdin = b'{"cniVersion":"1.0.0\\u0000\\nFORGED","name":"n"}'
    with pytest.raises(IncompatibleVersion) as info:
        parse_invocation(ENV, stdin, True)
    assert "\n" not in info.value.msg and "\x00" not in info.value.msg


async def test_the_cni_server_logs_input_escaped(caplog: pytest.LogCaptureFixture) -> None:
    import trio

    from cnid.cni import CniServer
    from cnid.core import CniRequest, Metrics, frame

    class NoService:
        async def handle(self, *a: object) -> None:
            raise AssertionError("not reached")

    server = CniServer(NoService(), Metrics())  # type: ignore[arg-type]
    a, b = trio.socket.socketpair()
    env = dict(ENV, CNI_COMMAND="ADD\nFORGED line")
    with a, b, caplog.at_level(logging.WARNING):
        await a.send(frame(CniRequest(1, env, b"{}", False)))
        await server.handle_connection(b)
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("\n" not in line for line in lines)


def test_every_daemon_log_line_is_one_line() -> None:
    from cnid.daemon import PrintableFormatter

    formatter = PrintableFormatter("%(levelname)s %(name)s: %(message)s")
    record = logging.LogRecord(
        "cnid.cni", logging.WARNING, __file__, 1, "pod %s: %s", ("web\nFORGED", "\x1b[2J"), None
    )
    line = formatter.format(record)
    assert line == "WARNING cnid.cni: pod web\\nFORGED: \\x1b[2J"


async def test_a_frame_over_the_cni_limit_is_refused_unread() -> None:
    import trio

    from cnid.cni import CniServer
    from cnid.core import HEADER, MAX_FRAME, Metrics, decode_cni_response

    server = CniServer(None, Metrics())  # type: ignore[arg-type]
    a, b = trio.socket.socketpair()
    with a, b:
        await a.send(HEADER.pack(MAX_FRAME))  # 4 MiB announced, none sent
        with trio.fail_after(2):
            await server.handle_connection(b)
        answer = await a.recv(65536)
    response = decode_cni_response(answer[HEADER.size :])
    assert response.exit_code == 1 and b'"code":6' in response.stdout.replace(b" ", b"")
