"""cnictl's command line as the control request it sends (the lab asks the
same requests over the socket itself)."""

from __future__ import annotations

import pytest

from cnid.ctl import ctl_request


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["status"], ("status", {})),
        (["ipam", "--all", "--allocations"], ("ipam", {"all": "true", "allocations": "true"})),
        (["bgp", "summary"], ("bgp-summary", {})),
        (["bgp"], ("bgp-summary", {})),
        (
            ["evpn", "routes", "--type", "2", "--vni", "300"],
            ("evpn-routes", {"type": "2", "vni": "300"}),
        ),
        (["vrf", "routes", "vrf-42"], ("vrf-routes", {"vrf": "vrf-42"})),
    ],
)
def test_a_command_line_is_its_request(
    argv: list[str], expected: tuple[str, dict[str, str]]
) -> None:
    assert ctl_request(argv) == expected


def test_a_bad_command_line_is_refused() -> None:
    with pytest.raises(SystemExit):
        ctl_request(["evpn", "routes", "--type", "4"])
