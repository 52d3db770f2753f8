"""Block arithmetic: names, usable range, gateway, carving a domain.

Pure functions over ``ipaddress`` objects, no I/O. Everything works on
integer offsets so that an IPv6 block (a /64 holds 2^64 addresses) is never
iterated: the next free address is found by skipping the allocated set, the
next free block by skipping the taken intervals.

Per block (the seeds' IPBlock): the network address is never handed out, for
IPv4 the broadcast address neither; the first usable address is the block's
gateway. CAPACITY counts the usable addresses (a /26 has 62), ALLOCATED
counts every allocation including the gateway.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from ..core._errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: A block must hold its gateway and at least one pod.
MIN_CAPACITY = 2


def block_name(vrf: int, network: IPNetwork) -> str:
    """The IPBlock name: ``vrf-200-10-150-0-0-26`` for 10.150.0.0/26 in vrf
    200. IPv6 addresses are written in their canonical (RFC 5952) form with
    ':' (and '.') replaced by '-', nothing else collapsed:
    ``vrf-7-fd00--100-120`` for fd00::100/120. The canonical form makes the
    name unique per block; an IPv4 name never holds ``--``, so IPv4 and
    IPv6 names cannot collide either."""
    addr = str(network.network_address).replace(":", "-").replace(".", "-")
    return f"vrf-{vrf}-{addr}-{network.prefixlen}"


class Block:
    """The geometry of one block: usable offsets ``first..last`` from the
    network address."""

    __slots__ = ("first", "last", "network")

    def __init__(self, network: IPNetwork) -> None:
        self.network = network
        self.first = 1
        # IPv4 keeps the broadcast address out; IPv6 has none.
        self.last = network.num_addresses - (2 if network.version == 4 else 1)
        if self.capacity < MIN_CAPACITY:
            raise ConfigError(
                f"block {network} is too small: it holds {max(self.capacity, 0)} usable "
                f"address(es), a block needs a gateway and at least one pod"
            )

    def __repr__(self) -> str:
        return f"Block({self.network})"

    @property
    def capacity(self) -> int:
        return self.last - self.first + 1

    @property
    def gateway(self) -> IPAddress:
        return self.address(self.first)

    def address(self, offset: int) -> IPAddress:
        return self.network.network_address + offset

    def offset(self, address: IPAddress | str) -> int:
        """The offset of a usable address of this block; ValueError if it is
        not one."""
        addr = ipaddress.ip_address(address)
        if addr.version != self.network.version:
            raise ValueError(f"{addr} is not in {self.network}")
        off = int(addr) - int(self.network.network_address)
        if not self.first <= off <= self.last:
            raise ValueError(f"{addr} is not a usable address of {self.network}")
        return off

    def next_free(self, taken: Iterable[int]) -> int | None:
        """The lowest usable offset not in ``taken``, or None when the block
        is full. Costs O(len(taken)), whatever the block's size."""
        taken_set = taken if isinstance(taken, set | frozenset) else set(taken)
        off = self.first
        while off in taken_set:
            off += 1
        return off if off <= self.last else None


@functools.lru_cache(maxsize=4096)
def block_of(cidr: str) -> Block:
    """The Block for a CIDR string (cached: records carry strings). Raises
    ConfigError for a malformed CIDR, host bits set, or a block too small
    to hold a gateway and a pod (IPv4 /31 and /32, IPv6 /127 and /128)."""
    try:
        network = ipaddress.ip_network(cidr)
    except ValueError as exc:
        raise ConfigError(f"bad block CIDR {cidr!r}: {exc}") from None
    return Block(network)


def lowest_free_block(
    domain: IPNetwork, blocklen: int, taken: Iterable[IPNetwork]
) -> IPNetwork | None:
    """The lowest /``blocklen`` subnet of ``domain`` that overlaps none of
    ``taken``, or None when there is none.

    ``taken`` may hold networks of any length (blocks claimed before the
    domain's ``ipblocklen`` changed) and networks outside the domain (they
    are ignored). Works on intervals of block indices, so a /64 domain
    carved into /120 blocks (2^56 of them) costs O(len(taken) log)."""
    maxlen = domain.max_prefixlen
    if not domain.prefixlen <= blocklen <= maxlen:
        raise ConfigError(f"block length /{blocklen} does not fit in {domain}")
    base = int(domain.network_address)
    size = 1 << (maxlen - blocklen)
    count = 1 << (blocklen - domain.prefixlen)
    end = base + count * size - 1
    intervals: list[tuple[int, int]] = []
    for net in taken:
        if net.version != domain.version:
            continue
        lo = max(int(net.network_address), base)
        hi = min(int(net.broadcast_address), end)
        if lo > hi:
            continue
        intervals.append(((lo - base) // size, (hi - base) // size))
    candidate = 0
    for lo, hi in sorted(intervals):
        if lo > candidate:
            break
        candidate = max(candidate, hi + 1)
    if candidate >= count:
        return None
    # type(domain), not ip_network(): a small integer would read as IPv4.
    return type(domain)((base + candidate * size, blocklen))
