"""The node's record of its CNI attachments, one small file per attachment.

A record is written ``pending`` before the kernel is touched and ``ready``
once the pod is wired, so a daemon killed in the middle of an ADD finds, at
its next start, exactly what it has to roll back. It also holds the result
returned to the runtime, so a repeated ADD returns the same result and a DEL
after a restart knows what to remove.

Writes go to a temporary file that is then renamed over the record: a crash
of the daemon leaves the old record or the new one, never half of one. There
is no fsync: only a crash of the whole node could lose a write, and that
removes every pod with it; start-up reconciliation drops records whose host
link no longer exists.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import msgspec

from ._errors import ConfigError
from ._notify import Notifier
from ._pods import Attachment, PodResult

State = Literal["pending", "ready"]


class PodRecord(msgspec.Struct, frozen=True):
    container_id: str
    ifname: str
    state: State
    network_name: str
    netns: str
    domain: str
    vrf: int
    host_ifname: str
    address: str = ""
    prefixlen: int = 0
    gateway: str = ""
    pod_namespace: str = ""
    pod_name: str = ""
    pod_uid: str = ""
    result: PodResult | None = None
    created: float = 0.0

    @property
    def attachment(self) -> Attachment:
        return Attachment(self.container_id, self.ifname)


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(PodRecord)


class Journal:
    """Records in ``<state_dir>/attachments/<host_ifname>.json``, cached in memory."""

    def __init__(self, state_dir: str | os.PathLike[str], notifier: Notifier | None = None) -> None:
        self._dir = Path(state_dir) / "attachments"
        self._records: dict[Attachment, PodRecord] = {}
        #: Bumped on every change of a record.
        self.notifier = notifier or Notifier()

    def load(self) -> list[str]:
        """Read every record; return the problems found (unreadable records
        are moved aside, never silently dropped)."""
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create state directory {self._dir}: {exc}") from None
        problems: list[str] = []
        self._records.clear()
        for path in sorted(self._dir.glob("*.json")):
            try:
                rec = _decoder.decode(path.read_bytes())
            except (OSError, msgspec.DecodeError) as exc:
                problems.append(f"{path}: {exc}")
                path.rename(path.with_suffix(".corrupt"))
                continue
            self._records[rec.attachment] = rec
        for tmp in self._dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        self.notifier.bump()
        return problems

    def get(self, att: Attachment) -> PodRecord | None:
        return self._records.get(att)

    def all(self) -> list[PodRecord]:
        return list(self._records.values())

    def put(self, rec: PodRecord) -> PodRecord:
        if not rec.created:
            rec = msgspec.structs.replace(rec, created=time.time())
        path = self._dir / f"{rec.host_ifname}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(_encoder.encode(rec))
        os.replace(tmp, path)
        self._records[rec.attachment] = rec
        self.notifier.bump()
        return rec

    def delete(self, att: Attachment) -> None:
        rec = self._records.pop(att, None)
        if rec is not None:
            (self._dir / f"{rec.host_ifname}.json").unlink(missing_ok=True)
            self.notifier.bump()
