"""The emulated API server as tests hold it: ``open_kubeapi`` serves it on
a port of its own (and optionally a UNIX socket), carries it across
restarts with a state file, and hands back a KubeApi with its address,
credentials, the objects it stores, and the faults a test can inject."""

from __future__ import annotations

import functools
import logging
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trustme
import yaml

from ._access import AppAccess
from ._app import ADMIN_USER, App
from ._certs import server_context
from ._errors import StatusError
from ._kubeconfig import write_kubeconfig
from ._rbac import load_rules
from ._server import HttpServer, open_unix_listener
from ._state import State, load_state, save_state

log = logging.getLogger("testbed.kubeapi")

DEFAULT_RBAC_USER = "system:serviceaccount:pyroute2-cni:cnid"
# libyaml's loader when PyYAML has it: ten times faster on CRD files.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SHUTDOWN_GRACE = 2.0


def load_crd_documents(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in files or directories of YAML
    (multi-document files fine; other kinds, kustomization.yaml included, skipped)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(
                p for p in path.iterdir() if p.suffix in (".yaml", ".yml", ".json") and p.is_file()
            )
        else:
            files.append(path)
    crds = []
    for file in files:
        with open(file) as stream:
            for doc in yaml.load_all(stream, Loader=_LOADER):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    crds.append(doc)
    return crds


class KubeApi(AppAccess):
    """A running emulated API server (see open_kubeapi)."""

    def __init__(
        self,
        app: App,
        server: HttpServer,
        *,
        url: str,
        directory: Path,
        ca_file: Path,
        token: str,
        kubeconfig_path: Path,
    ) -> None:
        self._app = app
        self._server = server
        self.url = url
        self.directory = directory
        self.ca_file = str(ca_file)
        self.token = token
        self.kubeconfig_path = str(kubeconfig_path)
        self.sa_token: str | None = None
        self.sa_user: str | None = None
        self.sa_kubeconfig_path: str | None = None
        self.unix_path: str | None = None  # plain HTTP, same tokens (unix_path=)

    def add_token(self, token: str, user: str) -> None:
        """Accept ``token`` as ``user``; a user other than the admin is held
        to the RBAC file's rules when the server has one."""
        self._app.tokens[token] = user

    def drop_watches(self) -> None:
        """Close every open watch connection abruptly (no final chunk, no TLS close)."""
        self._server.drop_watches()

    @property
    def open_watches(self) -> int:
        return len(self._app.watches)


@asynccontextmanager
async def open_kubeapi(
    crd_paths: Iterable[str | Path] = (),
    rbac_path: str | Path | None = None,
    bookmark_interval: float = 1.0,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    rbac_user: str = DEFAULT_RBAC_USER,
    directory: str | Path | None = None,
    advertise: str | None = None,
    sans: Iterable[str] = (),
    unix_path: str | Path | None = None,
    state_path: str | Path | None = None,
) -> AsyncIterator[KubeApi]:
    """Serve an emulated API server until the block ends.

    Files go to ``directory`` (a temporary one, removed at the end, when not
    given): ca.crt, token + kubeconfig (admin) and, with ``rbac_path``,
    sa-token + sa-kubeconfig for ``rbac_user``, whose requests the rules of
    every ClusterRole in that file restrict. ``advertise`` is the address
    the kubeconfigs name (default: ``host``, or 127.0.0.1 for a wildcard);
    ``sans`` are extra names for the certificate.

    ``unix_path``: also serve plain HTTP (same tokens, same RBAC) on a UNIX
    socket there, removed at the end. ``state_path``: start from that state
    file when it exists (objects, resourceVersion, request log, tokens, CA;
    CRDs in ``crd_paths`` that it already holds are skipped) and write it
    at the end, so a restart looks like an outage to clients."""
    owned = directory is None
    workdir = Path(tempfile.mkdtemp(prefix="kubeapi-")) if directory is None else Path(directory)
    workdir.mkdir(parents=True, exist_ok=True)
    state_file = Path(state_path) if state_path is not None else None
    try:
        state = load_state(state_file) if state_file is not None else None
        ca = _restored_ca(state)
        token = _restored_token(state, ADMIN_USER)
        rules = load_rules(rbac_path) if rbac_path is not None else None
        app = App(admin_token=token, bookmark_interval=bookmark_interval, rbac_rules=rules)
        if state is not None:
            app.restore(state)
            log.info("restored %d objects at resourceVersion %d", len(state.objects), app.store.rv)
        for crd in load_crd_documents(crd_paths):
            name = (crd.get("metadata") or {}).get("name")
            if state is not None and isinstance(name, str) and app.has_crd(name):
                continue  # the stored one (and its objects) wins
            try:
                app.load_crd(crd)
            except StatusError as error:
                raise ValueError(f"CRD {name} cannot be loaded: {error.message}") from error
        listeners = await trio.open_tcp_listeners(port, host=host)
        unix_listener: trio.SocketListener | None = None
        try:
            if unix_path is not None:
                unix_listener = await open_unix_listener(Path(unix_path))
            bound_port = listeners[0].socket.getsockname()[1]
            address = advertise or (host if host not in ("", "0.0.0.0", "::") else "127.0.0.1")
            shown = f"[{address}]" if ":" in address else address
            url = f"https://{shown}:{bound_port}"
            app.server_address = f"{shown}:{bound_port}"
            context, ca_file, ca = server_context(
                workdir, [address, "127.0.0.1", "localhost", "::1", *sans], ca
            )
            (workdir / "token").write_text(token)
            kubeconfig = write_kubeconfig(
                workdir / "kubeconfig", server=url, ca_file=ca_file, user="admin", token=token
            )
            server = HttpServer(app, context)
            api = KubeApi(
                app,
                server,
                url=url,
                directory=workdir,
                ca_file=ca_file,
                token=token,
                kubeconfig_path=kubeconfig,
            )
            if unix_path is not None:
                api.unix_path = str(unix_path)
            if rules is not None:
                api.sa_token = _restored_token(state, rbac_user)
                api.sa_user = rbac_user
                app.tokens[api.sa_token] = rbac_user
                (workdir / "sa-token").write_text(api.sa_token)
                api.sa_kubeconfig_path = str(
                    write_kubeconfig(
                        workdir / "sa-kubeconfig",
                        server=url,
                        ca_file=ca_file,
                        user=rbac_user.rsplit(":", 1)[-1],
                        token=api.sa_token,
                    )
                )
        except BaseException:
            for listener in [*listeners, *([unix_listener] if unix_listener else [])]:
                await trio.aclose_forcefully(listener)
            if unix_listener is not None:
                Path(unix_path or "").unlink(missing_ok=True)
            raise
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(server.serve, listeners)
                if unix_listener is not None:
                    await nursery.start(functools.partial(server.serve, [unix_listener], tls=False))
                try:
                    yield api
                finally:
                    server.stop_watches()
                    with trio.move_on_after(_SHUTDOWN_GRACE) as grace:
                        grace.shield = True
                        while app.watches:
                            await trio.sleep(0.01)
                    nursery.cancel_scope.cancel()
        finally:
            if unix_listener is not None:
                Path(unix_path or "").unlink(missing_ok=True)
            if state_file is not None:
                _save(state_file, app, ca)
    finally:
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)


def _restored_ca(state: State | None) -> trustme.CA | None:
    """The CA clients of the previous run trust, when the state has one."""
    if state is None or not state.ca_cert or not state.ca_key:
        return None
    return trustme.CA.from_pem(state.ca_cert.encode(), state.ca_key.encode())


def _restored_token(state: State | None, user: str) -> str:
    """The previous run's token for ``user`` (clients still send it), or a new one."""
    if state is not None:
        for token, owner in state.tokens.items():
            if owner == user:
                return token
    return secrets.token_urlsafe(32)


def _save(path: Path, app: App, ca: trustme.CA) -> None:
    state = app.snapshot()
    state.ca_cert = ca.cert_pem.bytes().decode()
    state.ca_key = ca.private_key_pem.bytes().decode()
    save_state(path, state)
    log.info(
        "saved %d objects at resourceVersion %d to %s",
        len(state.objects),
        state.resource_version,
        path,
    )
