"""The wire protocol between the plugin (or cnictl) and the daemon.

A frame is a 4-byte big-endian unsigned payload length followed by that many
bytes of MessagePack. Every message is a msgspec Struct encoded as an array
(``array_like=True``) whose first element is the protocol version, so the C
plugin can encode and decode it with a few lines and no schema library.
See docs/protocol.md for the byte-level description.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from typing import Any

import msgspec

from ._errors import ProtocolError

PROTOCOL_VERSION = 1
#: The control protocol (cnictl <-> daemon). Version 2 adds answers in
#: several frames (``CtlResponse.more`` / ``part``); a version-1 request
#: gets a version-1 answer, which must fit one frame.
CTL_PROTOCOL_VERSION = 2
CTL_VERSIONS = (1, 2)
#: The largest control request the daemon reads (a command and a few args).
MAX_CTL_REQUEST = 64 * 1024
#: The part of an answer's encoding each frame of a long answer carries.
CTL_PART = 1024 * 1024
#: The largest whole answer cnictl reassembles.
MAX_CTL_ANSWER = 512 * 1024 * 1024
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
    """cnictl to daemon: one operator query (version 1 or 2)."""

    version: int
    command: str
    args: dict[str, str] = {}


class CtlResponse(msgspec.Struct, frozen=True, omit_defaults=True):
    """Daemon to cnictl. An answer that fits one frame has ``data``. A
    longer one (version 2 only) is several frames, each with ``part``, a
    slice of the MessagePack encoding of the data, and ``more`` true on all
    but the last: the reader joins the parts and decodes them."""

    version: int
    ok: bool
    data: Any = None
    error: str = ""
    more: bool = False
    part: bytes | None = None


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


def _decode(
    decoder: msgspec.msgpack.Decoder[Any],
    payload: bytes,
    what: str,
    versions: tuple[int, ...] = (PROTOCOL_VERSION,),
) -> Any:
    try:
        msg = decoder.decode(payload)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ProtocolError(f"malformed {what}: {printable(str(exc))}") from None
    if msg.version not in versions:
        speaks = " or ".join(map(str, versions))
        raise ProtocolError(f"{what} speaks protocol version {msg.version}, we speak {speaks}")
    return msg


def decode_cni_request(payload: bytes) -> CniRequest:
    msg: CniRequest = _decode(_cni_request, payload, "CNI request")
    return msg


def decode_cni_response(payload: bytes) -> CniResponse:
    msg: CniResponse = _decode(_cni_response, payload, "CNI response")
    return msg


def decode_ctl_request(payload: bytes) -> CtlRequest:
    msg: CtlRequest = _decode(_ctl_request, payload, "control request", CTL_VERSIONS)
    return msg


def decode_ctl_response(payload: bytes) -> CtlResponse:
    msg: CtlResponse = _decode(_ctl_response, payload, "control response", CTL_VERSIONS)
    return msg


def ctl_answer_frames(version: int, data: Any) -> Iterator[bytes]:
    """The frames of a successful control answer to a request of
    ``version``: one frame when it fits, else (version 2) parts of
    CTL_PART bytes. ProtocolError for a version-1 answer that does not fit."""
    encoded = _encoder.encode(data)
    if len(encoded) <= MAX_FRAME - 1024:
        yield frame(CtlResponse(version, True, msgspec.Raw(encoded)))
        return
    if version < 2:
        raise ProtocolError(
            f"the answer is {len(encoded)} bytes, more than one frame: this client speaks"
            " control protocol 1, a newer cnictl reads long answers"
        )
    view = memoryview(encoded)
    for start in range(0, len(encoded), CTL_PART):
        part = bytes(view[start : start + CTL_PART])
        more = start + CTL_PART < len(encoded)
        yield frame(CtlResponse(version, True, None, "", more, part))


class CtlAnswer:
    """Reassembles a control answer from its frames (cnictl's side)."""

    def __init__(self, limit: int = MAX_CTL_ANSWER) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = limit

    def add(self, response: CtlResponse) -> CtlResponse | None:
        """Take one frame's response; the whole answer once it is complete."""
        if response.part is None:
            if self.parts:
                raise ProtocolError("a control answer's part is missing")
            return response
        self.size += len(response.part)
        if self.size > self.limit:
            raise ProtocolError(f"control answer larger than {self.limit} bytes")
        self.parts.append(response.part)
        if response.more:
            return None
        try:
            data = msgspec.msgpack.decode(b"".join(self.parts))
        except (msgspec.DecodeError, RecursionError) as exc:
            raise ProtocolError(f"malformed control answer: {exc}") from None
        return CtlResponse(response.version, response.ok, data, response.error)


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str, limit: int = 512) -> str:
    """``text`` safe for one log line: control characters (newlines, NUL,
    escapes, C1) as ``\\xNN`` / ``\\uNNNN``, and at most ``limit`` characters."""
    if len(text) > limit:
        text = text[:limit] + "..."
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)
