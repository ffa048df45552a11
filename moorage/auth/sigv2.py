"""S3's older query-string signature (Signature Version 2), which boto3 still uses by default for
``generate_presigned_url`` on S3: ``?AWSAccessKeyId=…&Expires=…&Signature=…``.

The string to sign is botocore's ``HmacV1QueryAuth`` one: the method, Content-MD5 and Content-Type
(which the presigner moves into the query), the expiry time, the ``x-amz-*`` values it moved there too,
and the resource: the path as sent plus the sub-resources S3 signs (``versionId``,
``response-content-type``, …). HMAC-SHA1 with the secret, base64.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import unquote

from moorage.auth.keys import KeyRing
from moorage.auth.sigv4 import AuthFailure, Caller, refuse_unsigned_amz_headers

# the query parameters S3 includes in the signed resource (botocore's HmacV1Auth.QSAOfInterest)
_SUBRESOURCES = frozenset(
    {
        "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber", "policy",
        "requestPayment", "torrent", "versioning", "versionId", "versions", "website", "uploads",
        "uploadId", "response-content-type", "response-content-language", "response-expires",
        "response-cache-control", "response-content-disposition", "response-content-encoding",
        "delete", "lifecycle", "tagging", "restore", "storageClass", "notification", "replication",
        "analytics", "metrics", "inventory", "select", "select-type", "object-lock",
    }
)  # fmt: skip


def verify_presigned_v2(
    keys: KeyRing, now: float, method: bytes, url: bytes, headers: Mapping[bytes, bytes], region: str
) -> Caller:
    """The caller of a SigV2-presigned S3 URL, or AuthFailure (S3's codes through the s3 family)."""
    path, _, query = url.partition(b"?")
    raw: list[tuple[str, str]] = []
    for pair in query.decode("latin-1").split("&"):
        name, eq, value = pair.partition("=")
        raw.append((name, value if eq else ""))
    params = {name: unquote(value, encoding="latin-1") for name, value in raw}
    access_key, signature, expires = (params.get(n, "") for n in ("AWSAccessKeyId", "Signature", "Expires"))
    if not access_key or not signature or not expires.isdigit():
        raise AuthFailure(
            "malformed",
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
            presigned=True,
        )
    key = keys.get(access_key)
    if key is None:
        raise AuthFailure(
            "unknown-key",
            "The AWS Access Key Id you provided does not exist in our records.",
            presigned=True,
            extra={"AWSAccessKeyId": access_key},
        )
    if now > int(expires):
        raise AuthFailure("expired", "Request has expired", presigned=True, extra={"Expires": expires})
    custom = sorted(
        (name.lower(), value.strip()) for name, value in params.items() if name.lower().startswith("x-amz-")
    )
    # x-amz-* sent as headers are not in a SigV2 query signature: S3 would act on them unsigned
    refuse_unsigned_amz_headers(headers, frozenset(name.encode("latin-1") for name, _ in custom), True)
    signed_subresources = sorted((name, unquote(value)) for name, value in raw if name in _SUBRESOURCES)
    resource = path.decode("latin-1")
    if signed_subresources:
        resource += "?" + "&".join(f"{n}={v}" if v else n for n, v in signed_subresources)
    string_to_sign = "\n".join(
        [
            method.decode("latin-1").upper(),
            params.get("content-md5", "").strip(),
            params.get("content-type", "").strip(),
            expires,
            *[f"{name}:{value}" for name, value in custom],
            resource,
        ]
    )
    digest = hmac.digest(key.secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1)
    expected = base64.b64encode(digest)
    if not hmac.compare_digest(expected, signature.encode("latin-1")):
        raise AuthFailure(
            "bad-signature",
            "The request signature we calculated does not match the signature you provided. Check your "
            "key and signing method.",
            presigned=True,
            extra={"AWSAccessKeyId": access_key, "StringToSign": string_to_sign},
        )
    return Caller(access_key, key.account, region, "s3", None)
