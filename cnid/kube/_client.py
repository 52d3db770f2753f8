"""The API client: typed verbs over one httpx.AsyncClient, with retries.

Every request goes through ``_request``, the one place where httpx's
exceptions and error answers become ApiErrors and where retries happen.
Retried: 429, 5xx except 501, and failures without an HTTP answer, with
jittered backoff (or the server's Retry-After) until ``retry_deadline``
after the first attempt; never another 4xx. GET, PUT, PATCH and DELETE are
safe to repeat (reads, or writes under a resourceVersion/uid precondition,
or idempotent merges); a POST is repeated only when the server surely did
not act on it: 429, 503, or a connection that failed before the request
went out.
"""

from __future__ import annotations

import builtins
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar

import httpx
import msgspec
import trio

from ..core._reconcile import Backoff
from ._auth import TokenAuth
from ._config import KubeConfig
from ._errors import (
    ApiError,
    ApiUnavailable,
    InvalidResponse,
    KubeConfigError,
    ProgrammingError,
    ServerError,
    TooManyRequests,
    error_from_response,
    unavailable,
)
from ._models import KubeObject
from ._resources import ResourceType
from ._watch import WatchStream

log = logging.getLogger("cnid.kube")

T = TypeVar("T", bound=KubeObject)

PatchKind = Literal["merge", "json"]
_PATCH_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
}
_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class InvalidItem:
    """A list item that does not decode into the model."""

    name: str
    error: str
    raw: dict[str, Any]
    namespace: str = ""


@dataclass(slots=True)
class ObjectList(Generic[T]):
    items: list[T]
    resource_version: str
    invalid: list[InvalidItem] = field(default_factory=list)


class _ListMeta(msgspec.Struct, rename="camel"):
    resource_version: str = ""


class _ListEnvelope(msgspec.Struct):
    metadata: _ListMeta = msgspec.field(default_factory=_ListMeta)
    items: list[msgspec.Raw] | None = None


_envelope_decoder = msgspec.json.Decoder(_ListEnvelope)
_dict_decoder = msgspec.json.Decoder(dict[str, Any])


def _retryable(err: ApiError, method: str) -> bool:
    if isinstance(err, ApiUnavailable):
        return method != "POST" or not err.sent
    if method == "POST":
        return err.status in (429, 503)
    if isinstance(err, TooManyRequests):
        return True
    return isinstance(err, ServerError) and err.status != 501


def _ssl_context(config: KubeConfig) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(cafile=config.ca_file)
        if config.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if config.cert_file:
            ctx.load_cert_chain(config.cert_file, config.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise KubeConfigError(f"TLS settings for {config.server}: {exc}") from exc
    return ctx


async def _close_stream(response: httpx.Response, chunks: AsyncIterator[bytes]) -> None:
    """Close a streamed response left before its end.

    httpx's body iterators are a chain of async generators; closing the
    outermost one leaves the inner ones suspended, and trio warns about each
    when it is garbage collected. Closing the response first and then
    running the chain to its end (it ends at once, with an error or not, on
    a closed stream) finishes every one of them."""
    await response.aclose()
    try:
        async for _ in chunks:
            pass
    except Exception:
        pass  # whatever a closed stream says on the way out, it is over


class KubeClient:
    """``async with KubeClient(config) as client:`` one connection pool for
    the process. ``transport`` replaces httpx's network transport (tests)."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        timeout: float = 30.0,
        retry_deadline: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.retry_deadline = retry_deadline
        auth = (
            TokenAuth(config.token, config.token_file)
            if config.token or config.token_file
            else None
        )
        self._http = httpx.AsyncClient(
            base_url=config.server,
            verify=_ssl_context(config),
            auth=auth,
            timeout=timeout,
            http1=True,
            http2=False,
            # No proxies, netrc or SSL_CERT_FILE from the environment: the
            # API server is reached as configured, nothing else.
            trust_env=False,
            transport=transport,
            headers={"Accept": _JSON, "User-Agent": "cnid"},
        )

    async def __aenter__(self) -> Self:
        await self._http.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._http.__aexit__(exc_type, exc, tb)

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the one request path ------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = _JSON,
        stream: bool = False,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """A success answer (body read unless ``stream``), after retries;
        else the ApiError of the last attempt."""
        headers = {"Content-Type": content_type} if body is not None else None
        request = self._http.build_request(
            method,
            path,
            params=params,
            content=body,
            headers=headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        url = str(request.url)
        deadline = trio.current_time() + self.retry_deadline
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.HTTPError as exc:
                err: ApiError = unavailable(exc, method=method, url=url)
            else:
                if response.is_success:
                    return response
                try:
                    if stream:
                        await response.aread()
                except httpx.HTTPError as exc:
                    err = unavailable(exc, method=method, url=url)
                else:
                    err = error_from_response(response)
                finally:
                    await response.aclose()
            if not _retryable(err, method):
                raise err
            # Retry-After is a floor: never sooner than the server asked,
            # and never in a tight loop when it says 0.
            delay = max(err.retry_after or 0.0, backoff.next_delay())
            if trio.current_time() + delay > deadline:
                raise err
            log.debug("%s; retrying in %.2f s", err, delay)
            await trio.sleep(delay)

    def _decode(self, rt: ResourceType[T], response: httpx.Response) -> T:
        try:
            return msgspec.json.decode(response.content, type=rt.model)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            req = response.request
            raise InvalidResponse(
                f"answer is not a {rt.kind}: {exc}",
                status=response.status_code,
                method=req.method,
                url=str(req.url),
            ) from exc

    @staticmethod
    def _namespace_of(rt: ResourceType[Any], namespace: str | None) -> str | None:
        if rt.namespaced and not namespace:
            raise ProgrammingError(f"{rt.kind} is namespaced: a namespace is needed")
        return namespace

    @staticmethod
    def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        return params

    def _encode(self, rt: ResourceType[T], obj: T) -> bytes:
        if not isinstance(obj, rt.model):
            raise ProgrammingError(f"{type(obj).__name__} is not a {rt.kind}")
        return msgspec.json.encode(obj)

    # -- verbs ---------------------------------------------------------------

    async def get(self, rt: ResourceType[T], name: str, *, namespace: str | None = None) -> T:
        rt.check("get")
        ns = self._namespace_of(rt, namespace)
        response = await self._request("GET", rt.path(namespace=ns, name=name))
        return self._decode(rt, response)

    async def list(
        self,
        rt: ResourceType[T],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList[T]:
        """All objects (of ``namespace``, or of all namespaces). An item that
        does not decode goes to ``invalid``: one bad object must not hide
        the others."""
        rt.check("list")
        params = self._selectors(label_selector, field_selector)
        response = await self._request("GET", rt.path(namespace=namespace), params=params)
        try:
            envelope = _envelope_decoder.decode(response.content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise InvalidResponse(
                f"answer is not a {rt.kind} list: {exc}",
                status=response.status_code,
                method="GET",
                url=str(response.request.url),
            ) from exc
        decoder = msgspec.json.Decoder(rt.model)
        out: ObjectList[T] = ObjectList([], envelope.metadata.resource_version)
        for raw in envelope.items or ():
            try:
                out.items.append(decoder.decode(raw))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                try:
                    plain = _dict_decoder.decode(raw)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    plain = {}
                meta = plain.get("metadata")
                meta = meta if isinstance(meta, dict) else {}
                out.invalid.append(
                    InvalidItem(
                        name=str(meta.get("name", "")),
                        namespace=str(meta.get("namespace", "")),
                        error=str(exc),
                        raw=plain,
                    )
                )
        return out

    async def create(self, rt: ResourceType[T], obj: T) -> T:
        rt.check("create")
        ns = self._namespace_of(rt, obj.metadata.namespace or None) if rt.namespaced else None
        response = await self._request("POST", rt.path(namespace=ns), body=self._encode(rt, obj))
        return self._decode(rt, response)

    async def replace(self, rt: ResourceType[T], obj: T) -> T:
        """PUT: fails with Conflict unless ``obj.metadata.resource_version``
        is the stored one."""
        rt.check("update")
        return await self._put(rt, obj, subresource="")

    async def replace_status(self, rt: ResourceType[T], obj: T) -> T:
        """PUT .../status: only the status is written (under the same
        resourceVersion precondition)."""
        rt.check("update", status=True)
        return await self._put(rt, obj, subresource="status")

    async def _put(self, rt: ResourceType[T], obj: T, *, subresource: str) -> T:
        ns = self._namespace_of(rt, obj.metadata.namespace or None) if rt.namespaced else None
        if not obj.metadata.name:
            raise ProgrammingError(f"{rt.kind} without a name")
        path = rt.path(namespace=ns, name=obj.metadata.name, subresource=subresource)
        response = await self._request("PUT", path, body=self._encode(rt, obj))
        return self._decode(rt, response)

    async def patch(
        self,
        rt: ResourceType[T],
        name: str,
        body: dict[str, Any] | builtins.list[Any],
        *,
        namespace: str | None = None,
        status: bool = False,
        kind: PatchKind = "merge",
    ) -> T:
        """A merge patch (``body`` a dict, null deletes a key) or a JSON
        patch (``body`` a list of operations; a ``test`` operation makes it
        conditional)."""
        rt.check("patch", status=status)
        if kind not in _PATCH_TYPES:
            raise ProgrammingError(f"patch kind {kind!r}")
        if (kind == "json") != isinstance(body, builtins.list):
            raise ProgrammingError(f"a {kind} patch takes a {'list' if kind == 'json' else 'dict'}")
        ns = self._namespace_of(rt, namespace)
        path = rt.path(namespace=ns, name=name, subresource="status" if status else "")
        response = await self._request(
            "PATCH", path, body=msgspec.json.encode(body), content_type=_PATCH_TYPES[kind]
        )
        return self._decode(rt, response)

    async def delete(
        self,
        rt: ResourceType[T],
        name: str,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        uid: str | None = None,
    ) -> None:
        """DELETE, under resourceVersion and/or uid preconditions (Conflict
        when they fail). NotFound is raised: whether a missing object is
        fine is the caller's call."""
        rt.check("delete")
        ns = self._namespace_of(rt, namespace)
        preconditions: dict[str, str] = {}
        if resource_version:
            preconditions["resourceVersion"] = resource_version
        if uid:
            preconditions["uid"] = uid
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if preconditions:
            options["preconditions"] = preconditions
        await self._request(
            "DELETE", rt.path(namespace=ns, name=name), body=msgspec.json.encode(options)
        )

    @asynccontextmanager
    async def watch(
        self,
        rt: ResourceType[T],
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int | None = None,
        inactivity_timeout: float = 60.0,
    ) -> AsyncIterator[WatchStream[T]]:
        """``async with client.watch(...) as events: async for ev in events``.
        Bookmarks are asked for; opening the watch is retried as any GET,
        the stream itself is not (the caller re-watches from the last
        resourceVersion it saw)."""
        rt.check("watch")
        params = self._selectors(label_selector, field_selector)
        params.update(watch="1", allowWatchBookmarks="true", resourceVersion=resource_version)
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(timeout_seconds)
        # httpx's read timeout backs up the stream's own inactivity timer.
        timeout = httpx.Timeout(self.timeout, read=inactivity_timeout + 5.0)
        response = await self._request(
            "GET", rt.path(namespace=namespace), params=params, stream=True, timeout=timeout
        )
        chunks = response.aiter_bytes()
        try:
            yield WatchStream(
                rt.model,
                chunks,
                inactivity_timeout=inactivity_timeout,
                url=str(response.request.url),
            )
        finally:
            with trio.CancelScope(shield=True, deadline=trio.current_time() + 5.0):
                await _close_stream(response, chunks)
