"""A watched cache of one resource type: list, watch, reconnect, forever.

Three layers, as kopf and lightkube have them: ``run`` reconnects forever
with jittered backoff; each round lists (when it has no resourceVersion to
resume from), then watches from the list's resourceVersion with bookmarks,
re-watching from the last version seen when the server ends the watch and
relisting, quietly, when that version is Gone; the watch request itself has
the inactivity timeout (``KubeClient.watch``).

The cache is ``items``; every change to it is one WatchEvent to the
listeners, whether it came from the watch or from the difference between a
relist and the cache (an object that did not change is not reported, so a
relist after Gone is silent when nothing happened meanwhile).

An object that does not decode into the model is not acted on: its key and
the error go to ``invalid`` (logged once), and the last good version of it,
if any, stays in ``items`` - a schema mismatch must not look like a
deletion to the controllers, which would tear down what the object
describes.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, Generic, NoReturn, TypeVar

import msgspec
import trio

from ..core._notify import Notifier
from ..core._reconcile import Backoff
from ._client import KubeClient, ObjectList
from ._errors import ApiError, Gone
from ._models import KubeObject
from ._resources import ResourceType
from ._watch import EventType, WatchEvent

log = logging.getLogger("cnid.kube")

T = TypeVar("T", bound=KubeObject)

Listener = Callable[[WatchEvent[T]], None]

# Each watch asks for a random timeout in this range, as client-go's
# reflectors do: the watches of many nodes do not all end at once.
_WATCH_SECONDS = (300, 600)
# Two Gones closer than this: back off before the next relist.
_GONE_CALM = 1.0


def object_key(obj: KubeObject) -> str:
    ns = obj.metadata.namespace
    return f"{ns}/{obj.metadata.name}" if ns else obj.metadata.name


def _key(name: str, namespace: str) -> str:
    return f"{namespace}/{name}" if namespace else name


class Reflector(Generic[T]):
    def __init__(
        self,
        client: KubeClient,
        rt: ResourceType[T],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        inactivity_timeout: float = 60.0,
        name: str,
    ) -> None:
        rt.check("list")
        rt.check("watch")
        self.client = client
        self.rt = rt
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.inactivity_timeout = inactivity_timeout
        self.name = name
        self.items: dict[str, T] = {}
        self.invalid: dict[str, str] = {}
        self.synced = trio.Event()
        self.connected = False
        self.last_error = ""
        #: Moves with every change to ``items`` (a ``ChangeSignal``).
        self.changes = Notifier()
        self._listeners: list[Listener[T]] = []
        self._logged_error = ""
        self._logged_invalid: dict[str, str] = {}
        self._rng = random.Random()
        # Where the next watch starts; None: list first.
        self._resource_version: str | None = None

    def __repr__(self) -> str:
        return f"Reflector({self.name}: {self.rt.plural}{self._scope()})"

    def _scope(self) -> str:
        parts = [
            f"namespace={self.namespace}" if self.namespace else "",
            f"labels={self.label_selector}" if self.label_selector else "",
            f"fields={self.field_selector}" if self.field_selector else "",
        ]
        text = ", ".join(p for p in parts if p)
        return f" ({text})" if text else ""

    # -- consumers -----------------------------------------------------------

    def add_listener(self, fn: Listener[T]) -> None:
        """``fn`` is called, synchronously, for every change applied to the
        cache (after it is applied). It must not block."""
        self._listeners.append(fn)

    @property
    def version(self) -> int:
        """The cache's version: a reflector is a ``ChangeSignal``."""
        return self.changes.version

    async def wait_changed(self, seen: int) -> int:
        """Wait until ``version`` differs from ``seen``; returns it."""
        return await self.changes.wait_changed(seen)

    # -- the loop --------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        task_status.started()
        backoff = Backoff(0.2, 30.0)
        last_gone = -_GONE_CALM
        while True:
            try:
                if self._resource_version is None:
                    await self._relist()
                # Only a watch that delivers resets the backoff: a list that
                # works followed by a watch that fails at once (RBAC without
                # "watch", a server expiring every version) must not turn
                # into a loop of full lists.
                if await self._watch():
                    backoff.reset()
                else:
                    # The server ended a watch that delivered nothing:
                    # do not hammer it with empty re-watches.
                    await backoff.sleep()
            except Gone as exc:
                log.debug("%r: %s; listing again", self, exc)
                if self._resource_version is None:
                    # Gone from the list itself: not the usual expiry.
                    self._failed(exc)
                    await backoff.sleep()
                elif trio.current_time() - last_gone < _GONE_CALM:
                    # Expired again right after a relist: something is off
                    # with the server; relist, but not in a tight loop.
                    await backoff.sleep()
                last_gone = trio.current_time()
                self._resource_version = None
            except ApiError as exc:
                # Resume from the last version seen: the next watch either
                # continues where this one broke or answers Gone.
                self._failed(exc)
                delay = await backoff.sleep()
                log.debug("%r: reconnecting after %.1f s", self, delay)

    async def _relist(self) -> None:
        found = await self.client.list(
            self.rt,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self._replace(found)
        self._ok()
        self.synced.set()
        self._resource_version = found.resource_version

    async def _watch(self) -> bool:
        """Watch from the last resourceVersion seen until the server ends
        the watch; True when any event (a bookmark included) came."""
        assert self._resource_version is not None
        progressed = False
        async with self.client.watch(
            self.rt,
            resource_version=self._resource_version,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_seconds=self._rng.randint(*_WATCH_SECONDS),
            inactivity_timeout=self.inactivity_timeout,
        ) as events:
            self._ok()
            async for event in events:
                progressed = True
                if event.type != "BOOKMARK":
                    self._apply(event)
                if event.resource_version:
                    self._resource_version = event.resource_version
        return progressed

    # -- state -----------------------------------------------------------------

    def _ok(self) -> None:
        if self._logged_error:
            log.info("%r: connected again", self)
        self._logged_error = ""
        self.last_error = ""
        self.connected = True

    def _failed(self, exc: ApiError) -> None:
        self.connected = False
        self.last_error = str(exc)
        # One line per change of state, not per attempt: the same error
        # repeated every backoff would drown the log during an outage.
        state = f"{type(exc).__name__} {exc.status} {exc.reason}"
        if state != self._logged_error:
            log.warning("%r: %s (retrying with backoff)", self, exc)
            self._logged_error = state

    def _invalid(self, key: str, error: str) -> None:
        self.invalid[key] = error
        if self._logged_invalid.get(key) != error:
            log.warning("%r: %s %s does not decode, ignored: %s", self, self.rt.kind, key, error)
            self._logged_invalid[key] = error

    def _valid(self, key: str) -> None:
        self.invalid.pop(key, None)
        self._logged_invalid.pop(key, None)

    def _emit(self, etype: EventType, obj: T, raw: dict[str, Any] | None = None) -> None:
        self.changes.bump()
        if not self._listeners:
            return
        if raw is None:
            raw = msgspec.to_builtins(obj)
        event = WatchEvent(etype, obj, obj.metadata.resource_version, raw)
        for fn in self._listeners:
            try:
                fn(event)
            except Exception:
                # A listener's bug must not stop the cache every other
                # controller reads.
                log.exception("%r: listener %r failed on %s", self, fn, etype)

    def _apply(self, event: WatchEvent[T]) -> None:
        key = _key(event.name, event.namespace)
        old = self.items.get(key)
        if event.type == "DELETED":
            self._valid(key)
            if old is not None:
                del self.items[key]
                self._emit("DELETED", event.object or old, event.raw if event.object else None)
            return
        if event.object is None:
            self._invalid(key, event.error)
            return
        self._valid(key)
        obj = event.object
        if old is not None and old.metadata.resource_version == obj.metadata.resource_version:
            return  # seen already (a re-watch overlapping the last one)
        self.items[key] = obj
        self._emit("ADDED" if old is None else "MODIFIED", obj, event.raw)

    def _replace(self, found: ObjectList[T]) -> None:
        """Make the cache the list, reporting only what differs."""
        fresh = {object_key(obj): obj for obj in found.items}
        bad = {_key(i.name, i.namespace): i.error for i in found.invalid}
        for key in list(self.items):
            if key not in fresh and key not in bad:
                self._emit("DELETED", self.items.pop(key))
        for key in list(self.invalid):
            if key not in bad:
                self._valid(key)
        for key, error in bad.items():
            self._invalid(key, error)
        for key, obj in fresh.items():
            self._valid(key)
            old = self.items.get(key)
            if old is not None and old.metadata.resource_version == obj.metadata.resource_version:
                continue
            self.items[key] = obj
            self._emit("ADDED" if old is None else "MODIFIED", obj)
