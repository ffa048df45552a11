"""Turn a model source into a ready model directory, at most once per distinct artifact.

Cache keys come from metadata that is cheap to get (S3 ETag + bucket/key, or the sha256 of a local
file), so a model that was already prepared is found without downloading or unpacking anything.
Local directories are used in place: copying a checkout the user already has gains nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moorage.artifacts.cache import cached_dir, digest_of, file_sha256
from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.fetch import download_object, head_object, list_prefix, s3_client
from moorage.artifacts.locations import LocalLocation, S3Location
from moorage.artifacts.prefixes import layout_prefix
from moorage.artifacts.sources import Layout, ModelSource
from moorage.artifacts.unpack import UnpackLimits, unpack_archive

Log = Callable[[str], None]
_DOWNLOADED_NAME = "model-data"


def materialize(source: ModelSource, cache_dir: Path, limits: UnpackLimits, log: Log) -> Path:
    """Return the model directory for ``source``, fetching and unpacking only on a cache miss."""
    location = source.location
    try:
        if isinstance(location, LocalLocation):
            return _local(source, location, cache_dir, limits, log)
        return _remote(source, location, cache_dir, limits, log)
    except OSError as exc:
        raise ArtifactError(f"Failed to prepare model data from {location.uri}: {exc}") from None


def empty_model_dir(cache_dir: Path) -> Path:
    """An empty model directory for containers that bring their model inside the image."""
    path, _ = cached_dir(cache_dir, "models", "empty", lambda _tmp: None)
    return path


# -- local files and directories ---------------------------------------------------------------


def _local(
    source: ModelSource, location: LocalLocation, cache_dir: Path, limits: UnpackLimits, log: Log
) -> Path:
    path = location.path
    try:
        found = path.exists()
    except OSError as exc:
        raise ArtifactError(
            f"Cannot read model data at {path}: {exc.strerror or exc}. Check {source.field}."
        ) from None
    if not found:
        raise ArtifactError(f"Model data at {path} does not exist. Check {source.field}.")
    if path.is_dir():
        if source.layout is Layout.OBJECT:
            raise ArtifactError(f"{source.field} {path} is a directory; S3DataType S3Object needs a file.")
        log(f"Using the model directory {path} in place")
        return path
    if source.layout is Layout.PREFIX:
        raise ArtifactError(f"{source.field} {path} is a file; a local S3Prefix must be a directory.")
    log(f"Hashing {path}")
    sha = file_sha256(path, cache_dir)
    if source.layout is Layout.ARCHIVE:
        digest = digest_of("archive", "sha256", sha)
        return _cached_model(
            cache_dir, digest, str(path), log, lambda tmp: _unpack(path, tmp, str(path), limits, log)
        )
    name = _object_name(path.name, str(path))
    _check_size(str(path), path.stat().st_size, limits)
    digest = digest_of("object", name, "sha256", sha)
    return _cached_model(cache_dir, digest, str(path), log, lambda tmp: _copy(path, tmp / name))


def _copy(path: Path, dest: Path) -> None:
    shutil.copyfile(path, dest)
    dest.chmod(0o644)


# -- S3 ------------------------------------------------------------------------------------------


def _remote(
    source: ModelSource, location: S3Location, cache_dir: Path, limits: UnpackLimits, log: Log
) -> Path:
    client = s3_client()
    if source.layout is Layout.PREFIX:
        return _remote_prefix(client, source, location, cache_dir, limits, log)
    info = head_object(client, location, source.field)
    digest = digest_of(source.layout.value, location.bucket, location.key, info.etag)
    if source.layout is Layout.OBJECT:
        name = _object_name(location.name, location.uri)
        _check_size(location.uri, info.size, limits)

        def fetch_object(tmp: Path) -> None:
            download_object(client, location.bucket, info, tmp / name, source.field, log)
            (tmp / name).chmod(0o644)

        return _cached_model(cache_dir, digest, location.uri, log, fetch_object)

    def fetch_and_unpack(tmp: Path) -> None:
        downloads, cached = cached_dir(
            cache_dir,
            "downloads",
            digest,
            lambda d: download_object(client, location.bucket, info, d / _DOWNLOADED_NAME, source.field, log),
        )
        if cached:
            log(f"{location.uri} (ETag {info.etag}) was downloaded before; unpacking the cached copy")
        _unpack(downloads / _DOWNLOADED_NAME, tmp, location.uri, limits, log)

    model_dir = _cached_model(cache_dir, digest, location.uri, log, fetch_and_unpack)
    shutil.rmtree(cache_dir / "downloads" / digest, ignore_errors=True)  # the unpacked copy supersedes it
    return model_dir


def _remote_prefix(
    client: Any, source: ModelSource, location: S3Location, cache_dir: Path, limits: UnpackLimits, log: Log
) -> Path:
    objects = list_prefix(client, location, source.field)
    placed = layout_prefix(location.uri, location.key, objects, limits)
    digest = digest_of(  # keyed by the resulting layout, so 's3://b/p' and 's3://b/p/' share it
        "prefix", location.bucket, *(f"{rel}\0{info.key}\0{info.etag}\0{info.size}" for info, rel in placed)
    )

    def fetch_all(tmp: Path) -> None:
        for info, rel in placed:
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            download_object(client, location.bucket, info, dest, source.field, log)
            dest.chmod(0o644)

    return _cached_model(cache_dir, digest, location.uri, log, fetch_all)


# -- shared ----------------------------------------------------------------------------------------


def _cached_model(cache_dir: Path, digest: str, uri: str, log: Log, build: Callable[[Path], None]) -> Path:
    model_dir, cached = cached_dir(cache_dir, "models", digest, build)
    if cached:
        log(f"Model data {uri} is cached at {model_dir}; nothing to download or unpack")
    else:
        log(f"Model data {uri} is ready at {model_dir}")
    return model_dir


def _unpack(archive: Path, dest: Path, uri: str, limits: UnpackLimits, log: Log) -> None:
    log(f"Unpacking {uri}")
    written = unpack_archive(archive, dest, uri, limits)
    log(f"Unpacked {written} bytes from {uri}")


def _object_name(name: str, uri: str) -> str:
    if name in ("", ".", "..") or "\x00" in name or len(name.encode("utf-8", "surrogateescape")) > 255:
        raise ArtifactError(
            f"Cannot use {uri} as S3DataType S3Object: its last key segment {name!r} "
            "is not a valid file name."
        )
    return name


def _check_size(uri: str, size: int, limits: UnpackLimits) -> None:
    if size > limits.max_total_bytes:
        raise ArtifactError(
            f"Model data at {uri} is {size} bytes, more than the limit of {limits.max_total_bytes} bytes."
        )
