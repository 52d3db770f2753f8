"""What a test asks of the emulated API server's state, over the wire
(``KubeApi``) or in-process (``InProcessKubeApi``): the request log, the
stored objects, CRDs loaded directly, compaction and injected faults."""

from __future__ import annotations

import copy
from typing import Any

from ._app import App
from ._requests import RequestRecord


class AppAccess:
    _app: App

    @property
    def requests(self) -> list[RequestRecord]:
        """Every resource request so far: who, the RBAC verb, what, and the code."""
        return self._app.requests

    @property
    def resource_version(self) -> int:
        return self._app.store.rv

    def compact(self) -> None:
        """Compact everything before the current resourceVersion: watches
        and exact lists from an older one get 410 Expired."""
        self._app.store.compact()

    def fail_next(self, n: int, status: int = 500, retry_after: float | None = None) -> None:
        """The next ``n`` API requests (not /livez, /readyz, /version) get
        the Status the real server sends for ``status`` (429, 500 or 503),
        with Retry-After when ``retry_after`` is given."""
        if status not in (429, 500, 503):
            raise ValueError(f"cannot inject HTTP {status}: use 429, 500 or 503")
        self._app.faults.extend([(status, retry_after)] * n)

    def objects(
        self, group: str, plural: str, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        """The stored objects of a type (copies), sorted by namespace and name."""
        return self._app.store.list_objects(group, plural, namespace)

    def get_object(
        self, group: str, plural: str, name: str, namespace: str = ""
    ) -> dict[str, Any] | None:
        return self._app.store.get(group, plural, namespace, name)

    def load_crd(self, crd: dict[str, Any]) -> None:
        """Create a CRD directly (as a POST by the admin would)."""
        self._app.load_crd(copy.deepcopy(crd))
