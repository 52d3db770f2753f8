"""Where the API server is and how to authenticate to it.

Two sources, as every Kubernetes client has them: the pod's service account
(in-cluster) and a kubeconfig file. The kubeconfig is read here as kubectl
reads it: contexts, merged $KUBECONFIG lists (the first file to name an
entry wins), paths relative to their file, inline ``*-data`` fields written
to private temporary files (removed at exit), bearer tokens, token files and
client certificates. Only a user with a credential plugin (``exec``,
``auth-provider``) goes through the ``kubernetes`` package's own loader:
importing that package costs about a second on a server and a minute under
the VM tier's emulation, for every daemon start.

The service account token is kept as a *path*: the kubelet rotates the
projected token on disk and the client re-reads it (see ``_auth``).
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from ._errors import KubeConfigError

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeConfig(msgspec.Struct, kw_only=True, frozen=True):
    """The resolved connection settings. ``token`` is a static bearer token;
    ``token_file`` a file re-read when it changes (it wins over ``token``)."""

    server: str
    ca_file: str | None = None
    token: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False


def _in_cluster(sa_dir: str) -> KubeConfig:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ["KUBERNETES_SERVICE_PORT"]
    if not host or not port:
        raise KubeConfigError("KUBERNETES_SERVICE_HOST/PORT are set but empty")
    token_file = os.path.join(sa_dir, "token")
    ca_file = os.path.join(sa_dir, "ca.crt")
    for path, what in ((token_file, "token"), (ca_file, "CA certificate")):
        if not os.path.isfile(path):
            raise KubeConfigError(
                f"in-cluster configuration: service account {what} {path} does not exist "
                "(is a service account token mounted in the pod?)"
            )
    try:
        token = Path(token_file).read_text().strip()
    except OSError as exc:
        raise KubeConfigError(f"in-cluster configuration: cannot read {token_file}: {exc}") from exc
    if not token:
        raise KubeConfigError(f"in-cluster configuration: {token_file} is empty")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 service address
    return KubeConfig(server=f"https://{host}:{port}", ca_file=ca_file, token_file=token_file)


def _kubeconfig_paths(kubeconfig: str | None) -> str:
    if kubeconfig is not None:
        return kubeconfig
    return os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


def _from_kubeconfig(paths: str, context: str | None) -> KubeConfig:
    existing = [p for p in paths.split(os.pathsep) if p and os.path.exists(os.path.expanduser(p))]
    if not existing:
        raise KubeConfigError(
            f"no kubeconfig: {paths} does not exist and this is not a pod "
            "(KUBERNETES_SERVICE_HOST is not set)"
        )
    try:
        merged = _Merged.read([os.path.expanduser(p) for p in existing])
        name = context or merged.current_context
        if not name:
            raise KubeConfigError(f"kubeconfig {paths}: no current-context and none asked for")
        ctx = merged.find("contexts", name, "context", paths)
        cluster = merged.find("clusters", _str(ctx, "cluster"), "cluster", paths)
        user_name = _str(ctx, "user")
        user = merged.find("users", user_name, "user", paths) if user_name else {}
        if "exec" in user or "auth-provider" in user:
            # credential plugins: the kubernetes package's loader runs them
            return _from_kubernetes_loader(paths, context)
        return _resolve(paths, merged, cluster, user)
    except KubeConfigError:
        raise
    except Exception as exc:
        # A malformed file: YAML syntax errors, or a document of the wrong shape.
        raise KubeConfigError(f"kubeconfig {paths}: {type(exc).__name__}: {exc}") from exc


class _Merged:
    """Several kubeconfig files merged as kubectl merges $KUBECONFIG: the
    first file to name a cluster, user or context wins, and the first
    current-context set wins. Each entry remembers its file (relative paths
    are relative to it)."""

    def __init__(self) -> None:
        self.current_context = ""
        self.entries: dict[str, dict[str, tuple[dict[str, Any], str]]] = {
            "clusters": {},
            "users": {},
            "contexts": {},
        }

    @classmethod
    def read(cls, files: list[str]) -> _Merged:
        import yaml  # a C parser; imported here as only the kubeconfig path needs it

        merged = cls()
        for path in files:
            with open(path, "rb") as f:
                doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise KubeConfigError(f"kubeconfig {path}: not a mapping")
            merged.current_context = merged.current_context or _str(doc, "current-context")
            for kind, entries in merged.entries.items():
                items = doc.get(kind) or []
                if not isinstance(items, list):
                    raise KubeConfigError(f"kubeconfig {path}: {kind} is not a list")
                for item in items:
                    if isinstance(item, dict) and isinstance(item.get("name"), str):
                        entries.setdefault(item["name"], (item, os.path.dirname(path)))
        return merged

    def find(self, kind: str, name: str, key: str, paths: str) -> dict[str, Any]:
        found = self.entries[kind].get(name)
        if found is None:
            raise KubeConfigError(
                f"kubeconfig {paths}: expected an entry with name {name} in {paths}/{kind}"
            )
        item, base = found
        body = item.get(key) or {}
        if not isinstance(body, dict):
            raise KubeConfigError(f"kubeconfig {paths}: {kind} entry {name} is not a mapping")
        return {**body, "__dir__": base}


def _str(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{key} must be a string, not {type(value).__name__}")
    return value


def _resolve(
    paths: str, merged: _Merged, cluster: dict[str, Any], user: dict[str, Any]
) -> KubeConfig:
    server = _str(cluster, "server")
    if not server:
        raise KubeConfigError(f"kubeconfig {paths}: the cluster has no server")
    if user.get("username") or user.get("password"):
        raise KubeConfigError(
            f"kubeconfig {paths}: only bearer tokens and client certificates are "
            "supported, not basic authentication"
        )
    token = _str(user, "token") or None
    token_file = _file(user, "tokenFile", None)
    return KubeConfig(
        server=server,
        ca_file=_file(cluster, "certificate-authority", "certificate-authority-data"),
        token=token,
        token_file=token_file,
        cert_file=_file(user, "client-certificate", "client-certificate-data"),
        key_file=_file(user, "client-key", "client-key-data"),
        insecure_skip_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
    )


def _file(entry: dict[str, Any], path_key: str, data_key: str | None) -> str | None:
    """A file named by ``path_key`` (relative to its kubeconfig's folder), or
    the base64 ``data_key`` written to a private temporary file (removed at
    exit), as kubectl and the kubernetes package do; ``*-data`` wins."""
    data = _str(entry, data_key) if data_key else ""
    if data:
        return _private_file(base64.b64decode(data, validate=False))
    path = _str(entry, path_key)
    if not path:
        return None
    return os.path.join(entry["__dir__"], os.path.expanduser(path))


_TEMP: list[str] = []


def _private_file(content: bytes) -> str:
    if not _TEMP:
        _TEMP.append(tempfile.mkdtemp(prefix="cnid-kubeconfig-"))
        atexit.register(shutil.rmtree, _TEMP[0], True)
    fd, path = tempfile.mkstemp(dir=_TEMP[0])  # 0600
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return path


def _from_kubernetes_loader(paths: str, context: str | None) -> KubeConfig:
    """The kubernetes package's own loader, for users with credential plugins
    (``exec``, ``auth-provider``). Imported here: the package pulls its
    whole generated client in (about a second on a server, a minute under
    emulation), which only these need."""
    from kubernetes.client import Configuration
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.kube_config import _get_kube_config_loader

    # host="" rather than the generated client's "http://localhost" default,
    # so that a cluster without a server is noticed.
    cfg: Any = Configuration(host="")
    try:
        loader = _get_kube_config_loader(  # type: ignore[no-untyped-call]
            filename=paths, active_context=context, persist_config=False
        )
        loader.load_and_set(cfg)
    except ConfigException as exc:
        raise KubeConfigError(f"kubeconfig {paths}: {exc}") from exc
    server = str(cfg.host or "")
    if not server:
        raise KubeConfigError(f"kubeconfig {paths}: the cluster has no server")
    token: str | None = None
    auth = cfg.api_key.get("BearerToken") or cfg.api_key.get("authorization")
    if auth:
        scheme, _, value = str(auth).partition(" ")
        if scheme.lower() != "bearer" or not value:
            raise KubeConfigError(
                f"kubeconfig {paths}: only bearer tokens and client certificates are "
                f"supported, not {scheme} authentication"
            )
        token = value
    return KubeConfig(
        server=server,
        ca_file=cfg.ssl_ca_cert or None,
        token=token,
        cert_file=cfg.cert_file or None,
        key_file=cfg.key_file or None,
        insecure_skip_verify=not cfg.verify_ssl,
    )


def load_config(
    kubeconfig: str | None = None, *, context: str | None = None, sa_dir: str = SA_DIR
) -> KubeConfig:
    """In-cluster when no kubeconfig is named and the pod's
    KUBERNETES_SERVICE_HOST/PORT are set; else the kubeconfig (the argument,
    else $KUBECONFIG, else ~/.kube/config). KubeConfigError says what is
    missing."""
    if (
        kubeconfig is None
        and "KUBERNETES_SERVICE_HOST" in os.environ
        and "KUBERNETES_SERVICE_PORT" in os.environ
    ):
        return _in_cluster(sa_dir)
    return _from_kubeconfig(_kubeconfig_paths(kubeconfig), context)
