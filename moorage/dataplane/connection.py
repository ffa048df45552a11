"""A minimal HTTP/1.1 keep-alive client for one instance worker socket.

A general-purpose HTTP client costs more CPU per request than many models do, so the hot path uses an
asyncio Protocol with httptools' C parser, reuses connections and passes bodies through untouched."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools


class WorkerUnavailable(Exception):
    """The worker socket refused or dropped the connection before a request was written: safe to retry."""


class WorkerLost(Exception):
    """The connection dropped after the request was written: the worker died or was killed mid-request."""


@dataclass(slots=True)
class WorkerResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Connection(asyncio.Protocol):
    __slots__ = ("_body", "_headers", "_parser", "closed", "keep_alive", "transport", "waiter")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[WorkerResponse] | None = None
        self.closed = False
        self.keep_alive = True
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(WorkerLost(f"malformed response from the instance: {exc}"))
            self.close()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self._parser.should_keep_alive()
        response = WorkerResponse(self._parser.get_status_code(), self._headers, b"".join(self._body))
        self._headers, self._body = [], []
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(WorkerLost("the instance closed the connection before answering"))

    def _fail(self, exc: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _on_timeout(waiter: asyncio.Future[WorkerResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class WorkerClient:
    """Pooled connections to one worker; `outstanding` feeds least-outstanding-requests routing."""

    __slots__ = ("_idle", "max_idle", "outstanding", "socket_path")

    def __init__(self, socket_path: str, max_idle: int = 64) -> None:
        self.socket_path = socket_path
        self.max_idle = max_idle
        self.outstanding = 0
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_unix_connection(_Connection, self.socket_path)
        except OSError as exc:
            raise WorkerUnavailable(f"cannot connect to {self.socket_path}: {exc.strerror}") from exc
        return conn

    async def request(self, raw: bytes, timeout: float) -> WorkerResponse:
        """Send one fully-encoded HTTP/1.1 request and wait for its response.

        Raises WorkerUnavailable (nothing sent), WorkerLost (sent, no answer) or TimeoutError."""
        conn = None
        while self._idle:
            candidate = self._idle.pop()
            if not candidate.closed:
                conn = candidate
                break
        if conn is None:
            conn = await self._connect()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[WorkerResponse] = loop.create_future()
        conn.waiter = waiter
        assert conn.transport is not None
        conn.transport.write(raw)
        timer = loop.call_later(timeout, _on_timeout, waiter)
        try:
            response = await waiter
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
        if conn.keep_alive and not conn.closed and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return response

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
