"""Kubernetes ``Status`` errors, built the way the real API server builds them.

Clients key their behaviour on ``code``, ``reason`` and ``details``, and
people read ``message``: both are copied from k8s.io/apimachinery's
``errors`` and ``field`` packages (1.31) so a test that passes against the
emulation sees what a real cluster would send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

_OMIT = object()

# field.ErrorType -> the words Go prints for it.
_TYPE_WORDS = {
    "FieldValueNotFound": "Not found",
    "FieldValueRequired": "Required value",
    "FieldValueDuplicate": "Duplicate value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "InternalError": "Internal error",
    "FieldValueTypeInvalid": "Invalid value",
}
# Types whose body leaves the value out, as field.Error.ErrorBody does.
_NO_VALUE = {"FieldValueRequired", "FieldValueForbidden", "FieldValueTooLong", "InternalError"}


class GoLiteral(str):
    """A value already printed the Go way (``0x0`` for a uint64 zero...)."""


def go_value(value: Any) -> str:
    """A JSON value as Go's ``%v``/``%q`` prints it in a field error."""
    if isinstance(value, GoLiteral):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class FieldError:
    """One entry of a field.ErrorList: becomes a ``cause`` of an Invalid Status."""

    type: str
    field: str
    value: Any = _OMIT
    detail: str = ""

    def body(self) -> str:
        text = _TYPE_WORDS[self.type]
        if self.type not in _NO_VALUE and self.value is not _OMIT:
            text = f"{text}: {go_value(self.value)}"
        if self.detail:
            text = f"{text}: {self.detail}"
        return text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueInvalid", path, value, detail)


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("FieldValueTypeInvalid", path, value, detail)


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, detail=detail)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, detail=detail)


def not_supported(path: str, value: Any, valid: list[Any]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(str(v)) for v in valid)
    return FieldError("FieldValueNotSupported", path, value, detail if valid else "")


def too_long(path: str, max_length: int) -> FieldError:
    return FieldError("FieldValueTooLong", path, detail=f"may not be longer than {max_length}")


def too_many(path: str, actual: int, max_items: int) -> FieldError:
    return FieldError("FieldValueTooMany", path, actual, f"must have at most {max_items} items")


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, value)


class StatusError(Exception):
    """An API error: raised anywhere below the handlers, turned into a
    ``Status`` response in one place (the app's request handler)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _details(group: str, kind: str, name: str = "", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if group:
        out["group"] = group
    if kind:
        out["kind"] = kind
    out.update(extra)
    return out


def qualified(plural: str, group: str) -> str:
    """schema.GroupResource.String(): ``pods``, ``vrfdomains.cni.pyroute2.org``."""
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> StatusError:
    return StatusError(
        404,
        "NotFound",
        f"{qualified(plural, group)} {json.dumps(name)} not found",
        _details(group, plural, name),
    )


def resource_not_found() -> StatusError:
    """What the server answers for a URL that names no served resource."""
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def already_exists(group: str, plural: str, name: str) -> StatusError:
    return StatusError(
        409,
        "AlreadyExists",
        f"{qualified(plural, group)} {json.dumps(name)} already exists",
        _details(group, plural, name),
    )


def conflict(group: str, plural: str, name: str, why: str) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f"Operation cannot be fulfilled on {qualified(plural, group)} {json.dumps(name)}: {why}",
        _details(group, plural, name),
    )


MODIFIED = (
    "the object has been modified; please apply your changes to the latest version and try again"
)


def invalid_object(group: str, kind: str, name: str, errors: list[FieldError]) -> StatusError:
    """NewInvalid: ``Kind.group "name" is invalid: <aggregate>``."""
    messages: list[str] = []
    for error in errors:
        if str(error) not in messages:
            messages.append(str(error))
    aggregate = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
    qualified_kind = f"{kind}.{group}" if group else kind
    causes = [{"reason": e.type, "message": e.body(), "field": e.field} for e in errors]
    return StatusError(
        422,
        "Invalid",
        f"{qualified_kind} {json.dumps(name)} is invalid: {aggregate}",
        _details(group, kind, name, causes=causes),
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def forbidden_request(group: str, resource: str, name: str, why: str) -> StatusError:
    what = qualified(resource, group)
    message = (
        f"{what} {json.dumps(name)} is forbidden: {why}" if name else f"{what} is forbidden: {why}"
    )
    return StatusError(403, "Forbidden", message, _details(group, resource, name))


def method_not_allowed() -> StatusError:
    return StatusError(
        405,
        "MethodNotAllowed",
        "the server does not allow this method on the requested resource",
        {},
    )


def unsupported_media_type(accepted: list[str]) -> StatusError:
    return StatusError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def injected(code: int, retry_after: float | None) -> StatusError:
    """The Status the real server sends for each injectable failure."""
    details: dict[str, Any] | None = None
    if retry_after is not None:
        details = {"retryAfterSeconds": max(1, round(retry_after))}
    if code == 429:
        return StatusError(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
            details or {},
            retry_after,
        )
    if code == 503:
        return StatusError(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
            details,
            retry_after,
        )
    if code == 500:
        causes = {"causes": [{"message": "injected fault"}]}
        return StatusError(
            500,
            "InternalError",
            "Internal error occurred: injected fault",
            {**(details or {}), **causes},
            retry_after,
        )
    raise ValueError(f"cannot inject HTTP {code}: use 429, 500 or 503")
