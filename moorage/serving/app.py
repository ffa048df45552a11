"""The container contract's routes: GET /ping, GET /execution-parameters, POST /invocations.

The app is plain: a method, a path, headers and a body in; a Response (or, for async handlers, an
awaitable of one) out. A worker only exists after model_fn has run, so /ping is healthy by construction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

from moorage.http.responses import TEXT, Response, json_response, text_response
from moorage.serving.invocations import Invoker

_PING = json_response({"status": "Healthy"})
_NOT_FOUND = text_response("Not Found", 404)


def _method_not_allowed(allowed: bytes) -> Response:
    return Response(405, b"Method Not Allowed", TEXT, b"Allow: %s\r\n" % allowed)


_GET_ONLY = _method_not_allowed(b"GET, HEAD")
_READS = (b"GET", b"HEAD")  # the server sends a HEAD answer without its body
_POST_ONLY = _method_not_allowed(b"POST")


class App:
    """Routes a request; `is_async` tells the server whether invocations return awaitables."""

    __slots__ = ("_execution_parameters", "_invoke", "is_async")

    def __init__(self, invoker: Invoker, workers: int, is_async: bool) -> None:
        self._invoke = invoker.invoke_async if is_async else invoker.invoke
        self.is_async = is_async
        concurrent = min(workers, 16)  # MaxConcurrentTransforms x MaxPayloadInMB may be at most 100
        self._execution_parameters = json_response(
            {"MaxConcurrentTransforms": concurrent, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6}
        )

    def __call__(
        self, method: bytes, url: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | Awaitable[Response]:
        path = url.partition(b"?")[0]
        if path == b"/invocations":
            return self._invoke(body, headers) if method == b"POST" else _POST_ONLY
        if path == b"/ping":
            return _PING if method in _READS else _GET_ONLY
        if path == b"/execution-parameters":
            return self._execution_parameters if method in _READS else _GET_ONLY
        return _NOT_FOUND
