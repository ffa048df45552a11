"""A minimal HTTP/1.1 keep-alive client for one instance worker socket (Unix, or TCP for an image that
runs its own server: the address ``tcp://127.0.0.1:PORT``).

A general-purpose HTTP client costs more CPU per request than many models do, so the hot path uses an
asyncio Protocol with httptools' C parser, reuses connections, passes bodies through untouched and
hands each response to a receiver callback (no task or coroutine per request)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

import httptools

TCP_PREFIX = "tcp://"


class WorkerUnavailable(Exception):
    """The worker socket refused the connection: nothing was sent, so another worker may take it."""


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


class Receiver(Protocol):
    """Gets exactly one of the two calls for the request it was attached to."""

    def on_response(self, response: WorkerResponse) -> None: ...

    def on_failure(self, exc: Exception) -> None: ...


class Connection(asyncio.Protocol):
    __slots__ = ("_body", "_headers", "_parser", "closed", "keep_alive", "receiver", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.receiver: Receiver | None = None
        self.closed = False
        self.keep_alive = True
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def send(self, raw: bytes, receiver: Receiver) -> None:
        self.receiver = receiver
        assert self.transport is not None
        self.transport.write(raw)

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
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        response = WorkerResponse(self._parser.get_status_code(), self._headers, body)
        self._headers, self._body = [], []
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.on_response(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(WorkerLost("the instance closed the connection before answering"))

    def _fail(self, exc: Exception) -> None:
        receiver, self.receiver = self.receiver, None
        if receiver is not None:
            receiver.on_failure(exc)

    def close(self) -> None:
        """Close without telling the receiver (its request has been given up)."""
        self.receiver = None
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _FutureReceiver:
    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[WorkerResponse]) -> None:
        self.future = future

    def on_response(self, response: WorkerResponse) -> None:
        if not self.future.done():
            self.future.set_result(response)

    def on_failure(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


class WorkerClient:
    """Pooled connections to one worker; `outstanding` feeds least-outstanding-requests routing."""

    __slots__ = ("_idle", "_tcp", "address", "max_idle", "outstanding", "replacing")

    def __init__(self, address: str, max_idle: int = 64) -> None:
        self.address = address
        self._tcp = tcp_address(address)  # decided once: only how a connection is opened differs
        self.max_idle = max_idle
        self.outstanding = 0
        self.replacing = False  # its worker was killed and has not exited yet: connect nowhere
        self._idle: list[Connection] = []

    def replaced(self) -> None:
        self.replacing = False

    def take_idle(self) -> Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: Connection) -> None:
        """Keep a connection whose exchange finished cleanly for the next request."""
        if conn.keep_alive and not conn.closed and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    async def connect(self) -> Connection:
        if self.replacing:
            raise WorkerUnavailable(f"the worker on {self.address} is being replaced")
        loop = asyncio.get_running_loop()
        try:
            if self._tcp is None:
                _, conn = await loop.create_unix_connection(Connection, self.address)
            else:
                _, conn = await loop.create_connection(Connection, *self._tcp)
        except OSError as exc:
            raise WorkerUnavailable(f"cannot connect to {self.address}: {exc.strerror}") from exc
        return conn

    async def request(self, raw: bytes, timeout: float) -> WorkerResponse:
        """One request as a coroutine (health checks and tests; the invocation path uses receivers).

        Raises WorkerUnavailable (nothing sent), WorkerLost (sent, no answer) or TimeoutError."""
        conn = self.take_idle() or await self.connect()
        future: asyncio.Future[WorkerResponse] = asyncio.get_running_loop().create_future()
        conn.send(raw, _FutureReceiver(future))
        try:
            response = await asyncio.wait_for(future, timeout)
        except BaseException:
            conn.close()
            raise
        self.release(conn)
        return response

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


def tcp_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a ``tcp://HOST:PORT`` worker address; None for a Unix socket path."""
    if not address.startswith(TCP_PREFIX):
        return None
    host, _, port = address[len(TCP_PREFIX) :].rpartition(":")
    return host, int(port)
