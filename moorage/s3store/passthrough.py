"""S3 requests on the front door's port, passed through to the S3 store as their bytes arrive.

The client's request goes to the store unchanged (its Host and signature included, so a store that
checks signatures sees what the client signed) except for what only this hop may decide: framing,
`Expect` (the front door already answered 100-continue), and the server-side-encryption headers
(see `_SSE_HEADERS`). Bodies stream both ways with back-pressure, so a multi-gigabyte upload or
download never sits in the server's memory. The store's answer goes back as it came, re-framed.

Errors this hop produces itself (store down, store gone mid-request, bucket owner mismatch, body
hash mismatch) are S3's XML errors, so boto3 raises the usual ClientError and retries what S3 says
is retryable (503 `ServiceUnavailable`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

from moorage.api.s3xml import s3_error
from moorage.http.responses import Response, render_head, status_line
from moorage.http.server import StreamHandler, StreamSink, announces_body
from moorage.s3store.resign import CannotResign

log = logging.getLogger("moorage.s3")

# Headers that describe one hop, not the request: never forwarded as they came.
_HOP = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"expect", b"proxy-connection", b"upgrade", b"te"}
)
# Server-side encryption with KMS keys asks the store to encrypt with a key service that does not
# exist here; SeaweedFS answers such requests with a 500. They are accepted and echoed as AWS
# echoes them, and docs/s3.md says plainly that data at rest is not KMS-encrypted.
_SSE_HEADERS = (
    b"x-amz-server-side-encryption",
    b"x-amz-server-side-encryption-aws-kms-key-id",
    b"x-amz-server-side-encryption-context",
    b"x-amz-server-side-encryption-bucket-key-enabled",
)
_KMS = b"aws:kms"
_OWNER = b"x-amz-expected-bucket-owner"
_MAX_IDLE = 16  # pooled keep-alive connections per store address
_IDLE_SECONDS = 15.0  # a pooled connection older than this is closed, before the store would
_ANSWER_SECONDS = 120.0  # from the end of the request body to the store's first response byte
_CONNECT_SECONDS = 10.0
# a streamed exchange with no bytes moving either way for this long is given up (a client or store
# that stalls without closing must not hold two sockets forever)
_STALL_SECONDS = 300.0


Address = tuple[str, int]
# method, target, headers -> the target and headers that go to the store instead (see resign.py)
Resign = Callable[[bytes, bytes, Mapping[bytes, bytes]], tuple[bytes, dict[bytes, bytes]]]


@dataclass(frozen=True)
class Store:
    """Where S3 requests go: `address()` is None while the store is down, and `why_down()` says why."""

    address: Callable[[], Address | None]
    why_down: Callable[[], str | None]
    tls: ssl.SSLContext | None = None
    # the server's own store (embedded): KMS encryption and bucket owners are answered here (a store
    # of one's own choosing gets those headers as signed, and decides)
    own: bool = False
    # the embedded store's filer, for ListBuckets (buckets.py); None: ListBuckets goes to the store
    filer: Callable[[], Address | None] | None = None
    # an external store the server signs for with its own credentials (resign.py); None: as sent
    resign: Resign | None = None


def external_store(url: str, resign: Resign | None = None) -> Store:
    """A store named by URL (http or https; host and port as written); `resign` signs each request
    for it with the server's credentials (resign.py), else requests go as the clients signed them."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--s3-endpoint {url!r} is not an http:// or https:// URL")
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    address = (parts.hostname, parts.port or (443 if tls else 80))
    return Store(address=lambda: address, why_down=lambda: None, tls=tls, resign=resign)


_REFUSAL_CODES = {
    408: "RequestTimeout",
    414: "KeyTooLongError",
    431: "RequestHeaderSectionTooLarge",
    500: "InternalError",
}


def s3_refusal(status: int, message: str, resource: bytes, code: str | None = None) -> Response:
    """An S3 error for a request refused before it could be passed on (by the HTTP server:
    unparseable, head too large, too slow; or by this hop), in S3's XML so the S3 client reads
    the code."""
    code = code or _REFUSAL_CODES.get(status, "InvalidRequest")
    return s3_error(status, code, message, resource=resource[:1024])


def error_response(
    status: int, code: str, message: str, resource: bytes = b"", head_only: bool = False
) -> bytes:
    """The bytes of S3's XML error as a whole response on a connection that closes after it."""
    response = s3_error(status, code, message, resource=resource[:1024])
    head = render_head(response, close=True)
    return head if head_only else head + response.body


class Answering:
    """A stream handler that answers by itself and ignores the body: what is left to define is
    `start` and `end` (the no-ops below are the rest of StreamHandler)."""

    def body(self, chunk: bytes) -> None:
        return None

    def end(self) -> None:
        return None

    def pause_writing(self) -> None:
        return None

    def resume_writing(self) -> None:
        return None

    def abort(self) -> None:
        return None


class Refusal(Answering):
    """A streamed request answered with an S3 error without reaching the store (S3 turned off, a
    signature or bucket owner refused, the store down). A request that announces no body is answered
    once it has arrived, and the connection stays open; one with a body is answered at once and the
    connection closes, so the body is never read."""

    def __init__(self, response: Response, method: bytes, headers: Mapping[bytes, bytes]) -> None:
        self._response = response
        self._head_only = method == b"HEAD"
        self._bodiless = not announces_body(headers)
        self._sink: StreamSink | None = None

    @classmethod
    def error(
        cls, status: int, code: str, message: str, method: bytes, url: bytes, headers: Mapping[bytes, bytes]
    ) -> Refusal:
        return cls(s3_refusal(status, message, url.partition(b"?")[0], code), method, headers)

    def start(self, sink: StreamSink) -> None:
        self._sink = sink
        if not self._bodiless:
            self._answer(keep_alive=False)

    def end(self) -> None:
        if self._bodiless:
            self._answer(keep_alive=True)

    def _answer(self, keep_alive: bool) -> None:
        if self._sink is None:
            return
        response = self._response
        head = render_head(response, close=not keep_alive)
        self._sink.write(head if self._head_only else head + response.body)
        self._sink.finish(keep_alive=keep_alive)
        self._sink = None

    def abort(self) -> None:
        self._sink = None


class S3PassThrough:
    """Makes a stream handler per S3 request, over a small pool of keep-alive store connections."""

    def __init__(self, store: Store, account: str) -> None:
        self.store = store
        self.account = account.encode()
        self._idle: dict[Address, list[_StoreConnection]] = {}

    def handler(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], payload_sha256: str | None = None
    ) -> StreamHandler:
        """`payload_sha256`: the body hash the client signed (checked before the body's last bytes
        are passed on; on a mismatch the store never sees a complete body)."""
        path = url.partition(b"?")[0]
        owner = headers.get(_OWNER)
        if self.store.own and owner is not None and owner.strip() != self.account:
            message = "Access Denied: the bucket is not owned by the account in x-amz-expected-bucket-owner."
            return Refusal.error(403, "AccessDenied", message, method, url, headers)
        filer = self.store.filer
        if filer is not None and method == b"GET" and path == b"/":
            from moorage.s3store.buckets import ListBuckets

            return ListBuckets(filer, self.account.decode(), url.partition(b"?")[2])
        address = self.store.address()
        if address is None:
            why = self.store.why_down() or "the S3 store is not available"
            return Refusal.error(503, "ServiceUnavailable", f"{why}. Retry shortly.", method, url, headers)
        target, sent = url, headers
        if self.store.resign is not None:
            try:
                target, sent = self.store.resign(
                    method, url, {name: value for name, value in headers.items() if name not in _HOP}
                )
            except CannotResign as exc:
                return Refusal.error(501, "NotImplemented", str(exc), method, url, headers)
        return _Exchange(self, address, method, url, headers, payload_sha256, (target, sent))

    def take(self, address: Address) -> _StoreConnection | None:
        idle = self._idle.get(address)
        loop = asyncio.get_running_loop()
        while idle:
            connection = idle.pop()
            if not connection.closing() and loop.time() - connection.idle_since < _IDLE_SECONDS:
                return connection
            connection.close()
        return None

    def give_back(self, address: Address, connection: _StoreConnection) -> None:
        idle = self._idle.setdefault(address, [])
        if len(idle) >= _MAX_IDLE or connection.closing():
            connection.close()
            return
        connection.resume_reading()  # its last client may have left it paused (back-pressure)
        connection.idle_since = asyncio.get_running_loop().time()
        idle.append(connection)

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _request_head(
    method: bytes, url: bytes, headers: Mapping[bytes, bytes], chunked: bool, own: bool
) -> bytes:
    lines = [b"%s %s HTTP/1.1\r\n" % (method, url)]
    kms = own and headers.get(_SSE_HEADERS[0]) == _KMS
    for name, value in headers.items():
        if name in _HOP or (own and name == _OWNER) or (kms and name in _SSE_HEADERS):
            continue
        lines.append(b"%s: %s\r\n" % (name, value))
    if chunked:
        lines.append(b"transfer-encoding: chunked\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


class _Exchange:
    """One S3 request and its response: client → store as the body arrives, store → client likewise."""

    def __init__(
        self,
        proxy: S3PassThrough,
        address: Address,
        method: bytes,
        url: bytes,
        headers: Mapping[bytes, bytes],
        payload_sha256: str | None,
        forwarded: tuple[bytes, Mapping[bytes, bytes]],
    ) -> None:
        self.proxy = proxy
        self.address = address
        self.method = method
        self.url = url
        self.headers = headers
        self.forwarded = forwarded  # the target and headers the store gets (re-signed, or as sent)
        client_chunked = b"content-length" not in headers and b"chunked" in headers.get(
            b"transfer-encoding", b""
        )
        # To the embedded store, a body whose hash is still to be checked goes chunked: if the check
        # fails, the connection closes before the last chunk, and a chunked body without it is
        # incomplete beyond doubt (with Content-Length, SeaweedFS stores what it got).
        self.chunked = client_chunked or (proxy.store.own and payload_sha256 is not None)
        kms = proxy.store.own and headers.get(_SSE_HEADERS[0]) == _KMS
        self._echo = [(name, headers[name]) for name in _SSE_HEADERS if kms and name in headers]
        self._hash = hashlib.sha256() if payload_sha256 is not None else None
        self._expected = payload_sha256
        # with a hash to check: the latest chunk, sent once the next one (or the end) has come
        self._held = b""
        self.sink: StreamSink | None = None
        self.connection: _StoreConnection | None = None
        self._outbox: list[bytes] = []  # what was sent before the store connection opened
        self._body_done = False
        self._answering = False  # the store's response has begun
        self._response_chunked = False
        self._until_close = False  # the store's response body ends when it closes the connection
        self._no_body = False
        self._done = False
        self._timer: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._moved = 0.0  # when bytes last moved either way (see _watch)
        self._watcher: asyncio.TimerHandle | None = None

    # from the client side (StreamHandler)

    def start(self, sink: StreamSink) -> None:
        self.sink = sink
        self._moved = asyncio.get_running_loop().time()
        self._watch()
        target, headers = self.forwarded
        if self.chunked:
            headers = {name: value for name, value in headers.items() if name != b"content-length"}
        head = _request_head(self.method, target, headers, self.chunked, self.proxy.store.own)
        connection = self.proxy.take(self.address)
        if connection is not None:
            connection.begin(self)
            connection.send(head)
            return
        self._outbox.append(head)
        sink.pause_reading()  # until the connection is open
        self._connecting = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        host, port = self.address
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(_StoreConnection, host, port, ssl=self.proxy.store.tls),
                _CONNECT_SECONDS,
            )
        except (OSError, TimeoutError) as exc:
            why = getattr(exc, "strerror", None) or str(exc) or f"no answer within {_CONNECT_SECONDS:g} s"
            self._fail(f"Cannot reach the S3 store at {host}:{port} ({why})")
            return
        if self._done:  # the client went away meanwhile
            connection.close()
            return
        connection.begin(self)
        outbox, self._outbox = self._outbox, []
        connection.send(b"".join(outbox))
        if self.sink is not None and not self._body_done:
            self.sink.resume_reading()
        if self._body_done:
            self._arm()

    def body(self, chunk: bytes) -> None:
        self._moved = asyncio.get_running_loop().time()
        if self._hash is not None:
            self._hash.update(chunk)
            chunk, self._held = self._held, chunk
            if not chunk:
                return
        self._forward(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked else chunk)

    def end(self) -> None:
        self._body_done = True
        if self._hash is not None:
            digest = self._hash.hexdigest()
            if self._expected is None or not hmac.compare_digest(digest, self._expected):
                message = "The provided 'x-amz-content-sha256' header does not match what was computed."
                self._fail(message, status=400, code="XAmzContentSHA256Mismatch", retryable=False)
                return
            if self._held:
                held, self._held = self._held, b""
                self._forward(b"%x\r\n%s\r\n" % (len(held), held) if self.chunked else held)
        if self.chunked:
            self._forward(b"0\r\n\r\n")
        if self.connection is not None:
            self._arm()

    def pause_writing(self) -> None:
        if self.connection is not None:
            self.connection.pause_reading()

    def resume_writing(self) -> None:
        if self.connection is not None:
            self.connection.resume_reading()

    def abort(self) -> None:
        """The client went away: the store connection is dropped (its state is unknown)."""
        self._done = True
        self._disarm()
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _forward(self, data: bytes) -> None:
        if self.connection is not None:
            self.connection.send(data)
        else:
            self._outbox.append(data)

    def _arm(self) -> None:
        if self._timer is None and not self._answering and not self._done:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(_ANSWER_SECONDS, self._too_slow)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._done and self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def _watch(self) -> None:
        """Every little while: give up an exchange in which nothing has moved for _STALL_SECONDS."""
        if self._done:
            return
        loop = asyncio.get_running_loop()
        if loop.time() - self._moved > _STALL_SECONDS:
            self._watcher = None
            if self._answering:  # part of the answer went out: only hanging up is honest
                self.abort()
                if self.sink is not None:
                    self.sink.finish(keep_alive=False)
            else:
                self._fail(f"Nothing moved on this S3 request for {_STALL_SECONDS:g} s")
            return
        self._watcher = loop.call_later(_STALL_SECONDS / 4, self._watch)

    def _too_slow(self) -> None:
        self._timer = None
        self._fail(f"The S3 store did not answer within {_ANSWER_SECONDS:g} s")

    # from the store side (_StoreConnection)

    def response_head(self, status: int, headers: list[tuple[bytes, bytes]], version: str) -> None:
        self._answering = True
        self._disarm()
        lines = [status_line(status)]
        length = chunked = False
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                length = True
            elif lower in _HOP:
                chunked = chunked or (lower == b"transfer-encoding" and b"chunked" in value.lower())
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        if status < 300:
            present = {name.lower() for name, _ in headers}
            lines += [b"%s: %s\r\n" % (name, value) for name, value in self._echo if name not in present]
        self._no_body = self.method == b"HEAD" or status in (204, 304) or 100 <= status < 200
        if not length and not self._no_body:
            self._until_close = not chunked
            self._response_chunked = True
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(b"\r\n")
        if self.sink is not None:
            self.sink.write(b"".join(lines))
        if self.method == b"HEAD":  # no body follows, whatever Content-Length says
            self._complete(reusable=self._body_done)

    def response_body(self, chunk: bytes) -> None:
        self._moved = asyncio.get_running_loop().time()
        if self.sink is not None and not self._done:
            self.sink.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if self._response_chunked else chunk)

    def response_end(self, reusable: bool) -> None:
        if self._done:
            return
        if self._response_chunked and self.sink is not None:
            self.sink.write(b"0\r\n\r\n")
        self._complete(reusable=reusable and self._body_done)

    def store_lost(self) -> None:
        """The store connection closed before its response was complete."""
        self.connection = None
        if self._done:
            return
        if self._answering and self._until_close:  # that close was the end of the body
            self.response_end(reusable=False)
            return
        if self._answering:  # part of the response has gone out: only hanging up is honest
            self._done = True
            if self.sink is not None:
                self.sink.finish(keep_alive=False)
            return
        why = self.proxy.store.why_down()
        self._fail(f"The S3 store closed the connection{': ' + why if why else ''}")

    def _complete(self, reusable: bool) -> None:
        self._done = True
        self._disarm()
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.end()
            if reusable:
                self.proxy.give_back(self.address, connection)
            else:
                connection.close()
        if self.sink is not None:
            self.sink.finish(keep_alive=True)

    def _fail(
        self, message: str, status: int = 503, code: str = "ServiceUnavailable", retryable: bool = True
    ) -> None:
        if self._done:
            return
        self._done = True
        self._disarm()
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if retryable:
            log.warning(
                "S3 request %s %s failed: %s", self.method.decode(), self.url[:200].decode("latin-1"), message
            )
            # the embedded store's output is a log of its own (`moorage logs` shows it by that name)
            more = (
                "the server log and `moorage logs s3-store` say"
                if self.proxy.store.own
                else "the server log says"
            )
            message += f". Retry shortly; {more} more."
        if self.sink is not None:
            if not self._answering:
                # the status says it on a HEAD: no body follows a HEAD answer
                resource = self.url.partition(b"?")[0]
                self.sink.write(error_response(status, code, message, resource, self.method == b"HEAD"))
            self.sink.finish(keep_alive=False)


class _StoreConnection(asyncio.Protocol):
    """One keep-alive connection to the store; carries one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.idle_since = 0.0
        self._headers: list[tuple[bytes, bytes]] = []

    def begin(self, exchange: _Exchange) -> None:
        self.exchange = exchange
        exchange.connection = self
        self._headers = []
        self.parser = httptools.HttpResponseParser(self)
        self.resume_reading()

    def end(self) -> None:
        self.exchange = None
        self.parser = None

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self.exchange = None
        if self.transport is not None:
            self.transport.close()

    def pause_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        exchange, self.exchange = self.exchange, None
        if exchange is not None:
            exchange.store_lost()

    def pause_writing(self) -> None:
        if self.exchange is not None and self.exchange.sink is not None:
            self.exchange.sink.pause_reading()

    def resume_writing(self) -> None:
        exchange = self.exchange
        if exchange is not None and exchange.sink is not None and not exchange._body_done:
            exchange.sink.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # bytes with no request outstanding: the connection is not usable
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            exchange = self.exchange
            self.close()
            if exchange is not None:
                exchange.store_lost()

    # httptools

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.exchange is not None and self.parser is not None:
            self.exchange.response_head(
                self.parser.get_status_code(), self._headers, self.parser.get_http_version()
            )

    def on_body(self, body: bytes) -> None:
        if self.exchange is not None:
            self.exchange.response_body(body)

    def on_message_complete(self) -> None:
        exchange = self.exchange
        if exchange is not None and self.parser is not None:
            exchange.response_end(self.parser.should_keep_alive())
