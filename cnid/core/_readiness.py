"""Readiness as a fact: each service says when it is ready and, if it stops
being ready, why. /readyz and CNI STATUS read the same object."""

from __future__ import annotations

from collections.abc import Callable


class Readiness:
    def __init__(self, on_ready: Callable[[], None] | None = None) -> None:
        self._state: dict[str, str] = {}
        #: Called once, the first time the node is ready.
        self._on_ready = on_ready

    def expect(self, component: str, why: str = "starting") -> None:
        """Register a component that is not ready yet."""
        self._state[component] = why

    def set_ready(self, component: str) -> None:
        self._state[component] = ""
        if self._on_ready is not None and self.ready:
            on_ready, self._on_ready = self._on_ready, None
            on_ready()

    def set_not_ready(self, component: str, why: str) -> None:
        self._state[component] = why or "not ready"

    @property
    def ready(self) -> bool:
        return bool(self._state) and not any(self._state.values())

    def reasons(self) -> list[str]:
        return [f"{c}: {why}" for c, why in sorted(self._state.items()) if why]

    def snapshot(self) -> dict[str, str]:
        return {c: (why or "ready") for c, why in sorted(self._state.items())}
