"""Safe, streaming extraction of model archives (tar, optionally gzip/bzip2/xz compressed).

Archives come from users and may be hostile, so every rule is checked here explicitly rather than
delegated to ``tarfile``'s extraction filters (which differ between Python patch releases):
no absolute paths or ``..``, no links leading out of the model directory, no writes through
symlinks, no device/fifo members, and hard caps on member count, unpacked bytes and the bytes the
decompressor produces (so a compression bomb stops early instead of filling the disk or memory).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import posixpath
import stat
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, NoReturn, Protocol, cast

from moorage.artifacts.errors import ArtifactError

_COPY_CHUNK = 1024 * 1024
_HEADER_ALLOWANCE = 1536  # per member: header block, padding and a short long-name/pax record
_STREAM_SLACK = 1024 * 1024
_MAX_HEADER_BYTES = 16 * 1024 * 1024  # metadata read between two members (pax, GNU long names)
_MAX_SEGMENT_BYTES = 255


@dataclass(frozen=True)
class UnpackLimits:
    """Caps that keep a hostile or broken archive from exhausting the disk or memory."""

    max_total_bytes: int = 32 * 1024**3  # cap on the unpacked size (bombs)
    max_members: int = 200_000


class _Refused(Exception):
    """A rule violation; becomes an ArtifactError naming the archive."""


class _Corrupt(Exception):
    """The bytes are not a readable archive."""


def unpack_archive(archive: Path, dest: Path, source_uri: str, limits: UnpackLimits) -> int:
    """Extract ``archive`` into the existing empty directory ``dest``; return the bytes written."""
    label = source_uri.rstrip("/").rsplit("/", 1)[-1] or source_uri
    try:
        with open(archive, "rb") as raw:
            reader = _BudgetReader(_decompressed(raw), limits)
            with tarfile.open(fileobj=cast(IO[bytes], reader), mode="r|") as tar:  # duck-typed reader
                extractor = _Extractor(dest, limits, reader)
                for member in tar:
                    extractor.add(tar, member)
                extractor.finish()
                return extractor.total_bytes
    except _Refused as exc:
        raise ArtifactError(f"Refused to unpack {label}: {exc}") from None
    except (_Corrupt, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
        detail = str(exc) or type(exc).__name__
        raise ArtifactError(f"Model data at {source_uri} is not a valid tar.gz archive: {detail}") from None
    except OSError as exc:
        raise ArtifactError(f"Failed to unpack model data from {source_uri}: {exc}") from None


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...

    def close(self) -> None: ...


def _decompressed(raw: IO[bytes]) -> _Readable:
    """Pick a decompressor by magic number; anything else is read as a plain tar."""
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


class _BudgetReader:
    """Counts the bytes that actually come out of the decompressor and stops past a budget.

    Member sizes in headers do not cover pax records, GNU long names or padding, which ``tarfile``
    reads (into memory) by itself; metering the decompressed stream bounds those as well.
    """

    def __init__(self, inner: _Readable, limits: UnpackLimits) -> None:
        self._inner = inner
        self._budget = limits.max_total_bytes + limits.max_members * _HEADER_ALLOWANCE + _STREAM_SLACK
        self._limit_total = limits.max_total_bytes
        self.count = 0
        self.in_headers = True
        self.header_bytes = 0

    def read(self, size: int | None = -1) -> bytes:
        want = self._budget - self.count + 1 if size is None or size < 0 else size
        want = min(want, self._budget - self.count + 1)
        try:
            data = self._inner.read(want)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise _Corrupt(str(exc) or type(exc).__name__) from None
        self.count += len(data)
        if self.count > self._budget:
            raise _Refused(
                f"the archive decompresses to more than {self._budget} bytes although at most "
                f"{self._limit_total} bytes may be unpacked (a compression bomb?). "
                "Shrink the model or raise the unpack size limit."
            )
        if self.in_headers:
            self.header_bytes += len(data)
            if self.header_bytes > _MAX_HEADER_BYTES:
                raise _Refused(
                    f"the archive holds more than {_MAX_HEADER_BYTES} bytes of member metadata "
                    "(pax headers or long names) in a row. Rebuild it with a standard tar."
                )
        return data

    def close(self) -> None:
        self._inner.close()


@dataclass
class _Extractor:
    """Applies the safety rules member by member while writing into ``dest``."""

    dest: Path
    limits: UnpackLimits
    reader: _BudgetReader
    total_bytes: int = 0
    members: int = 0
    symlinks: list[str] = field(default_factory=list)

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            _refuse(
                f"the archive has more than {self.limits.max_members} members (reached at "
                f"{member.name!r}). Pack fewer files, e.g. bundle small ones."
            )
        parts = _member_parts(member.name, "member")
        if parts is None:
            if not member.isdir():
                _refuse(f"member {member.name!r} has an empty name. Rebuild the archive.")
            return
        rel = "/".join(parts)
        if member.isdir():
            self._make_dir(parts, rel)
        elif member.isreg():
            self._write_file(tar, member, parts, rel)
        elif member.issym():
            self._make_symlink(member.linkname, parts, rel)
        elif member.islnk():
            self._make_hardlink(member.linkname, parts, rel)
        else:
            _refuse(
                f"member {rel!r} is a {_kind(member)}; model archives may only contain regular files, "
                "directories and links. Remove it and rebuild the archive."
            )
        self.reader.in_headers = True
        self.reader.header_bytes = 0

    def finish(self) -> None:
        """Check that every symlink, now that all exist, still resolves inside the model directory."""
        root = os.path.realpath(self.dest)
        for rel in self.symlinks:
            target = os.path.realpath(self.dest / rel)
            if not _within(root, target):
                _refuse(
                    f"symlink {rel!r} resolves outside the model directory (through other links). "
                    "Replace it with the file itself or a link that stays inside the archive."
                )

    # -- member kinds -------------------------------------------------------------------------

    def _make_dir(self, parts: list[str], rel: str) -> None:
        self._parent(parts, rel)
        path = self.dest / rel
        if path.is_symlink() or (path.exists() and not path.is_dir()):
            path.unlink()
        path.mkdir(mode=0o755, exist_ok=True)
        os.chmod(path, 0o755)

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, parts: list[str], rel: str) -> None:
        if self.total_bytes + member.size > self.limits.max_total_bytes:
            self._too_big(rel)
        path = self._replaceable(parts, rel)
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - isreg() members always have data
            _refuse(f"member {rel!r} has no data.")
        self.reader.in_headers = False
        written = 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_COPY_CHUNK):
                written += len(chunk)
                if self.total_bytes + written > self.limits.max_total_bytes:
                    self._too_big(rel)
                out.write(chunk)
            os.fchmod(out.fileno(), (member.mode & 0o755) | 0o644)
        if written != member.size:
            raise _Corrupt(f"member {rel!r} is truncated ({written} of {member.size} bytes)")
        self.total_bytes += written
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(path, (member.mtime, member.mtime))

    def _make_symlink(self, target: str, parts: list[str], rel: str) -> None:
        if not target or "\x00" in target or target.startswith("/"):
            _refuse(
                f"symlink {rel!r} points to {target!r}, outside the model directory. "
                "Use a relative link that stays inside the archive, or the file itself."
            )
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
        if resolved == ".." or resolved.startswith("../"):
            _refuse(
                f"symlink {rel!r} points to {target!r}, outside the model directory. "
                "Use a relative link that stays inside the archive, or the file itself."
            )
        path = self._replaceable(parts, rel)
        os.symlink(target, path)
        self.symlinks.append(rel)

    def _make_hardlink(self, target: str, parts: list[str], rel: str) -> None:
        outside = (
            f"hard link {rel!r} points to {target!r}, outside the model directory. "
            "Rebuild the archive with relative paths."
        )
        if target.startswith("/") or ".." in target.split("/"):
            _refuse(outside)
        target_parts = _member_parts(target, "hard link target")
        if target_parts is None:
            _refuse(outside)
        target_rel = "/".join(target_parts)
        if self._symlinked_parent(target_parts) is not None:
            _refuse(outside)
        source = self.dest / target_rel
        try:
            is_file = stat.S_ISREG(os.lstat(source).st_mode)
        except FileNotFoundError:
            is_file = False
        if not is_file:
            _refuse(
                f"hard link {rel!r} points to {target!r}, which is not a regular file stored earlier "
                "in the archive. Rebuild the archive."
            )
        path = self._replaceable(parts, rel)
        os.link(source, path, follow_symlinks=False)

    # -- path helpers -------------------------------------------------------------------------

    def _replaceable(self, parts: list[str], rel: str) -> Path:
        """Make the parents of ``rel`` and clear a previous non-directory entry (later members win)."""
        self._parent(parts, rel)
        path = self.dest / rel
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            _refuse(f"member {rel!r} would replace a directory of the same name. Rebuild the archive.")
        return path

    def _parent(self, parts: list[str], rel: str) -> None:
        link = self._symlinked_parent(parts)
        if link is not None:
            _refuse(
                f"member {rel!r} would be written through the symlink {link!r}, which can lead outside "
                "the model directory. Store real directories in the archive."
            )
        current = self.dest
        for part in parts[:-1]:
            current = current / part
            if current.is_dir():
                continue
            if current.exists():
                _refuse(
                    f"member {rel!r} needs {part!r} to be a directory, but the archive stores a file "
                    "there. Rebuild the archive."
                )
            current.mkdir(mode=0o755)

    def _symlinked_parent(self, parts: list[str]) -> str | None:
        current = self.dest
        for index, part in enumerate(parts[:-1]):
            current = current / part
            if current.is_symlink():
                return "/".join(parts[: index + 1])
        return None

    def _too_big(self, rel: str) -> NoReturn:
        _refuse(
            f"the unpacked size passes the limit of {self.limits.max_total_bytes} bytes at member {rel!r}. "
            "Shrink the model or raise the unpack size limit."
        )


def _member_parts(name: str, what: str) -> list[str] | None:
    """Split an archive path into safe segments; None for the archive root itself."""
    if name.startswith("/"):
        _refuse(
            f"{what} {name!r} has an absolute path. Rebuild the archive with relative paths "
            "(e.g. tar -C model_dir -czf model.tar.gz .)."
        )
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        _refuse(f"{what} {name!r} escapes the model directory. Rebuild the archive with relative paths.")
    for part in parts:
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_SEGMENT_BYTES:
            _refuse(f"{what} {name!r} has a path segment longer than {_MAX_SEGMENT_BYTES} bytes.")
    return parts or None


def _within(root: str, path: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _kind(member: tarfile.TarInfo) -> str:
    if member.ischr():
        return "character device"
    if member.isblk():
        return "block device"
    if member.isfifo():
        return "fifo"
    return f"special entry (type {member.type!r})"


def _refuse(reason: str) -> NoReturn:
    raise _Refused(reason)
