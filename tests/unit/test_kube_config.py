"""Finding the API server: kubeconfig (through the kubernetes package's
loader), in-cluster service account, and the token re-read on rotation."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx
import pytest
import trustme

from cnid.kube import NODES, KubeClient, KubeConfig, KubeConfigError, Unauthorized, load_config


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def no_cluster_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    monkeypatch.delenv("KUBECONFIG", raising=False)


def kubeconfig(
    tmp_path: Path, ca: trustme.CA, *, extra_cluster: dict[str, object] | None = None
) -> Path:
    client = ca.issue_cert("cnid-client")
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "main",
        "clusters": [
            {
                "name": "c1",
                "cluster": {
                    "server": "https://10.0.0.1:6443",
                    "certificate-authority-data": b64(ca.cert_pem.bytes()),
                    **(extra_cluster or {}),
                },
            },
            {
                "name": "c2",
                "cluster": {"server": "https://10.0.0.2:6443", "insecure-skip-tls-verify": True},
            },
        ],
        "users": [
            {
                "name": "u1",
                "user": {
                    "client-certificate-data": b64(client.cert_chain_pems[0].bytes()),
                    "client-key-data": b64(client.private_key_pem.bytes()),
                    "token": "tok-1",
                },
            },
            {"name": "u2", "user": {"token": "tok-2"}},
            {"name": "u3", "user": {"username": "admin", "password": "secret"}},
        ],
        "contexts": [
            {"name": "main", "context": {"cluster": "c1", "user": "u1"}},
            {"name": "other", "context": {"cluster": "c2", "user": "u2"}},
            {"name": "basic", "context": {"cluster": "c2", "user": "u3"}},
        ],
    }
    path = tmp_path / "kubeconfig"
    # JSON is YAML: the loader reads it as the kubectl-written file.
    path.write_text(json.dumps(doc))
    return path


def test_kubeconfig_inline_data_to_files(tmp_path: Path, no_cluster_env: None) -> None:
    ca = trustme.CA()
    path = kubeconfig(tmp_path, ca)
    cfg = load_config(str(path))
    assert cfg.server == "https://10.0.0.1:6443"
    assert cfg.token == "tok-1"
    assert cfg.token_file is None
    assert not cfg.insecure_skip_verify
    assert cfg.ca_file and cfg.cert_file and cfg.key_file
    assert Path(cfg.ca_file).read_bytes() == ca.cert_pem.bytes()
    assert b"BEGIN CERTIFICATE" in Path(cfg.cert_file).read_bytes()
    assert b"PRIVATE KEY" in Path(cfg.key_file).read_bytes()
    # The files are usable as they are: the client's TLS context loads them.
    KubeClient(cfg)


def test_kubeconfig_context_and_env(
    tmp_path: Path, no_cluster_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = kubeconfig(tmp_path, trustme.CA())
    monkeypatch.setenv("KUBECONFIG", str(path))
    cfg = load_config(context="other")
    assert cfg == KubeConfig(
        server="https://10.0.0.2:6443", token="tok-2", insecure_skip_verify=True
    )


def test_kubeconfig_default_location(
    tmp_path: Path, no_cluster_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    kubeconfig(tmp_path / ".kube", trustme.CA()).rename(tmp_path / ".kube" / "config")
    assert load_config().server == "https://10.0.0.1:6443"


def test_kubeconfig_errors(tmp_path: Path, no_cluster_env: None) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(KubeConfigError, match="nope does not exist"):
        load_config(str(missing))
    path = kubeconfig(tmp_path, trustme.CA())
    with pytest.raises(KubeConfigError, match=r"name nosuch in .*contexts"):
        load_config(str(path), context="nosuch")
    with pytest.raises(KubeConfigError, match="only bearer tokens"):
        load_config(str(path), context="basic")
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    with pytest.raises(KubeConfigError, match="bad: ParserError"):
        load_config(str(bad))
    noserver = tmp_path / "noserver"
    noserver.write_text(
        json.dumps(
            {
                "current-context": "x",
                "clusters": [{"name": "c", "cluster": {}}],
                "users": [],
                "contexts": [{"name": "x", "context": {"cluster": "c"}}],
            }
        )
    )
    with pytest.raises(KubeConfigError, match="no server"):
        load_config(str(noserver))


def test_kubeconfig_argument_wins_over_cluster_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    path = kubeconfig(tmp_path, trustme.CA())
    assert load_config(str(path)).server == "https://10.0.0.1:6443"


def service_account(tmp_path: Path) -> Path:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token\n")
    (sa / "ca.crt").write_bytes(trustme.CA().cert_pem.bytes())
    return sa


@pytest.mark.parametrize(
    ("host", "server"),
    [("10.96.0.1", "https://10.96.0.1:443"), ("fd00::1", "https://[fd00::1]:443")],
)
def test_in_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, server: str
) -> None:
    sa = service_account(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cfg = load_config(sa_dir=str(sa))
    assert cfg == KubeConfig(
        server=server, ca_file=str(sa / "ca.crt"), token_file=str(sa / "token")
    )
    KubeClient(cfg)  # the CA loads


def test_in_cluster_without_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sa = service_account(tmp_path)
    (sa / "token").unlink()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(KubeConfigError, match=r"token .*does not exist"):
        load_config(sa_dir=str(sa))


def test_bad_tls_files_are_config_errors(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate")
    with pytest.raises(KubeConfigError, match="TLS settings"):
        KubeClient(KubeConfig(server="https://k", ca_file=str(ca)))


def node_json(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "resourceVersion": "1"}}


async def test_token_file_rotation(tmp_path: Path) -> None:
    """The kubelet swaps the projected token (a new file behind a symlink):
    the next request carries the new one."""
    data = tmp_path / "data1"
    data.mkdir()
    (data / "token").write_text("first")
    link = tmp_path / "..data"
    link.symlink_to(data)
    token = tmp_path / "token"
    token.symlink_to(link / "token")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json=node_json("n1"))

    cfg = KubeConfig(server="https://k", token_file=str(token))
    async with KubeClient(cfg, transport=httpx.MockTransport(handler)) as client:
        await client.get(NODES, "n1")
        await client.get(NODES, "n1")
        new = tmp_path / "data2"
        new.mkdir()
        (new / "token").write_text("second")
        tmp_link = tmp_path / "..data_tmp"
        tmp_link.symlink_to(new)
        os.replace(tmp_link, link)
        await client.get(NODES, "n1")
    assert seen == ["Bearer first", "Bearer first", "Bearer second"]


async def test_token_reread_on_401(tmp_path: Path) -> None:
    """A rewrite that stat() cannot tell (same size, same mtime) is still
    caught: a 401 forces a re-read and one retry with the new token."""
    token = tmp_path / "token"
    token.write_text("old-token")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        if request.headers["authorization"] != "Bearer new-token":
            return httpx.Response(401, json={"kind": "Status", "reason": "Unauthorized"})
        return httpx.Response(200, json=node_json("n1"))

    cfg = KubeConfig(server="https://k", token_file=str(token))
    async with KubeClient(cfg, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(Unauthorized):
            await client.get(NODES, "n1")
        st = token.stat()
        token.write_text("new-token")
        os.utime(token, ns=(st.st_atime_ns, st.st_mtime_ns))
        node = await client.get(NODES, "n1")
    assert node.metadata.name == "n1"
    # The first 401 re-read the same token (no retry); the second got the
    # new one and retried.
    assert seen == ["Bearer old-token", "Bearer old-token", "Bearer new-token"]


async def test_static_token_and_no_token() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json=node_json("n1"))

    transport = httpx.MockTransport(handler)
    async with KubeClient(KubeConfig(server="https://k", token="abc"), transport=transport) as c:
        await c.get(NODES, "n1")
    async with KubeClient(KubeConfig(server="https://k"), transport=transport) as c:
        await c.get(NODES, "n1")
    assert seen == ["Bearer abc", None]


def test_kubeconfig_merged_list_relative_paths_and_token_file(
    tmp_path: Path, no_cluster_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$KUBECONFIG lists merge as kubectl merges them (the first file to name
    an entry, and the first current-context, win); file paths are relative to
    the file naming them; a tokenFile is kept as a file (re-read on rotation)."""
    ca = trustme.CA()
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (second / "ca.crt").write_bytes(ca.cert_pem.bytes())
    (second / "token").write_text("file-token\n")
    (first / "config").write_text(
        json.dumps(
            {
                "current-context": "ctx",
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": "https://first:6443"}}],
            }
        )
    )
    (second / "config").write_text(
        json.dumps(
            {
                "current-context": "ignored",
                "clusters": [
                    {"name": "c", "cluster": {"server": "https://second:6443"}},
                ],
                "users": [
                    {
                        "name": "u",
                        "user": {"tokenFile": "token", "certificate-authority": "x"},
                    }
                ],
                "contexts": [{"name": "ignored", "context": {"cluster": "c"}}],
            }
        )
    )
    (second / "config2").write_text(
        json.dumps(
            {
                "clusters": [
                    {
                        "name": "d",
                        "cluster": {"server": "https://d", "certificate-authority": "ca.crt"},
                    }
                ]
            }
        )
    )
    monkeypatch.setenv(
        "KUBECONFIG",
        os.pathsep.join([str(first / "config"), str(tmp_path / "missing"), str(second / "config")]),
    )
    cfg = load_config()
    assert cfg.server == "https://first:6443"
    assert cfg.token is None and cfg.token_file == str(second / "token")
    # a relative certificate-authority path is the file's folder's
    (second / "config2").write_text(
        json.dumps(
            {
                "current-context": "d",
                "contexts": [{"name": "d", "context": {"cluster": "d"}}],
                "clusters": [
                    {
                        "name": "d",
                        "cluster": {"server": "https://d", "certificate-authority": "ca.crt"},
                    }
                ],
            }
        )
    )
    assert load_config(str(second / "config2")).ca_file == str(second / "ca.crt")


def test_kubeconfig_hostile_shapes_are_config_errors(tmp_path: Path, no_cluster_env: None) -> None:
    for text in (
        "[1, 2]",
        "clusters: 7",
        '{"current-context": 5}',
        "current-context: x\ncontexts: []",
    ):
        bad = tmp_path / "bad"
        bad.write_text(text)
        with pytest.raises(KubeConfigError, match="kubeconfig"):
            load_config(str(bad))


def test_kubeconfig_exec_plugin_goes_through_the_kubernetes_loader(
    tmp_path: Path, no_cluster_env: None
) -> None:
    """A credential plugin is run by the kubernetes package's loader (the
    only case that imports it)."""
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "kind": "ExecCredential",
        "status": {"token": "exec-token"},
    }
    path = tmp_path / "config"
    path.write_text(
        json.dumps(
            {
                "current-context": "x",
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.9:6443"}}],
                "users": [
                    {
                        "name": "u",
                        "user": {
                            "exec": {
                                "apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": "echo",
                                "args": [json.dumps(credential)],
                            }
                        },
                    }
                ],
            }
        )
    )
    cfg = load_config(str(path))
    assert (cfg.server, cfg.token) == ("https://10.0.0.9:6443", "exec-token")


def test_a_plain_kubeconfig_does_not_import_the_kubernetes_package(tmp_path: Path) -> None:
    """The daemon's start under emulation spent a minute importing it."""
    import subprocess
    import sys

    path = kubeconfig(tmp_path, trustme.CA())
    code = (
        "import sys; from cnid.kube import load_config; "
        f"cfg = load_config({str(path)!r}); "
        "assert cfg.token == 'tok-1', cfg; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"
