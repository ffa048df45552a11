"""One target model of a multi-model endpoint: where it is (prefix + TargetModel), whether it exists,
preparing it (prepare_model: cached download, safe unpack, per-model environment) and the on-disk cache
of prepared models, kept under a byte cap.

The cache directory is shared by every instance on the machine. An instance holds a shared flock on a
model's *use lock* while the model is loading or loaded; pruning takes the exclusive *prune lock* (which
preparing holds shared, so a model cannot vanish between being prepared and being leased) and deletes a
model only if it can take that model's use lock exclusively, i.e. no instance uses it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.fetch import error_code, s3_client
from moorage.artifacts.locations import LocalLocation, Location, S3Location, parse_location
from moorage.artifacts.prepare import PreparedModel, prepare_model
from moorage.artifacts.unpack import UnpackLimits
from moorage.images import ImageLookup
from moorage.serving.settings import CODE_DIR_VARIABLE

_MAX_TARGET_BYTES = 1024
_MODELS = "models"


class InvalidTarget(Exception):
    """str() says what is wrong with the TargetModel and what to send instead."""


def check_target(target: str) -> None:
    """Refuse what could escape the prefix, name the prefix itself or cannot be a key: leading /, `..`,
    `.` or empty segments, control characters."""
    if not target:
        raise InvalidTarget("TargetModel is empty. Name a model under the endpoint's model prefix.")
    if len(target.encode("utf-8", "surrogateescape")) > _MAX_TARGET_BYTES:
        raise InvalidTarget(f"TargetModel is longer than {_MAX_TARGET_BYTES} bytes.")
    if any(ord(c) < 32 or ord(c) == 127 for c in target):
        raise InvalidTarget(f"TargetModel {target!r} contains a control character. Remove it.")
    if target.startswith("/"):
        raise InvalidTarget(
            f"TargetModel {target!r} starts with '/'. Give a path relative to the model prefix."
        )
    segments = target.split("/")
    if ".." in segments:
        raise InvalidTarget(f"TargetModel {target!r} has a '..' segment. Name a model under the prefix.")
    if "." in segments or "" in segments:
        raise InvalidTarget(
            f"TargetModel {target!r} has an empty or '.' segment. Name a model under the prefix, such "
            "as 'a.tar.gz' or 'group/a.tar.gz'."
        )


def resolve_target(prefix: str, target: str) -> Location:
    """prefix + TargetModel, checked to stay under the prefix (InvalidTarget otherwise)."""
    check_target(target)
    base = parse_location(prefix, "ModelDataUrl")
    if isinstance(base, S3Location):
        return S3Location(base.bucket, base.key + target)
    root = base.path
    path = Path(os.path.normpath(root / target))
    if root not in path.parents:  # the prefix directory itself is not a model either
        raise InvalidTarget(f"TargetModel {target!r} leads outside the model prefix {root}.")
    return LocalLocation(path)


def location_uri(location: Location) -> str:
    return location.uri if isinstance(location, S3Location) else f"file://{location.path}"


def exists(location: Location) -> bool:
    """Whether anything is at the location (a HEAD for S3). Blocking: call from a worker thread."""
    if isinstance(location, LocalLocation):
        try:  # a name too long for the file system (ENAMETOOLONG) names nothing there either
            return location.path.exists()
        except OSError:
            return False
    try:
        s3_client().head_object(Bucket=location.bucket, Key=location.key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
            return False
        raise ArtifactError(f"Cannot read {location.uri}: {exc}") from None
    except BotoCoreError as exc:
        raise ArtifactError(f"Cannot reach the store for {location.uri}: {exc}") from None
    return True


def not_found_message(location: Location, target: str) -> str:
    if isinstance(location, S3Location):
        where = f"bucket: {location.bucket}, key: {location.key}"
    else:
        where = f"path: {location.path}"
    return (
        f"Failed to download model data ({where}). TargetModel {target!r} names nothing under the "
        "endpoint's model prefix: check the TargetModel and that the model was uploaded there."
    )


class Lease:
    """A shared use lock on one prepared model directory: while held, no instance prunes it."""

    def __init__(self, lock_path: Path | None) -> None:
        self._handle = None
        if lock_path is not None:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(lock_path, "ab")  # noqa: SIM115 - held for as long as the model is used
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_SH)

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the flock
            self._handle = None


@dataclass(frozen=True)
class PreparedTarget:
    prepared: PreparedModel
    environment: dict[str, str]  # what the model's process needs on top of the instance's environment
    lease: Lease


class ModelDiskCache:
    """Prepared models under `cache_dir` (moorage/artifacts/cache.py layout), capped at `cap_bytes`."""

    def __init__(self, cache_dir: Path, cap_bytes: int) -> None:
        self.cache_dir = cache_dir
        self.cap_bytes = cap_bytes

    def prepare(
        self,
        container: Mapping[str, Any],
        limits: UnpackLimits,
        log: Callable[[str], None],
        images: ImageLookup | None,
    ) -> PreparedTarget:
        """prepare_model, then lease the result. Blocking: call from a worker thread."""
        with self._prune_lock(fcntl.LOCK_SH):
            prepared = prepare_model(container, self.cache_dir, limits, log, images)
            lease = Lease(self._use_lock(prepared.model_dir))
        environment = {k: v for k, v in prepared.image_environment.items() if k not in os.environ}
        if prepared.env_dir is not None:
            environment["VIRTUAL_ENV"] = str(prepared.env_dir)
            environment["PATH"] = f"{prepared.env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        if prepared.code_dir is not None:
            environment[CODE_DIR_VARIABLE] = str(prepared.code_dir)
        return PreparedTarget(prepared, environment, lease)

    def prune(self) -> list[Path]:
        """Delete the least recently used models no instance uses until the cache fits its cap; returns
        what was deleted. "Used" is the directory's mtime: set when it is unpacked, then by `stamp` when
        an instance unloads it. Blocking."""
        with self._prune_lock(fcntl.LOCK_EX):
            entries = [(path, _size(path), path.stat().st_mtime) for path in self._models()]
            total = sum(size for _, size, _ in entries)
            removed = []
            for path, size, _ in sorted(entries, key=lambda entry: entry[2]):
                if total <= self.cap_bytes:
                    break
                if self._remove_unused(path):
                    total -= size
                    removed.append(path)
            return removed

    def stamp(self, model_dir: Path, used_at: float) -> None:
        """Record that the model was last used at `used_at` (epoch seconds) as its directory's mtime,
        which pruning orders by; never moved back (another instance may have used it since). Blocking."""
        if self._use_lock(model_dir) is None:
            return
        with contextlib.suppress(OSError):  # pruned meanwhile
            info = model_dir.stat()
            if used_at > info.st_mtime:
                os.utime(model_dir, (info.st_atime, used_at))

    def remove(self, model_dir: Path) -> bool:
        """Delete one model directory now if no instance uses it (ModelCacheSetting Disabled). Blocking."""
        if self._use_lock(model_dir) is None:
            return False
        with self._prune_lock(fcntl.LOCK_EX):
            return self._remove_unused(model_dir)

    def _remove_unused(self, model_dir: Path) -> bool:
        lock = self._use_lock(model_dir)
        assert lock is not None
        with open(lock, "ab") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            shutil.rmtree(model_dir, ignore_errors=True)
            return not model_dir.exists()

    def _models(self) -> list[Path]:
        root = self.cache_dir / _MODELS
        try:
            children = list(root.iterdir())
        except FileNotFoundError:
            return []
        return [p for p in children if p.is_dir() and not p.name.startswith(".") and p.name != "empty"]

    def _use_lock(self, model_dir: Path) -> Path | None:
        """Only models in the cache have one: a local directory used in place is never deleted."""
        if model_dir.parent != self.cache_dir / _MODELS or model_dir.name == "empty":
            return None
        return self.cache_dir / "locks" / f"use-{model_dir.name}.lock"

    @contextlib.contextmanager
    def _prune_lock(self, mode: int) -> Iterator[None]:
        path = self.cache_dir / "locks" / "prune.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as handle:
            fcntl.flock(handle.fileno(), mode)
            yield


def _size(path: Path) -> int:
    total = 0
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total
