"""Local model data: file:// URIs, plain paths, directories used in place, and local caching."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from moorage.artifacts import ArtifactError, prepare_model
from tests.artifacts import tarballs as t


def test_file_uri_and_plain_path_share_one_unpacked_copy(tmp_path: Path) -> None:
    archive = t.model_tar(tmp_path / "model.tar.gz", {"model.txt": b"v1", "code/inference.py": b"pass\n"})
    cache = tmp_path / "cache"
    lines: list[str] = []
    first = prepare_model({"ModelDataUrl": archive.as_uri()}, cache, log=lines.append)
    assert (first.model_dir / "model.txt").read_bytes() == b"v1"
    assert first.model_dir.parent == cache / "models"
    assert first.python == sys.executable and first.env_dir is None
    assert not any("cached" in line for line in lines)

    lines.clear()
    second = prepare_model({"ModelDataUrl": str(archive)}, cache, log=lines.append)
    assert second.model_dir == first.model_dir
    assert any("is cached at" in line for line in lines)
    assert not any(line.startswith("Unpacking") for line in lines)


def test_changed_local_archive_gets_a_new_model_dir(tmp_path: Path) -> None:
    archive = t.model_tar(tmp_path / "model.tar.gz", {"model.txt": b"v1"})
    cache = tmp_path / "cache"
    first = prepare_model({"ModelDataUrl": str(archive)}, cache).model_dir
    t.model_tar(archive, {"model.txt": b"v2"})
    second = prepare_model({"ModelDataUrl": str(archive)}, cache).model_dir
    assert first != second
    assert (first / "model.txt").read_bytes() == b"v1"
    assert (second / "model.txt").read_bytes() == b"v2"


def test_relative_plain_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t.model_tar(tmp_path / "model.tar.gz", {"m": b"1"})
    monkeypatch.chdir(tmp_path)
    assert (prepare_model({"ModelDataUrl": "model.tar.gz"}, tmp_path / "cache").model_dir / "m").exists()


def test_local_directory_is_used_in_place(tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"w")
    prepared = prepare_model({"ModelDataUrl": model.as_uri()}, tmp_path / "cache")
    assert prepared.model_dir == model
    assert not (tmp_path / "cache" / "models").exists()


def test_missing_local_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tar.gz"
    with pytest.raises(
        ArtifactError, match=re.escape(f"Model data at {missing} does not exist. Check ModelDataUrl.")
    ):
        prepare_model({"ModelDataUrl": missing.as_uri()}, tmp_path / "cache")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/model.tar.gz", "unsupported scheme 'https://'"),
        ("s3:///key", "has no bucket name"),
        ("file://otherhost/x.tar.gz", "names the host 'otherhost'"),
    ],
)
def test_bad_urls(tmp_path: Path, url: str, expected: str) -> None:
    with pytest.raises(ArtifactError, match=expected):
        prepare_model({"ModelDataUrl": url}, tmp_path / "cache")


def test_uncompressed_local_object_and_prefix(tmp_path: Path) -> None:
    weights = tmp_path / "src" / "weights.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"tensor")
    cache = tmp_path / "cache"
    source = {"S3Uri": weights.as_uri(), "S3DataType": "S3Object", "CompressionType": "None"}
    model_dir = prepare_model({"ModelDataSource": {"S3DataSource": source}}, cache).model_dir
    assert sorted(os.listdir(model_dir)) == ["weights.safetensors"]
    assert (model_dir / "weights.safetensors").read_bytes() == b"tensor"

    prefix = {"S3Uri": str(weights.parent), "S3DataType": "S3Prefix", "CompressionType": "None"}
    assert prepare_model({"ModelDataSource": {"S3DataSource": prefix}}, cache).model_dir == weights.parent


def test_gzip_local_object_is_an_archive(tmp_path: Path) -> None:
    archive = t.model_tar(tmp_path / "model.tar.gz", {"m.txt": b"gz"})
    source = {"S3Uri": str(archive), "S3DataType": "S3Object", "CompressionType": "Gzip"}
    model_dir = prepare_model({"ModelDataSource": {"S3DataSource": source}}, tmp_path / "cache").model_dir
    assert (model_dir / "m.txt").read_bytes() == b"gz"


def test_container_without_model_data_gets_an_empty_dir(tmp_path: Path) -> None:
    prepared = prepare_model({"Image": "example/image:latest"}, tmp_path / "cache")
    assert prepared.model_dir.is_dir() and not any(prepared.model_dir.iterdir())


def test_invalid_model_data_source(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="S3DataType must be S3Object or S3Prefix"):
        prepare_model(
            {"ModelDataSource": {"S3DataSource": {"S3Uri": "s3://b/k", "S3DataType": "Manifest"}}},
            tmp_path / "cache",
        )
    with pytest.raises(ArtifactError, match="not both"):
        prepare_model(
            {"ModelDataUrl": "s3://b/k", "ModelDataSource": {"S3DataSource": {"S3Uri": "s3://b/k"}}},
            tmp_path / "cache",
        )


def test_concurrent_processes_unpack_once(tmp_path: Path) -> None:
    archive = t.model_tar(tmp_path / "model.tar.gz", {"big.bin": os.urandom(8 * 1024 * 1024)})
    script = (
        "import sys; from pathlib import Path; from moorage.artifacts import prepare_model; "
        "p = prepare_model({'ModelDataUrl': sys.argv[1]}, Path(sys.argv[2]), log=print); "
        "print('DIR', p.model_dir)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(archive), str(tmp_path / "cache")],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[2],
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), outputs
    assert sum(out.count("\nUnpacking ") + out.startswith("Unpacking ") for out in outputs) == 1, outputs
    assert len({line for out in outputs for line in out.splitlines() if line.startswith("DIR ")}) == 1
