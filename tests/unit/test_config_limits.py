"""Every server.ini key is checked for type and range (issue 13): one
ConfigError line naming section, key, value and what is allowed."""

from __future__ import annotations

import pytest

from cnid.core import ConfigError
from cnid.daemon import parse_config


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[readiness]\nport = 70000\n", "[readiness] port = '70000': allowed 0 (any free port)"),
        ("[readiness]\nport = -1\n", "[readiness] port = '-1'"),
        ("[readiness]\nhost = not an address\n", "[readiness] host = 'not an address'"),
        ("[bgp]\nport = 0\n", "[bgp] port = 0: allowed 1..65535"),
        ("[bgp]\nport = 65536\n", "[bgp] port = 65536"),
        ("[network]\nmtu = -5\n", "[network] mtu = '-5': allowed 0 (from the underlay) or 68"),
        ("[network]\nmtu = 9999999\n", "[network] mtu"),
        ("[network]\nmtu = big\n", "[network] mtu = 'big': must be a whole number"),
        ("[network]\nipaddr = 10.0.0.256\n", "[network] ipaddr"),
        ("[network]\nhost_if = a/b\n", "[network] host_if"),
        ("[bgp]\nhold_time = -3\n", "[bgp] hold_time = -3"),
        ("[bgp]\ngraceful_restart = -1\n", "[bgp] graceful_restart = -1"),
        ("[default]\ngc_interval_seconds = -1\n", "[default] gc_interval_seconds = '-1'"),
        ("[default]\nfw_interval_seconds = 0\n", "[default] fw_interval_seconds = '0'"),
        ("[default]\nvni = 16777216\n", "[default] vni = '16777216'"),
        ("[default]\nport = 0\n", "[default] port = '0'"),
        ("[kubernetes]\ngc_interval_seconds = -5\n", "[kubernetes] gc_interval_seconds"),
        ("[logging]\nlevel = loud\n", "[logging] level = 'loud': allowed debug, info"),
        ("[bgp]\nlog_level = chatty\n", "[bgp] log_level = 'chatty': allowed FATAL"),
        ("[api]\nsocket_path_api = cni.sock\n", "[api] socket_path_api = 'cni.sock'"),
        ("[api]\nsocket_path_ctl = /" + "x" * 120 + "\n", "[api] socket_path_ctl"),
    ],
)
def test_a_bad_value_is_one_line_naming_it(text: str, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert line in info.value.msg
    assert info.value.msg.startswith("server.ini: ")
    assert "\n" not in info.value.msg


@pytest.mark.parametrize(
    "text",
    [
        "[readiness]\nport = 0\nhost = 127.0.0.1\n",
        "[readiness]\nhost =\n",
        "[network]\nmtu = 1450\n",
        "[logging]\nlevel = DEBUG\n",
        "[bgp]\nlog_level = info\nport = 1179\n",
    ],
)
def test_good_values_pass(text: str) -> None:
    parse_config(text)
