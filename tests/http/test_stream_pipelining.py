"""A request pipelined in the same read behind a streamed (S3) request: the streamed answer goes out
whole, then the pipelined request is refused and the connection closes (never two answers at once)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

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


async def test_a_request_pipelined_behind_a_streamed_one_is_refused_after_its_answer() -> None:
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
    port = front.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /bucket/% HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 400") and b"chunked" in head.lower()
        body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        assert body == b"f\r\n400 Bad Request\r\n0\r\n\r\n"
        rest = await asyncio.wait_for(reader.read(), 5)  # up to the close
        assert rest.startswith(b"HTTP/1.1 400") and b"cannot be pipelined" in rest
        writer.close()
    finally:
        front.close()
        store.close()
        passthrough.close()
