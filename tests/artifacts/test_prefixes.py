"""S3Prefix naming rules, checked on listings a real store might not even accept."""

from __future__ import annotations

import pytest

from moorage.artifacts import ArtifactError, UnpackLimits
from moorage.artifacts.fetch import ObjectInfo
from moorage.artifacts.prefixes import layout_prefix


def _layout(keys: list[str], prefix: str = "p/", limits: UnpackLimits | None = None) -> list[str]:
    objects = [ObjectInfo(key, '"etag"', 0 if key.endswith("/") else 1) for key in keys]
    placed = layout_prefix(f"s3://b/{prefix}", prefix, objects, limits or UnpackLimits())
    return [rel for _, rel in placed]


def test_keys_minus_prefix() -> None:
    assert _layout(["p/a", "p/d/b"]) == ["a", "d/b"]
    assert _layout(["p/a", "p/d/b"], prefix="p") == ["a", "d/b"]
    assert _layout(["models/a"], prefix="") == ["models/a"]


@pytest.mark.parametrize(
    ("keys", "prefix", "expected"),
    [
        (["p/a//b"], "p/", "has an empty path segment"),
        (["p/./a"], "p/", "has the path segment '.'"),
        (["p/../a"], "p/", "has the path segment '..'"),
        (["p/a\x00b"], "p/", "NUL character"),
        (["p/" + "é" * 128], "p/", "longer than 255 bytes"),
        (["p/w", "p/w/part1"], "p/", "'w' would be both a file and a directory"),
        (["p/dir/"], "p/", "0-byte folder object 'p/dir/'"),
        (["p/file"], "p/file", "would have an empty name"),
    ],
)
def test_rejected_layouts(keys: list[str], prefix: str, expected: str) -> None:
    with pytest.raises(ArtifactError, match=expected):
        _layout(keys, prefix)


def test_limits_apply_to_prefixes() -> None:
    with pytest.raises(ArtifactError, match="more than the limit of 2"):
        _layout(["p/a", "p/b", "p/c"], limits=UnpackLimits(max_members=2))
    with pytest.raises(ArtifactError, match="add up to 3 bytes, more than the limit of 2"):
        _layout(["p/a", "p/b", "p/c"], limits=UnpackLimits(max_total_bytes=2))
