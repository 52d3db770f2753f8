"""Bearer token authentication, with the service account token re-read
when the kubelet rotates it.

Projected tokens expire (an hour by default) and are replaced on disk by an
atomic symlink swap; a client that read the token once starts getting 401
after the expiry. The file is stat()ed before each request (cheap, and it
follows the symlink) and re-read when its identity or mtime changed; a 401
forces one re-read and one retry, in case the swap happened between the two.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator

import httpx

from ._errors import KubeConfigError

log = logging.getLogger("cnid.kube")


class TokenAuth(httpx.Auth):
    requires_request_body = False
    requires_response_body = False

    def __init__(self, token: str | None = None, token_file: str | None = None) -> None:
        assert token or token_file
        self._token = token or ""
        self._file = token_file
        self._stamp: tuple[int, int, int, int] | None = None

    def _refresh(self, *, force: bool = False) -> None:
        if self._file is None:
            return
        try:
            st = os.stat(self._file)
            stamp = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp == self._stamp and not force:
                return
            with open(self._file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as exc:
            if not self._token:
                raise KubeConfigError(f"cannot read the token file {self._file}: {exc}") from exc
            # Keep the previous token: the file may be mid-swap; a 401 will
            # tell if the old one is no longer good.
            log.warning("cannot re-read the token file %s: %s", self._file, exc)
            return
        if not token:
            if not self._token:
                raise KubeConfigError(f"the token file {self._file} is empty")
            return
        if self._token and token != self._token:
            log.info("token file %s changed: using the new token", self._file)
        self._token = token
        self._stamp = stamp

    @property
    def token(self) -> str:
        self._refresh()
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        used = self.token
        request.headers["Authorization"] = f"Bearer {used}"
        response = yield request
        if response.status_code == 401 and self._file is not None:
            self._refresh(force=True)
            if self._token != used:
                request.headers["Authorization"] = f"Bearer {self._token}"
                yield request
