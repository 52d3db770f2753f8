"""Route targets and route distinguishers: text forms, errors, the 8-octet
encodings both ways, the forms real peers sent (tests/fixtures/evpn), and a
bounded seeded fuzz of the parser."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from cnid.core import (
    ConfigError,
    RouteDistinguisher,
    RouteTarget,
    parse_rd,
    parse_route_target,
    route_targets_in,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evpn"


@pytest.mark.parametrize(
    ("text", "kind", "admin", "number", "wire"),
    [
        # RFC 4360 4: two-octet AS (type 0x00), four-octet number
        ("65000:42", 0, 65000, 42, "0002fde80000002a"),
        ("1:4294967295", 0, 1, 2**32 - 1, "00020001ffffffff"),
        ("65535:70000", 0, 65535, 70000, "0002ffff00011170"),
        # RFC 4360 4: IPv4 address (type 0x01), two-octet number
        ("192.0.2.1:42", 1, 0xC0000201, 42, "0102c0000201002a"),
        ("10.0.0.1:65535", 1, 0x0A000001, 65535, "01020a000001ffff"),
        # RFC 5668: four-octet AS (type 0x02), two-octet number
        ("4200000001:42", 2, 4200000001, 42, "0202fa56ea01002a"),
        ("65536:0", 2, 65536, 0, "020200010000" + "0000"),
        ("4294967295:65535", 2, 2**32 - 1, 65535, "0202ffffffffffff"),
        # ExaBGP's/Cisco's "L": a four-octet AS below 65536
        ("65000L:42", 2, 65000, 42, "02020000fde8002a"),
    ],
)
def test_route_target_forms(text: str, kind: int, admin: int, number: int, wire: str) -> None:
    rt = parse_route_target(text)
    assert (rt.kind, rt.admin, rt.number) == (kind, admin, number)
    assert rt.to_bytes().hex() == wire
    assert rt.community() == int(wire, 16)
    assert RouteTarget.from_community(bytes.fromhex(wire)) == rt
    assert RouteTarget.from_community(int(wire, 16)) == rt
    assert str(rt) == text
    assert parse_route_target(f"target:{text}") == rt


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("65000:42", "0000fde80000002a"),
        ("192.0.2.1:42", "0001c0000201002a"),
        ("4200000001:42", "0002fa56ea01002a"),
    ],
)
def test_rd_forms(text: str, wire: str) -> None:
    rd = parse_rd(text)
    assert rd.to_bytes().hex() == wire
    assert RouteDistinguisher.from_bytes(bytes.fromhex(wire)) == rd
    assert str(rd) == text


def test_kind_is_part_of_the_value() -> None:
    """FRR and GoBGP compare the eight octets: 65000:42 as a two-octet AS
    and as a four-octet AS are different targets (and render apart)."""
    assert parse_route_target("65000:42") != parse_route_target("65000L:42")
    assert str(RouteTarget(2, 65000, 42)) == "65000L:42"


def test_leading_zeros_render_canonically() -> None:
    assert str(parse_route_target("065000:042")) == "65000:42"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "is not ASN:NN or IPv4:NN"),
        ("65000", "is not ASN:NN or IPv4:NN"),
        ("65000:", "is not ASN:NN or IPv4:NN"),
        (":42", "is not ASN:NN or IPv4:NN"),
        ("65000:42:1", "is not ASN:NN or IPv4:NN"),
        ("as65000:42", "is not ASN:NN or IPv4:NN"),
        ("-1:42", "is not ASN:NN or IPv4:NN"),
        ("65000:-1", "is not ASN:NN or IPv4:NN"),
        (" 65000:42", "is not ASN:NN or IPv4:NN"),
        ("2001:db8::1:42", "is not ASN:NN or IPv4:NN"),
        ("*:42", "is not ASN:NN or IPv4:NN"),
        ("0:42", "AS 0 is reserved"),
        ("0L:42", "AS 0 is reserved"),
        ("4294967296:1", "AS 4294967296 over 4294967295"),
        ("65000:4294967296", "number 4294967296 over 4294967295"),
        ("4200000001:65536", "number 65536 over 65535 after a 4-octet AS"),
        ("65000L:65536", "number 65536 over 65535 after a 4-octet AS"),
        ("192.0.2.1:65536", "number 65536 over 65535 after an address"),
        ("192.0.2:42", "'192.0.2' is not an IPv4 address"),
        ("192.0.2.256:42", "is not an IPv4 address"),
        ("0.0.0.0:42", "is not a unicast address"),
        ("224.0.0.5:42", "is not a unicast address"),
        ("255.255.255.255:42", "is not a unicast address"),
        ("192.0.2.1L:42", "'L' marks an AS, not an address"),
        ("1:" + "9" * 40, "too long"),
    ],
)
def test_route_target_errors(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match="route target") as err:
        parse_route_target(text)
    assert why in str(err.value)
    assert repr(text[:32]) in str(err.value) or "not a string" in str(err.value)


def test_rd_errors_name_the_rd() -> None:
    with pytest.raises(ConfigError, match=r"route distinguisher '0:1': AS 0"):
        parse_rd("0:1")
    with pytest.raises(ConfigError, match="unknown type 3"):
        RouteDistinguisher.from_bytes(bytes.fromhex("0003000000000000"))
    with pytest.raises(ConfigError, match="not 8 octets"):
        RouteDistinguisher.from_bytes(b"\x00\x01")


def test_values_out_of_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="does not fit kind 2"):
        RouteTarget(2, 1, 2**16)
    with pytest.raises(ConfigError, match="does not fit kind 0"):
        RouteTarget(0, 2**16, 1)


def test_other_communities_are_not_targets() -> None:
    # the captures' encapsulation (0x030c: VXLAN), router MAC (0x0603) and a
    # non-transitive two-octet-AS target (0x4002)
    assert RouteTarget.from_community(219550481834311688) is None
    assert RouteTarget.from_community(433192188180955139) is None
    assert RouteTarget.from_community(bytes.fromhex("4002fde80000002a")) is None
    assert route_targets_in([219550481834311688, 842122827661412, 2**64, -1, b"\x00"]) == (
        parse_route_target("65000:100"),
    )


def _captured() -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            attrs = json.loads(line)["neighbor"]["message"]["update"].get("attribute", {})
            out += [(c["value"], c["string"]) for c in attrs.get("extended-community", ())]
    return out


def test_captured_targets_round_trip() -> None:
    """Every extended community real FRR 8.4 and GoBGP 3.10 peers sent:
    the targets parse from ExaBGP's string to ExaBGP's value and back, and
    the others are recognised as not targets."""
    captured = _captured()
    targets = [(v, s) for v, s in captured if s.startswith("target:")]
    assert {s for _, s in targets} == {"target:65000:100", "target:65000:5000"}
    for value, text in captured:
        found = RouteTarget.from_community(value)
        if text.startswith("target:"):
            assert found is not None
            assert f"target:{found}" == text
            assert parse_route_target(text).community() == value
        else:
            assert found is None
    assert [str(rt) for rt in route_targets_in([v for v, _ in captured])] == [
        s.removeprefix("target:") for _, s in targets
    ]


def test_captured_rds_match_the_nlri() -> None:
    """The RD ExaBGP prints is the one in the raw NLRI (octets 2..9 of a
    type-2/3/5 route): 10.99.0.3:2 is 00010a6300030002."""
    seen = 0
    for path in sorted(FIXTURES.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            update = json.loads(line)["neighbor"]["message"]["update"]
            for routes in update.get("announce", {}).get("l2vpn evpn", {}).values():
                for route in routes:
                    raw = bytes.fromhex(route["raw"])
                    rd = parse_rd(route["rd"])
                    assert rd.to_bytes() == raw[2:10]
                    assert RouteDistinguisher.from_bytes(raw[2:10]) == rd
                    seen += 1
    assert seen >= 5


def _fuzz_text(rng: random.Random) -> str:
    alphabet = "0123456789:.L*target- \x00é"
    pick = rng.random()
    if pick < 0.4:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
    if pick < 0.7:
        a = rng.choice([0, 1, 65535, 65536, 2**32 - 1, 2**32, rng.randint(0, 2**33)])
        n = rng.choice([0, 65535, 65536, 2**32 - 1, 2**32, rng.randint(0, 2**33)])
        return f"{a}{rng.choice(['', 'L'])}:{n}"
    octets = [rng.randint(0, 300) for _ in range(rng.choice([3, 4, 4, 5]))]
    return ".".join(map(str, octets)) + f":{rng.randint(0, 70000)}"


def test_fuzz_parser_raises_only_config_error() -> None:
    """Seeded and bounded: a text either parses to a value that renders to
    a text parsing back to it, or raises ConfigError; never anything else."""
    rng = random.Random(14)
    parsed = 0
    for _ in range(5000):
        text = _fuzz_text(rng)
        for parse in (parse_route_target, parse_rd):
            try:
                value = parse(text)
            except ConfigError:
                continue
            parsed += 1
            assert parse(str(value)) == value
        raw = bytes([rng.randint(0, 3), rng.choice([2, 2, 3])]) + rng.randbytes(6)
        rt = RouteTarget.from_community(raw)
        if rt is not None:
            assert rt.to_bytes() == raw
        try:
            rd = RouteDistinguisher.from_bytes(b"\x00" + raw[:7])
        except ConfigError:
            continue
        assert rd.to_bytes() == b"\x00" + raw[:7]
    assert parsed > 500
