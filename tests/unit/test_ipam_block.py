"""Block arithmetic: names, capacity, gateway, next free address, carving."""

from __future__ import annotations

import ipaddress
import time

import pytest

from cnid.core import ConfigError
from cnid.ipam import Block, block_name, block_of, lowest_free_block

# `kubectl get ipblocks.ipam.pyroute2.org` from the seeds (NAME, CIDR, VRF).
SEED_ROWS = [
    ("vrf-200-10-150-0-0-26", "10.150.0.0/26", 200),
    ("vrf-200-10-150-0-128-26", "10.150.0.128/26", 200),
    ("vrf-200-10-150-0-192-26", "10.150.0.192/26", 200),
    ("vrf-200-10-150-0-64-26", "10.150.0.64/26", 200),
    ("vrf-42-10-244-0-0-26", "10.244.0.0/26", 42),
    ("vrf-42-10-244-0-64-26", "10.244.0.64/26", 42),
]


def net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr)


@pytest.mark.parametrize(("name", "cidr", "vrf"), SEED_ROWS)
def test_seed_names(name: str, cidr: str, vrf: int) -> None:
    assert block_name(vrf, net(cidr)) == name
    assert block_of(cidr).capacity == 62


@pytest.mark.parametrize(
    ("vrf", "cidr", "name"),
    [
        (7, "fd00::/120", "vrf-7-fd00---120"),
        (7, "fd00::100/120", "vrf-7-fd00--100-120"),
        (1, "2001:db8:0:1::/64", "vrf-1-2001-db8-0-1---64"),
        (1, "2001:db8:1:2:3:4:5:0/120", "vrf-1-2001-db8-1-2-3-4-5-0-120"),
    ],
)
def test_ipv6_names(vrf: int, cidr: str, name: str) -> None:
    assert block_name(vrf, net(cidr)) == name


def test_same_prefix_in_two_vrfs_gives_two_names() -> None:
    assert block_name(42, net("10.244.0.0/26")) != block_name(43, net("10.244.0.0/26"))


@pytest.mark.parametrize(
    ("cidr", "capacity", "gateway", "last"),
    [
        ("10.150.0.0/26", 62, "10.150.0.1", "10.150.0.62"),
        ("10.150.0.64/26", 62, "10.150.0.65", "10.150.0.126"),
        ("10.0.0.4/30", 2, "10.0.0.5", "10.0.0.6"),
        ("10.0.0.0/24", 254, "10.0.0.1", "10.0.0.254"),
        ("fd00::/120", 255, "fd00::1", "fd00::ff"),
        ("fd00::/126", 3, "fd00::1", "fd00::3"),
        ("fd00:1::/64", 2**64 - 1, "fd00:1::1", "fd00:1::ffff:ffff:ffff:ffff"),
    ],
)
def test_capacity_gateway_last(cidr: str, capacity: int, gateway: str, last: str) -> None:
    block = block_of(cidr)
    assert block.capacity == capacity
    assert str(block.gateway) == gateway
    assert str(block.address(block.last)) == last


@pytest.mark.parametrize("cidr", ["10.0.0.0/31", "10.0.0.1/32", "fd00::/127", "fd00::/128"])
def test_too_small_blocks_are_rejected(cidr: str) -> None:
    with pytest.raises(ConfigError, match="too small"):
        block_of(cidr)


@pytest.mark.parametrize("cidr", ["10.0.0.1/26", "10.0.0.0/33", "nonsense"])
def test_malformed_cidr_is_a_config_error(cidr: str) -> None:
    with pytest.raises(ConfigError, match="bad block CIDR"):
        block_of(cidr)


def test_network_and_broadcast_are_not_usable() -> None:
    block = block_of("10.150.0.64/26")
    for bad in ("10.150.0.64", "10.150.0.127", "10.150.0.128", "fd00::1"):
        with pytest.raises(ValueError):
            block.offset(bad)
    assert block.offset("10.150.0.65") == 1
    assert block.offset("10.150.0.126") == 62
    # IPv6 has no broadcast: the last address is usable.
    assert block_of("fd00::/120").offset("fd00::ff") == 255


def test_next_free_ipv4() -> None:
    block = block_of("10.0.0.0/26")
    assert block.next_free(set()) == 1
    assert block.next_free({1, 2, 4}) == 3
    assert block.next_free(range(1, 62)) == 62
    # Full: the broadcast offset 63 is never offered.
    assert block.next_free(range(1, 63)) is None


def test_next_free_ipv6_never_walks_the_block() -> None:
    block = block_of("fd00::/64")
    taken = set(range(1, 100_001))
    start = time.perf_counter()
    assert block.next_free(taken) == 100_001
    taken.discard(50_000)
    assert block.next_free(taken) == 50_000
    assert time.perf_counter() - start < 1.0
    small = block_of("fd00::/120")
    assert small.next_free(range(1, 256)) is None
    assert small.next_free(range(1, 255)) == 255


def test_block_repr_and_geometry_cached() -> None:
    assert block_of("10.0.0.0/26") is block_of("10.0.0.0/26")
    assert repr(Block(net("10.0.0.0/26"))) == "Block(10.0.0.0/26)"


def test_lowest_free_block_carves_in_order() -> None:
    domain = net("10.150.0.0/16")
    assert lowest_free_block(domain, 26, []) == net("10.150.0.0/26")
    taken = [net("10.150.0.0/26"), net("10.150.0.128/26")]
    assert lowest_free_block(domain, 26, taken) == net("10.150.0.64/26")
    taken.append(net("10.150.0.64/26"))
    assert lowest_free_block(domain, 26, taken) == net("10.150.0.192/26")


def test_lowest_free_block_skips_longer_and_shorter_taken_blocks() -> None:
    domain = net("10.150.0.0/16")
    # An old /24 block (before ipblocklen changed) covers four /26 blocks.
    assert lowest_free_block(domain, 26, [net("10.150.0.0/24")]) == net("10.150.1.0/26")
    # An old /28 block still makes its /26 unusable.
    assert lowest_free_block(domain, 26, [net("10.150.0.16/28")]) == net("10.150.0.64/26")


def test_lowest_free_block_ignores_what_is_outside() -> None:
    domain = net("10.150.0.0/24")
    outside = [net("10.151.0.0/26"), net("10.149.255.192/26"), net("fd00::/120")]
    assert lowest_free_block(domain, 26, outside) == net("10.150.0.0/26")


def test_lowest_free_block_exhausted() -> None:
    domain = net("10.150.0.0/24")
    taken = [net(f"10.150.0.{i}/26") for i in (0, 64, 128, 192)]
    assert lowest_free_block(domain, 26, taken) is None
    assert lowest_free_block(domain, 26, [net("10.0.0.0/8")]) is None


def test_lowest_free_block_ipv6_huge_domain() -> None:
    domain = net("fd00::/64")  # 2^56 blocks of /120
    taken = [net(f"fd00::{i:x}00/120") for i in range(3)]
    assert lowest_free_block(domain, 120, taken) == net("fd00::300/120")
    # A domain whose addresses are small integers stays IPv6.
    low = lowest_free_block(net("::/96"), 120, [net("::/120")])
    assert low == net("::100/120")
    assert low is not None and low.version == 6


def test_lowest_free_block_rejects_a_bad_length() -> None:
    with pytest.raises(ConfigError):
        lowest_free_block(net("10.0.0.0/16"), 8, [])
