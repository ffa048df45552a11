"""The instance's own failures (not a model's answers): a kind, an HTTP status and a message a user reads.

/invocations answers them as plain text marked `x-moorage-error: <kind>`, which the data plane turns
into SageMaker errors; the container API (/models) answers them as MMS does, JSON {code, type, message}.
"""

from __future__ import annotations

from moorage.http.responses import TEXT, Response, json_response

INVALID_TARGET = ("InvalidTargetModel", 400)
NOT_FOUND = ("ModelNotFound", 404)
NOT_READY = ("ModelNotReady", 429)
LOAD_FAILED = ("ModelLoadFailed", 500)
TIMEOUT = ("ModelTimeout", 504)
LOST = ("ModelLost", 502)
NO_MEMORY = ("InsufficientMemory", 507)


class PlatformError(Exception):
    def __init__(self, kind: tuple[str, int], message: str) -> None:
        super().__init__(message)
        self.kind, self.status = kind
        self.message = message


def text_error(error: PlatformError, headers: bytes) -> Response:
    body = error.message.encode("utf-8", "replace")
    return Response(error.status, body, TEXT, b"x-moorage-error: %s\r\n%s" % (error.kind.encode(), headers))


def json_error(status: int, kind: str, message: str) -> Response:
    return json_response({"code": status, "type": kind, "message": message}, status)
