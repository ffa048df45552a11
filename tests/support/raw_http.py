"""Byte-level HTTP/1.1 over a socket, for tests that must send what no well-behaved client sends."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class RawResponse:
    status: int
    headers: dict[bytes, bytes]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def connect(url: str, timeout: float = 10) -> socket.socket:
    address = urlsplit(url)
    return socket.create_connection((address.hostname, address.port), timeout=timeout)


def read_response(sock: socket.socket, buffer: bytearray, *, head_only: bool = False) -> RawResponse:
    """One Content-Length framed response; bytes read past it stay in `buffer` for the next call.
    `head_only`: the answer to a HEAD request, whose Content-Length announces a body that never comes."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"connection closed before a complete response head: {bytes(buffer)!r}")
        buffer += chunk
    end = buffer.index(b"\r\n\r\n")
    status_line, *lines = bytes(buffer[:end]).split(b"\r\n")
    del buffer[: end + 4]
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head_only else int(headers.get(b"content-length", b"0"))
    while len(buffer) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside a response body")
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    return RawResponse(int(status_line.split()[1]), headers, body)


def read_rest(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (a socket timeout raises)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def exchange(url: str, request: bytes, *, head_only: bool = False) -> RawResponse:
    """Send one request on a new connection and read its response."""
    with connect(url) as sock:
        sock.sendall(request)
        return read_response(sock, bytearray(), head_only=head_only)
