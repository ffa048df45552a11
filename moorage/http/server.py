"""A small HTTP/1.1 keep-alive server on asyncio and httptools (front door and instance workers).

Why not uvicorn: a synchronous handler is parsed, routed and answered within `data_received`, with no
scope dicts, receive/send coroutines or task per request; only handlers that return an awaitable (the
front door's invocations, `async def` model hooks) get one. While that runs the connection stops
reading, so pipelined requests are still answered in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, cast

import httptools

from moorage.http.responses import Response, render_head, text_response

logger = logging.getLogger("moorage.http")

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together; past this: 431
MAX_URL_BYTES = 16 * 1024  # past this: 414
# Headers whose meaning a second copy would change (framing, routing, signing, the runtime's members):
# a request repeating one is refused. Other repeated headers are joined with ", " as RFC 9110 allows.
_SINGLE_HEADERS = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"content-type",
        b"expect",
        b"authorization",
        b"x-amz-target",
        b"x-amz-date",
        b"x-amz-security-token",
        b"x-amz-content-sha256",
    }
)
_SINGLE_PREFIXES = (b"x-amzn-sagemaker-",)
# The 413 for a body over the limit goes out at once, but the connection stays open while the rest
# of the body is read and dropped, so a client that sends the whole body before reading gets the 413
# instead of a broken pipe; past this much more, it is closed at once.
MAX_DISCARD_BYTES = 256 * 1024 * 1024
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_SMALL = 64 * 1024  # below this, head and body go out in one write
# method, URL, headers, body, keep-alive, and the stream handler of a bodiless streamed request that
# was pipelined behind another (started in its turn), else None
_Request = tuple[bytes, bytes, dict[bytes, bytes], bytes, bool, "StreamHandler | None"]


# method, URL, lower-cased headers, body -> a response now, or an awaitable of one
App = Callable[[bytes, bytes, Mapping[bytes, bytes], bytes], Response | Awaitable[Response]]
# URL (as far as it was read), status, message -> the app's own error response for a request the
# server refuses before the app sees it (unparseable, head or body too large, too slow), or for a
# bug the server caught (500)
Refusal = Callable[[bytes, int, str], Response]
# (URL prefix, the largest body a request under it may have); other URLs get max_body_bytes
PrefixLimit = tuple[bytes, int]


class StreamSink(Protocol):
    """What a streamed request's handler writes its response to (the client connection)."""

    def write(self, data: bytes) -> None: ...

    def finish(self, keep_alive: bool) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


class StreamHandler(Protocol):
    """A request whose body and response are passed along as they arrive (the S3 pass-through),
    instead of being read whole first. `start` comes at the end of the head; the handler writes
    the whole response, framing included, to the sink and calls `finish` once it is done."""

    def start(self, sink: StreamSink) -> None: ...

    def body(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...

    def abort(self) -> None: ...


# method, URL, lower-cased headers -> a handler if this request is to be streamed, else None
Streams = Callable[[bytes, bytes, Mapping[bytes, bytes]], StreamHandler | None]


def announces_body(headers: Mapping[bytes, bytes]) -> bool:
    """Whether a request's head announces a body: a non-zero Content-Length, or chunked framing."""
    length = headers.get(b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    return b"transfer-encoding" in headers


class _Abort(Exception):
    """Stops the parser after the connection has been answered and closed."""


class HttpServer:
    """The protocol factory; it also owns the open connections so SIGTERM can drain them."""

    def __init__(
        self,
        app: App,
        max_body_bytes: int,
        refusal: Refusal | None = None,
        prefix_limit: PrefixLimit | None = None,
        streams: Streams | None = None,
    ) -> None:
        self.app = app
        # asked at the end of each head outside `prefix_limit`'s prefix: None, or the request streams
        self.streams = streams
        self.max_body_bytes = max_body_bytes
        self.refusal = refusal  # None: refusals are plain text
        self.prefix_limit = prefix_limit  # None: max_body_bytes for every request
        self.connections: set[HttpProtocol] = set()
        self.draining = False
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> HttpProtocol:
        return HttpProtocol(self)

    def enforce_timeouts(self, idle_seconds: float, request_seconds: float) -> None:
        """Close keep-alive connections idle for `idle_seconds`, and answer 408 to a request whose
        head and body have not arrived within `request_seconds`, so slow or silent clients cannot
        hold connections (and file descriptors) forever. A request being handled is left alone.

        One sweep every few seconds instead of a timer per request keeps the hot path free of it."""
        loop = asyncio.get_running_loop()
        every = max(0.5, min(5.0, idle_seconds / 4, request_seconds / 4))

        def sweep() -> None:
            now = time.monotonic()
            for connection in list(self.connections):
                connection.expire(now, idle_seconds, request_seconds)
            self._sweeper = loop.call_later(every, sweep)

        self._sweeper = loop.call_later(every, sweep)

    async def drain(self, timeout: float) -> None:
        """Closes idle connections now, busy ones after their response, and the rest after `timeout`."""
        self.draining = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.close_if_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for connection in list(self.connections):
            connection.abort()


class HttpProtocol(asyncio.Protocol):
    """One client connection."""

    __slots__ = (
        "_active",
        "_app",
        "_body",
        "_body_size",
        "_deferred",
        "_discard",
        "_final",
        "_head_bytes",
        "_head_only",
        "_head_size",
        "_headers",
        "_keep_alive",
        "_max_body",
        "_parser",
        "_pending",
        "_reading_head",
        "_server",
        "_since",
        "_stream",
        "_stream_body_done",
        "_stream_held",
        "_stream_keep_alive",
        "_task",
        "_transport",
        "_url",
        "_write_paused",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._app = server.app
        self._max_body = server.max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._head_size = 0  # bytes of URL and complete headers parsed
        self._head_bytes = 0  # bytes received since the request began, until its head is complete
        self._reading_head = True
        self._head_only = False  # a HEAD request: the response goes out without its body
        self._discard = False  # answered 413; dropping the rest of the body, then closing
        self._active = False  # between the first byte of a request and its response
        self._task: asyncio.Future[Response] | None = None
        self._pending: deque[_Request] = deque()
        self._final: Response | None = None  # a refusal owed once the requests before it are answered
        self._write_paused = False
        self._stream: StreamHandler | None = None  # the request being streamed (until its response ends)
        self._stream_held = False  # its handler cannot take more body yet
        self._deferred: StreamHandler | None = None  # a bodiless streamed request waiting its turn
        self._stream_keep_alive = True  # whether the streamed request allows keep-alive
        self._stream_body_done = False  # whether the streamed request's body has all arrived
        self._keep_alive = True
        self._since = time.monotonic()  # when the connection last went idle, or its request began

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio subclasses
        self._server.connections.add(self)
        self._since = time.monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        if self._stream is not None:
            stream, self._stream = self._stream, None
            stream.abort()

    def data_received(self, data: bytes) -> None:
        if not self._keep_alive:
            return
        if self._reading_head:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Answered as plain HTTP; nothing after an upgrade request can be parsed.
            self._keep_alive = False
            self.close_if_idle()
        except httptools.HttpParserError as exc:
            if self._keep_alive:  # else a callback has already refused the request (_refuse)
                self._reject(400, f"The request is not valid HTTP/1.1: {exc}.")
            return
        # httptools hands over a header only once it is complete, so an endless one is caught here
        if self._head_bytes > MAX_HEAD_BYTES and self._reading_head and self._keep_alive:
            self._reject(431, f"The request head is larger than {MAX_HEAD_BYTES} bytes.")

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._stream is not None:
            self._stream.pause_writing()
        self._update_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._stream is not None:
            self._stream.resume_writing()
        self._update_reading()

    # httptools callbacks

    def on_message_begin(self) -> None:
        if self._stream is not None:  # pipelined in the same read behind a streamed request still going
            message = "This request cannot be pipelined behind an S3 request; send it alone."
            self._keep_alive = False
            self._final = self._refusal(400, message)  # sent once the streamed response is (finish)
            raise _Abort
        self._active = True
        self._since = time.monotonic()
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._head_size = 0
        self._discard = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if len(self._url) > MAX_URL_BYTES:
            self._refuse(self._refusal(414, f"The request URL is longer than {MAX_URL_BYTES} bytes."))

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        first = self._headers.setdefault(key, value)  # one dict operation when the header is new
        # (CPython shares the empty and one-byte values: such a repeat goes unnoticed, and means
        # nothing different anyway)
        if first is not value:
            self._repeated(key, name, first, value)
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD_BYTES:
            self._refuse(self._refusal(431, f"The request head is larger than {MAX_HEAD_BYTES} bytes."))

    def _repeated(self, key: bytes, name: bytes, first: bytes, value: bytes) -> None:
        if key in _SINGLE_HEADERS or key.startswith(_SINGLE_PREFIXES):
            message = f"The request repeats the {name.decode('latin-1')} header; send it once."
            self._refuse(self._refusal(400, message))
        self._headers[key] = first + b", " + value

    def on_headers_complete(self) -> None:
        self._reading_head = False
        limit = self._server.prefix_limit
        if limit is not None and self._url.startswith(limit[0]):  # a comparison, not a call, per request
            self._max_body = limit[1]
        else:
            self._max_body = self._server.max_body_bytes
            if self._server.streams is not None and self._start_stream():
                return
        length = self._headers.get(b"content-length")
        expects_continue = self._headers.get(b"expect", b"").lower() == b"100-continue"
        if length is not None and length.isdigit() and int(length) > self._max_body:
            if expects_continue:  # the client has not sent the body yet: nothing to drop
                self._refuse(self._too_large())
            self._answer_too_large()
        elif expects_continue and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._stream is not None:
            self._stream.body(body)
            return
        self._body_size += len(body)
        if self._discard:
            if self._body_size > self._max_body + MAX_DISCARD_BYTES:
                self.abort()
                raise _Abort
        elif self._body_size > self._max_body:
            self._answer_too_large()
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._reading_head = True
        self._head_bytes = 0
        if not self._keep_alive:  # a streamed response ended this connection during this read
            raise _Abort
        if self._stream is not None:
            self._stream_body_done = True
            self._stream_keep_alive = self._parser.should_keep_alive()
            self._stream_held = True  # nothing more is read until its response has gone out
            self._update_reading()
            self._stream.end()
            return
        if self._discard:
            self.abort()
            raise _Abort
        request = (
            self._parser.get_method(),
            self._url,
            self._headers,
            b"".join(self._body),
            self._parser.should_keep_alive(),
            self._deferred,
        )
        if self._deferred is not None:
            self._deferred = None
            if self._stream is not None:
                self._pending.append(request)
                return
        if self._task is not None:
            self._pending.append(request)
        else:
            self._handle(request)

    # streamed requests

    def _start_stream(self) -> bool:
        """Hands the request to a stream handler if the app wants it streamed (see HttpServer.streams)."""
        streams = self._server.streams
        assert streams is not None
        handler = streams(self._parser.get_method(), self._url, self._headers)
        if handler is None:
            return False
        if self._task is not None or self._pending:
            if not announces_body(self._headers):
                self._deferred = handler  # no body to stream: it waits its turn (on_message_complete)
                return True
            message = "This request cannot be pipelined behind another; send it alone."
            self._refuse(self._refusal(400, message))
        self._stream = handler
        self._stream_body_done = False
        if self._headers.get(b"expect", b"").lower() == b"100-continue" and self._transport is not None:
            self._transport.write(_CONTINUE)
        handler.start(self)
        return True

    def write(self, data: bytes) -> None:
        """StreamSink: part of the streamed request's response."""
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def finish(self, keep_alive: bool) -> None:
        """StreamSink: the streamed response is complete. Before its request body was (a refusal,
        an early error), the connection closes: the rest of that body is not worth reading.
        Requests pipelined behind it are answered now, in order, then any refusal still owed."""
        body_done = self._stream_body_done
        self._stream = None
        self._stream_held = False
        self._active = False
        self._since = time.monotonic()
        if not (keep_alive and body_done and self._stream_keep_alive) or self._server.draining:
            self._keep_alive = False
            self.abort()
            return
        while self._pending and self._task is None and self._stream is None and not self._closing():
            self._handle(self._pending.popleft())
        if self._task is None and self._stream is None and not self._pending:
            if self._final is not None:  # a request after these could not be read (see _end_with)
                final, self._final = self._final, None
                self._send(final, keep_alive=False)
                return
            if not self._keep_alive:
                self.abort()
                return
        self._update_reading()

    def resume_reading(self) -> None:
        """StreamSink: the handler can take more of the body."""
        if self._stream is not None and not self._stream_body_done:
            self._stream_held = False
            self._update_reading()

    def pause_reading(self) -> None:
        """StreamSink: the handler cannot take more of the body for now."""
        self._stream_held = True
        self._update_reading()

    # requests and responses

    def _handle(self, request: _Request) -> None:
        method, url, headers, body, keep_alive, stream = request
        if stream is not None:
            self._stream_keep_alive = keep_alive
            self._start_deferred(stream)
            return
        if method == b"HEAD":
            self._head_only = True
        try:
            result = self._app(method, url, headers, body)
        except Exception:  # a bug here, not in user code: the invoker catches that
            logger.exception("internal error")
            result = self._refusal(500, "internal error")
        if type(result) is Response:
            self._send(result, keep_alive)
        else:
            self._start(result, keep_alive)  # type: ignore[arg-type]

    def _start_deferred(self, stream: StreamHandler) -> None:
        """A bodiless streamed request's turn has come: it runs whole now; reading waits for it."""
        self._active = True
        self._stream = stream
        self._stream_body_done = True  # it had none
        self._stream_held = True
        stream.start(self)
        if self._stream is stream:
            stream.end()

    def _start(self, awaitable: Awaitable[Response], keep_alive: bool) -> None:
        task = asyncio.ensure_future(awaitable)
        self._task = task
        self._update_reading()
        task.add_done_callback(lambda done: self._finish(done, keep_alive))

    def _finish(self, task: asyncio.Future[Response], keep_alive: bool) -> None:
        self._task = None
        try:
            response = task.result()
        except BaseException as exc:
            logger.error("internal error", exc_info=exc)
            response = self._refusal(500, "internal error")
        self._send(response, keep_alive)
        while self._pending and self._task is None and self._stream is None and not self._closing():
            self._handle(self._pending.popleft())
        if self._final is not None and self._task is None and not self._pending and self._stream is None:
            final, self._final = self._final, None
            self._send(final, keep_alive=False)
        self._update_reading()

    def _send(self, response: Response, keep_alive: bool, hang_up: bool = True) -> None:
        """Writes a response; closes the connection after it unless keep-alive holds (or not `hang_up`)."""
        self._active = False
        self._since = time.monotonic()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        # once reading has stopped, the connection closes after the last response owed (the refusal)
        ending = not self._keep_alive and self._final is None
        close = not keep_alive or ending or self._server.draining
        head = render_head(response, close)
        body = response.body
        if self._head_only:  # Content-Length says what GET would send; no body follows
            self._head_only = False
            transport.write(head)
        elif len(body) < _SMALL:
            transport.write(head + body)
        else:
            transport.writelines((head, body))
        if close and hang_up:
            transport.close()

    def _answer_too_large(self) -> None:
        if self._task is not None or self._pending:  # pipelined behind another request: just close
            self._refuse(self._too_large())
        self._discard = True
        self._body.clear()
        self._send(self._too_large(), keep_alive=False, hang_up=False)

    def _too_large(self) -> Response:
        return self._refusal(413, f"The request body is larger than {self._max_body} bytes.")

    def _refusal(self, status: int, message: str) -> Response:
        refusal = self._server.refusal
        return text_response(message, status) if refusal is None else refusal(self._url, status, message)

    def _reject(self, status: int, message: str) -> None:
        """Answers a request the parser cannot go on with, then closes: see `_end_with`."""
        self._end_with(self._refusal(status, message))

    def _refuse(self, response: Response) -> None:
        """`_end_with` from inside a parser callback: the parser stops here too."""
        self._end_with(response)
        raise _Abort

    def _end_with(self, response: Response) -> None:
        """Nothing more is read from this connection. Requests that arrived complete before the bad
        bytes are still answered, in order; then `response`; then the connection closes."""
        self._active = False
        self._keep_alive = False
        if self._task is None and not self._pending:
            self._send(response, keep_alive=False)
        else:
            self._final = response

    # connection state

    def expire(self, now: float, idle_seconds: float, request_seconds: float) -> None:
        """Called by the server's sweep; see HttpServer.enforce_timeouts. A streamed request is
        left to its handler, whose own timeouts apply (an upload may take longer than a request)."""
        if self._task is not None or self._pending or self._stream is not None:
            return
        if self._active:
            if now - self._since > request_seconds:
                self._pending.clear()
                message = f"The request did not arrive within {request_seconds:g} s."
                self._send(self._refusal(408, message), keep_alive=False)
        elif now - self._since > idle_seconds:
            self.abort()

    def close_if_idle(self) -> None:
        if not self._active and self._task is None and not self._pending and self._stream is None:
            self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._task is not None or self._write_paused or self._stream_held:
            transport.pause_reading()
        else:
            transport.resume_reading()
