import pytest

from cnid.core import ConfigError
from cnid.daemon import load_config, parse_config

SEEDS_CONFIGMAP = """
[api]
socket_path_api = /var/run/pyroute2/api
socket_path_fd = /var/run/pyroute2/fdpass

[default]
vrf = 42
prefix = 10.244.0.0
prefixlen = 16
ipblocklen = 26
system_vrf_type = l3vni

[logging]
level = info
"""


def test_seeds_configmap_parses_to_the_default_domain() -> None:
    config = parse_config(SEEDS_CONFIGMAP)
    assert config.api.socket_path_api == "/var/run/pyroute2/api"
    domain = config.default.domain()
    assert domain.name == "vrf-42"
    assert (domain.vrf, domain.table) == (42, 42)
    assert str(domain.network) == "10.244.0.0/16"
    assert domain.ipblocklen == 26
    assert [(a.type, a.vni, a.port) for a in domain.attachments] == [("l3vni", 42, 4789)]
    assert config.readiness.port == 24800


def test_empty_config_gives_the_documented_defaults() -> None:
    config = parse_config("")
    assert config.default.domain().name == "vrf-42"
    assert config.readiness.port == 24800
    assert config.network.mtu_overhead == 50


def test_unknown_sections_and_keys_are_ignored() -> None:
    config = parse_config("[plan9]\nport = 8149\n[default]\nservice_vrf_max = 10\nfoo = bar\n")
    assert config.default.service_vrf_max == 10


def test_explicit_table_and_vni() -> None:
    domain = parse_config("[default]\nvrf = 200\ntable = 10200\nvni = 60200\n").default.domain()
    assert (domain.table, domain.attachments[0].vni) == (10200, 60200)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[default]\nvrf = forty-two\n", r"\[default\]"),
        ("[default]\nsystem_vrf_type = l4vni\n", "system_vrf_type"),
        ("[default]\nprefix = 10.244.0.300\n", "bad prefix"),
        ("[default]\nprefixlen = 26\nipblocklen = 24\n", "ipblocklen"),
        ("[readiness]\nport = http\n", r"\[readiness\]"),
        ("not an ini file", "server.ini"),
    ],
)
def test_bad_values_are_named(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_config(text)


def test_missing_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.ini")
