"""A store whose answer ends when it closes the connection (no Content-Length, not chunked: Go's
net/http answers a request it cannot parse that way), behind the pass-through: the answer is passed
on complete, and a request pipelined behind it waits for it, then is refused (never two answers at
once on one connection)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest

from moorage.http.responses import Response, text_response
from moorage.http.server import HttpServer, StreamHandler
from moorage.s3store.passthrough import S3PassThrough, Store

CLOSE_DELIMITED = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n400 Bad Request"
)


async def _store(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(CLOSE_DELIMITED)
    await writer.drain()
    writer.close()


@pytest.fixture
async def port() -> AsyncIterator[int]:
    """A front door whose S3 requests go to the close-delimited store above."""
    store = await asyncio.start_server(_store, "127.0.0.1", 0)
    address = store.sockets[0].getsockname()[:2]
    passthrough = S3PassThrough(Store(address=lambda: address, why_down=lambda: None), "123456789012")

    def app(method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes) -> Response:
        return text_response("not S3", 200)

    def streams(method: bytes, url: bytes, headers: Mapping[bytes, bytes]) -> StreamHandler:
        return passthrough.handler(method, url, headers)

    front = await asyncio.get_running_loop().create_server(
        HttpServer(app, 1024, streams=streams), "127.0.0.1", 0
    )
    try:
        yield front.sockets[0].getsockname()[1]
    finally:
        front.close()
        store.close()
        passthrough.close()


async def _answer_head(port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 400") and b"chunked" in head.lower()
    return reader, writer, head


async def test_a_body_ended_by_the_stores_close_is_passed_on_complete(port: int) -> None:
    reader, writer, _ = await _answer_head(port, b"GET /bucket/% HTTP/1.1\r\nHost: x\r\n\r\n")
    # the whole body, then the chunked terminator: the client sees a complete answer, not a cut one
    body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
    assert body == b"f\r\n400 Bad Request\r\n0\r\n\r\n"
    writer.close()


async def test_a_request_pipelined_behind_a_streamed_one_is_refused_after_its_answer(port: int) -> None:
    request = b"GET /bucket/% HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    reader, writer, _ = await _answer_head(port, request)
    body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
    assert body == b"f\r\n400 Bad Request\r\n0\r\n\r\n"
    rest = await asyncio.wait_for(reader.read(), 5)  # up to the close
    assert rest.startswith(b"HTTP/1.1 400") and b"cannot be pipelined" in rest
    writer.close()
