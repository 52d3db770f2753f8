"""``cnid run --config`` with a bad server.ini or environment (issue 13):
exit status 2 and one line naming the problem, never a traceback. Each case
fails before the daemon touches the kernel."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from cnid.core import ConfigError, StoreUnavailable
from cnid.daemon import _cli


def base(tmp_path: Path, extra: str = "") -> str:
    """A server.ini for tmp_path, with the sections and keys of ``extra``
    replacing or joining its own."""
    sections: dict[str, dict[str, str]] = {
        "api": {
            "socket_path_api": f"{tmp_path}/run/cni.sock",
            "socket_path_ctl": f"{tmp_path}/run/ctl.sock",
        },
        "network": {"state_dir": f"{tmp_path}/state"},
        "kubernetes": {"enabled": "no"},
    }
    section = ""
    for line in extra.splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            sections.setdefault(section, {})
        elif "=" in line:
            key, value = line.split("=", 1)
            sections[section][key.strip()] = value.strip()
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
        for name, keys in sections.items()
    )


MAIN = "from cnid.daemon import main; raise SystemExit(main())"


def run_cnid(tmp_path: Path, extra: str) -> subprocess.CompletedProcess[str]:
    ini = tmp_path / "server.ini"
    ini.write_text(base(tmp_path, extra))
    return subprocess.run(
        [sys.executable, "-c", MAIN, "run", "--config", str(ini)],
        capture_output=True,
        text=True,
        timeout=60,
    )


CASES = [
    ("[readiness]\nport = 70000\n", "[readiness] port = '70000': allowed"),
    ("[bgp]\nport = 0\n", "[bgp] port = 0: allowed 1..65535"),
    ("[network]\nmtu = -5\n", "[network] mtu = '-5': allowed"),
    ("[bgp]\nhold_time = -3\n", "[bgp] hold_time = -3: allowed"),
    ("[bgp]\nstale_timeout = -1\n", "[bgp] stale_timeout = -1.0: allowed"),
    ("[kubernetes]\ngc_grace_seconds = -1\n", "[kubernetes] gc_grace_seconds = '-1': allowed"),
    ("[default]\nfw_interval_seconds = -30\n", "[default] fw_interval_seconds = '-30'"),
    ("[logging]\nlevel = loud\n", "[logging] level = 'loud': allowed debug"),
    ("[bgp]\nlog_level = chatty\n", "[bgp] log_level = 'chatty': allowed FATAL"),
    ("[bgp]\npassword_file = /nonexistent/md5\n", "[bgp] password_file /nonexistent/md5"),
    (
        "[neighbor 10.1.1.0]\nasn = 65101\npassword_file = /nonexistent/leaf1\n",
        "[neighbor 10.1.1.0] password_file /nonexistent/leaf1",
    ),
    ("[neighbor 10.1.1.0]\nasn = 65101\nmultihop = 1\n", "[neighbor 10.1.1.0]: multihop 1"),
    ("[network]\nstate_dir = /proc/cnid-state\n", "[network] state_dir = /proc/cnid-state"),
    (
        "[kubernetes]\nenabled = yes\nkubeconfig = /etc/passwd\n",
        "[kubernetes] kubeconfig = /etc/passwd",
    ),
    ("[network]\nstate_dir = relative/dir\n", "allowed an absolute path"),
]


@pytest.mark.parametrize(("extra", "expected"), CASES, ids=[c[1].split(" =")[0] for c in CASES])
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path, extra: str, expected: str) -> None:
    run = run_cnid(tmp_path, extra)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert expected in lines[0]


def test_a_second_daemon_on_the_same_socket_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with live:
        live.bind(str(tmp_path / "run" / "cni.sock"))
        live.listen(1)
        run = run_cnid(tmp_path, "")
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"cnid: [api] socket_path_api = {tmp_path}/run/cni.sock: another daemon is serving"
        f" {tmp_path}/run/cni.sock"
    ]


def test_a_state_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    run = run_cnid(tmp_path, "")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "[network] state_dir" in run.stderr


# ------------------------------------------- errors from inside the daemon


def test_a_cnid_error_inside_exception_groups_is_found() -> None:
    err = ConfigError("[readiness] cannot listen on 0.0.0.0:24800: Address already in use")
    group = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [err])])
    assert _cli.fatal_problem(group) is err
    assert _cli.fatal_problem(BaseExceptionGroup("x", [err, ValueError()])) is None


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ConfigError("[readiness] cannot listen on *:24800: Address already in use"), 2),
        (PermissionError(13, "Permission denied", "/var/lib/cnid/pods"), 2),
        (StoreUnavailable("the address store is unreadable"), 1),
    ],
)
def test_main_reports_an_error_from_the_nursery_as_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    status: int,
) -> None:
    async def serve(config: object, startup: object = None) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)

            async def fail() -> None:
                raise error

            nursery.start_soon(fail)

    monkeypatch.setattr(_cli, "serve", serve)
    ini = tmp_path / "server.ini"
    ini.write_text(base(tmp_path))
    assert _cli.main(["run", "--config", str(ini)]) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnid: fatal: ")


def test_the_open_files_limit_is_raised() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        from cnid.core import raise_nofile_limit

        assert raise_nofile_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
