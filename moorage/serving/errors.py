"""The runtime's exceptions: request errors carry an HTTP status, start-up failures carry a reason.

User code may raise anything; an integer `status_code` attribute between 400 and 599 on the exception
chooses the response status (the toolkit's `BaseInferenceToolkitError` has one), anything else is 500.
"""

from __future__ import annotations

from moorage.serving import memory


class ServingError(Exception):
    """An invocation error with the HTTP status to answer."""

    status_code: int = 500

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code


class RequestError(ServingError):
    """The request, not the model, is at fault: logged as one line, without a traceback."""

    status_code = 400


class UnsupportedMediaType(RequestError):
    status_code = 415


class NotAcceptable(RequestError):
    status_code = 406


class StartupFailure(Exception):
    """The instance cannot become ready; `reason` is the one line written to failure.json."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def status_of(exc: BaseException) -> int:
    """The response status for an exception raised while handling a request."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(status, bool) and 400 <= status <= 599:
        return status
    return 500


def message_of(exc: BaseException) -> str:
    """`str(exc)`, or the class name when that is empty (or itself fails)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    text = text or type(exc).__name__
    return memory.explain(text) if isinstance(exc, MemoryError) else text
