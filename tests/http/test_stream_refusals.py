"""Streamed (S3) requests at the HTTP server's edges: a body that turns out to be bad HTTP (the handler
is told to give up, the client gets the refusal at once), and bodiless streamed requests pipelined
behind others (answered in their turn, before any refusal owed to bytes after them)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from moorage.http.responses import Response, text_response
from moorage.http.server import HttpServer, StreamHandler, StreamSink
from moorage.s3store.passthrough import Answering


class _Recorder(Answering):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.aborted = asyncio.Event()

    def start(self, sink: StreamSink) -> None:
        self.sink = sink

    def body(self, chunk: bytes) -> None:
        self.chunks.append(chunk)

    def abort(self) -> None:
        self.aborted.set()


class _AnswerAtEnd(_Recorder):
    """A bodiless streamed request answered once it has arrived (as an S3 refusal is)."""

    def end(self) -> None:
        self.sink.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nstream")
        self.sink.finish(keep_alive=True)


async def _slow() -> Response:
    await asyncio.sleep(0.1)
    return text_response("slow", 200)


def _app(method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes) -> Any:
    return _slow() if url == b"/endpoints/slow" else text_response("buffered", 200)


def _answer_at_end(method: bytes, url: bytes, headers: Mapping[bytes, bytes]) -> StreamHandler | None:
    return _AnswerAtEnd() if url == b"/bucket/key" else None


@asynccontextmanager
async def _connection(
    streams: Any = _answer_at_end,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    http = HttpServer(_app, 1024, prefix_limit=(b"/endpoints/", 1024), streams=streams)
    server = await asyncio.get_running_loop().create_server(http, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        yield reader, writer
    finally:
        writer.close()
        server.close()


async def test_bad_chunk_framing_mid_body_aborts_the_stream_and_answers_400() -> None:
    recorder = _Recorder()
    async with _connection(lambda method, url, headers: recorder) as (reader, writer):
        writer.write(
            b"PUT /bucket/key HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(b"zz-not-a-size\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)  # the refusal, then the close
        assert answer.startswith(b"HTTP/1.1 400")
        await asyncio.wait_for(recorder.aborted.wait(), 5)
        assert recorder.chunks == [b"hello"]


async def test_a_bodiless_streamed_request_pipelined_behind_a_slow_one_waits_its_turn() -> None:
    async with _connection() as (reader, writer):
        writer.write(
            b"GET /endpoints/slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /bucket/key HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        bodies = []
        for _ in range(3):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            bodies.append(await reader.readexactly(length))
        assert bodies == [b"slow", b"stream", b"buffered"]


async def test_unparseable_bytes_after_a_waiting_streamed_request_are_refused_last() -> None:
    """Found by fuzzing: the refusal of bytes that cannot be parsed went out before the requests
    pipelined ahead of them that were still waiting behind a streamed one."""
    async with _connection() as (reader, writer):
        writer.write(
            b"GET /endpoints/slow HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /bucket/key HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GARBAGE\r\n\r\n"
        )
        answer = await asyncio.wait_for(reader.read(), 5)  # everything, up to the close
        assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"200", b"200", b"400"]
        assert answer.index(b"slow") < answer.index(b"stream") < answer.index(b"buffered")
