"""Parse the places model data can come from: ``s3://bucket/key``, ``file:///abs`` or a plain path.

Plain and ``file://`` paths let a self-hosted server use artifacts that already sit on its disk
without an object store; relative plain paths are taken relative to the server's working directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from moorage.artifacts.errors import ArtifactError


@dataclass(frozen=True)
class S3Location:
    """An object key, or a key prefix, in an S3 bucket."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def name(self) -> str:
        """Last key segment, used to label messages and to name single-object files."""
        return self.key.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class LocalLocation:
    """A file or directory on the server's own filesystem."""

    path: Path

    @property
    def uri(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name


Location = S3Location | LocalLocation


def parse_location(value: str, field: str) -> Location:
    """Turn a user-supplied URI into a location; ``field`` names the API member for error text."""
    text = value.strip()
    if not text:
        raise ArtifactError(f"{field} is empty. Set it to an s3://bucket/key URI or a local path.")
    if "\x00" in text:
        raise ArtifactError(f"{field} contains a NUL character.")
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "s3":
        return _parse_s3(text, field)
    if scheme == "file":
        return _parse_file(text, field)
    if scheme:
        raise ArtifactError(
            f"{field} {text!r} uses the unsupported scheme '{scheme}://'. "
            "Use s3://bucket/key, file:///absolute/path or a plain local path."
        )
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~someone" names no user on this machine
        raise ArtifactError(
            f"{field} {text!r} starts with '~' but names no user here. Use an absolute path."
        ) from None
    return LocalLocation(path.absolute())


def _parse_s3(text: str, field: str) -> S3Location:
    rest = text[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise ArtifactError(f"{field} {text!r} has no bucket name. Use s3://bucket/key.")
    return S3Location(bucket=bucket, key=key)


def _parse_file(text: str, field: str) -> LocalLocation:
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise ArtifactError(
            f"{field} {text!r} names the host '{parts.netloc}'; file:// URIs must be local "
            "(file:///absolute/path)."
        )
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise ArtifactError(f"{field} {text!r} is not an absolute path. Use file:///absolute/path.")
    return LocalLocation(Path(path))
