"""What scripts/install-deps leaves behind, and the pause image it builds (testbed.images)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

from testbed.images import PAUSE_IMAGE, build_pause_archive, find_catatonit

REPO = Path(__file__).resolve().parents[2]


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
        return out


def blob(files: dict[str, bytes], digest: str) -> bytes:
    data = files["blobs/sha256/" + digest.removeprefix("sha256:")]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def test_pause_archive_is_a_valid_oci_layout(tmp_path: Path) -> None:
    fake = tmp_path / "catatonit"
    fake.write_bytes(b"\x7fELF not really")
    files = members(build_pause_archive(fake))
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == PAUSE_IMAGE
    manifest = json.loads(blob(files, entry["digest"]))
    assert len(blob(files, entry["digest"])) == entry["size"]
    config = json.loads(blob(files, manifest["config"]["digest"]))
    assert config["config"]["Entrypoint"] == ["/catatonit", "-P"]
    (layer_desc,) = manifest["layers"]
    layer = gzip.decompress(blob(files, layer_desc["digest"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert members(layer) == {"catatonit": fake.read_bytes()}
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        assert tar.getmember("catatonit").mode == 0o755


def test_pause_archive_is_deterministic(tmp_path: Path) -> None:
    fake = tmp_path / "catatonit"
    fake.write_bytes(b"same bytes")
    assert build_pause_archive(fake) == build_pause_archive(fake)
    other = tmp_path / "other"
    other.write_bytes(b"other bytes")
    assert build_pause_archive(fake) != build_pause_archive(other)


def test_install_deps_left_the_tools() -> None:
    assert find_catatonit().is_file()
    assert (REPO / ".tools" / "pause.tar").is_file()
    usage = subprocess.run(
        [str(REPO / ".tools" / "bin" / "cnitool")], capture_output=True, text=True, check=False
    )
    assert "cnitool add" in usage.stderr
    stubs = REPO / ".tools" / "cri" / "cri_api"
    assert "RuntimeServiceStub" in (stubs / "api_pb2_grpc.py").read_text()
    assert "gogoproto" not in (stubs / "api.proto").read_text()
