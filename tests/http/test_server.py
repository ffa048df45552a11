"""The HTTP/1.1 server under the front door and the instance workers, spoken to byte by byte over TCP."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Iterator, Mapping

import pytest

from moorage.http.responses import Response, json_response
from moorage.http.server import MAX_HEAD_BYTES, MAX_URL_BYTES, HttpServer
from tests.support.raw_http import connect, exchange, read_response, read_rest


def _app(
    method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes
) -> Response | Awaitable[Response]:
    if url == b"/boom":
        raise RuntimeError("a bug with a secret in its message")
    if url == b"/async-boom":
        return _async_boom()
    if url == b"/slow":
        return _slow()
    echoed = {k.decode(): v.decode("latin-1") for k, v in headers.items()}
    return json_response({"method": method.decode(), "headers": echoed, "size": len(body)})


async def _slow() -> Response:
    await asyncio.sleep(0.2)
    return json_response({"slow": True})


async def _async_boom() -> Response:
    raise RuntimeError("an async bug")


def _refusal(url: bytes, status: int, message: str) -> Response:
    return json_response({"__type": "Refused", "message": message}, status)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    http = HttpServer(_app, 1024, refusal=_refusal, prefix_limit=(b"/small", 64))
    server = loop.run_until_complete(loop.create_server(http, "127.0.0.1", 0))
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    server.close()
    loop.run_until_complete(server.wait_closed())
    loop.close()


def test_head_answers_the_get_head_without_a_body(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n" * 2 + b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        buffer = bytearray()
        heads = [read_response(sock, buffer, head_only=True) for _ in range(2)]
        got = read_response(sock, buffer)
    assert got.json()["method"] == "GET"
    for head in heads:
        assert head.status == 200
        # what GET would send: the method differs by one character in the echoed JSON
        assert int(head.headers[b"content-length"]) == len(got.body) + 1


def test_a_bug_answers_500_in_the_apps_shape_without_its_text(url: str) -> None:
    for path in (b"/boom", b"/async-boom"):
        reply = exchange(url, b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
        assert reply.status == 500
        assert reply.json()["__type"] == "Refused"
        assert b"secret" not in reply.body and b"async bug" not in reply.body


def test_repeated_list_headers_are_joined(url: str) -> None:
    reply = exchange(url, b"GET /x HTTP/1.1\r\nAccept: text/csv\r\nAccept: application/json\r\n\r\n")
    assert reply.json()["headers"]["accept"] == "text/csv, application/json"


@pytest.mark.parametrize(
    "name", [b"X-Amz-Target", b"Content-Type", b"Authorization", b"X-Amzn-SageMaker-Custom-Attributes"]
)
def test_repeated_single_headers_are_refused(url: str, name: bytes) -> None:
    request = b"POST /x HTTP/1.1\r\n%s: a\r\n%s: b\r\nContent-Length: 0\r\n\r\n" % (name, name)
    with connect(url) as sock:
        sock.sendall(request)
        reply = read_response(sock, bytearray())
        assert read_rest(sock) == b""  # and the connection is closed
    assert reply.status == 400
    assert reply.json()["__type"] == "Refused" and "repeats" in reply.json()["message"]


def test_a_header_that_never_ends_is_431(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * (MAX_HEAD_BYTES + 1024))
        reply = read_response(sock, bytearray())
        assert read_rest(sock) == b""
    assert reply.status == 431 and reply.json()["__type"] == "Refused"


def test_many_headers_over_the_limit_are_431(url: str) -> None:
    lines = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(MAX_HEAD_BYTES // 1000 + 2))
    reply = exchange(url, b"GET /x HTTP/1.1\r\n" + lines + b"\r\n")
    assert reply.status == 431


def test_a_url_over_the_limit_is_414(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(b"GET /" + b"a" * (MAX_URL_BYTES + 10))  # not even finished
        reply = read_response(sock, bytearray())
    assert reply.status == 414 and reply.json()["__type"] == "Refused"


def test_body_limits_are_per_url(url: str) -> None:
    small = exchange(url, b"POST /small HTTP/1.1\r\nContent-Length: 65\r\n\r\n" + b"x" * 65)
    other = exchange(url, b"POST /other HTTP/1.1\r\nContent-Length: 65\r\n\r\n" + b"x" * 65)
    assert small.status == 413 and small.json()["__type"] == "Refused"
    assert other.status == 200 and other.json()["size"] == 65


def test_a_large_head_split_over_many_packets_is_still_served(url: str) -> None:
    """The head limit counts bytes of one request's head, not bytes of the connection."""
    with connect(url) as sock:
        buffer = bytearray()
        for _ in range(5):  # 5 requests of ~40 KiB heads each: over the limit only if summed
            head = b"GET /x HTTP/1.1\r\nX-Pad: " + b"p" * (40 * 1024) + b"\r\n\r\n"
            for start in range(0, len(head), 4096):
                sock.sendall(head[start : start + 4096])
            assert read_response(sock, buffer).status == 200


def test_refusal_messages_are_json(url: str) -> None:
    reply = exchange(url, b"NOT HTTP\r\n\r\n")
    assert reply.status == 400
    assert json.loads(reply.body)["__type"] == "Refused"


def test_requests_before_bad_bytes_are_answered_while_one_is_in_flight(url: str) -> None:
    """A slow (async) request, a good one pipelined behind it, then junk: both good ones are answered,
    in order, then the refusal, then the connection closes."""
    with connect(url) as sock:
        sock.sendall(
            b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\nGARBAGE\r\n\r\n"
        )
        buffer = bytearray()
        replies = [read_response(sock, buffer) for _ in range(3)]
        assert read_rest(sock) == b""
    assert [r.status for r in replies] == [200, 200, 400]
    assert replies[0].json()["slow"] is True
    assert replies[1].json()["method"] == "GET"
    assert replies[2].json()["__type"] == "Refused"
    assert b"close" not in replies[0].headers.get(b"connection", b"")
    assert replies[2].headers[b"connection"] == b"close"


def test_a_refused_header_behind_an_in_flight_request_is_answered_after_it(url: str) -> None:
    with connect(url) as sock:
        sock.sendall(
            b"GET /slow HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nX-Amz-Target: a\r\nX-Amz-Target: b\r\n\r\n"
        )
        buffer = bytearray()
        first, second = read_response(sock, buffer), read_response(sock, buffer)
        assert read_rest(sock) == b""
    assert (first.status, second.status) == (200, 400)
    assert "repeats" in second.json()["message"]
