"""Tiny HTTP/1.1 servers on Unix sockets that stand in for instance workers.

Each server answers through a handler, so a test picks the behaviour it needs: answer, answer with an
error, never answer, or drop the connection after reading the request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType


@dataclass(frozen=True)
class Request:
    """One request as the server read it."""

    head: bytes
    body: bytes

    @property
    def line(self) -> bytes:
        return self.head.split(b"\r\n", 1)[0]

    def header(self, name: bytes) -> bytes | None:
        for line in self.head.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower():
                return value.strip()
        return None


@dataclass(frozen=True)
class Answer:
    """Raw response bytes; `close` drops the connection after writing them."""

    raw: bytes
    close: bool = False


# None: close the connection without answering.
Handler = Callable[[Request], Awaitable[Answer | None]]


def response(
    status: int, body: bytes = b"", headers: tuple[tuple[bytes, bytes], ...] = (), *, close: bool = False
) -> Answer:
    """A Content-Length response; `close` also sends `connection: close`."""
    head = [b"HTTP/1.1 %d X" % status, b"content-length: %d" % len(body)]
    head += [name + b": " + value for name, value in headers]
    if close:
        head.append(b"connection: close")
    return Answer(b"\r\n".join(head) + b"\r\n\r\n" + body, close=close)


def answering(status: int = 200, body: bytes | None = None) -> Handler:
    """Answers every request with `status` and `body` (the request body when None)."""

    async def handle(request: Request) -> Answer:
        return response(status, request.body if body is None else body, ((b"x-seen", request.line),))

    return handle


async def hanging(request: Request) -> Answer:
    """Reads the request and never answers."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def dropping(request: Request) -> None:
    """Reads the request, then closes the connection without a word."""
    return None


class TinyServer:
    """`async with TinyServer(path, handler) as server:` listens on `path` until the block ends."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.connections = 0
        self.requests: list[Request] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TinyServer:
        self._server = await asyncio.start_unix_server(self._serve, path=self.path)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request = Request(head[:-4], b"")
                length = int(request.header(b"content-length") or b"0")
                request = Request(request.head, await reader.readexactly(length))
                self.requests.append(request)
                answer = await self.handler(request)
                if answer is None:
                    return
                writer.write(answer.raw)
                await writer.drain()
                if answer.close:
                    return
        finally:
            self._tasks.discard(task)
            writer.close()
