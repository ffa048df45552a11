"""Unsafe and broken archives are refused with a message naming the member and the rule."""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path

import pytest

from moorage.artifacts import ArtifactError, UnpackLimits, prepare_model
from tests.artifacts import tarballs as t


def _prepare(archive: Path, cache: Path, limits: UnpackLimits | None = None) -> Path:
    return prepare_model({"ModelDataUrl": str(archive)}, cache, limits or UnpackLimits()).model_dir


def _refused(tmp_path: Path, members: list[t.Member], limits: UnpackLimits | None = None) -> str:
    archive = t.write_tar(tmp_path / "model.tar.gz", members)
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError) as caught:
        _prepare(archive, cache, limits)
    models = cache / "models"
    leftovers = [p.name for p in models.iterdir()] if models.exists() else []
    assert leftovers == [], "a refused archive must leave no model dir or temp dir behind"
    message = str(caught.value)
    assert "\n" not in message and len(message) <= 900
    return message


def test_well_formed_archive_unpacks_with_inside_links(tmp_path: Path) -> None:
    archive = t.write_tar(
        tmp_path / "model.tar.gz",
        [
            t.directory("./"),
            t.file("./model.bin", b"weights", mode=0o600),
            t.directory("code"),
            t.file("code/inference.py", b"print('hi')\n", mode=0o755),
            t.symlink("code/weights", "../model.bin"),
            t.hardlink("copy.bin", "model.bin"),
            t.file("deep/a/b/c.txt", b"c"),
        ],
    )
    model_dir = _prepare(archive, tmp_path / "cache")
    assert (model_dir / "model.bin").read_bytes() == b"weights"
    assert (model_dir / "code" / "weights").read_bytes() == b"weights"
    assert os.readlink(model_dir / "code" / "weights") == "../model.bin"
    assert (model_dir / "copy.bin").read_bytes() == b"weights"
    assert (model_dir / "deep/a/b/c.txt").read_bytes() == b"c"
    assert os.access(model_dir / "code" / "inference.py", os.X_OK)
    assert (model_dir / "model.bin").stat().st_mode & 0o644 == 0o644  # readable by every instance


@pytest.mark.parametrize("mode", ["w", "w:bz2", "w:xz"])
def test_plain_and_other_compressions(tmp_path: Path, mode: str) -> None:
    archive = t.write_tar(tmp_path / "model.tar", [t.file("m.txt", b"x")], mode=mode)
    assert (_prepare(archive, tmp_path / "cache") / "m.txt").read_bytes() == b"x"


def test_parent_dir_member_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, [t.file("ok.txt", b"1"), t.file("../evil", b"x")])
    assert message == (
        "Refused to unpack model.tar.gz: member '../evil' escapes the model directory. "
        "Rebuild the archive with relative paths."
    )


def test_nested_parent_dir_member_is_refused(tmp_path: Path) -> None:
    assert "member 'a/../../evil' escapes" in _refused(tmp_path, [t.file("a/../../evil", b"x")])


def test_absolute_member_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, [t.file("/etc/evil", b"x")])
    assert "member '/etc/evil' has an absolute path" in message


def test_symlink_out_is_refused(tmp_path: Path) -> None:
    assert "symlink 'passwd' points to '/etc/passwd', outside" in _refused(
        tmp_path, [t.symlink("passwd", "/etc/passwd")]
    )
    assert "symlink 'a/up' points to '../../x', outside" in _refused(tmp_path, [t.symlink("a/up", "../../x")])


def test_symlink_chain_out_is_refused(tmp_path: Path) -> None:
    # Each link looks harmless on its own; together 'e' resolves to the parent of the model dir.
    message = _refused(tmp_path, [t.symlink("e", "d/.."), t.symlink("d", ".")])
    assert "symlink 'e' resolves outside the model directory" in message


def test_write_through_symlink_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, [t.directory("sub"), t.symlink("link", "sub"), t.file("link/x", b"x")])
    assert "member 'link/x' would be written through the symlink 'link'" in message


def test_hardlink_out_is_refused(tmp_path: Path) -> None:
    assert "hard link 'h' points to '../../etc/passwd', outside" in _refused(
        tmp_path, [t.hardlink("h", "../../etc/passwd")]
    )
    assert "hard link 'h' points to '/etc/passwd', outside" in _refused(
        tmp_path, [t.hardlink("h", "/etc/passwd")]
    )


def test_hardlink_to_missing_or_symlink_is_refused(tmp_path: Path) -> None:
    assert "not a regular file stored earlier" in _refused(tmp_path, [t.hardlink("h", "nothing")])
    assert "not a regular file stored earlier" in _refused(
        tmp_path, [t.file("f", b"1"), t.symlink("s", "f"), t.hardlink("h", "s")]
    )


@pytest.mark.parametrize(
    ("kind", "label"),
    [(tarfile.CHRTYPE, "character device"), (tarfile.BLKTYPE, "block device"), (tarfile.FIFOTYPE, "fifo")],
)
def test_special_files_are_refused(tmp_path: Path, kind: bytes, label: str) -> None:
    message = _refused(tmp_path, [t.file("ok", b"1"), t.special("dev/thing", kind)])
    assert f"member 'dev/thing' is a {label}" in message


def test_size_cap(tmp_path: Path) -> None:
    limits = UnpackLimits(max_total_bytes=1000)
    message = _refused(tmp_path, [t.file("a", b"x" * 600), t.file("b", b"y" * 600)], limits)
    assert "the unpacked size passes the limit of 1000 bytes at member 'b'" in message


def test_zero_bomb_stops_at_cap(tmp_path: Path) -> None:
    archive = t.write_tar(tmp_path / "model.tar.gz", [t.zeros("zeros.bin", 256 * 1024 * 1024)])
    assert archive.stat().st_size < 2 * 1024 * 1024  # compresses ~1000:1
    cache = tmp_path / "cache"
    with pytest.raises(ArtifactError, match=r"passes the limit of 1048576 bytes at member 'zeros\.bin'"):
        _prepare(archive, cache, UnpackLimits(max_total_bytes=1024 * 1024))


def test_member_count_cap(tmp_path: Path) -> None:
    message = _refused(tmp_path, [t.file(f"f{i}", b"") for i in range(6)], UnpackLimits(max_members=5))
    assert "more than 5 members (reached at 'f5')" in message


def test_decompressed_metadata_counts_against_budget(tmp_path: Path) -> None:
    # Header sizes say nothing about pax records; the decompressed stream itself is metered.
    info, data = t.file("small.txt", b"x")
    info.pax_headers = {"comment": "z" * (3 * 1024 * 1024)}
    message = _refused(tmp_path, [(info, data)], UnpackLimits(max_total_bytes=1024 * 1024, max_members=10))
    assert "decompresses to more than" in message


def test_huge_metadata_is_refused_with_default_limits(tmp_path: Path) -> None:
    info, data = t.file("small.txt", b"x")
    info.pax_headers = {"comment": "z" * (20 * 1024 * 1024)}
    assert "bytes of member metadata" in _refused(tmp_path, [(info, data)])


def test_file_dir_clash_in_archive_is_refused(tmp_path: Path) -> None:
    message = _refused(tmp_path, [t.file("w", b"1"), t.file("w/part", b"2")])
    assert "needs 'w' to be a directory" in message


@pytest.mark.parametrize(
    ("content", "name"),
    [
        (b"this is not an archive at all" * 40, "model.tar.gz"),
        (b"\x1f\x8b\x08\x00garbage-after-gzip-magic" * 4, "model.tar.gz"),
    ],
)
def test_corrupt_archive(tmp_path: Path, content: bytes, name: str) -> None:
    archive = tmp_path / name
    archive.write_bytes(content)
    with pytest.raises(
        ArtifactError, match="^" + re.escape(f"Model data at {archive} is not a valid tar.gz archive: ")
    ):
        _prepare(archive, tmp_path / "cache")


def test_truncated_gzip_archive(tmp_path: Path) -> None:
    archive = t.model_tar(tmp_path / "full.tar.gz", {"a.bin": os.urandom(200_000)})
    cut = tmp_path / "model.tar.gz"
    cut.write_bytes(archive.read_bytes()[:-5000])
    with pytest.raises(ArtifactError, match=r"is not a valid tar\.gz archive"):
        _prepare(cut, tmp_path / "cache")
