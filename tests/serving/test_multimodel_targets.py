"""TargetModel resolution: prefix + TargetModel, and what may never be appended."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.artifacts.locations import LocalLocation, S3Location
from moorage.artifacts.multimodel import InvalidTarget, location_uri, resolve_target


def test_target_is_appended_to_the_prefix(tmp_path: Path) -> None:
    assert resolve_target("s3://bucket/models/", "a/model-3.tar.gz") == S3Location(
        "bucket", "models/a/model-3.tar.gz"
    )
    assert resolve_target("s3://bucket/models-", "a.tar.gz") == S3Location("bucket", "models-a.tar.gz")
    local = resolve_target(f"file://{tmp_path}/", "x/y.tar.gz")
    assert local == LocalLocation(tmp_path / "x" / "y.tar.gz")
    assert resolve_target(str(tmp_path), "y.tar.gz") == LocalLocation(tmp_path / "y.tar.gz")
    assert location_uri(local) == f"file://{tmp_path}/x/y.tar.gz"


@pytest.mark.parametrize(
    ("target", "complaint"),
    [
        ("", "empty"),
        ("/etc/passwd", "starts with '/'"),
        ("a/../../b", "'..' segment"),
        ("..", "'..' segment"),
        (".", "empty or '.' segment"),
        ("./", "empty or '.' segment"),
        ("a/./b.tar.gz", "empty or '.' segment"),
        ("a//b.tar.gz", "empty or '.' segment"),
        ("a/", "empty or '.' segment"),
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("x" * 1025, "longer than 1024 bytes"),
    ],
)
def test_unsafe_targets_are_refused(target: str, complaint: str, tmp_path: Path) -> None:
    for prefix in ("s3://bucket/models/", f"file://{tmp_path}/"):
        with pytest.raises(InvalidTarget, match=complaint):
            resolve_target(prefix, target)


def test_the_containers_image_reaches_each_models_preparation(tmp_path: Path) -> None:
    """A framework image URI (not registered) decides each model's packages, so the instance keeps it;
    like every MOORAGE_MME_* setting it is taken out of the environment the models inherit."""
    from moorage.serving.multimodel.settings import take_settings

    uri = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.1.0-cpu-py310"
    environ = {
        "MOORAGE_MME_SOURCE": str(tmp_path),
        "MOORAGE_MME_CACHE_DIR": str(tmp_path / "cache"),
        "MOORAGE_MME_MEMORY_BYTES": "1000000",
        "MOORAGE_MME_IMAGE_URI": uri,
    }
    settings = take_settings(environ)
    assert settings.image_uri == uri and settings.image is None
    assert "MOORAGE_MME_IMAGE_URI" not in environ
