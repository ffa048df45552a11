"""The objects jobs read and write: asynchronous inference inputs and results, batch transform data.

A location is ``s3://bucket/key`` (the server's own S3 store, or whichever store boto3 is configured
for; see moorage/artifacts/fetch.py), ``file:///absolute/path`` or a plain path on the server's disk.
Every call blocks: run it on a thread. A written object appears whole or not at all (S3 PUT; a local
file is written beside its name and renamed), so a reader never sees part of a result."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from moorage.artifacts.errors import ArtifactError, one_line
from moorage.artifacts.fetch import current_store, error_code, s3_client
from moorage.artifacts.locations import LocalLocation, Location, S3Location, parse_location

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def _s3() -> Any:
    """One client per store, shared by every thread: a boto3 client is thread-safe once made, and making
    one costs tens of milliseconds of CPU (a batch transform job reads and writes many objects). The
    store is the one `use_store` chose, else the one boto3's environment names."""
    key = (current_store(), os.environ.get("AWS_ENDPOINT_URL_S3"), os.environ.get("AWS_ENDPOINT_URL"))
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key) or s3_client()
            _clients[key] = client
    return client


class ObjectError(Exception):
    """A read, write or listing that failed; str() is one line that says what to fix. `transient`: the
    store could not be reached or was busy (worth retrying), rather than refusing this object."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(one_line(message))
        self.transient = transient


def location(uri: str, field: str) -> Location:
    """Parse `uri` (the API member `field` carried it); ObjectError names the member when it is bad."""
    try:
        return parse_location(uri, field)
    except ArtifactError as exc:
        raise ObjectError(str(exc)) from None


def child(base: str, name: str) -> str:
    """`name` inside the folder-like location `base` (S3 prefixes and directories alike)."""
    return f"{base.rstrip('/')}/{name}"


def read_object(uri: str, field: str) -> bytes:
    where = location(uri, field)
    if isinstance(where, LocalLocation):
        try:
            return where.path.read_bytes()
        except OSError as exc:
            raise ObjectError(f"Could not read {uri} ({field}): {exc.strerror or exc}.") from None
    with _s3_errors("read", uri, field):
        response = _s3().get_object(Bucket=where.bucket, Key=where.key)
        body: bytes = response["Body"].read()
        return body


def write_object(
    uri: str, body: bytes, field: str, content_type: str | None = None, inside: str | None = None
) -> None:
    """`inside`: a local folder the file must resolve into (symbolic links and `..` followed); a
    caller that joined user-given names onto it passes it, so a name cannot climb out."""
    where = location(uri, field)
    if isinstance(where, LocalLocation):
        if inside is not None:
            _check_inside(where.path, inside, uri, field)
        _write_file(where.path, body, uri, field)
        return
    extra: dict[str, Any] = {"ContentType": content_type} if content_type else {}
    with _s3_errors("write", uri, field):
        _s3().put_object(Bucket=where.bucket, Key=where.key, Body=body, **extra)


def object_size(uri: str, field: str) -> int:
    """The object's size in bytes, without reading it; a local path must be a regular file (a device or
    a FIFO has no size and would never end)."""
    where = location(uri, field)
    if isinstance(where, LocalLocation):
        try:
            info = where.path.stat()
        except OSError as exc:
            raise ObjectError(f"Could not read {uri} ({field}): {exc.strerror or exc}.") from None
        if not stat.S_ISREG(info.st_mode):
            raise ObjectError(f"Could not read {uri} ({field}): it is not a regular file.")
        return info.st_size
    with _s3_errors("read", uri, field):
        try:
            return int(_s3().head_object(Bucket=where.bucket, Key=where.key)["ContentLength"])
        except ClientError as exc:
            if error_code(exc) in ("404", "NotFound"):  # a HEAD has no body: say it as GetObject would
                raise ObjectError(f"Could not read {uri} ({field}): NoSuchKey (no such object).") from None
            raise


def delete_object(uri: str, field: str) -> None:
    """Remove the object; one that is already gone is no error."""
    where = location(uri, field)
    if isinstance(where, LocalLocation):
        try:
            where.path.unlink(missing_ok=True)
        except OSError as exc:
            raise ObjectError(f"Could not delete {uri} ({field}): {exc.strerror or exc}.") from None
        return
    with _s3_errors("delete", uri, field):
        _s3().delete_object(Bucket=where.bucket, Key=where.key)


def object_exists(uri: str, field: str) -> bool:
    where = location(uri, field)
    if isinstance(where, LocalLocation):
        return where.path.is_file()
    try:
        _s3().head_object(Bucket=where.bucket, Key=where.key)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise ObjectError(f"Could not look for {uri} ({field}): {_describe(exc)}.") from None
    except BotoCoreError as exc:
        raise ObjectError(f"Could not look for {uri} ({field}): {exc}.") from None
    return True


def list_objects(prefix: str, field: str) -> list[str]:
    """Every object whose location starts with `prefix`, in key order (S3's order: by bytes).

    On disk the prefix is a directory (every file below it) or the start of file names in one."""
    where = location(prefix, field)
    if isinstance(where, LocalLocation):
        return [str(path) for path in _local_listing(where.path)]
    found: list[str] = []
    with _s3_errors("list", prefix, field):
        pages = _s3().get_paginator("list_objects_v2").paginate(Bucket=where.bucket, Prefix=where.key)
        for page in pages:
            found.extend(f"s3://{where.bucket}/{item['Key']}" for item in page.get("Contents", []))
    return sorted(found, key=lambda uri: uri.encode())


def relative_name(prefix: str, uri: str) -> str:
    """`uri`'s name below `prefix`, the way batch transform names outputs (`<key relative>.out`): what
    follows the prefix's last `/`, on disk as in S3 (`in` and `in/a.csv` give `in/a.csv`; `in/` gives
    `a.csv`)."""
    base, where = location(prefix, "prefix"), location(uri, "object")
    if isinstance(base, LocalLocation) and isinstance(where, LocalLocation):
        text = str(base.path) + ("/" if prefix.endswith("/") and str(base.path) != "/" else "")
        path = str(where.path)
    else:
        assert isinstance(base, S3Location) and isinstance(where, S3Location)
        text, path = base.key, where.key
    cut = text.rsplit("/", 1)[0] + "/" if "/" in text else ""
    return path[len(cut) :] if path.startswith(cut) else where.name


def _local_listing(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: str(p).encode())
    parent = path.parent
    if not parent.is_dir():
        return []
    return sorted(
        (p for p in parent.iterdir() if p.is_file() and p.name.startswith(path.name)),
        key=lambda p: str(p).encode(),
    )


def _check_inside(path: Path, inside: str, uri: str, field: str) -> None:
    root = location(inside, field)
    if not isinstance(root, LocalLocation):
        return
    resolved, base = os.path.realpath(path), os.path.realpath(root.path)
    if os.path.commonpath([resolved, base]) != base:
        raise ObjectError(f"Could not write {uri} ({field}): it resolves outside {inside} (to {resolved}).")


def _write_file(path: Path, body: bytes, uri: str, field: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(body)
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as exc:
        raise ObjectError(f"Could not write {uri} ({field}): {exc.strerror or exc}.") from None


def _describe(exc: ClientError) -> str:
    code = error_code(exc)
    message = str(exc.response.get("Error", {}).get("Message", "")).strip()
    hint = {
        "NoSuchBucket": "the bucket does not exist; create it first",
        "NoSuchKey": "no such object",
        "404": "no such object",
        "AccessDenied": "access denied; check the server's credentials and the bucket policy",
        "403": "access denied; check the server's credentials and the bucket policy",
    }.get(code)
    return f"{code} ({hint})" if hint else f"{code}: {message or 'request failed'}"


@contextlib.contextmanager
def _s3_errors(what: str, uri: str, field: str) -> Iterator[None]:
    try:
        yield
    except ClientError as exc:
        busy = error_code(exc) in ("500", "503", "InternalError", "ServiceUnavailable", "SlowDown")
        raise ObjectError(f"Could not {what} {uri} ({field}): {_describe(exc)}.", transient=busy) from None
    except BotoCoreError as exc:
        raise ObjectError(
            f"Could not {what} {uri} ({field}): {exc}. Check that the S3 store is running and reachable.",
            transient=True,
        ) from None
