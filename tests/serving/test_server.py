"""HTTP/1.1 details of the worker server, spoken byte by byte over the Unix socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.support.raw_http import read_response

from .support import Instance, model_dir

ECHO = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return body, "application/octet-stream"
"""


@pytest.fixture(scope="module")
def echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    instance = Instance(
        model_dir(tmp_path_factory.mktemp("echo"), ECHO), env={"SAGEMAKER_MAX_PAYLOAD_IN_MB": "1"}
    )
    instance.wait_ready()
    yield instance
    instance.stop()


def _connect(instance: Instance) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(instance.socket_dir / "w0.sock"))
    return sock


def _read_responses(sock: socket.socket, count: int) -> list[tuple[bytes, dict[bytes, bytes], bytes]]:
    """Reads `count` Content-Length framed responses (status line, headers, body)."""
    data = b""
    responses: list[tuple[bytes, dict[bytes, bytes], bytes]] = []
    while len(responses) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {responses}"
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        status, *lines = head.split(b"\r\n")
        headers = {k.lower(): v for k, v in (line.split(b": ", 1) for line in lines)}
        length = int(headers[b"content-length"])
        while len(data) < length:
            data += sock.recv(65536)
        responses.append((status, headers, data[:length]))
        data = data[length:]
    return responses


def _post(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST /invocations HTTP/1.1\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def test_pipelined_requests_are_answered_in_order(echo: Instance) -> None:
    with _connect(echo) as sock:
        sock.sendall(_post(b"one") + b"GET /ping HTTP/1.1\r\n\r\n" + _post(b"three"))
        replies = _read_responses(sock, 3)
    assert [r[2] for r in replies] == [b"one", b'{"status": "Healthy"}', b"three"]


def test_request_split_across_packets(echo: Instance) -> None:
    raw = _post(b"x" * 5000, b"Content-Type: application/octet-stream\r\n")
    head = raw.index(b"\r\n\r\n")
    with _connect(echo) as sock:
        for byte in range(head):
            sock.sendall(raw[byte : byte + 1])
        for start in range(head, len(raw), 997):
            sock.sendall(raw[start : start + 997])
        assert _read_responses(sock, 1)[0][2] == b"x" * 5000


def test_chunked_body_and_expect_continue(echo: Instance) -> None:
    with _connect(echo) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        status, _, body = _read_responses(sock, 1)[0]
    assert (status, body) == (b"HTTP/1.1 200 OK", b"abcde")


def test_connection_close_and_http_1_0(echo: Instance) -> None:
    for request in (_post(b"a", b"Connection: close\r\n"), b"GET /ping HTTP/1.0\r\n\r\n"):
        with _connect(echo) as sock:
            sock.sendall(request)
            _, headers, _ = _read_responses(sock, 1)[0]
            assert headers[b"connection"] == b"close"
            assert sock.recv(10) == b""  # the server closed its end


def test_body_over_the_payload_limit_is_413(echo: Instance) -> None:
    with _connect(echo) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (1024 * 1024 + 1))
        status, headers, _ = _read_responses(sock, 1)[0]
    assert status.startswith(b"HTTP/1.1 413")
    assert headers[b"connection"] == b"close"


def test_oversized_body_is_read_and_dropped_then_answered_413(echo: Instance) -> None:
    """A client that writes the whole body before reading still gets the 413, not a broken pipe."""
    body = b"x" * (3 * 1024 * 1024)
    with _connect(echo) as sock:
        sock.sendall(_post(body))  # 3 MiB against a 1 MiB limit: would fail if the server stopped reading
        status, headers, _ = _read_responses(sock, 1)[0]
        assert status.startswith(b"HTTP/1.1 413")
        assert headers[b"connection"] == b"close"
        assert sock.recv(10) == b""  # closed once the body has been consumed
    assert echo.invoke(b"ok", content_type="application/octet-stream").status == 200


def test_oversized_body_with_expect_continue_is_refused_before_it_is_sent(echo: Instance) -> None:
    with _connect(echo) as sock:
        sock.sendall(
            b"POST /invocations HTTP/1.1\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
            % (2 * 1024 * 1024)
        )
        status, _, _ = _read_responses(sock, 1)[0]
        assert status.startswith(b"HTTP/1.1 413")
        assert sock.recv(10) == b""


def test_garbage_is_400(echo: Instance) -> None:
    with _connect(echo) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, _ = _read_responses(sock, 1)[0]
    assert status.startswith(b"HTTP/1.1 400")
    assert echo.request("GET", "/ping").status == 200


def test_large_response(echo: Instance) -> None:
    body = bytes(range(256)) * 3000
    reply = echo.invoke(body, content_type="application/octet-stream")
    assert (reply.status, reply.body) == (200, body)


def test_head_ping_has_no_body(echo: Instance) -> None:
    """A keep-alive client must not read a HEAD answer's body as the start of its next response."""
    with _connect(echo) as sock:
        sock.sendall(b"HEAD /ping HTTP/1.1\r\n\r\nHEAD /ping HTTP/1.1\r\n\r\nGET /ping HTTP/1.1\r\n\r\n")
        buffer = bytearray()
        heads = [read_response(sock, buffer, head_only=True) for _ in range(2)]
        got = read_response(sock, buffer)
    assert got.body == b'{"status": "Healthy"}'
    assert [(h.status, int(h.headers[b"content-length"])) for h in heads] == [(200, len(got.body))] * 2
