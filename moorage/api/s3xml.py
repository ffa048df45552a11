"""S3's XML error, the one shape every S3 refusal on the port takes, whoever makes it: the S3
pass-through (store down, bucket owner, body hash), the HTTP server's refusals of S3 requests, and
signature failures. botocore's RestXMLParser reads `Code` and `Message` from it."""

from __future__ import annotations

from collections.abc import Mapping
from xml.sax.saxutils import escape

from moorage.api.http import request_id
from moorage.http.responses import Response

XML = b"application/xml"


def s3_error(
    status: int,
    code: str,
    message: str,
    *,
    resource: bytes = b"",
    fields: Mapping[str, str] | None = None,
) -> Response:
    """`fields`: what S3 adds to some errors (RequestTime, StringToSign, …), in order."""
    rid = request_id()
    extra = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in (fields or {}).items())
    where = f"<Resource>{escape(resource.decode('utf-8', 'replace'))}</Resource>" if resource else ""
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"{extra}{where}<RequestId>{rid}</RequestId></Error>"
    )
    return Response(status, body.encode("utf-8"), XML, b"x-amz-request-id: %s\r\n" % rid.encode())
