"""The API: authentication, fault injection, authorization, routing, and
the read paths (get, list, watch, discovery). Writes go to ``Objects``.

HTTP-agnostic: ``handle`` takes a parsed request and answers a Response or
a WatchStream that the HTTP layer streams."""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import json
import logging
from typing import Any

import yaml

from . import _errors as E
from ._objects import (
    APPLY_PATCH,
    BUILTIN_PATCH_TYPES,
    CR_PATCH_TYPES,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    Objects,
)
from ._rbac import PUBLIC_PATHS, Rule, refusal
from ._requests import (
    Request,
    RequestInfo,
    RequestRecord,
    Response,
    parse_json,
    request_info,
    truthy,
)
from ._resources import CRD_GROUP, CRD_PLURAL, Registry, ResourceType, crd_to_type
from ._selectors import parse_field_selector, parse_label_selector
from ._state import State, StoredObject
from ._store import Store
from ._watch import WatchStream

log = logging.getLogger("testbed.kubeapi")

ADMIN_USER = "kubernetes-admin"
# Not a Kubernetes path: the request log for tests in another process.
DEBUG_REQUESTS = "/debug/requests"
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# The real server picks a random timeout in [minRequestTimeout, 2x]; we take the low end.
DEFAULT_WATCH_TIMEOUT = 1800.0
VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0",
    "gitCommit": "9edcffcde5595e8a5b1a35f88c421764e575afce",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T07:28:49Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_BODY_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class App:
    def __init__(
        self,
        *,
        admin_token: str,
        bookmark_interval: float = 1.0,
        rbac_rules: list[Rule] | None = None,
    ) -> None:
        self.registry = Registry()
        self.store = Store()
        self.objects = Objects(self.registry, self.store)
        self.tokens: dict[str, str] = {admin_token: ADMIN_USER}
        self.rules = rbac_rules
        self.bookmark_interval = bookmark_interval
        self.requests: list[RequestRecord] = []
        self.faults: collections.deque[tuple[int, float | None]] = collections.deque()
        self.watches: set[WatchStream] = set()
        self.server_address = ""
        namespaces = self._type("", "namespaces")
        for name in DEFAULT_NAMESPACES:
            body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
            self.objects.create(namespaces, "v1", "", body, dry_run=False)

    def _type(self, group: str, plural: str) -> ResourceType:
        rtype = self.registry.get(group, plural)
        assert rtype is not None
        return rtype

    def load_crd(self, crd: dict[str, Any]) -> None:
        """Create a CRD as a POST would (raises StatusError when it is invalid)."""
        self.objects.create(self._type(CRD_GROUP, CRD_PLURAL), "v1", "", crd, dry_run=False)

    def has_crd(self, name: str) -> bool:
        return self.store.get(CRD_GROUP, CRD_PLURAL, "", name) is not None

    # -- state across restarts -------------------------------------------------

    def snapshot(self) -> State:
        """Objects, counter, request log and tokens (the CA is the caller's)."""
        return State(
            resource_version=self.store.rv,
            objects=[StoredObject(g, p, obj) for g, p, obj in self.store.dump()],
            requests=list(self.requests),
            tokens=dict(self.tokens),
        )

    def restore(self, state: State) -> None:
        """Take over a snapshot's objects (serving its CRDs again), counter,
        request log and tokens, in place of the fresh server's."""
        self.store.restore(
            state.resource_version, [(o.group, o.plural, o.object) for o in state.objects]
        )
        for crd in self.store.list_objects(CRD_GROUP, CRD_PLURAL):
            self.registry.add(crd_to_type(crd))
        self.requests[:0] = state.requests
        self.tokens.update(state.tokens)

    # -- the entry point ---------------------------------------------------------

    def handle(self, request: Request) -> Response | WatchStream:
        path = request.path.rstrip("/") or "/"
        if path in ("/livez", "/readyz", "/healthz"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/version":
            return Response.json(200, VERSION)
        token = request.bearer
        user = self.tokens.get(token) if token else None
        if path == DEBUG_REQUESTS:
            return self._debug_requests(user, request)
        info = request_info(request)
        code = 500
        try:
            if self.faults:
                status, retry_after = self.faults.popleft()
                raise E.injected(status, retry_after)
            if user is None:
                raise E.unauthorized()
            self._authorize(user, info, request)
            result = self._dispatch(info, request)
            code = 200 if isinstance(result, WatchStream) else result.code
            return result
        except E.StatusError as error:
            code = error.code
            return Response.error(error)
        except Exception as error:
            log.exception("internal error on %s %s", request.method, request.target)
            code = 500
            return Response.error(
                E.StatusError(
                    500,
                    "InternalError",
                    f"Internal error occurred: {error}",
                    {"causes": [{"message": str(error)}]},
                )
            )
        finally:
            if info.is_resource:
                self.requests.append(
                    RequestRecord(
                        user or "system:anonymous",
                        info.verb,
                        info.group,
                        info.resource,
                        info.subresource,
                        info.namespace,
                        info.name,
                        code,
                    )
                )

    def _debug_requests(self, user: str | None, request: Request) -> Response:
        """The request log as JSON, for the admin only (RBAC file or not):
        neither faults nor the log itself apply to it."""
        if user is None:
            return Response.error(E.unauthorized())
        if user != ADMIN_USER:
            return Response.error(
                E.StatusError(
                    403,
                    "Forbidden",
                    f'forbidden: User "{user}" cannot {request.method.lower()} path'
                    f' "{DEBUG_REQUESTS}"',
                    {},
                )
            )
        if request.method != "GET":
            return Response.error(E.method_not_allowed())
        return Response.json(200, [dataclasses.asdict(r) for r in self.requests])

    def _authorize(self, user: str, info: RequestInfo, request: Request) -> None:
        if user == ADMIN_USER or self.rules is None:
            return
        if not info.is_resource:
            path = request.path.rstrip("/") or "/"
            if path in PUBLIC_PATHS or path.startswith(("/api/", "/apis/")):
                return
            if any(r.allows_path(info.verb, path) for r in self.rules):
                return
            raise E.StatusError(
                403,
                "Forbidden",
                f'forbidden: User "{user}" cannot {info.verb} path "{path}"',
                {},
            )
        if any(
            r.allows(
                info.verb, info.group, info.resource, info.subresource, info.name, info.namespace
            )
            for r in self.rules
        ):
            return
        raise E.forbidden_request(
            info.group,
            f"{info.resource}/{info.subresource}" if info.subresource else info.resource,
            info.name,
            refusal(user, info.verb, info.group, info.resource, info.subresource, info.namespace),
        )

    # -- routing -------------------------------------------------------------------

    def _dispatch(self, info: RequestInfo, request: Request) -> Response | WatchStream:
        if not info.is_resource:
            return self._discovery(info, request)
        rtype = self.registry.lookup(info.group, info.version, info.resource)
        if rtype is None:
            raise E.resource_not_found()
        version = info.version
        if rtype.namespaced:
            namespace = info.namespace
        elif info.namespace and info.resource != "namespaces":
            raise E.resource_not_found()
        else:
            namespace = ""
        sub = info.subresource
        if sub and (sub != "status" or not rtype.has_status(version)):
            raise E.resource_not_found()
        query = request.query
        dry_run = query.get("dryRun") == "All"
        method = request.method
        name = info.name if info.verb not in ("list", "watch") else ""
        if method == "GET":
            if name:
                obj = self.objects.get(rtype, namespace, name)
                return Response.json(200, self.objects.served(rtype, version, obj))
            if sub:
                raise E.resource_not_found()
            if info.verb == "watch":
                return self._watch(rtype, version, namespace, query)
            return self._list(rtype, version, namespace, query)
        if method == "POST":
            if name or sub or (rtype.namespaced and not namespace):
                raise E.method_not_allowed()
            body = self._body(request)
            written = self.objects.create(rtype, version, namespace, body, dry_run=dry_run)
        elif method == "PUT":
            if not name:
                raise E.method_not_allowed()
            body = self._body(request)
            written = self.objects.update(
                rtype, version, namespace, name, body, subresource=sub, dry_run=dry_run
            )
        elif method == "PATCH":
            if not name:
                raise E.method_not_allowed()
            content_type = self._patch_type(rtype, request)
            try:
                body = parse_json(request.body)
            except ValueError as error:
                raise E.bad_request(f"error decoding patch: {error}") from error
            written = self.objects.patch(
                rtype,
                version,
                namespace,
                name,
                content_type,
                body,
                subresource=sub,
                dry_run=dry_run,
            )
        elif method == "DELETE":
            if sub:
                raise E.method_not_allowed()
            options = self._delete_options(request)
            dry_run = dry_run or options.get("dryRun") == ["All"]
            if not name:
                return self._delete_collection(rtype, version, namespace, query, options, dry_run)
            written = self.objects.delete(rtype, version, namespace, name, options, dry_run=dry_run)
        else:
            raise E.method_not_allowed()
        headers = [("Warning", f"299 - {json.dumps(w)}") for w in written.warnings]
        return Response.json(written.code, written.body, headers)

    def _body(self, request: Request) -> Any:
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
        try:
            if content_type in ("application/json", "", "*/*"):
                return parse_json(request.body)
            if content_type == "application/yaml":
                return yaml.safe_load(request.body)
        except (ValueError, yaml.YAMLError) as error:
            raise E.bad_request(f"couldn't get version/kind; json parse error: {error}") from error
        raise E.unsupported_media_type(_BODY_TYPES)

    def _patch_type(self, rtype: ResourceType, request: Request) -> str:
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        accepted = BUILTIN_PATCH_TYPES if rtype.builtin else CR_PATCH_TYPES
        if content_type not in accepted or content_type == APPLY_PATCH:
            raise E.unsupported_media_type(accepted)
        assert content_type in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH)
        return content_type

    def _delete_options(self, request: Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if request.body.strip():
            try:
                body = parse_json(request.body)
            except ValueError as error:
                raise E.bad_request(f"error decoding DeleteOptions: {error}") from error
            if isinstance(body, dict):
                options = body
        return options

    # -- reads -----------------------------------------------------------------

    def _selectors(self, rtype: ResourceType, version: str, query: dict[str, str]) -> Any:
        labels = parse_label_selector(query.get("labelSelector", ""))
        fns = rtype.field_fns(version)
        fields = parse_field_selector(query.get("fieldSelector", ""), set(fns), not rtype.builtin)
        return labels, fields, fns

    def _list(
        self, rtype: ResourceType, version: str, namespace: str, query: dict[str, str]
    ) -> Response:
        labels, fields, fns = self._selectors(rtype, version, query)
        rv = self.store.rv
        requested = query.get("resourceVersion", "")
        if requested and requested != "0" and query.get("resourceVersionMatch") == "Exact":
            if not requested.isdigit():
                raise E.bad_request(f"invalid resource version: {requested}")
            if int(requested) < self.store.compacted:
                raise E.expired(f"too old resource version: {requested} ({self.store.compacted})")
        items = [
            obj
            for obj in self.store.list_objects(rtype.group, rtype.plural, namespace or None)
            if labels.matches(obj) and fields.matches(obj, fns)
        ]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        token = query.get("continue", "")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = tuple(state["start"])
                rv = int(state["rv"])
            except (ValueError, KeyError, TypeError, binascii.Error) as error:
                raise E.bad_request(f"continue key is not valid: {error}") from error
            if rv < self.store.compacted:
                raise E.expired(
                    "The provided continue parameter is too old to display a consistent list"
                    " result. You can start a new list without the continue parameter."
                )
            meta["resourceVersion"] = str(rv)
            items = [
                o
                for o in items
                if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start
            ]
        limit = int(query["limit"]) if query.get("limit", "").isdigit() else 0
        if limit and len(items) > limit:
            last = items[limit - 1]["metadata"]
            state = {"rv": rv, "start": [last.get("namespace", ""), last["name"]]}
            meta["continue"] = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        served = [self.objects.served(rtype, version, obj) for obj in items]
        if rtype.builtin:  # typed lists: items carry no kind/apiVersion
            served = [
                {k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in served
            ]
        return Response.json(
            200,
            {
                "kind": rtype.list_kind,
                "apiVersion": rtype.api_version(version),
                "metadata": meta,
                "items": served,
            },
        )

    def _watch(
        self, rtype: ResourceType, version: str, namespace: str, query: dict[str, str]
    ) -> WatchStream:
        labels, fields, _ = self._selectors(rtype, version, query)
        requested = query.get("resourceVersion", "")
        since: int | None = None
        if requested not in ("", "0"):
            if not requested.isdigit():
                raise E.bad_request(f"invalid resource version: {requested}")
            since = int(requested)
        try:
            timeout = (
                float(query["timeoutSeconds"])
                if query.get("timeoutSeconds")
                else DEFAULT_WATCH_TIMEOUT
            )
        except ValueError as error:
            raise E.bad_request(f"invalid timeoutSeconds: {error}") from error
        stream = WatchStream(
            store=self.store,
            serve=lambda obj: self.objects.served(rtype, version, obj),
            rtype=rtype,
            version=version,
            namespace=namespace,
            labels=labels,
            fields=fields,
            since=since,
            bookmarks=truthy(query.get("allowWatchBookmarks")),
            interval=self.bookmark_interval,
            timeout=timeout,
            on_close=self.watches.discard,
        )
        self.watches.add(stream)
        return stream

    def _delete_collection(
        self,
        rtype: ResourceType,
        version: str,
        namespace: str,
        query: dict[str, str],
        options: dict[str, Any],
        dry_run: bool,
    ) -> Response:
        labels, fields, fns = self._selectors(rtype, version, query)
        deleted = []
        for obj in self.store.list_objects(rtype.group, rtype.plural, namespace or None):
            if labels.matches(obj) and fields.matches(obj, fns):
                meta = obj["metadata"]
                written = self.objects.delete(
                    rtype,
                    version,
                    meta.get("namespace", ""),
                    meta["name"],
                    options,
                    dry_run=dry_run,
                )
                if written.body.get("kind") == "Status":
                    deleted.append(self.objects.served(rtype, version, obj))
                else:
                    deleted.append(written.body)
        return Response.json(
            200,
            {
                "kind": rtype.list_kind,
                "apiVersion": rtype.api_version(version),
                "metadata": {"resourceVersion": str(self.store.rv)},
                "items": deleted,
            },
        )

    # -- discovery ------------------------------------------------------------------

    def _discovery(self, info: RequestInfo, request: Request) -> Response:
        if request.method != "GET":
            raise E.method_not_allowed()
        parts = info.parts
        groups = self.registry.groups()
        if parts == ["api"]:
            return Response.json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}
                    ],
                },
            )
        if parts == ["apis"]:
            listed = []
            for group, versions in sorted(groups.items()):
                if not group:
                    continue
                entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
                listed.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
            return Response.json(
                200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": listed}
            )
        if parts == ["api", "v1"]:
            group, version = "", "v1"
        elif len(parts) == 3 and parts[0] == "apis" and parts[2] in groups.get(parts[1], []):
            group, version = parts[1], parts[2]
        else:
            raise E.resource_not_found()
        resources = []
        for rtype in sorted(self.registry.served(group, version), key=lambda t: t.plural):
            resources.append(
                {
                    "name": rtype.plural,
                    "singularName": rtype.singular,
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": _VERBS,
                    **({"shortNames": rtype.short_names} if rtype.short_names else {}),
                }
            )
            if rtype.has_status(version):
                resources.append(
                    {
                        "name": f"{rtype.plural}/status",
                        "singularName": "",
                        "namespaced": rtype.namespaced,
                        "kind": rtype.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return Response.json(
            200,
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            },
        )
