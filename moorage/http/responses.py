"""Responses as the worker's HTTP server writes them: status, body, content type and extra header lines."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import NamedTuple

JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
_OWN_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding", "connection"})


class Response(NamedTuple):
    status: int
    body: bytes
    content_type: bytes = JSON
    headers: bytes = b""  # complete "Name: value\r\n" lines


def json_response(obj: object, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode("utf-8"))


def text_response(message: str, status: int) -> Response:
    return Response(status, message.encode("utf-8", "replace"), TEXT)


def header_value(value: str) -> bytes:
    """Header values come from user code: refuse anything that would split the header block."""
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"invalid header value {value!r}: it contains a line break or NUL")
    return value.encode("latin-1")


def header_lines(headers: dict[str, str]) -> bytes:
    """Extra response headers set by a handler; framing headers stay the server's own."""
    lines = []
    for name, value in headers.items():
        if not name or not name.replace("-", "").isalnum() or not name.isascii():
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() not in _OWN_HEADERS:
            lines.append(b"%s: %s\r\n" % (name.encode("ascii"), header_value(value)))
    return b"".join(lines)


STATUS_LINES: dict[int, bytes] = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d \r\n" % status
    return line


def render_head(response: Response, close: bool) -> bytes:
    """Everything before the body."""
    return b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s%s\r\n" % (
        status_line(response.status),
        response.content_type,
        len(response.body),
        response.headers,
        b"Connection: close\r\n" if close else b"",
    )
