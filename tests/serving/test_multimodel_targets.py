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
        ("a\x00b", "control character"),
        ("a\nb", "control character"),
        ("x" * 1025, "longer than 1024 bytes"),
    ],
)
def test_unsafe_targets_are_refused(target: str, complaint: str, tmp_path: Path) -> None:
    for prefix in ("s3://bucket/models/", f"file://{tmp_path}/"):
        with pytest.raises(InvalidTarget, match=complaint):
            resolve_target(prefix, target)
