"""The wire protocol between the plugin (or cnictl) and the daemon.

A frame is a 4-byte big-endian unsigned payload length followed by that many
bytes of MessagePack. Every message is a msgspec Struct encoded as an array
(``array_like=True``) whose first element is the protocol version, so the C
plugin can encode and decode it with a few lines and no schema library.
See docs/protocol.md for the byte-level description.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from ._errors import ProtocolError

PROTOCOL_VERSION = 1
#: The largest payload either side accepts. The plugin refuses stdin larger
#: than MAX_STDIN before it connects, so a well-behaved plugin never hits it.
MAX_FRAME = 4 * 1024 * 1024
MAX_STDIN = 1024 * 1024
HEADER = struct.Struct(">I")


class CniRequest(msgspec.Struct, array_like=True, frozen=True):
    """Plugin to daemon: one CNI invocation.

    ``env`` holds every ``CNI_*`` variable of the plugin's environment,
    ``stdin`` the network configuration exactly as read. When ``has_netns``
    is true the frame carried one file descriptor (SCM_RIGHTS): the opened
    ``CNI_NETNS``.
    """

    version: int
    env: dict[str, str]
    stdin: bytes
    has_netns: bool


class CniResponse(msgspec.Struct, array_like=True, frozen=True):
    """Daemon to plugin: what to print on stdout and the exit status."""

    version: int
    exit_code: int
    stdout: bytes


class CtlRequest(msgspec.Struct, frozen=True):
    """cnictl to daemon: one operator query."""

    version: int
    command: str
    args: dict[str, str] = {}


class CtlResponse(msgspec.Struct, frozen=True):
    version: int
    ok: bool
    data: Any = None
    error: str = ""


_encoder = msgspec.msgpack.Encoder()
_cni_request = msgspec.msgpack.Decoder(CniRequest)
_cni_response = msgspec.msgpack.Decoder(CniResponse)
_ctl_request = msgspec.msgpack.Decoder(CtlRequest)
_ctl_response = msgspec.msgpack.Decoder(CtlResponse)


def frame(msg: msgspec.Struct) -> bytes:
    payload = _encoder.encode(msg)
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(payload)) + payload


def payload_length(header: bytes) -> int:
    """The payload length announced by a frame header, checked against the limit."""
    if len(header) != HEADER.size:
        raise ProtocolError("truncated frame header")
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ProtocolError(f"frame of {length} bytes exceeds the limit of {MAX_FRAME}")
    return int(length)


def _decode(decoder: msgspec.msgpack.Decoder[Any], payload: bytes, what: str) -> Any:
    try:
        msg = decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed {what}: {exc}") from None
    if msg.version != PROTOCOL_VERSION:
        raise ProtocolError(
            f"{what} speaks protocol version {msg.version}, this daemon speaks {PROTOCOL_VERSION}"
        )
    return msg


def decode_cni_request(payload: bytes) -> CniRequest:
    msg: CniRequest = _decode(_cni_request, payload, "CNI request")
    return msg


def decode_cni_response(payload: bytes) -> CniResponse:
    msg: CniResponse = _decode(_cni_response, payload, "CNI response")
    return msg


def decode_ctl_request(payload: bytes) -> CtlRequest:
    msg: CtlRequest = _decode(_ctl_request, payload, "control request")
    return msg


def decode_ctl_response(payload: bytes) -> CtlResponse:
    msg: CtlResponse = _decode(_ctl_response, payload, "control response")
    return msg
