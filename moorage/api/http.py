"""Small helpers shared by the control and runtime adapters: request ids and error responses."""

from __future__ import annotations

import itertools
import os

from moorage.api.errors import (
    AwsError,
    InternalFailure,
    PayloadTooLarge,
    RequestTimeout,
    SerializationException,
    UnknownPath,
    ValidationError,
    render_error,
)
from moorage.http.responses import Response

_FRAMING = frozenset({b"content-type", b"content-length"})
CONTROL_CONTENT_TYPE = "application/x-amz-json-1.1"
RUNTIME_CONTENT_TYPE = "application/json"
# Request ids look like AWS's (UUIDs) but cost a counter increment, not a urandom call, per request.
_PREFIX = os.urandom(8).hex()
_PREFIX = f"{_PREFIX[:8]}-{_PREFIX[8:12]}-4{_PREFIX[13:16]}-"
_counter = itertools.count(int.from_bytes(os.urandom(4), "big"))


def request_id() -> str:
    n = next(_counter)
    return f"{_PREFIX}{0x8000 | (n >> 48) & 0x3FFF:04x}-{n & 0xFFFFFFFFFFFF:012x}"


def error_response(err: AwsError, rid: str, content_type: str) -> Response:
    """An AwsError as the HTTP server writes it: body and x-amzn-ErrorType from the one renderer."""
    status, headers, body = render_error(err, rid, json_content_type=content_type)
    extra = b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers if k.lower() not in _FRAMING)
    return Response(status, body, content_type.encode(), extra)


def refusal_response(status: int, message: str, *, runtime: bool) -> Response:
    """A request refused below the APIs (by the HTTP server, or a bug caught there), answered in the
    shape of the API it was sent to, so every error on the port is one botocore can parse.

    `status` is what the HTTP layer decided (400 unparseable, 404 no such path, 408 too slow,
    413 body too large, 414/431 head too large, 500 a bug); the error code follows from it."""
    err: AwsError
    if status == 500:
        err = InternalFailure("The server hit an internal error; see its log.")
    elif status == 404:
        err = UnknownPath(message)
    elif status == 408:
        err = RequestTimeout(message)
    elif status == 413 and runtime:
        err = PayloadTooLarge(message)
    elif runtime:
        err = ValidationError(message)
    else:
        err = SerializationException(message)
    content_type = RUNTIME_CONTENT_TYPE if runtime else CONTROL_CONTENT_TYPE
    response = error_response(err, request_id(), content_type)
    return response if response.status == status else response._replace(status=status)
