"""The pause image for containerd tests: an OCI image archive built offline.

The only file in the image is Debian's static ``catatonit``; the entrypoint is ``catatonit -P``
(pause mode: sleep until signalled, reap children). The archive is deterministic: the same
catatonit binary always gives the same bytes, so the same digests.

    python -m testbed.images --out .tools/pause.tar

Import it with ``ctr -n k8s.io images import .tools/pause.tar``; its name is `PAUSE_IMAGE`.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

PAUSE_IMAGE = "localhost/cnid/pause:1"
CATATONIT_CANDIDATES = (Path("/usr/bin/catatonit"), Path("/usr/libexec/podman/catatonit"))

_MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
_CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def find_catatonit() -> Path:
    for path in CATATONIT_CANDIDATES:
        if path.is_file():
            return path
    raise FileNotFoundError("catatonit not found in " + ", ".join(map(str, CATATONIT_CANDIDATES)))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def _layer(binary: bytes) -> tuple[bytes, bytes]:
    """The layer as (uncompressed tar, gzip of it)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "catatonit", binary, mode=0o755)
    plain = raw.getvalue()
    packed = io.BytesIO()
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz:
        gz.write(plain)
    return plain, packed.getvalue()


def build_pause_archive(catatonit: Path, name: str = PAUSE_IMAGE) -> bytes:
    """An OCI image layout (index.json, oci-layout, blobs/) as one tar archive."""
    plain, packed = _layer(catatonit.read_bytes())
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "1970-01-01T00:00:00Z",
            "config": {"Entrypoint": ["/catatonit", "-P"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": [_digest(plain)]},
            "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "testbed.images"}],
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": _MANIFEST_TYPE,
            "config": {"mediaType": _CONFIG_TYPE, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": _LAYER_TYPE, "digest": _digest(packed), "size": len(packed)}],
        }
    )
    index = _json(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": _MANIFEST_TYPE,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": name.rpartition(":")[2],
                    },
                }
            ],
        }
    )
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "oci-layout", _json({"imageLayoutVersion": "1.0.0"}))
        _add(tar, "index.json", index)
        for blob in sorted((config, manifest, packed), key=_digest):
            _add(tar, "blobs/sha256/" + _digest(blob).removeprefix("sha256:"), blob)
    return out.getvalue()


def write_pause_archive(out: Path, catatonit: Path | None = None) -> Path:
    data = build_pause_archive(catatonit or find_catatonit())
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the OCI tar")
    parser.add_argument("--catatonit", type=Path, default=None)
    args = parser.parse_args()
    path = write_pause_archive(args.out, args.catatonit)
    print(f"{path}: {PAUSE_IMAGE} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
