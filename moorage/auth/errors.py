"""A refused signature, answered in the shape of the API the request was for: the awsJson and restJson
error of SageMaker and its runtime, the awsQuery ErrorResponse of STS, S3's <Error>. The codes and
statuses for each kind of failure are tabled in docs/security.md.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from moorage.api.errors import (
    AwsError,
    IncompleteSignature,
    InvalidSignatureException,
    UnrecognizedClientException,
)
from moorage.api.http import CONTROL_CONTENT_TYPE, RUNTIME_CONTENT_TYPE, error_response, request_id
from moorage.api.s3xml import s3_error
from moorage.auth.sigv4 import AuthFailure
from moorage.http.responses import Response

FAMILIES = ("json", "runtime", "query", "s3")


class MissingAuthenticationTokenException(AwsError):
    code, status = "MissingAuthenticationTokenException", 403


_JSON: dict[str, type[AwsError]] = {
    "missing": MissingAuthenticationTokenException,
    "unknown-key": UnrecognizedClientException,
    "bad-signature": InvalidSignatureException,
    "skewed": InvalidSignatureException,
    "expired": InvalidSignatureException,
    "bad-body-hash": InvalidSignatureException,
    "malformed": IncompleteSignature,
    "unsigned-headers": InvalidSignatureException,
    "wrong-service": InvalidSignatureException,
}

_QUERY: dict[str, tuple[int, str]] = {
    "missing": (403, "MissingAuthenticationToken"),
    "unknown-key": (403, "InvalidClientTokenId"),
    "bad-signature": (403, "SignatureDoesNotMatch"),
    "skewed": (403, "SignatureDoesNotMatch"),
    "expired": (403, "SignatureDoesNotMatch"),
    "bad-body-hash": (403, "SignatureDoesNotMatch"),
    "malformed": (400, "IncompleteSignature"),
    "unsigned-headers": (403, "SignatureDoesNotMatch"),
    "wrong-service": (403, "SignatureDoesNotMatch"),
}
_QUERY_MESSAGES = {"missing": "Request is missing Authentication Token"}

_S3: dict[str, tuple[int, str, str | None]] = {  # None: the failure's own message
    "missing": (403, "AccessDenied", "Access Denied"),
    "unknown-key": (
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
    ),
    "bad-signature": (
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
    ),
    "skewed": (
        403,
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
    ),
    "expired": (403, "AccessDenied", "Request has expired"),
    "bad-body-hash": (400, "XAmzContentSHA256Mismatch", None),
    "malformed": (400, "AuthorizationHeaderMalformed", None),
    "unsigned-headers": (403, "AccessDenied", None),
    "wrong-service": (403, "SignatureDoesNotMatch", None),
}


def auth_error_response(failure: AuthFailure, family: str) -> Response:
    """The response for `failure` to a request for `family`: "json" (SageMaker, Application Auto
    Scaling), "runtime" (/endpoints/…), "query" (STS) or "s3"."""
    if family in ("json", "runtime"):
        err = _JSON[failure.kind](_json_message(failure))
        content_type = RUNTIME_CONTENT_TYPE if family == "runtime" else CONTROL_CONTENT_TYPE
        return error_response(err, request_id(), content_type)
    if family == "query":
        status, code = _QUERY[failure.kind]
        return query_error(status, code, _QUERY_MESSAGES.get(failure.kind, failure.message))
    if family == "s3":
        return _s3_error(failure)
    raise ValueError(f"unknown API family {family!r}; expected one of {', '.join(FAMILIES)}")


def _json_message(failure: AuthFailure) -> str:
    if failure.kind == "missing":
        return "Missing Authentication Token"
    return failure.message


def query_error(status: int, code: str, message: str, *, sender: bool = True) -> Response:
    """An awsQuery error as botocore's QueryParser reads it (ErrorResponse/Error/Code)."""
    rid = request_id()
    body = (
        "<ErrorResponse><Error>"
        f"<Type>{'Sender' if sender else 'Receiver'}</Type><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message>"
        f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
    )
    return Response(status, body.encode("utf-8"), b"text/xml", b"x-amzn-RequestId: %s\r\n" % rid.encode())


def _s3_error(failure: AuthFailure) -> Response:
    status, code, message = _S3[failure.kind]
    extra = dict(failure.extra)
    if failure.kind == "malformed":
        if "ArgumentName" in extra:
            code = "InvalidArgument"
        elif failure.presigned:
            code = "AuthorizationQueryParametersError"
    elif failure.kind == "bad-body-hash":
        extra = {k: v for k, v in extra.items() if k.endswith("ContentSHA256")}
    elif failure.kind not in ("bad-signature", "skewed", "unknown-key", "expired"):
        extra = {}
    return s3_error(status, code, message or failure.message, fields=extra)
