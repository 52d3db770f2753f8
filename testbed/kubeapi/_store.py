"""Objects, the global resourceVersion, and the event history watches
replay from: what etcd plus the watch cache are to the real server.

Every write is synchronous (no await between reading the current state and
storing the new one), so under trio each write is atomic, and an event is
handed to every subscriber in the same step that bumps the resourceVersion:
a watcher that empties its queue has seen everything up to the current one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import trio

# The real watch cache keeps a bounded window too; older events compact away.
HISTORY_LIMIT = 100_000

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


@dataclass(frozen=True)
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    group: str
    plural: str
    object: dict[str, Any]
    previous: dict[str, Any] | None

    @property
    def namespace(self) -> str:
        return str(self.object["metadata"].get("namespace", ""))


class Subscription:
    def __init__(
        self, store: Store, group: str, plural: str, receive: trio.MemoryReceiveChannel[Event]
    ) -> None:
        self.store = store
        self.group = group
        self.plural = plural
        self.receive = receive

    def close(self) -> None:
        self.store._unsubscribe(self)
        self.receive.close()


class Store:
    def __init__(self) -> None:
        self.rv = 0
        self.compacted = 0  # watches from below this rv get 410 Expired
        self._objects: dict[tuple[str, str], dict[Key, dict[str, Any]]] = {}
        self._history: list[Event] = []
        self._subscribers: dict[Subscription, trio.MemorySendChannel[Event]] = {}

    # -- reads (copies: callers may change what they get) ----------------------

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self._objects.get((group, plural), {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """Sorted by (namespace, name), the order of etcd's keys."""
        objects = self._objects.get((group, plural), {})
        return [
            copy.deepcopy(objects[key])
            for key in sorted(objects)
            if namespace is None or key[0] == namespace
        ]

    def count(self, group: str, plural: str) -> int:
        return len(self._objects.get((group, plural), {}))

    # -- writes --------------------------------------------------------------

    def put(self, group: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a created or updated object under a new resourceVersion."""
        meta = obj["metadata"]
        key = (str(meta.get("namespace", "")), str(meta["name"]))
        objects = self._objects.setdefault((group, plural), {})
        previous = objects.get(key)
        self.rv += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.rv)
        objects[key] = stored
        self._publish(
            Event(self.rv, "MODIFIED" if previous else "ADDED", group, plural, stored, previous)
        )
        return copy.deepcopy(stored)

    def delete(self, group: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Remove an object; ``obj`` is its last state, as the DELETED event carries it."""
        meta = obj["metadata"]
        key = (str(meta.get("namespace", "")), str(meta["name"]))
        previous = self._objects.get((group, plural), {}).pop(key, None)
        self.rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._publish(Event(self.rv, "DELETED", group, plural, gone, previous))
        return copy.deepcopy(gone)

    def drop_type(self, group: str, plural: str) -> None:
        """Forget a resource type (its CRD is gone): its watches end."""
        self._objects.pop((group, plural), None)
        for subscription in list(self._subscribers):
            if (subscription.group, subscription.plural) == (group, plural):
                self._subscribers.pop(subscription).close()

    def dump(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Every object as (group, plural, object), for a state file."""
        return [
            (group, plural, copy.deepcopy(objects[key]))
            for (group, plural), objects in sorted(self._objects.items())
            for key in sorted(objects)
        ]

    def restore(self, rv: int, objects: list[tuple[str, str, dict[str, Any]]]) -> None:
        """Replace everything with a dump taken at ``rv``, as after a restart.

        The counter moves one past ``rv`` and everything before that counts
        as compacted: a client resuming a watch from a pre-restart
        resourceVersion gets 410 Expired and relists, as after an etcd
        compaction, while the resourceVersion of a list after the restart
        is watchable (no relist loop) and no resourceVersion repeats."""
        if self._subscribers:
            raise RuntimeError("cannot restore a store that has watches")
        self._objects = {}
        for group, plural, obj in objects:
            meta = obj["metadata"]
            key = (str(meta.get("namespace", "")), str(meta["name"]))
            self._objects.setdefault((group, plural), {})[key] = copy.deepcopy(obj)
        self._history.clear()
        self.rv = rv + 1
        self.compacted = self.rv

    def compact(self) -> None:
        """Forget the history: resourceVersions below the current one expire."""
        self.compacted = self.rv
        self._history.clear()

    def _publish(self, event: Event) -> None:
        self._history.append(event)
        if len(self._history) > HISTORY_LIMIT:
            dropped = self._history[: len(self._history) - HISTORY_LIMIT]
            del self._history[: len(dropped)]
            self.compacted = dropped[-1].rv
        for subscription, send in list(self._subscribers.items()):
            if subscription.group == event.group and subscription.plural == event.plural:
                try:
                    send.send_nowait(event)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._subscribers.pop(subscription, None)

    # -- watches ---------------------------------------------------------------

    def subscribe(
        self, group: str, plural: str, since: int | None
    ) -> tuple[list[Event], Subscription]:
        """Events after ``since`` from the history, then a live feed, with
        nothing lost or repeated between the two. The caller checks
        ``since >= compacted`` first."""
        send, receive = trio.open_memory_channel[Event](math.inf)
        subscription = Subscription(self, group, plural, receive)
        self._subscribers[subscription] = send
        backlog = []
        if since is not None:
            backlog = [
                e for e in self._history if e.rv > since and e.group == group and e.plural == plural
            ]
        return backlog, subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        send = self._subscribers.pop(subscription, None)
        if send is not None:
            send.close()
