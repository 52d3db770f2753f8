"""One watch: the events after a resourceVersion (or a synthetic ADDED of
everything for "0"), then live events, bookmarks, and the end at
timeoutSeconds, as the watch cache serves them."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._errors import expired
from ._resources import ResourceType
from ._selectors import FieldSelector, LabelSelector
from ._store import Event, Store, Subscription

Send = Callable[[bytes], Awaitable[None]]


def _line(kind: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


class WatchStream:
    """Set up synchronously (so nothing slips between the snapshot or the
    replay and the live feed), then ``run`` streams it."""

    def __init__(
        self,
        *,
        store: Store,
        serve: Callable[[dict[str, Any]], dict[str, Any]],
        rtype: ResourceType,
        version: str,
        namespace: str,
        labels: LabelSelector,
        fields: FieldSelector,
        since: int | None,
        bookmarks: bool,
        interval: float,
        timeout: float,
        on_close: Callable[[WatchStream], None],
    ) -> None:
        self.store = store
        self.serve = serve
        self.rtype = rtype
        self.version = version
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.fns = rtype.field_fns(version)
        self.bookmarks = bookmarks
        self.interval = interval
        self.timeout = timeout
        self.on_close = on_close
        self.scope = trio.CancelScope()
        self.aborted = False
        self.stopping = False
        self._wait: trio.CancelScope | None = None
        self.subscription: Subscription | None = None
        self.initial: list[bytes] = []
        if since is not None and since < store.compacted:
            status = expired(f"too old resource version: {since} ({store.compacted})").status()
            self.initial.append(_line("ERROR", status))
            return
        if since is None:
            for obj in store.list_objects(rtype.group, rtype.plural):
                if self._matches(obj):
                    self.initial.append(_line("ADDED", serve(obj)))
            _, self.subscription = store.subscribe(rtype.group, rtype.plural, None)
            self.since = store.rv
        else:
            backlog, self.subscription = store.subscribe(rtype.group, rtype.plural, since)
            self.since = since
            for event in backlog:
                line = self._convert(event)
                if line:
                    self.initial.append(line)

    def _matches(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        if self.namespace and obj["metadata"].get("namespace", "") != self.namespace:
            return False
        return self.labels.matches(obj) and self.fields.matches(obj, self.fns)

    def _convert(self, event: Event) -> bytes | None:
        """An object that stops matching is DELETED for this watch, one that
        starts matching ADDED (cacheWatcher.convertToWatchEvent)."""
        if event.rv <= self.since:
            return None
        now_ok = self._matches(event.object)
        if event.type == "ADDED":
            return _line("ADDED", self.serve(event.object)) if now_ok else None
        if event.type == "DELETED":
            return _line("DELETED", self.serve(event.object)) if now_ok else None
        was_ok = self._matches(event.previous)
        if now_ok and was_ok:
            return _line("MODIFIED", self.serve(event.object))
        if now_ok:
            return _line("ADDED", self.serve(event.object))
        if was_ok and event.previous is not None:
            gone = dict(event.previous)
            gone["metadata"] = {**gone["metadata"], "resourceVersion": str(event.rv)}
            return _line("DELETED", self.serve(gone))
        return None

    def _bookmark(self) -> bytes:
        return _line(
            "BOOKMARK",
            {
                "kind": self.rtype.kind,
                "apiVersion": self.rtype.api_version(self.version),
                "metadata": {"resourceVersion": str(self.store.rv)},
            },
        )

    def stop(self) -> None:
        """End at the next event boundary: the response then ends cleanly."""
        self.stopping = True
        if self._wait is not None:
            self._wait.cancel()

    def abort(self) -> None:
        """End at once: the HTTP layer drops the connection mid-stream."""
        self.aborted = True
        self.scope.cancel()

    def close(self) -> None:
        """Release the subscription (idempotent; ``run`` ends with it)."""
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        self.on_close(self)

    async def run(self, send: Send) -> None:
        try:
            with self.scope:
                for line in self.initial:
                    await send(line)
                if self.subscription is not None:
                    await self._live(send, self.subscription)
        finally:
            self.close()

    async def _live(self, send: Send, subscription: Subscription) -> None:
        end = trio.current_time() + self.timeout
        next_bookmark = trio.current_time() + self.interval if self.bookmarks else math.inf
        while not self.stopping:
            event: Event | None = None
            with trio.CancelScope(deadline=min(next_bookmark, end)) as self._wait:
                try:
                    event = await subscription.receive.receive()
                except trio.EndOfChannel:
                    return  # the resource went away (its CRD was deleted)
            self._wait = None
            if event is not None:
                line = self._convert(event)
                if line:
                    await send(line)
                continue
            if self.stopping or trio.current_time() >= end:
                return
            while True:
                try:
                    event = subscription.receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                line = self._convert(event)
                if line:
                    await send(line)
            await send(self._bookmark())
            next_bookmark = trio.current_time() + self.interval
