import msgspec
import pytest

from cnid.core import (
    HEADER,
    MAX_FRAME,
    PROTOCOL_VERSION,
    CniRequest,
    CniResponse,
    CtlRequest,
    ProtocolError,
    decode_cni_request,
    decode_cni_response,
    decode_ctl_request,
    frame,
    payload_length,
)


def test_cni_request_round_trip_is_an_array_led_by_the_version() -> None:
    req = CniRequest(PROTOCOL_VERSION, {"CNI_COMMAND": "ADD"}, b'{"a":1}', True)
    data = frame(req)
    assert payload_length(data[: HEADER.size]) == len(data) - HEADER.size
    payload = data[HEADER.size :]
    # What the C plugin relies on: a plain msgpack array, version first.
    assert msgspec.msgpack.decode(payload) == [1, {"CNI_COMMAND": "ADD"}, b'{"a":1}', True]
    assert decode_cni_request(payload) == req


def test_cni_response_round_trip() -> None:
    resp = CniResponse(PROTOCOL_VERSION, 1, b'{"code":11}')
    assert decode_cni_response(frame(resp)[HEADER.size :]) == resp


def test_oversize_header_is_refused_before_reading() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        payload_length(HEADER.pack(MAX_FRAME + 1))


def test_truncated_header() -> None:
    with pytest.raises(ProtocolError, match="truncated"):
        payload_length(b"\x00\x01")


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", msgspec.msgpack.encode([1, {}, b""]), msgspec.msgpack.encode("hello")],
)
def test_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed"):
        decode_cni_request(payload)


def test_other_protocol_version_is_named() -> None:
    payload = msgspec.msgpack.encode([2, {}, b"", False])
    with pytest.raises(ProtocolError, match="version 2"):
        decode_cni_request(payload)


def test_ctl_request_defaults() -> None:
    payload = frame(CtlRequest(PROTOCOL_VERSION, "status"))[HEADER.size :]
    assert decode_ctl_request(payload).args == {}


def test_frame_refuses_to_build_oversize() -> None:
    with pytest.raises(ProtocolError):
        frame(CniResponse(PROTOCOL_VERSION, 0, b"x" * (MAX_FRAME + 1)))
