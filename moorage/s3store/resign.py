"""Requests for an external store (``--s3-endpoint``), signed again with the server's own credentials.

A client signs for the port it talks to (its Host) with whatever keys it holds; a store elsewhere —
AWS S3 itself, or a SeaweedFS or MinIO with keys of its own — checks a signature over *its* Host
with *its* keys. When the server has credentials (boto3's usual chain: ``AWS_ACCESS_KEY_ID``…, a
profile), each S3 request's signature (header or presigned, SigV4 or SigV2) is replaced by one the
server makes for the store, with botocore's S3 signer. The body is not read for this: the new
signature carries the payload hash the client claimed (``x-amz-content-sha256``, or
``UNSIGNED-PAYLOAD``), so the store still checks the body against it. A streaming upload with chunk
signatures (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``) chains each chunk's signature to the client's
own, so it cannot be signed again here and is refused with a message saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

UNSIGNED = "UNSIGNED-PAYLOAD"
# what a client's own signature leaves in the request, dropped before the server signs
_SIGNING_HEADERS = frozenset(
    {b"authorization", b"x-amz-date", b"x-amz-security-token", b"x-amz-content-sha256", b"host"}
)
_SIGNING_PARAMS = frozenset(
    {
        b"X-Amz-Algorithm", b"X-Amz-Credential", b"X-Amz-Date", b"X-Amz-Expires", b"X-Amz-SignedHeaders",
        b"X-Amz-Signature", b"X-Amz-Security-Token", b"AWSAccessKeyId", b"Signature", b"Expires",
    }
)  # fmt: skip


class CannotResign(Exception):
    """The request cannot be signed again for the store; the message says why and what to do."""


class _ClaimedPayload(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 signer, signing the payload hash the client claimed instead of hashing a body
    this hop never holds whole."""

    def __init__(self, credentials: Credentials, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._claimed = payload

    def payload(self, request: Any) -> str:
        return self._claimed


class Resigner:
    """Signs S3 requests for one store with the server's credentials."""

    def __init__(self, credentials: Any, host: str, scheme: str, region: str) -> None:
        """`credentials`: botocore Credentials (refreshable ones too: read afresh for each request)."""
        self._credentials = credentials
        self._host = host  # host[:port] as the store knows itself
        self._scheme = scheme
        self._region = region

    def __call__(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes]
    ) -> tuple[bytes, dict[bytes, bytes]]:
        """The request target and headers to send to the store instead of the client's (`headers`
        without the hop-by-hop ones: every header given here is signed and sent as it is)."""
        claimed = headers.get(b"x-amz-content-sha256", UNSIGNED.encode()).decode("latin-1").strip()
        if claimed.startswith("STREAMING-AWS4-HMAC-SHA256"):
            raise CannotResign(
                "This upload signs each chunk with the client's key (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), "
                "which cannot be signed again for another store; send whole-body hashes (boto3 does with an "
                "http:// endpoint such as the port's) or point the client at the store itself."
            )
        path, _, query = url.partition(b"?")
        kept = [pair for pair in query.split(b"&") if pair and pair.partition(b"=")[0] not in _SIGNING_PARAMS]
        target = path + (b"?" + b"&".join(kept) if kept else b"")
        unsigned = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers.items()
            if name not in _SIGNING_HEADERS
        }
        unsigned["host"] = self._host
        request = AWSRequest(
            method=method.decode("latin-1"),
            url=f"{self._scheme}://{self._host}{target.decode('latin-1')}",
            headers=unsigned,
        )
        frozen = self._credentials.get_frozen_credentials()  # refreshable ones renew themselves
        current = Credentials(frozen.access_key, frozen.secret_key, frozen.token)
        _ClaimedPayload(current, self._region, claimed).add_auth(request)
        signed = {
            name.lower().encode("latin-1"): value.encode("latin-1") for name, value in request.headers.items()
        }
        return target, signed


def server_resigner(endpoint_url: str) -> Resigner | None:
    """A Resigner for the store at `endpoint_url` with the server's own credentials, or None when it
    has none (then requests pass as the clients signed them). Region: the server's configured one."""
    from urllib.parse import urlsplit

    from moorage.awsconfig import offline_session

    session = offline_session()
    try:
        found = session.get_credentials()
    except Exception:  # a broken profile: as if there were none
        found = None
    if found is None:
        return None
    parts = urlsplit(endpoint_url)
    region = session.get_config_variable("region") or "us-east-1"
    return Resigner(found, parts.netloc, parts.scheme, region)
