"""Refusals as boto3 raises them: the code and HTTP status for each kind of failure and API family."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from moorage.auth.errors import auth_error_response
from moorage.auth.sigv4 import AuthFailure
from moorage.http.responses import Response
from tests.auth.wire import client

KINDS = ["missing", "unknown-key", "bad-signature", "skewed", "expired", "bad-body-hash", "malformed"]
EXPECTED: dict[str, dict[str, tuple[str, int]]] = {
    "json": {
        "missing": ("MissingAuthenticationTokenException", 403),
        "unknown-key": ("UnrecognizedClientException", 403),
        "bad-signature": ("InvalidSignatureException", 403),
        "skewed": ("InvalidSignatureException", 403),
        "expired": ("InvalidSignatureException", 403),
        "bad-body-hash": ("InvalidSignatureException", 403),
        "malformed": ("IncompleteSignature", 400),
    },
    "query": {
        "missing": ("MissingAuthenticationToken", 403),
        "unknown-key": ("InvalidClientTokenId", 403),
        "bad-signature": ("SignatureDoesNotMatch", 403),
        "skewed": ("SignatureDoesNotMatch", 403),
        "expired": ("SignatureDoesNotMatch", 403),
        "bad-body-hash": ("SignatureDoesNotMatch", 403),
        "malformed": ("IncompleteSignature", 400),
    },
    "s3": {
        "missing": ("AccessDenied", 403),
        "unknown-key": ("InvalidAccessKeyId", 403),
        "bad-signature": ("SignatureDoesNotMatch", 403),
        "skewed": ("RequestTimeTooSkewed", 403),
        "expired": ("AccessDenied", 403),
        "bad-body-hash": ("XAmzContentSHA256Mismatch", 400),
        "malformed": ("AuthorizationHeaderMalformed", 400),
    },
}
EXPECTED["runtime"] = EXPECTED["json"]
MESSAGE = (
    "Signature expired: 20250101T000000Z is now earlier than 20250101T001000Z (20250101T002500Z - 15 min.)"
)


def refuse(failure: AuthFailure, family: str) -> Any:
    def handler(*_: Any) -> Response:
        return auth_error_response(failure, family)

    return handler


def call(family: str, failure: AuthFailure) -> ClientError:
    calls = {
        "json": lambda c: c.list_models(),
        "runtime": lambda c: c.invoke_endpoint(EndpointName="e", Body=b"{}", ContentType="application/json"),
        "query": lambda c: c.get_caller_identity(),
        "s3": lambda c: c.list_objects_v2(Bucket="b"),
    }
    service = {"json": "sagemaker", "runtime": "sagemaker-runtime", "query": "sts", "s3": "s3"}[family]
    with pytest.raises(ClientError) as info:
        calls[family](client(service, refuse(failure, family)))
    return info.value


@pytest.mark.parametrize("family", ["json", "runtime", "query", "s3"])
@pytest.mark.parametrize("kind", KINDS)
def test_boto3_raises_the_right_code(family: str, kind: str) -> None:
    err = call(family, AuthFailure(kind, MESSAGE, extra={"RequestTime": "20250101T000000Z"}))
    code, status = EXPECTED[family][kind]
    assert err.response["Error"]["Code"] == code
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert err.response["ResponseMetadata"]["RequestId"]
    if kind in ("skewed", "expired") and family != "s3":
        assert err.response["Error"]["Message"] == MESSAGE


def test_s3_wording_and_fields() -> None:
    err = call("s3", AuthFailure("expired", "x", presigned=True))
    assert err.response["Error"]["Message"] == "Request has expired"
    err = call(
        "s3", AuthFailure("skewed", "x", extra={"RequestTime": "20250101T000000Z", "ServerTime": "now"})
    )
    assert err.response["Error"]["RequestTime"] == "20250101T000000Z"
    err = call("s3", AuthFailure("malformed", "bad query", presigned=True))
    assert err.response["Error"]["Code"] == "AuthorizationQueryParametersError"
    err = call("s3", AuthFailure("malformed", "bad hash", extra={"ArgumentName": "x-amz-content-sha256"}))
    assert err.response["Error"]["Code"] == "InvalidArgument"
    assert err.response["Error"]["Message"] == "bad hash"


def test_unknown_family() -> None:
    with pytest.raises(ValueError, match="unknown API family"):
        auth_error_response(AuthFailure("missing", "m"), "rest-xml")
