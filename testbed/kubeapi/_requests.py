"""What the HTTP layer hands the API and gets back, and the request info
the real server derives from a URL (k8s.io/apiserver/pkg/endpoints/request)."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass, field

from ._errors import StatusError


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the authorizer saw it, and how it ended."""

    user: str
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        query = self.target.split("?", 1)[1] if "?" in self.target else ""
        return {k: v[-1] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}

    @property
    def bearer(self) -> str | None:
        auth = self.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None


@dataclass
class Response:
    code: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(
        cls, code: int, body: object, headers: list[tuple[str, str]] | None = None
    ) -> Response:
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        return cls(code, data, headers=headers or [])

    @classmethod
    def error(cls, error: StatusError) -> Response:
        headers = []
        if error.retry_after is not None:
            headers.append(("Retry-After", str(max(1, round(error.retry_after)))))
        return cls.json(error.code, error.status(), headers)


@dataclass
class RequestInfo:
    """Which resource a URL names. ``verb`` is the RBAC verb."""

    verb: str
    group: str = ""
    version: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    is_resource: bool = True
    parts: list[str] = field(default_factory=list)


_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "get"}


def truthy(value: str | None) -> bool:
    """A boolean query parameter as the server parses it."""
    return (value or "").lower() in ("1", "t", "true")


def request_info(request: Request) -> RequestInfo:
    """RequestInfoFactory.NewRequestInfo, for /api and /apis paths."""
    segments = [urllib.parse.unquote(s) for s in request.path.strip("/").split("/") if s]
    method_verb = _VERBS.get(request.method, request.method.lower())
    if not segments or segments[0] not in ("api", "apis"):
        return RequestInfo(verb=request.method.lower(), is_resource=False, parts=segments)
    if segments[0] == "api":
        group, rest = "", segments[1:]
    else:
        if len(segments) < 3:
            return RequestInfo(verb=request.method.lower(), is_resource=False, parts=segments)
        group, rest = segments[1], segments[2:]
    if len(rest) < 2:  # /api, /api/v1, /apis/g/v: discovery
        return RequestInfo(verb=request.method.lower(), is_resource=False, parts=segments)
    version, rest = rest[0], rest[1:]
    info = RequestInfo(verb=method_verb, group=group, version=version, parts=segments)
    if rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = "/".join(rest[2:])
    if not info.name and info.verb == "get":
        query = request.query
        info.verb = "watch" if truthy(query.get("watch")) else "list"
        selector = query.get("fieldSelector", "")
        for term in selector.split(","):
            key, sep, value = term.partition("=")
            if sep and key == "metadata.name":
                info.name = value.lstrip("=")
    if not info.name and info.verb == "delete":
        info.verb = "deletecollection"
    return info


def parse_json(body: bytes) -> object:
    """JSON as the server decodes it: whole floats become integers."""

    def number(text: str) -> float | int:
        value = float(text)
        return int(value) if value.is_integer() and abs(value) < 2**63 else value

    return json.loads(body, parse_float=number)
