"""The API errors, one class per answer the callers act on.

httpx's exceptions and the API server's Status bodies are translated here,
at the transport boundary, and nowhere else: above it, code catches
``NotFound`` or ``Conflict``, never a status number. Every class carries CNI
code 11 (try again later): whether an API failure is the caller's fault is
for the CNI boundary to decide, not for the client.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from ..core._errors import CniCode, CnidError

_MAX_BODY_IN_MESSAGE = 512


class KubeConfigError(CnidError):
    """No usable API server configuration (kubeconfig, service account)."""

    code = CniCode.INVALID_ENVIRONMENT


class ProgrammingError(AssertionError):
    """A call that can never be right (a namespace for a cluster-scoped
    kind, a JSON patch that is not a list): a bug in cnid."""


class VerbNotAllowed(ProgrammingError):
    """A verb the resource type does not declare: a bug in cnid, not a
    runtime condition. The declared verbs are what RBAC grants, so calling
    another would fail with 403 in a cluster anyway."""


class StatusCause(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """One entry of a Status's ``details.causes`` (a field that failed
    validation, typically)."""

    reason: str = ""
    message: str = ""
    field: str = ""


class StatusDetails(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    name: str = ""
    group: str = ""
    kind: str = ""
    uid: str = ""
    causes: list[StatusCause] = []
    retry_after_seconds: int = 0


class Status(msgspec.Struct, kw_only=True, rename="camel", omit_defaults=True):
    """metav1.Status, the body of every API error (and of watch ERROR events)."""

    kind: str = ""
    status: str = ""
    message: str = ""
    reason: str = ""
    details: StatusDetails = msgspec.field(default_factory=StatusDetails)
    code: int = 0


class ApiError(CnidError):
    """The API server answered with an error, or did not answer at all
    (``ApiUnavailable``, status 0).

    ``causes`` are the Status's ``details.causes``; ``retry_after`` is the
    delay the server asked for (Retry-After or ``details.retryAfterSeconds``),
    None when it asked for none."""

    code = CniCode.TRY_AGAIN_LATER

    def __init__(
        self,
        message: str,
        *,
        status: int = 0,
        reason: str = "",
        causes: list[StatusCause] | None = None,
        method: str = "",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        self.causes = list(causes or [])
        self.method = method
        self.url = url
        self.retry_after = retry_after
        head = f"{method} {url}: " if method else ""
        code = f"{status} {reason}" if status else reason
        text = f"{head}{code}: {message}" if code else f"{head}{message}"
        details = "; ".join(
            f"{c.field}: {c.message}" if c.field else c.message for c in self.causes
        )
        super().__init__(text, details)


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: the resourceVersion precondition failed, or (AlreadyExists) the
    name is taken."""


class AlreadyExists(Conflict):
    pass


class Gone(ApiError):
    """410 (reason Gone or Expired): the resourceVersion asked for is older
    than what the server keeps; list again."""


class Invalid(ApiError):
    """422: the object does not pass validation; ``causes`` say which field."""


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class TooManyRequests(ApiError):
    pass


class ServerError(ApiError):
    """5xx."""


class ApiUnavailable(ApiError):
    """No HTTP answer: connection refused, reset, timeout, TLS failure, or a
    stream that broke mid-way. ``sent`` is False only when the request
    surely never reached the server (connect failure), the one case where
    retrying a POST cannot create twice."""

    def __init__(self, message: str, *, method: str = "", url: str = "", sent: bool = True) -> None:
        super().__init__(message, method=method, url=url)
        self.sent = sent


class InvalidResponse(ApiError):
    """A success answer whose body does not decode into the expected model."""


_BY_STATUS: dict[int, type[ApiError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def error_class(status: int, reason: str) -> type[ApiError]:
    if reason in ("Expired", "Gone"):
        return Gone
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExists
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, ApiError)


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; the HTTP-date form is not used by the API
    server and is ignored."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_status(
    st: Status,
    *,
    http_status: int = 0,
    method: str = "",
    url: str = "",
    retry_after: float | None = None,
) -> ApiError:
    """The ApiError for a decoded Status (an error answer's body or a watch
    ERROR event's object)."""
    status = st.code or http_status
    reason = st.reason
    if retry_after is None and st.details.retry_after_seconds > 0:
        retry_after = float(st.details.retry_after_seconds)
    cls = error_class(status, reason)
    return cls(
        st.message or reason or f"HTTP {status}",
        status=status,
        reason=reason,
        causes=st.details.causes,
        method=method,
        url=url,
        retry_after=retry_after,
    )


def error_from_response(response: httpx.Response) -> ApiError:
    """The ApiError for an error answer whose body has been read. A body
    that is not a Status (a proxy's HTML page, plain text) still gives the
    class of its HTTP status, with the text as message."""
    request = response.request
    method, url = request.method, str(request.url)
    retry_after = _parse_retry_after(response.headers.get("retry-after"))
    body = response.content
    try:
        st = msgspec.json.decode(body, type=Status)
    except (msgspec.DecodeError, msgspec.ValidationError):
        st = None
    if st is not None and st.kind == "Status":
        # The HTTP status is authoritative: a Status's code may be 0.
        st.code = response.status_code
        return error_from_status(st, method=method, url=url, retry_after=retry_after)
    text = body.decode("utf-8", "replace").strip()
    if len(text) > _MAX_BODY_IN_MESSAGE:
        text = text[:_MAX_BODY_IN_MESSAGE] + "..."
    status = response.status_code
    reason = response.reason_phrase
    cls = error_class(status, "")
    return cls(
        text or reason or f"HTTP {status}",
        status=status,
        reason=reason,
        method=method,
        url=url,
        retry_after=retry_after,
    )


def unavailable(exc: httpx.HTTPError, *, method: str, url: str) -> ApiUnavailable:
    """The translation of every httpx exception. Connect failures (refused,
    TLS handshake, connect or pool timeout) happen before the request left."""
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    kind = type(exc).__name__
    message = f"{kind}: {exc}" if str(exc) else kind
    # httpx's and httpcore's connect errors may carry no text of their own,
    # the reason (a TLS verification failure, say) being down the chain.
    cause: BaseException | None = exc
    for _ in range(8):
        if cause is None or str(cause):
            break
        cause = cause.__cause__ or cause.__context__
    if cause is not None and cause is not exc:
        message = f"{message}: {type(cause).__name__}: {cause}"
    return ApiUnavailable(message, method=method, url=url, sent=sent)


def status_from_object(obj: Any) -> Status:
    """A watch ERROR event's object as a Status (best effort: a malformed
    one still gives an ApiError)."""
    try:
        return msgspec.convert(obj, type=Status)
    except msgspec.ValidationError:
        return Status(message=str(obj)[:_MAX_BODY_IN_MESSAGE], code=500)
