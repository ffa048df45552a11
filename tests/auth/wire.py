"""Real boto3 clients whose requests never leave the process: a `before-send` hook hands each signed
request, as the bytes the server would see, to a handler that returns a moorage Response; botocore then
parses that response exactly as it parses one from the network."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.config import Config

from moorage.http.responses import Response

URL = "http://127.0.0.1:7070"
Handler = Callable[[bytes, bytes, Mapping[bytes, bytes], bytes], Response]


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def on_the_wire(request: AWSPreparedRequest) -> tuple[bytes, bytes, dict[bytes, bytes], bytes]:
    """Method, request target, lower-cased headers (repeats joined with ",") and body, as sent."""
    parts = urlsplit(request.url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers: dict[bytes, bytes] = {b"host": parts.netloc.encode()}
    for name, value in request.headers.items():
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        key = name.lower().encode("latin-1")
        headers[key] = headers[key] + b"," + raw if key in headers and key != b"host" else raw
    body = request.body
    if body is None:
        data = b""
    elif isinstance(body, bytes):
        data = body
    elif isinstance(body, str):
        data = body.encode("utf-8")
    else:
        data = body.read()
        body.seek(0)
    return request.method.encode(), target.encode(), headers, data


def client(service: str, handler: Handler, *, key: str = "AKIDALICE", secret: str = "alice-secret") -> Any:
    c = boto3.client(
        service,
        endpoint_url=URL,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )

    def send(request: AWSPreparedRequest, **_: Any) -> AWSResponse:
        method, target, headers, body = on_the_wire(request)
        response = handler(method, target, headers, body)
        extra: dict[str, str] = {}
        for line in response.headers.decode("latin-1").split("\r\n"):
            if line:
                name, _sep, value = line.partition(":")
                extra[name.strip()] = value.strip()
        headers_out = {
            "Content-Type": response.content_type.decode(),
            "Content-Length": str(len(response.body)),
            **extra,
        }
        return AWSResponse(request.url, response.status, headers_out, _Raw(response.body))

    c.meta.events.register_first("before-send", send)
    return c
