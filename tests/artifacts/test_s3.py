"""S3 model data against a real S3-compatible server (SeaweedFS)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.client
import pytest

from moorage.artifacts import ArtifactError, prepare_model
from tests.artifacts import tarballs as t
from tests.support.seaweed import SeaweedS3


@pytest.fixture
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every S3 operation any boto3 client makes during the test, in order."""
    calls: list[str] = []
    lock = threading.Lock()
    original = botocore.client.BaseClient._make_api_call

    def spy(self: Any, operation_name: str, api_params: Any) -> Any:
        with lock:
            calls.append(operation_name)
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", spy)
    yield calls


def _upload_tar(server: SeaweedS3, bucket: str, key: str, tmp_path: Path, files: dict[str, bytes]) -> None:
    archive = t.model_tar(tmp_path / f"upload-{len(os.listdir(tmp_path))}.tar.gz", files)
    server.client().upload_file(str(archive), bucket, key)


def _source(uri: str, data_type: str, compression: str = "None") -> dict[str, Any]:
    return {
        "ModelDataSource": {
            "S3DataSource": {"S3Uri": uri, "S3DataType": data_type, "CompressionType": compression}
        }
    }


def test_tar_gz_from_s3_is_downloaded_once(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path, s3_calls: list[str]
) -> None:
    _upload_tar(s3_env, s3_bucket, "echo/model.tar.gz", tmp_path, {"model.txt": b"v1", "code/x.py": b""})
    cache = tmp_path / "cache"
    url = f"s3://{s3_bucket}/echo/model.tar.gz"
    s3_calls.clear()
    lines: list[str] = []
    first = prepare_model({"ModelDataUrl": url}, cache, log=lines.append)
    assert (first.model_dir / "model.txt").read_bytes() == b"v1"
    assert s3_calls.count("GetObject") == 1, s3_calls
    assert not (cache / "downloads").exists() or not any((cache / "downloads").iterdir())

    s3_calls.clear()
    lines.clear()
    second = prepare_model({"ModelDataUrl": url}, cache, log=lines.append)
    assert second.model_dir == first.model_dir
    assert "GetObject" not in s3_calls, s3_calls
    assert any("is cached at" in line for line in lines), lines

    # A new upload under the same key has a new ETag and so a new model directory.
    _upload_tar(s3_env, s3_bucket, "echo/model.tar.gz", tmp_path, {"model.txt": b"v2"})
    third = prepare_model({"ModelDataUrl": url}, cache)
    assert third.model_dir != first.model_dir
    assert (third.model_dir / "model.txt").read_bytes() == b"v2"


def test_concurrent_prepares_download_once(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path, s3_calls: list[str]
) -> None:
    _upload_tar(s3_env, s3_bucket, "model.tar.gz", tmp_path, {"big.bin": os.urandom(2 * 1024 * 1024)})
    s3_calls.clear()
    results: list[Path] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(
                prepare_model({"ModelDataUrl": f"s3://{s3_bucket}/model.tar.gz"}, tmp_path / "c").model_dir
            )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(results)) == 1
    assert s3_calls.count("GetObject") == 1, s3_calls


def test_missing_object(s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    url = f"s3://{s3_bucket}/nope/model.tar.gz"
    with pytest.raises(ArtifactError) as caught:
        prepare_model({"ModelDataUrl": url}, tmp_path / "cache")
    assert str(caught.value) == (
        f"Failed to download model data from {url}: NoSuchKey (the object does not exist). "
        "Check ModelDataUrl and that the object was uploaded."
    )


def test_missing_bucket(s3_env: SeaweedS3, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"NoSuchBucket \(the bucket does not exist\)"):
        prepare_model({"ModelDataUrl": "s3://no-such-bucket-here/model.tar.gz"}, tmp_path / "cache")


def test_bad_credentials(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong")
    with pytest.raises(ArtifactError, match=r"Failed to download model data from s3://.*(Access|access key)"):
        prepare_model({"ModelDataUrl": f"s3://{s3_bucket}/model.tar.gz"}, tmp_path / "cache")


def test_corrupt_archive_in_s3(s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    s3_env.client().put_object(Bucket=s3_bucket, Key="model.tar.gz", Body=b"\x1f\x8bnot really gzip" * 10)
    url = f"s3://{s3_bucket}/model.tar.gz"
    with pytest.raises(
        ArtifactError, match="^" + re.escape(f"Model data at {url} is not a valid tar.gz archive: ")
    ):
        prepare_model({"ModelDataUrl": url}, tmp_path / "cache")


def test_unsafe_archive_in_s3(s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    archive = t.write_tar(tmp_path / "model.tar.gz", [t.file("../evil", b"x")])
    s3_env.client().upload_file(str(archive), s3_bucket, "m/model.tar.gz")
    with pytest.raises(ArtifactError, match=r"^Refused to unpack model\.tar\.gz: member '\.\./evil' escapes"):
        prepare_model({"ModelDataUrl": f"s3://{s3_bucket}/m/model.tar.gz"}, tmp_path / "cache")


def test_gzip_s3_object(s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    _upload_tar(s3_env, s3_bucket, "g/model.tar.gz", tmp_path, {"m.txt": b"gz"})
    prepared = prepare_model(
        _source(f"s3://{s3_bucket}/g/model.tar.gz", "S3Object", "Gzip"), tmp_path / "cache"
    )
    assert (prepared.model_dir / "m.txt").read_bytes() == b"gz"


def test_uncompressed_s3_object(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path, s3_calls: list[str]
) -> None:
    s3_env.client().put_object(Bucket=s3_bucket, Key="llm/weights.safetensors", Body=b"tensor")
    container = _source(f"s3://{s3_bucket}/llm/weights.safetensors", "S3Object")
    model_dir = prepare_model(container, tmp_path / "cache").model_dir
    assert os.listdir(model_dir) == ["weights.safetensors"]
    assert (model_dir / "weights.safetensors").read_bytes() == b"tensor"
    s3_calls.clear()
    assert prepare_model(container, tmp_path / "cache").model_dir == model_dir
    assert "GetObject" not in s3_calls


def test_uncompressed_s3_prefix(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path, s3_calls: list[str]
) -> None:
    client = s3_env.client()
    objects = {
        "llm/config.json": b"{}",
        "llm/weights/part-1.bin": b"1",
        "llm/weights/part-2.bin": b"22",
        "llm/code/inference.py": b"pass\n",
        "other/ignored.txt": b"no",
    }
    for key, body in objects.items():
        client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    container = _source(f"s3://{s3_bucket}/llm/", "S3Prefix")
    model_dir = prepare_model(container, tmp_path / "cache").model_dir
    found = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    assert found == ["code/inference.py", "config.json", "weights/part-1.bin", "weights/part-2.bin"]
    assert (model_dir / "weights" / "part-2.bin").read_bytes() == b"22"

    s3_calls.clear()
    assert prepare_model(container, tmp_path / "cache").model_dir == model_dir
    assert "GetObject" not in s3_calls

    # Without the trailing slash the prefix still maps 'llm/x' to 'x'.
    assert (
        prepare_model(_source(f"s3://{s3_bucket}/llm", "S3Prefix"), tmp_path / "cache").model_dir == model_dir
    )


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"p/weights": b"1", "p/weights/part1": b"2"}, "'weights' would be both a file and a directory"),
        ({"p/a.bin": b"1", "p/folder/": b""}, "the 0-byte folder object 'p/folder/' ends in '/'"),
    ],
)
def test_s3_prefix_rules_on_a_real_store(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path, keys: dict[str, bytes], expected: str
) -> None:
    client = s3_env.client()
    for key, body in keys.items():
        client.put_object(Bucket=s3_bucket, Key=key, Body=body)
    uri = f"s3://{s3_bucket}/p/"
    with pytest.raises(
        ArtifactError,
        match="^" + re.escape(f"Cannot lay out the model data under {uri}: ") + ".*" + re.escape(expected),
    ):
        prepare_model(_source(uri, "S3Prefix"), tmp_path / "cache")


def test_empty_s3_prefix(s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="No objects found under"):
        prepare_model(_source(f"s3://{s3_bucket}/nothing/", "S3Prefix"), tmp_path / "cache")
