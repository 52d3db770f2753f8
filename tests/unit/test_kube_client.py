"""KubeClient: the requests each verb sends, error typing, retries, the
verbs a resource type refuses, and a real TLS connection."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import trio
import trustme

from cnid.core import CniCode
from cnid.kube import (
    IP_BLOCKS,
    NAMESPACES,
    NODES,
    PODS,
    RESOURCE_TYPES,
    SECRETS,
    VRF_DOMAIN_BINDINGS,
    VRF_DOMAINS,
    AlreadyExists,
    ApiError,
    ApiUnavailable,
    AttachmentSpec,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    InvalidResponse,
    IPBlock,
    IPBlockSpec,
    KubeClient,
    KubeConfig,
    NotFound,
    ObjectMeta,
    ProgrammingError,
    ResourceType,
    ServerError,
    TooManyRequests,
    Unauthorized,
    VerbNotAllowed,
    VRFDomain,
    VRFDomainSpec,
    policy_rules,
)

Handler = Callable[[httpx.Request], httpx.Response]
CONFIG = KubeConfig(server="https://k8s.test:6443", token="t")


def client(handler: Handler, *, retry_deadline: float = 30.0) -> KubeClient:
    return KubeClient(CONFIG, retry_deadline=retry_deadline, transport=httpx.MockTransport(handler))


def ipblock_json(name: str = "vrf-42-10-244-0-0-26", rv: str = "7", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "ipam.pyroute2.org/v1alpha1",
        "kind": "IPBlock",
        "metadata": {"name": name, "resourceVersion": rv, "uid": "u-1"},
        "spec": {
            "cidr": "10.244.0.0/26",
            "node": "n1",
            "vrf": 42,
            "gateway": "10.244.0.1",
            **spec,
        },
    }


def ipblock(rv: str = "7") -> IPBlock:
    return IPBlock(
        metadata=ObjectMeta(name="vrf-42-10-244-0-0-26", resource_version=rv, uid="u-1"),
        spec=IPBlockSpec(cidr="10.244.0.0/26", node="n1", vrf=42, gateway="10.244.0.1"),
    )


class Recorder:
    """A handler answering from a list of responses (the last repeats),
    recording each request and the trio time it came at."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.times: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.times.append(trio.current_time())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def body(self, i: int = -1) -> Any:
        return json.loads(self.requests[i].content)


def status_body(code: int, reason: str, message: str = "", **details: Any) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message or f"{reason} message",
        "reason": reason,
        "details": details,
        "code": code,
    }


# -- requests ------------------------------------------------------------------


async def test_get_paths_and_decoding() -> None:
    rec = Recorder(httpx.Response(200, json=ipblock_json()))
    async with client(rec) as c:
        obj = await c.get(IP_BLOCKS, "vrf-42-10-244-0-0-26")
        assert obj == ipblock()
        rec.answers = [httpx.Response(200, json={"metadata": {"name": "p", "namespace": "ns"}})]
        pod = await c.get(PODS, "p", namespace="ns")
        rec.answers = [httpx.Response(200, json={"metadata": {"name": "n"}})]
        await c.get(NODES, "n")
    assert [(r.method, r.url.path) for r in rec.requests] == [
        ("GET", "/apis/ipam.pyroute2.org/v1alpha1/ipblocks/vrf-42-10-244-0-0-26"),
        ("GET", "/api/v1/namespaces/ns/pods/p"),
        ("GET", "/api/v1/nodes/n"),
    ]
    # Defaults fill what a built-in kind's answer may leave out.
    assert (pod.api_version, pod.kind, pod.metadata.namespace) == ("v1", "Pod", "ns")
    assert rec.requests[0].headers["authorization"] == "Bearer t"
    assert rec.requests[0].headers["accept"] == "application/json"


async def test_get_undecodable_answer() -> None:
    body = ipblock_json()
    del body["spec"]
    async with client(Recorder(httpx.Response(200, json=body))) as c:
        with pytest.raises(InvalidResponse, match=r"not a IPBlock.*spec"):
            await c.get(IP_BLOCKS, "x")
    async with client(Recorder(httpx.Response(200, text="<html>"))) as c:
        with pytest.raises(InvalidResponse):
            await c.get(IP_BLOCKS, "x")


async def test_list_selectors_and_invalid_items() -> None:
    bad = ipblock_json("bad", vrf="forty-two")
    rec = Recorder(
        httpx.Response(
            200,
            json={
                "apiVersion": "ipam.pyroute2.org/v1alpha1",
                "kind": "IPBlockList",
                "metadata": {"resourceVersion": "1234"},
                "items": [ipblock_json(), bad, ipblock_json("other", rv="9")],
            },
        )
    )
    async with client(rec) as c:
        found = await c.list(IP_BLOCKS, label_selector="ipam.pyroute2.org/node=n1")
    assert found.resource_version == "1234"
    assert [o.metadata.name for o in found.items] == ["vrf-42-10-244-0-0-26", "other"]
    assert len(found.invalid) == 1
    assert found.invalid[0].name == "bad"
    assert "spec.vrf" in found.invalid[0].error
    assert found.invalid[0].raw == bad
    assert rec.requests[0].url.params["labelSelector"] == "ipam.pyroute2.org/node=n1"


async def test_list_all_namespaces_and_null_items() -> None:
    rec = Recorder(httpx.Response(200, json={"metadata": {"resourceVersion": "5"}, "items": None}))
    async with client(rec) as c:
        found = await c.list(PODS, field_selector="spec.nodeName=n1")
        await c.list(PODS, namespace="kube-system")
    assert (found.items, found.resource_version) == ([], "5")
    assert rec.requests[0].url.path == "/api/v1/pods"
    assert rec.requests[0].url.params["fieldSelector"] == "spec.nodeName=n1"
    assert rec.requests[1].url.path == "/api/v1/namespaces/kube-system/pods"


async def test_create_replace_status() -> None:
    rec = Recorder(httpx.Response(201, json=ipblock_json(rv="8")))
    async with client(rec) as c:
        created = await c.create(IP_BLOCKS, ipblock(rv=""))
        await c.replace(IP_BLOCKS, ipblock(rv="8"))
        await c.replace_status(IP_BLOCKS, ipblock(rv="8"))
    assert created.metadata.resource_version == "8"
    methods = [(r.method, r.url.path, r.headers["content-type"]) for r in rec.requests]
    base = "/apis/ipam.pyroute2.org/v1alpha1/ipblocks"
    assert methods == [
        ("POST", base, "application/json"),
        ("PUT", f"{base}/vrf-42-10-244-0-0-26", "application/json"),
        ("PUT", f"{base}/vrf-42-10-244-0-0-26/status", "application/json"),
    ]
    posted = rec.body(0)
    assert posted["apiVersion"] == "ipam.pyroute2.org/v1alpha1"
    assert posted["kind"] == "IPBlock"
    assert "resourceVersion" not in posted["metadata"]
    assert rec.body(1)["metadata"]["resourceVersion"] == "8"


async def test_patch_kinds() -> None:
    dom = {
        "apiVersion": "cni.pyroute2.org/v1alpha1",
        "kind": "VRFDomain",
        "metadata": {"name": "vrf-200"},
        "spec": {
            "vrf": 200,
            "table": 10200,
            "prefix": "10.1.0.0",
            "prefixlen": 16,
            "ipblocklen": 26,
        },
    }
    rec = Recorder(httpx.Response(200, json=dom))
    async with client(rec) as c:
        await c.patch(VRF_DOMAINS, "vrf-200", {"metadata": {"finalizers": ["a"]}})
        await c.patch(VRF_DOMAINS, "vrf-200", {"status": {"nodes": {"n1": None}}}, status=True)
        ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": "3"}]
        await c.patch(VRF_DOMAINS, "vrf-200", ops, kind="json")
        with pytest.raises(ProgrammingError):
            await c.patch(VRF_DOMAINS, "vrf-200", ops)
        with pytest.raises(ProgrammingError):
            await c.patch(VRF_DOMAINS, "vrf-200", {}, kind="json")
    sent = [(r.url.path, r.headers["content-type"], json.loads(r.content)) for r in rec.requests]
    base = "/apis/cni.pyroute2.org/v1alpha1/vrfdomains/vrf-200"
    assert sent == [
        (base, "application/merge-patch+json", {"metadata": {"finalizers": ["a"]}}),
        (f"{base}/status", "application/merge-patch+json", {"status": {"nodes": {"n1": None}}}),
        (base, "application/json-patch+json", ops),
    ]


async def test_delete_preconditions() -> None:
    rec = Recorder(httpx.Response(200, json=status_body(200, "")))
    async with client(rec) as c:
        await c.delete(IP_BLOCKS, "b1", resource_version="12", uid="u-1")
        await c.delete(IP_BLOCKS, "b1")
        rec.answers = [httpx.Response(404, json=status_body(404, "NotFound"))]
        with pytest.raises(NotFound):
            await c.delete(IP_BLOCKS, "b1")
    assert rec.requests[0].method == "DELETE"
    assert rec.body(0) == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "preconditions": {"resourceVersion": "12", "uid": "u-1"},
    }
    assert "preconditions" not in rec.body(1)


async def test_namespace_misuse() -> None:
    rec = Recorder(httpx.Response(200, json={}))
    async with client(rec) as c:
        with pytest.raises(ProgrammingError, match="cluster-scoped"):
            await c.get(NODES, "n", namespace="default")
        with pytest.raises(ProgrammingError, match="namespaced"):
            await c.get(SECRETS, "s")
        domain: Any = VRFDomain(
            spec=VRFDomainSpec(
                vrf=1,
                table=1,
                prefix="10.0.0.0",
                prefixlen=8,
                ipblocklen=24,
                attachments=[AttachmentSpec(type="l3vni", vni=1)],
            )
        )
        with pytest.raises(ProgrammingError, match="is not a"):
            await c.create(IP_BLOCKS, domain)
    assert rec.requests == []


# -- verbs ---------------------------------------------------------------------


def calls(rt: ResourceType[Any]) -> dict[tuple[str, bool], Callable[[KubeClient], Any]]:
    ns = "default" if rt.namespaced else None
    obj: Any = msgspec.convert(
        {"metadata": {"name": "x", "namespace": ns or ""}, "spec": ipblock_json()["spec"]},
        type=IPBlock,
    )
    return {
        ("get", False): lambda c: c.get(rt, "x", namespace=ns),
        ("list", False): lambda c: c.list(rt, namespace=ns),
        ("create", False): lambda c: c.create(rt, obj),
        ("update", False): lambda c: c.replace(rt, obj),
        ("update", True): lambda c: c.replace_status(rt, obj),
        ("patch", False): lambda c: c.patch(rt, "x", {}, namespace=ns),
        ("patch", True): lambda c: c.patch(rt, "x", {}, namespace=ns, status=True),
        ("delete", False): lambda c: c.delete(rt, "x", namespace=ns),
    }


@pytest.mark.parametrize("rt", RESOURCE_TYPES, ids=lambda rt: rt.plural)
async def test_undeclared_verbs_refused(rt: ResourceType[Any]) -> None:
    rec = Recorder(httpx.Response(500))
    refused = 0
    async with client(rec) as c:
        for (verb, status), call in calls(rt).items():
            declared = rt.status_verbs if status else rt.verbs
            if verb in declared:
                continue
            refused += 1
            with pytest.raises(VerbNotAllowed, match=verb):
                await call(c)
        if "watch" not in rt.verbs:
            with pytest.raises(VerbNotAllowed):
                async with c.watch(rt, resource_version="1"):
                    pass
    assert refused > 0 or rt is IP_BLOCKS
    assert rec.requests == []  # refused before anything went out


def test_declared_verbs_and_rules() -> None:
    assert SECRETS.verbs == {"get"}
    assert NAMESPACES.verbs == NODES.verbs == PODS.verbs == {"get", "list", "watch"}
    assert VRF_DOMAIN_BINDINGS.status_verbs == {"get", "patch", "update"}
    assert IP_BLOCKS.verbs == {"get", "list", "watch", "create", "update", "patch", "delete"}
    assert VRF_DOMAINS.api_version == "cni.pyroute2.org/v1alpha1"
    assert PODS.api_version == "v1"
    rules = policy_rules()
    assert SECRETS not in RESOURCE_TYPES  # no production code reads a Secret
    assert not [r for r in rules if any(x.startswith("secrets") for x in r["resources"])]
    assert {
        "apiGroups": ["ipam.pyroute2.org"],
        "resources": ["ipblocks/status"],
        "verbs": ["get", "patch", "update"],
    } in rules
    # Every declared verb is granted once, nothing else.
    granted = {(r["apiGroups"][0], r["resources"][0], v) for r in rules for v in r["verbs"]}
    expected = {(rt.group, rt.plural, v) for rt in RESOURCE_TYPES for v in rt.verbs} | {
        (rt.group, f"{rt.plural}/status", v) for rt in RESOURCE_TYPES for v in rt.status_verbs
    }
    assert granted == expected


# -- errors --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "cls"),
    [
        (400, "BadRequest", ApiError),
        (401, "Unauthorized", Unauthorized),
        (403, "Forbidden", Forbidden),
        (404, "NotFound", NotFound),
        (409, "Conflict", Conflict),
        (409, "AlreadyExists", AlreadyExists),
        (410, "Gone", Gone),
        (410, "Expired", Gone),
        (422, "Invalid", Invalid),
        (429, "TooManyRequests", TooManyRequests),
        (500, "InternalError", ServerError),
        (501, "NotImplemented", ServerError),
        (503, "ServiceUnavailable", ServerError),
    ],
)
async def test_status_errors(code: int, reason: str, cls: type[ApiError]) -> None:
    rec = Recorder(httpx.Response(code, json=status_body(code, reason, f"the {reason}")))
    async with client(rec, retry_deadline=0) as c:
        with pytest.raises(ApiError) as info:
            await c.get(IP_BLOCKS, "b1")
    exc = info.value
    assert type(exc) is cls
    assert (exc.status, exc.reason, exc.message) == (code, reason, f"the {reason}")
    assert exc.method == "GET"
    assert exc.url == "https://k8s.test:6443/apis/ipam.pyroute2.org/v1alpha1/ipblocks/b1"
    assert exc.code == CniCode.TRY_AGAIN_LATER
    assert str(exc) == f"GET {exc.url}: {code} {reason}: the {reason}"
    if code == 409 and reason == "Conflict":
        assert not isinstance(exc, AlreadyExists)


async def test_status_causes() -> None:
    body = status_body(
        422,
        "Invalid",
        'IPBlock.ipam.pyroute2.org "b1" is invalid',
        name="b1",
        kind="IPBlock",
        causes=[
            {"reason": "FieldValueInvalid", "message": "Invalid value: 0", "field": "spec.vrf"},
            {"reason": "FieldValueRequired", "message": "Required value"},
        ],
    )
    async with client(Recorder(httpx.Response(422, json=body))) as c:
        with pytest.raises(Invalid) as info:
            await c.create(IP_BLOCKS, ipblock(rv=""))
    exc = info.value
    assert exc.method == "POST"
    assert [(x.field, x.reason) for x in exc.causes] == [
        ("spec.vrf", "FieldValueInvalid"),
        ("", "FieldValueRequired"),
    ]
    assert exc.details == "spec.vrf: Invalid value: 0; Required value"


async def test_non_json_error_bodies() -> None:
    html = httpx.Response(
        502,
        text="<html><body>upstream connect error</body></html>",
        headers={"content-type": "text/html"},
    )
    async with client(Recorder(html), retry_deadline=0) as c:
        with pytest.raises(ServerError) as info:
            await c.get(NODES, "n")
    assert info.value.status == 502
    assert info.value.reason == "Bad Gateway"
    assert "upstream connect error" in info.value.message
    # JSON that is not a Status: its text, the class of its status code.
    async with client(Recorder(httpx.Response(404, json={"error": "nope"}))) as c:
        with pytest.raises(NotFound, match="nope"):
            await c.get(NODES, "n")
    async with client(Recorder(httpx.Response(403, content=b""))) as c:
        with pytest.raises(Forbidden, match="Forbidden"):
            await c.get(NODES, "n")
    big = httpx.Response(418, text="x" * 5000)
    async with client(Recorder(big)) as c:
        with pytest.raises(ApiError) as teapot:
            await c.get(NODES, "n")
    assert type(teapot.value) is ApiError
    assert len(teapot.value.message) < 600


async def test_transport_errors_are_unavailable() -> None:
    rec = Recorder(httpx.ConnectError("connection refused"))
    async with client(rec, retry_deadline=0) as c:
        with pytest.raises(ApiUnavailable) as info:
            await c.get(NODES, "n")
    assert not info.value.sent
    assert info.value.status == 0
    assert "connection refused" in str(info.value)
    assert info.value.url.endswith("/api/v1/nodes/n")
    rec = Recorder(httpx.ReadTimeout("timed out"))
    async with client(rec, retry_deadline=0) as c:
        with pytest.raises(ApiUnavailable) as info:
            await c.get(NODES, "n")
    assert info.value.sent


# -- retries -------------------------------------------------------------------


async def test_retry_then_success(autojump_clock: trio.testing.MockClock) -> None:
    node = {"metadata": {"name": "n"}}
    rec = Recorder(
        httpx.Response(503, json=status_body(503, "ServiceUnavailable")),
        httpx.ConnectError("refused"),
        httpx.ReadError("reset"),
        httpx.Response(504, text="gateway timeout"),
        httpx.Response(200, json=node),
    )
    async with client(rec) as c:
        assert (await c.get(NODES, "n")).metadata.name == "n"
    assert len(rec.requests) == 5
    gaps = [b - a for a, b in zip(rec.times, rec.times[1:], strict=False)]
    assert all(0.1 - 1e-9 <= g <= 5.0 for g in gaps), gaps


async def test_retry_after_honoured(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder(
        httpx.Response(429, json=status_body(429, "TooManyRequests"), headers={"Retry-After": "3"}),
        httpx.Response(500, json=status_body(500, "InternalError", retryAfterSeconds=2)),
        httpx.Response(200, json={"metadata": {"name": "n"}}),
    )
    async with client(rec) as c:
        await c.get(NODES, "n")
    assert rec.times[1] - rec.times[0] == pytest.approx(3.0)
    assert rec.times[2] - rec.times[1] == pytest.approx(2.0)


async def test_retry_deadline(autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder(httpx.Response(503, json=status_body(503, "ServiceUnavailable")))
    start = trio.current_time()
    async with client(rec, retry_deadline=10.0) as c:
        with pytest.raises(ServerError):
            await c.get(NODES, "n")
    assert len(rec.requests) >= 4
    assert trio.current_time() - start <= 10.0
    # A Retry-After beyond the deadline: give up at once, not after waiting.
    rec = Recorder(httpx.Response(429, headers={"Retry-After": "60"}))
    start = trio.current_time()
    async with client(rec, retry_deadline=10.0) as c:
        with pytest.raises(TooManyRequests) as info:
            await c.get(NODES, "n")
    assert info.value.retry_after == 60
    assert len(rec.requests) == 1
    assert trio.current_time() == start


@pytest.mark.parametrize(
    ("code", "reason"),
    [(400, "BadRequest"), (404, "NotFound"), (409, "Conflict"), (422, "Invalid"), (501, "")],
)
async def test_not_retried(code: int, reason: str, autojump_clock: trio.testing.MockClock) -> None:
    rec = Recorder(httpx.Response(code, json=status_body(code, reason)))
    async with client(rec) as c:
        with pytest.raises(ApiError):
            await c.replace(IP_BLOCKS, ipblock())
    assert len(rec.requests) == 1


@pytest.mark.parametrize(
    ("answer", "retried"),
    [
        (httpx.ReadError("reset after send"), False),
        (httpx.RemoteProtocolError("server disconnected"), False),
        (httpx.Response(500, json=status_body(500, "InternalError")), False),
        (httpx.Response(504, text="gateway timeout"), False),
        (httpx.ConnectError("refused"), True),
        (httpx.ConnectTimeout("connect timeout"), True),
        (httpx.Response(503, text="unavailable"), True),
        (httpx.Response(429, json=status_body(429, "TooManyRequests")), True),
    ],
    ids=lambda a: type(a).__name__ if isinstance(a, Exception) else None,
)
async def test_post_retries(
    answer: httpx.Response | Exception, retried: bool, autojump_clock: trio.testing.MockClock
) -> None:
    """A POST is repeated only when the server surely did not act on it."""
    rec = Recorder(answer, httpx.Response(201, json=ipblock_json()))
    async with client(rec) as c:
        if retried:
            await c.create(IP_BLOCKS, ipblock(rv=""))
        else:
            with pytest.raises(ApiError):
                await c.create(IP_BLOCKS, ipblock(rv=""))
    assert len(rec.requests) == (2 if retried else 1)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_preconditioned_writes_retried_after_send(
    method: str, autojump_clock: trio.testing.MockClock
) -> None:
    rec = Recorder(
        httpx.ReadError("reset"),
        httpx.Response(500, json=status_body(500, "InternalError")),
        httpx.Response(200, json=ipblock_json()),
    )
    async with client(rec) as c:
        if method == "PUT":
            await c.replace(IP_BLOCKS, ipblock())
        elif method == "PATCH":
            await c.patch(IP_BLOCKS, "b", {"metadata": {"labels": {"a": "b"}}})
        else:
            await c.delete(IP_BLOCKS, "b", resource_version="7")
    assert [r.method for r in rec.requests] == [method] * 3
    # The same body each time.
    assert len({r.content for r in rec.requests}) == 1


# -- a real connection -----------------------------------------------------------


async def serve_tls(
    ca: trustme.CA, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """One-shot HTTPS answers (a Node), requiring a client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    body = json.dumps({"metadata": {"name": "tls-node"}}).encode()
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
    )

    async def handle(stream: trio.SSLStream[trio.SocketStream]) -> None:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    return
                data += chunk
            await stream.send_all(answer)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    ssl_listeners = [trio.SSLListener(ln, ctx, https_compatible=True) for ln in listeners]
    task_status.started(port)
    await trio.serve_listeners(handle, ssl_listeners)


async def test_tls_with_client_certificate(tmp_path: Path) -> None:
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.crt"))
    other.cert_pem.write_to_path(str(tmp_path / "other.crt"))
    cert = ca.issue_cert("cnid-node")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "client.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_tls, ca)
        good = KubeConfig(
            server=f"https://127.0.0.1:{port}",
            ca_file=str(tmp_path / "ca.crt"),
            cert_file=str(tmp_path / "client.crt"),
            key_file=str(tmp_path / "client.key"),
        )
        async with KubeClient(good, retry_deadline=0) as c:
            assert (await c.get(NODES, "x")).metadata.name == "tls-node"
        # A server certificate the configured CA did not sign: no answer.
        wrong_ca = msgspec.structs.replace(good, ca_file=str(tmp_path / "other.crt"))
        async with KubeClient(wrong_ca, retry_deadline=0) as c:
            with pytest.raises(ApiUnavailable, match="CERTIFICATE_VERIFY_FAILED") as info:
                await c.get(NODES, "x")
        assert not info.value.sent
        insecure = KubeConfig(
            server=f"https://127.0.0.1:{port}",
            insecure_skip_verify=True,
            cert_file=str(tmp_path / "client.crt"),
            key_file=str(tmp_path / "client.key"),
        )
        async with KubeClient(insecure, retry_deadline=0) as c:
            assert (await c.get(NODES, "x")).metadata.name == "tls-node"
        nursery.cancel_scope.cancel()


async def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with KubeClient(KubeConfig(server=f"http://127.0.0.1:{port}"), retry_deadline=0) as c:
        with pytest.raises(ApiUnavailable) as info:
            await c.list(NODES)
    assert not info.value.sent
