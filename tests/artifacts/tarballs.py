"""Build test archives member by member, including ones no well-behaved tool would produce."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

Member = tuple[tarfile.TarInfo, "io.RawIOBase | io.BytesIO | None"]


class Zeros(io.RawIOBase):
    """An endless-looking stream of zero bytes, so huge members cost no memory to build."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer)
        view[:] = bytes(len(view))
        return len(view)


def file(name: str, data: bytes = b"", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    return info, io.BytesIO(data)


def zeros(name: str, size: int) -> Member:
    info = tarfile.TarInfo(name)
    info.size = size
    return info, Zeros()


def directory(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def symlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info, None


def hardlink(name: str, target: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = target
    return info, None


def special(name: str, kind: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def write_tar(path: Path, members: list[Member], mode: str = "w:gz") -> Path:
    """Write exactly these members (no normalisation of names or links)."""
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for info, data in members:
            tar.addfile(info, data)
    return path


def model_tar(path: Path, files: dict[str, bytes]) -> Path:
    return write_tar(path, [file(name, data) for name, data in files.items()])
