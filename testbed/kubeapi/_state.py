"""The state file that carries a server across a restart: what etcd keeps
on disk (objects, the resourceVersion counter) plus what clients hold on to
across an outage (the CA they verify, the tokens they send) and the request
log tests read.

Written once at a clean shutdown, atomically (a temporary file renamed over
the old one), so a server killed mid-write leaves the previous state."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec

from ._requests import RequestRecord

FORMAT = 1


class StoredObject(msgspec.Struct):
    group: str
    plural: str
    object: dict[str, Any]


class State(msgspec.Struct, kw_only=True):
    format: int = FORMAT
    resource_version: int
    objects: list[StoredObject]
    requests: list[RequestRecord] = []
    tokens: dict[str, str] = {}  # token -> user
    ca_cert: str = ""  # PEM
    ca_key: str = ""  # PEM


def load_state(path: Path) -> State | None:
    """The state in ``path``, None when there is no such file; a file that
    does not parse is a ValueError (the CLI's "bad arguments" exit)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        state = msgspec.json.decode(data, type=State)
    except msgspec.DecodeError as error:
        raise ValueError(f"state file {path} is not valid: {error}") from error
    if state.format != FORMAT:
        raise ValueError(f"state file {path} has format {state.format}, expected {FORMAT}")
    return state


def save_state(path: Path, state: State) -> None:
    """Write ``state`` to ``path`` atomically; owner-only, as it holds a CA
    key and tokens."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(msgspec.json.encode(state))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
