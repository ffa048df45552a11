"""Small helpers shared by the control and runtime adapters: request ids and error responses."""

from __future__ import annotations

import itertools
import os

from moorage.api.errors import AwsError, render_error
from moorage.http.responses import Response

_FRAMING = frozenset({b"content-type", b"content-length"})
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
