"""Talk to S3 (or any S3-compatible store) and turn its failures into actionable messages.

The endpoint comes from the standard ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` settings that
boto3 reads by itself; when one is set the client uses path-style addressing, which self-hosted
stores expect. Downloads pin the ETag seen by HEAD (``If-Match``) so the cache key always
describes the bytes that were actually fetched.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.locations import S3Location

_CHUNK = 1024 * 1024
_DEFAULT_REGION = "us-east-1"

_EXPLANATIONS: dict[str, str] = {
    "NoSuchKey": "the object does not exist). Check {field} and that the object was uploaded.",
    "NoSuchBucket": "the bucket does not exist). Check the bucket name in {field}.",
    "AccessDenied": "access denied). Check the credentials and bucket policy available to the server.",
    "InvalidAccessKeyId": "the access key was rejected). Check AWS_ACCESS_KEY_ID for the server.",
    "SignatureDoesNotMatch": "the secret key was rejected). Check AWS_SECRET_ACCESS_KEY for the server.",
    "PreconditionFailed": "the object changed while it was being downloaded). Retry the deployment.",
}


@dataclass(frozen=True)
class ObjectInfo:
    """What a HEAD or LIST says about one object: enough to key caches without downloading."""

    key: str
    etag: str
    size: int


@dataclass(frozen=True)
class _StoreChoice:
    endpoint_url: str
    anonymous: bool


_store: _StoreChoice | None = None


def use_store(endpoint_url: str | None, anonymous: bool = False) -> None:
    """The S3 store the server's own downloads use: the one its port passes S3 requests to (the
    embedded store needs no signature). None: boto3's own settings (``AWS_ENDPOINT_URL_S3`` …)."""
    global _store
    _store = None if endpoint_url is None else _StoreChoice(endpoint_url, anonymous)


def current_store() -> tuple[str, bool] | None:
    """(endpoint URL, anonymous) of the store chosen with `use_store`, to choose it again elsewhere."""
    store = _store
    return None if store is None else (store.endpoint_url, store.anonymous)


def s3_client() -> Any:
    """A fresh client per call: boto3 sessions are not thread-safe and this runs in worker threads."""
    session = boto3.session.Session()
    store = _store
    custom_endpoint = (
        store.endpoint_url
        if store is not None
        else os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    )
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        connect_timeout=10,
        read_timeout=120,
        s3={"addressing_style": "path"} if custom_endpoint else {},
        signature_version=UNSIGNED if store is not None and store.anonymous else None,
    )
    return session.client(
        "s3",
        region_name=session.region_name or _DEFAULT_REGION,
        endpoint_url=custom_endpoint,
        config=config,
    )


def head_object(client: Any, location: S3Location, field: str) -> ObjectInfo:
    """HEAD the object; a 404 is reported as NoSuchBucket or NoSuchKey, whichever it really is."""
    with _translated(location.uri, field, lambda: _missing_code(client, location.bucket)):
        response = client.head_object(Bucket=location.bucket, Key=location.key)
    return ObjectInfo(location.key, str(response.get("ETag", "")), int(response.get("ContentLength", 0)))


def list_prefix(client: Any, location: S3Location, field: str) -> list[ObjectInfo]:
    """Every object whose key starts with the location's key, in key order."""
    found: list[ObjectInfo] = []
    with _translated(location.uri, field, lambda: "NoSuchBucket"):
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=location.bucket, Prefix=location.key):
            for item in page.get("Contents", []):
                found.append(
                    ObjectInfo(str(item["Key"]), str(item.get("ETag", "")), int(item.get("Size", 0)))
                )
    return sorted(found, key=lambda info: info.key)


def download_object(
    client: Any, bucket: str, info: ObjectInfo, dest: Path, field: str, log: Callable[[str], None]
) -> None:
    """Stream one object into ``dest`` (a new file), insisting on the ETag seen before."""
    uri = f"s3://{bucket}/{info.key}"
    log(f"Downloading {uri} ({info.size} bytes)")
    extra = {"IfMatch": info.etag} if info.etag else {}
    written = 0
    with _translated(uri, field, lambda: "NoSuchKey"):
        response = client.get_object(Bucket=bucket, Key=info.key, **extra)
        with open(dest, "xb") as out:
            for chunk in response["Body"].iter_chunks(_CHUNK):
                out.write(chunk)
                written += len(chunk)
    if written != info.size:
        raise ArtifactError(
            f"Failed to download model data from {uri}: got {written} of {info.size} bytes. "
            "Retry the deployment; if it persists, check the object store."
        )


def _missing_code(client: Any, bucket: str) -> str:
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in ("404", "NoSuchBucket"):
            return "NoSuchBucket"
    except BotoCoreError:
        pass
    return "NoSuchKey"


def error_code(exc: ClientError) -> str:
    """An S3 error's code (NoSuchKey, …), or its HTTP status where the response has no code."""
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))


@contextlib.contextmanager
def _translated(uri: str, field: str, not_found: Callable[[], str]) -> Iterator[None]:
    """Re-raise boto3/botocore failures as ArtifactError with a hint about what to fix."""
    try:
        yield
    except ClientError as exc:
        code = error_code(exc)
        if code in ("404", "NotFound"):
            code = not_found()
        elif code == "403":
            code = "AccessDenied"
        elif code == "412":
            code = "PreconditionFailed"
        message = str(exc.response.get("Error", {}).get("Message", "")).strip()
        _fail(uri, code, field, message)
    except NoCredentialsError:
        raise ArtifactError(
            f"Failed to download model data from {uri}: no AWS credentials are configured for the server. "
            "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile)."
        ) from None
    except EndpointConnectionError as exc:
        raise ArtifactError(
            f"Failed to download model data from {uri}: could not connect to "
            f"{exc.kwargs.get('endpoint_url')}. "
            "Check AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and that the object store is running."
        ) from None
    except BotoCoreError as exc:
        raise ArtifactError(f"Failed to download model data from {uri}: {exc}") from None


def _fail(uri: str, code: str, field: str, message: str) -> NoReturn:
    explanation = _EXPLANATIONS.get(code)
    if explanation is not None:
        detail = f"{code} ({explanation.format(field=field)}"
    else:
        detail = f"{code}: {message or 'request failed'}. Check {field} and the server's S3 settings."
    raise ArtifactError(f"Failed to download model data from {uri}: {detail}") from None
