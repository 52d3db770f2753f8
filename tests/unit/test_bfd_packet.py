"""BFD control packets (RFC 5880 4.1): the encoder, the strict decoder and
its reception checks (6.8.6), and a seeded fuzz: the decoder raises nothing
but BadPacket."""

from __future__ import annotations

import random

import msgspec
import pytest

from cnid.bfd import (
    MANDATORY_LENGTH,
    BadPacket,
    BfdError,
    ControlPacket,
    Diag,
    Discard,
    State,
    decode,
    encode,
)

UP = ControlPacket(
    state=State.UP,
    detect_mult=3,
    my_discr=0x01020304,
    your_discr=0x0A0B0C0D,
    desired_min_tx=300_000,
    required_min_rx=300_000,
)

# As FRR's bfdd sends it: version 1, diag 0, Up, mult 3, 300 ms, echo 50 ms.
FRR_UP = bytes.fromhex("20c00318 01020304 0a0b0c0d 000493e0 000493e0 0000c350")


def test_encodes_the_mandatory_section() -> None:
    assert encode(UP) == FRR_UP[:20] + bytes(4)
    assert len(encode(UP)) == MANDATORY_LENGTH


def test_decodes_frr_packet() -> None:
    assert decode(FRR_UP) == ControlPacket(
        state=State.UP,
        detect_mult=3,
        my_discr=0x01020304,
        your_discr=0x0A0B0C0D,
        desired_min_tx=300_000,
        required_min_rx=300_000,
        required_min_echo_rx=50_000,
    )


@pytest.mark.parametrize(
    "packet",
    [
        UP,
        ControlPacket(state=State.DOWN, diag=Diag.CONTROL_DETECTION_TIME_EXPIRED, detect_mult=1,
                      my_discr=1, desired_min_tx=1_000_000, required_min_rx=1),
        ControlPacket(state=State.ADMIN_DOWN, diag=Diag.ADMINISTRATIVELY_DOWN, detect_mult=255,
                      my_discr=0xFFFF_FFFF, desired_min_tx=0xFFFF_FFFF, required_min_rx=0),
        ControlPacket(state=State.INIT, poll=True, cpi=True, demand=True, detect_mult=5,
                      my_discr=7, your_discr=9, desired_min_tx=50_000, required_min_rx=50_000),
        ControlPacket(state=State.UP, final=True, diag=Diag.REVERSE_CONCATENATED_PATH_DOWN,
                      detect_mult=3, my_discr=7, your_discr=9, desired_min_tx=1,
                      required_min_rx=2, required_min_echo_rx=3),
    ],
)  # fmt: skip
def test_round_trip(packet: ControlPacket) -> None:
    assert decode(encode(packet)) == packet


def test_bits_on_the_wire() -> None:
    wire = encode(
        ControlPacket(state=State.INIT, poll=True, final=True, cpi=True, demand=True,
                      detect_mult=2, my_discr=1, desired_min_tx=1, required_min_rx=1)
    )  # fmt: skip
    assert wire[1] == 0b10_111010  # Init, P F C . D .


def encode_raw(
    *,
    version: int = 1,
    diag: int = 0,
    state: int = 3,
    flags: int = 0,
    mult: int = 3,
    length: int = 24,
    my: int = 1,
    your: int = 2,
    tail: bytes = b"",
) -> bytes:
    head = bytes([(version << 5) | diag, (state << 6) | flags, mult, length])
    body = my.to_bytes(4, "big") + your.to_bytes(4, "big") + bytes(12)
    return head + body + tail


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", Discard.SHORT),
        (encode_raw()[:23], Discard.SHORT),
        (encode_raw(length=28), Discard.SHORT),  # Length beyond the datagram
        (encode_raw(version=0), Discard.VERSION),
        (encode_raw(version=2), Discard.VERSION),
        (encode_raw(length=23), Discard.LENGTH),
        (encode_raw(length=0), Discard.LENGTH),
        (encode_raw(flags=0x04), Discard.LENGTH),  # A bit: 26 at least
        (encode_raw(flags=0x04, length=26, tail=b"\x01\x02"), Discard.AUTHENTICATION),
        (encode_raw(flags=0x04, length=32, tail=bytes(8)), Discard.AUTHENTICATION),
        (encode_raw(mult=0), Discard.MULTIPLIER),
        (encode_raw(flags=0x01), Discard.MULTIPOINT),
        (encode_raw(my=0), Discard.MY_DISCRIMINATOR),
        (encode_raw(your=0, state=3), Discard.YOUR_DISCRIMINATOR),
        (encode_raw(your=0, state=2), Discard.YOUR_DISCRIMINATOR),
        (encode_raw(diag=9), Discard.DIAG),
        (encode_raw(diag=31), Discard.DIAG),
    ],
)
def test_reception_checks(data: bytes, reason: Discard) -> None:
    with pytest.raises(BadPacket) as info:
        decode(data)
    assert info.value.reason is reason
    assert isinstance(info.value, BfdError)


def test_zero_your_discriminator_is_fine_while_down() -> None:
    assert decode(encode_raw(your=0, state=1)).state is State.DOWN
    assert decode(encode_raw(your=0, state=0)).state is State.ADMIN_DOWN


def test_longer_datagram_than_length_is_accepted() -> None:
    assert decode(encode_raw(tail=b"junk")).my_discr == 1


@pytest.mark.parametrize("field", ["my_discr", "your_discr", "desired_min_tx"])
def test_encoder_refuses_what_does_not_fit(field: str) -> None:
    with pytest.raises(BfdError):
        encode(msgspec.structs.replace(UP, **{field: 1 << 32}))
    with pytest.raises(BfdError):
        encode(msgspec.structs.replace(UP, detect_mult=256))


def test_fuzz_decoder_raises_only_bad_packet() -> None:
    rng = random.Random(5880)
    valid = [encode(UP), FRR_UP, encode_raw(state=1, your=0)]
    outcomes: dict[str, int] = {}
    for i in range(20_000):
        if i % 3 == 0:
            data = rng.randbytes(rng.randrange(0, 64))
        else:
            buf = bytearray(rng.choice(valid))
            for _ in range(rng.randrange(1, 4)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            if rng.random() < 0.2:
                buf = buf[: rng.randrange(len(buf) + 1)] + rng.randbytes(rng.randrange(8))
            data = bytes(buf)
        try:
            packet = decode(data)
        except BadPacket as exc:
            outcomes[exc.reason.value] = outcomes.get(exc.reason.value, 0) + 1
            continue
        outcomes["ok"] = outcomes.get("ok", 0) + 1
        # what decodes re-encodes to the same mandatory section (Length aside)
        again = encode(packet)
        assert again[:3] == data[:3] and again[4:24] == data[4:24]
    assert outcomes["ok"] > 1000
    assert len(outcomes) >= 8  # the mutations reach most checks
