"""POST /invocations: the sagemaker-inference toolkit's per-request algorithm, minus its error bodies.

Handlers run inline on the worker's only thread: a worker serves one request at a time and the front
door balances across worker sockets by outstanding requests, so a thread hop would only add latency.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

from moorage.http.responses import Response, header_lines, header_value, text_response
from moorage.serving.codecs.json import to_builtin
from moorage.serving.context import Context
from moorage.serving.errors import RequestError, ServingError, message_of, status_of
from moorage.serving.handlers import Handlers

logger = logging.getLogger("moorage.serving")

# The only types the toolkit decodes to str before input_fn; every other body stays bytes.
_TEXT_TYPES = frozenset({"application/json", "text/csv"})
_MAX_CACHED_TYPES = 256


class Invoker:
    """Turns a request's body and headers into a Response by running the user's handlers."""

    __slots__ = ("_content_types", "_default_accept", "_model", "_system", "_transform", "needs_context")

    def __init__(
        self, handlers: Handlers, model: Any, default_accept: str, system: Mapping[str, Any]
    ) -> None:
        self._transform = handlers.transform
        self._model = model
        self._default_accept = default_accept
        self._system = system
        self._content_types: dict[str, bytes] = {}
        self.needs_context = handlers.needs_context

    def invoke(self, body: bytes, headers: Mapping[bytes, bytes]) -> Response:
        context = Context(self._system, headers) if self.needs_context else None
        try:
            data, content_type, accept = self._inputs(body, headers)
            result = self._transform(self._model, data, content_type, accept, context)
            return self._response(result, accept, context)
        except (Exception, SystemExit) as exc:  # sys.exit() in a handler must not end the worker
            return _failure(exc)

    async def invoke_async(self, body: bytes, headers: Mapping[bytes, bytes]) -> Response:
        """The same for handlers that include an `async def` one."""
        context = Context(self._system, headers) if self.needs_context else None
        try:
            data, content_type, accept = self._inputs(body, headers)
            transformed: Awaitable[Any] = self._transform(self._model, data, content_type, accept, context)
            return self._response(await transformed, accept, context)
        except (Exception, SystemExit) as exc:  # sys.exit() in a handler must not end the worker
            return _failure(exc)

    def _inputs(self, body: bytes, headers: Mapping[bytes, bytes]) -> tuple[bytes | str, str | None, str]:
        raw = headers.get(b"content-type")
        content_type = None if raw is None else raw.decode("latin-1")
        raw = headers.get(b"accept")
        accept = raw.decode("latin-1") if raw else ""
        if not accept or accept == "*/*":
            accept = self._default_accept
        if content_type in _TEXT_TYPES:
            try:
                return body.decode("utf-8"), content_type, accept
            except UnicodeDecodeError as exc:
                raise RequestError(f"the {content_type} request body is not valid UTF-8: {exc}") from None
        return body, content_type, accept

    def _response(self, result: Any, accept: str, context: Context | None) -> Response:
        if isinstance(result, tuple):
            result, content_type = result[0], result[1]
        else:
            content_type = accept
        body = _encode(result)
        if context is None:
            return Response(200, body, self._content_type(content_type))
        status = context.response_status
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise ServingError(f"a handler set the response status to {status!r}; expected 200 to 599")
        extra = context.get_response_headers(0)
        return Response(status, body, self._content_type(content_type), header_lines(extra) if extra else b"")

    def _content_type(self, value: Any) -> bytes:
        if not isinstance(value, str):
            raise ServingError(f"the response content type must be a str, not {type(value).__name__}")
        encoded = self._content_types.get(value)
        if encoded is None:
            encoded = header_value(value)
            if len(self._content_types) < _MAX_CACHED_TYPES:
                self._content_types[value] = encoded
        return encoded


def _encode(result: Any) -> bytes:
    """bytes as they are, str as UTF-8, anything else as JSON (numpy values included)."""
    if isinstance(result, bytes):
        return result
    if isinstance(result, str):
        return result.encode("utf-8")
    if isinstance(result, (bytearray, memoryview)):
        return bytes(result)
    try:
        return json.dumps(result, default=to_builtin).encode("utf-8")
    except (TypeError, ValueError) as exc:
        kind = type(result).__name__
        raise ServingError(f"the handlers returned a {kind}, which is not bytes, str or JSON: {exc}") from exc


def _failure(exc: BaseException) -> Response:
    """The error response: the exception's message as plain text; the traceback only goes to the log."""
    status = status_of(exc)
    message = message_of(exc)
    if isinstance(exc, RequestError):
        logger.info("invocation answered %d: %s", status, message)
    else:
        logger.error("invocation failed with %d: %s", status, message, exc_info=exc)
    return text_response(message, status)
