"""Where the API server is and how to authenticate to it.

Two sources, as every Kubernetes client has them: the pod's service account
(in-cluster) and a kubeconfig file. The kubeconfig is read by the
``kubernetes`` package's own loader, so contexts, merged $KUBECONFIG lists,
relative paths and inline ``*-data`` fields behave as kubectl's do; inline
certificates are written by it to temporary files (removed at exit), whose
paths are kept here.

The service account token is kept as a *path*: the kubelet rotates the
projected token on disk and the client re-reads it (see ``_auth``).
"""

from __future__ import annotations

import os
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
    # Imported here: the package pulls its whole generated client in (about
    # a second), which only the kubeconfig path needs.
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
    except Exception as exc:
        # A malformed file: YAML syntax errors, or KeyError/TypeError from
        # the loader walking a document of the wrong shape.
        raise KubeConfigError(f"kubeconfig {paths}: {type(exc).__name__}: {exc}") from exc
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
