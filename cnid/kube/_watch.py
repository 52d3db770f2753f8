"""Watch streams: newline-delimited JSON events, parsed from byte chunks.

The parser is a pure object (bytes in, events out) so that recorded streams,
split anywhere, test it without a server. ``WatchStream`` drives it from an
HTTP response body with the inactivity timeout: a watch that stops
delivering bytes (bookmarks included) is a dead connection, whatever TCP
thinks.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import httpx
import msgspec
import trio

from ._errors import ApiError, ApiUnavailable, error_from_status, status_from_object, unavailable
from ._models import KubeObject

T = TypeVar("T", bound=KubeObject)

EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"]
_TYPES: frozenset[str] = frozenset({"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"})
MAX_EVENT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class WatchEvent(Generic[T]):
    """One change. ``object`` is None for BOOKMARK and ERROR, and for an
    object that does not decode into the model (``error`` says why; ``raw``
    still holds it). ``resource_version`` is the object's."""

    type: EventType
    object: T | None
    resource_version: str
    raw: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def name(self) -> str:
        return str(_meta(self.raw).get("name", ""))

    @property
    def namespace(self) -> str:
        return str(_meta(self.raw).get("namespace", ""))


def _meta(raw: dict[str, Any]) -> dict[str, Any]:
    meta = raw.get("metadata")
    return meta if isinstance(meta, dict) else {}


class _RawEvent(msgspec.Struct):
    type: str
    object: msgspec.Raw


_event_decoder = msgspec.json.Decoder(_RawEvent)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])


class WatchStreamParser(Generic[T]):
    """Bytes chunks to WatchEvents. ERROR events come out as events (of
    type ERROR, the Status in ``raw``); the stream turns them into
    exceptions, after the events that preceded them."""

    def __init__(self, model: type[T]) -> None:
        self._decoder = msgspec.json.Decoder(model)
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[WatchEvent[T]]:
        self._buf += data
        if b"\n" not in data:
            if len(self._buf) > MAX_EVENT_BYTES:
                raise ApiUnavailable(f"watch event longer than {MAX_EVENT_BYTES} bytes")
            return []
        *lines, rest = self._buf.split(b"\n")
        self._buf = bytearray(rest)
        return [self.decode(bytes(line)) for line in lines if line.strip()]

    def end(self) -> None:
        """The stream ended: a partial event left over means it was cut."""
        if self._buf.strip():
            raise ApiUnavailable(f"watch stream cut inside an event ({len(self._buf)} bytes)")

    def decode(self, line: bytes) -> WatchEvent[T]:
        try:
            ev = _event_decoder.decode(line)
            raw = _dict_decoder.decode(ev.object)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ApiUnavailable(f"malformed watch event: {exc}: {line[:200]!r}") from exc
        if ev.type not in _TYPES:
            raise ApiUnavailable(f"unknown watch event type {ev.type!r}")
        etype: EventType = ev.type  # type: ignore[assignment]
        rv = str(_meta(raw).get("resourceVersion", ""))
        if etype in ("BOOKMARK", "ERROR"):
            return WatchEvent(etype, None, rv, raw)
        try:
            obj = self._decoder.decode(ev.object)
        except msgspec.ValidationError as exc:
            return WatchEvent(etype, None, rv, raw, error=str(exc))
        return WatchEvent(etype, obj, rv, raw)


def error_of(event: WatchEvent[Any], *, method: str = "", url: str = "") -> ApiError:
    """An ERROR event's Status as its ApiError (410 Expired -> Gone)."""
    return error_from_status(status_from_object(event.raw), method=method, url=url)


class WatchStream(Generic[T]):
    """The events of one open watch, as an async iterator. Ends when the
    server ends the watch (timeoutSeconds); raises the ApiError of an ERROR
    event, ApiUnavailable when the connection breaks or stays silent for
    ``inactivity_timeout`` seconds."""

    def __init__(
        self,
        model: type[T],
        chunks: AsyncIterator[bytes],
        *,
        inactivity_timeout: float,
        method: str = "GET",
        url: str = "",
    ) -> None:
        self._parser: WatchStreamParser[T] = WatchStreamParser(model)
        self._chunks = chunks
        self._inactivity = inactivity_timeout
        self._pending: collections.deque[WatchEvent[T]] = collections.deque()
        self._method = method
        self._url = url
        self._ended = False

    def __aiter__(self) -> WatchStream[T]:
        return self

    async def __anext__(self) -> WatchEvent[T]:
        while not self._pending:
            if self._ended:
                raise StopAsyncIteration
            chunk = await self._next_chunk()
            try:
                if chunk is None:
                    self._ended = True
                    self._parser.end()
                    raise StopAsyncIteration
                self._pending.extend(self._parser.feed(chunk))
            except ApiUnavailable as exc:
                # The parser knows no URL: say which watch broke.
                self._ended = True
                raise ApiUnavailable(exc.message, method=self._method, url=self._url) from exc
        event = self._pending.popleft()
        if event.type == "ERROR":
            self._pending.clear()
            self._ended = True
            raise error_of(event, method=self._method, url=self._url)
        return event

    async def _next_chunk(self) -> bytes | None:
        with trio.move_on_after(self._inactivity):
            try:
                return await self._chunks.__anext__()
            except StopAsyncIteration:
                return None
            except httpx.HTTPError as exc:
                self._ended = True
                raise unavailable(exc, method=self._method, url=self._url) from exc
        self._ended = True
        raise ApiUnavailable(
            f"watch silent for {self._inactivity:g} s", method=self._method, url=self._url
        )
