"""Readiness as a fact: each service says when it is ready and, if it stops
being ready, why. /readyz and CNI STATUS read the same object, and a
service that waits for another's readiness waits on it as on any change
signal (``version`` moves when a component's state does)."""

from __future__ import annotations

from collections.abc import Callable

from ._notify import Notifier


class Readiness:
    def __init__(self, on_ready: Callable[[], None] | None = None) -> None:
        self._state: dict[str, str] = {}
        #: Called once, the first time the node is ready.
        self._on_ready = on_ready
        self._changes = Notifier()

    @property
    def version(self) -> int:
        return self._changes.version

    async def wait_changed(self, seen: int) -> None:
        await self._changes.wait_changed(seen)

    def _set(self, component: str, why: str) -> None:
        if self._state.get(component) != why:
            self._state[component] = why
            self._changes.bump()

    def expect(self, component: str, why: str = "starting") -> None:
        """Register a component that is not ready yet."""
        self._set(component, why)

    def set_ready(self, component: str) -> None:
        self._set(component, "")
        if self._on_ready is not None and self.ready:
            on_ready, self._on_ready = self._on_ready, None
            on_ready()

    def set_not_ready(self, component: str, why: str) -> None:
        self._set(component, why or "not ready")

    @property
    def ready(self) -> bool:
        return bool(self._state) and not any(self._state.values())

    def reasons(self) -> list[str]:
        return [f"{c}: {why}" for c, why in sorted(self._state.items()) if why]

    def snapshot(self) -> dict[str, str]:
        return {c: (why or "ready") for c, why in sorted(self._state.items())}
