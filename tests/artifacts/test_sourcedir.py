"""SAGEMAKER_SUBMIT_DIRECTORY naming an archive (s3://…/sourcedir.tar.gz, file://…, a path): fetched
through the model-data cache, unpacked safely, and used as the code directory."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.client
import pytest

from moorage.artifacts import ArtifactError, prepare_model
from moorage.artifacts.environments import find_requirements
from moorage.serving.settings import CODE_DIR_VARIABLE, Arguments, load_settings
from tests.artifacts import tarballs as t
from tests.support.seaweed import SeaweedS3

SOURCES = {"inference.py": b"def model_fn(d):\n    return 1\n", "helpers/__init__.py": b""}
NO_PINS = b"# nothing to install\n"


def _container(model: Path, submit: str) -> dict[str, Any]:
    return {"ModelDataUrl": str(model), "Environment": {"SAGEMAKER_SUBMIT_DIRECTORY": submit}}


def _model(tmp_path: Path, files: dict[str, bytes] | None = None) -> Path:
    return t.model_tar(tmp_path / "model.tar.gz", files or {"weights.bin": b"w"})


def test_file_uri_archive_becomes_the_code_dir(tmp_path: Path) -> None:
    sourcedir = t.model_tar(tmp_path / "sourcedir.tar.gz", SOURCES)
    lines: list[str] = []
    prepared = prepare_model(
        _container(_model(tmp_path), sourcedir.as_uri()), tmp_path / "cache", log=lines.append
    )
    assert prepared.code_dir is not None and prepared.code_dir != prepared.model_dir
    assert prepared.code_dir.parent == tmp_path / "cache" / "models"
    assert (prepared.code_dir / "inference.py").read_bytes() == SOURCES["inference.py"]
    assert (prepared.code_dir / "helpers" / "__init__.py").is_file()
    assert (prepared.model_dir / "weights.bin").is_file()
    assert prepared.env_dir is None
    assert any("SAGEMAKER_SUBMIT_DIRECTORY" in line for line in lines), lines


def test_relative_path_is_inside_the_model(tmp_path: Path) -> None:
    inner = t.model_tar(tmp_path / "inner.tar.gz", SOURCES).read_bytes()
    model = _model(tmp_path, {"weights.bin": b"w", "src/sourcedir.tar.gz": inner})
    prepared = prepare_model(_container(model, "src/sourcedir.tar.gz"), tmp_path / "cache")
    assert prepared.code_dir is not None and (prepared.code_dir / "inference.py").is_file()


@pytest.mark.parametrize("submit", ["/opt/ml/model/code", "/opt/ml/model", "", "http://example.com/x.tar.gz"])
def test_directories_and_other_values_leave_code_dir_unset(tmp_path: Path, submit: str) -> None:
    prepared = prepare_model(_container(_model(tmp_path), submit), tmp_path / "cache")
    assert prepared.code_dir is None


def test_local_directory_is_left_to_the_instance(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    assert prepare_model(_container(_model(tmp_path), code.as_uri()), tmp_path / "cache").code_dir is None


def test_requirements_come_from_the_archive_only(tmp_path: Path) -> None:
    sourcedir = t.model_tar(tmp_path / "sourcedir.tar.gz", {**SOURCES, "requirements.txt": NO_PINS})
    model = _model(tmp_path, {"code/requirements.txt": b"not-a-package-at-all==0\n"})
    prepared = prepare_model(_container(model, str(sourcedir)), tmp_path / "cache")
    assert prepared.code_dir is not None and prepared.env_dir is not None
    assert prepared.python == str(prepared.env_dir / "bin" / "python")

    no_pins = t.model_tar(tmp_path / "bare.tar.gz", SOURCES)
    without = prepare_model(_container(model, str(no_pins)), tmp_path / "cache")
    assert without.code_dir is not None and without.env_dir is None  # code/requirements.txt is not used


def test_find_requirements_with_a_code_dir(tmp_path: Path) -> None:
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "requirements.txt").write_text("x\n")
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    assert find_requirements(tmp_path, {}, print, fetched) is None
    (fetched / "requirements.txt").write_text("y\n")
    assert find_requirements(tmp_path, {}, print, fetched) == fetched / "requirements.txt"
    assert find_requirements(tmp_path, {}, print) == tmp_path / "code" / "requirements.txt"


def test_missing_archive_names_the_variable(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "sourcedir.tar.gz"
    with pytest.raises(ArtifactError) as caught:
        prepare_model(_container(_model(tmp_path), missing.as_uri()), tmp_path / "cache")
    message = str(caught.value)
    assert message.startswith(
        f"SAGEMAKER_SUBMIT_DIRECTORY={missing.as_uri()} cannot be used as the model's code"
    )
    assert "does not exist" in message and "sourcedir.tar.gz that the SageMaker SDK uploads" in message


def test_not_a_tar_gz(tmp_path: Path) -> None:
    bogus = tmp_path / "sourcedir.tar.gz"
    bogus.write_bytes(b"\x1f\x8b but not really gzip" * 10)
    with pytest.raises(ArtifactError, match=r"^SAGEMAKER_SUBMIT_DIRECTORY=.*not a valid tar\.gz archive"):
        prepare_model(_container(_model(tmp_path), str(bogus)), tmp_path / "cache")


def test_unsafe_archive_is_refused(tmp_path: Path) -> None:
    evil = t.write_tar(tmp_path / "sourcedir.tar.gz", [t.file("../escape.py", b"x")])
    with pytest.raises(
        ArtifactError, match=r"^SAGEMAKER_SUBMIT_DIRECTORY=.*Refused to unpack sourcedir\.tar\.gz"
    ):
        prepare_model(_container(_model(tmp_path), str(evil)), tmp_path / "cache")
    assert not (tmp_path / "escape.py").exists()


def test_instance_settings_prefer_the_fetched_code_dir(tmp_path: Path) -> None:
    args = Arguments(model_dir=tmp_path / "model", socket_dir=tmp_path / "sockets", workers=1)
    environ = {"SAGEMAKER_SUBMIT_DIRECTORY": "s3://bucket/sourcedir.tar.gz"}
    assert load_settings(args, environ).code_dir == tmp_path / "model" / "code"
    fetched = tmp_path / "fetched"
    settings = load_settings(args, {**environ, CODE_DIR_VARIABLE: str(fetched)})
    assert settings.code_dir == fetched and settings.program_file == fetched / "inference.py"


# -- S3 ------------------------------------------------------------------------------------------------


@pytest.fixture
def get_objects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The keys of every GetObject any boto3 client makes during the test."""
    keys: list[str] = []
    lock = threading.Lock()
    original = botocore.client.BaseClient._make_api_call

    def spy(self: Any, operation_name: str, api_params: Any) -> Any:
        if operation_name == "GetObject":
            with lock:
                keys.append(str(api_params.get("Key")))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", spy)
    yield keys


def test_s3_sourcedir_is_fetched_once(
    s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path, get_objects: list[str]
) -> None:
    sourcedir = t.model_tar(tmp_path / "sourcedir.tar.gz", SOURCES)
    s3_env.client().upload_file(str(sourcedir), s3_bucket, "job/source/sourcedir.tar.gz")
    uri = f"s3://{s3_bucket}/job/source/sourcedir.tar.gz"
    cache = tmp_path / "cache"
    first = prepare_model(_container(_model(tmp_path), uri), cache)
    assert first.code_dir is not None and (first.code_dir / "inference.py").is_file()
    assert get_objects == ["job/source/sourcedir.tar.gz"]
    second = prepare_model(_container(_model(tmp_path), uri), cache)
    assert second.code_dir == first.code_dir and len(get_objects) == 1


def test_s3_missing_sourcedir(s3_env: SeaweedS3, s3_bucket: str, tmp_path: Path) -> None:
    uri = f"s3://{s3_bucket}/job/source/sourcedir.tar.gz"
    expected = (
        f"SAGEMAKER_SUBMIT_DIRECTORY={uri} cannot be used as the model's code: "
        f"Failed to download model data from {uri}: NoSuchKey (the object does not exist). "
        "Check SAGEMAKER_SUBMIT_DIRECTORY and that the object was uploaded."
    )
    with pytest.raises(ArtifactError, match="^" + re.escape(expected)):
        prepare_model(_container(_model(tmp_path), uri), tmp_path / "cache")
