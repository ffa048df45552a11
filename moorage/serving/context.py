"""The `context` argument handlers may take: the parts of multi-model-server's `mms.context.Context`
that users call.

One light object per request (only built when some handler takes a context), so nothing a handler sets
leaks into the next request. The batch size is always 1: index 0 is the only request index.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

CUSTOM_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"
_INFERENCE_ID = b"x-amzn-sagemaker-inference-id"
_CUSTOM_ATTRIBUTES = CUSTOM_ATTRIBUTES.encode()
metrics_log = logging.getLogger("moorage.metrics")


class Context:
    """Request headers in, response content type, status and headers out.

    `set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", value)` returns custom attributes to
    the caller. The content type of the response is the one the handlers return (or the Accept), as in
    the sagemaker-inference toolkit, which overwrites whatever a handler set here.
    """

    __slots__ = (
        "_headers",
        "_request_id",
        "_response_headers",
        "_system",
        "response_phrase",
        "response_status",
        "response_type",
    )

    model_name = "model"
    manifest: dict[str, Any] | None = None  # a model archive's manifest; SageMaker models have none

    def __init__(
        self, system_properties: Mapping[str, Any], headers: Mapping[bytes, bytes] | None = None
    ) -> None:
        self._system = system_properties
        self._headers = headers
        self._request_id: str | None = None
        self._response_headers: dict[str, str] | None = None
        self.response_status = 200
        self.response_phrase = ""
        self.response_type: str | None = None

    @property
    def system_properties(self) -> dict[str, Any]:
        """`model_dir`, `gpu_id` (None), `batch_size` (1), `server_name` ("moorage") and
        `server_version`; a copy."""
        return dict(self._system)

    @property
    def request_processor(self) -> list[RequestProcessor]:
        """One entry per request in the batch (always one), as the toolkit's own transformer reads it."""
        return [RequestProcessor(self)]

    @property
    def metrics(self) -> Metrics:
        return Metrics()

    @property
    def request_ids(self) -> dict[int, str]:
        request_id = self.get_request_id()
        return {} if request_id is None else {0: request_id}

    @property
    def custom_attributes(self) -> str | None:
        """The request's X-Amzn-SageMaker-Custom-Attributes, if the caller sent any."""
        return self._header(_CUSTOM_ATTRIBUTES)

    def get_request_id(self, idx: int = 0) -> str | None:
        """The caller's X-Amzn-SageMaker-Inference-Id, else a fresh UUID; None while loading the model."""
        _check(idx)
        if self._headers is None:
            return None
        if self._request_id is None:
            self._request_id = self._header(_INFERENCE_ID) or str(uuid.uuid4())
        return self._request_id

    def get_request_header(self, idx: int, key: str) -> str | None:
        _check(idx)
        return self._header(key.lower().encode("latin-1"))

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        """All request headers, names lower-cased."""
        _check(idx)
        headers = self._headers or {}
        return {name.decode("latin-1"): value.decode("latin-1") for name, value in headers.items()}

    def set_response_content_type(self, idx: int, value: str) -> None:
        _check(idx)
        self.response_type = value

    def get_response_content_type(self, idx: int) -> str | None:
        _check(idx)
        return self.response_type

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        """Sets the status of the response; the reason phrase on the wire is always the standard one."""
        _check(idx)
        self.response_status = code
        self.response_phrase = phrase

    set_http_response_status = set_response_status  # the older name in multi-model-server

    def set_all_response_status(self, code: int = 200, phrase: str = "") -> None:
        self.set_response_status(code, phrase)

    def get_response_status(self, idx: int = 0) -> tuple[int, str]:
        _check(idx)
        return self.response_status, self.response_phrase

    get_http_response_status = get_response_status

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        _check(idx)
        if self._response_headers is None:
            self._response_headers = {}
        self._response_headers[key] = value

    def get_response_headers(self, idx: int) -> dict[str, str]:
        _check(idx)
        return dict(self._response_headers or {})

    def _header(self, name: bytes) -> str | None:
        value = self._headers.get(name) if self._headers is not None else None
        return None if value is None else value.decode("latin-1")


class RequestProcessor:
    """multi-model-server's per-request view: request properties in, status and headers out."""

    __slots__ = ("_context",)

    def __init__(self, context: Context) -> None:
        self._context = context

    def get_request_properties(self) -> dict[str, str]:
        return self._context.get_all_request_header(0)

    def get_request_property(self, key: str) -> str | None:
        return self._context.get_request_header(0, key)

    def report_status(self, code: int, reason_phrase: str | None = None) -> None:
        self._context.set_response_status(code, reason_phrase or "")

    def get_response_status_code(self) -> int:
        return self._context.response_status

    def get_response_status_phrase(self) -> str:
        return self._context.response_phrase

    def add_response_property(self, key: str, value: str) -> None:
        if key.lower() == "content-type":
            self._context.set_response_content_type(0, value)
        else:
            self._context.set_response_header(0, key, value)

    def get_response_headers(self) -> dict[str, str]:
        return self._context.get_response_headers(0)

    get_response_header = get_response_headers


class Metrics:
    """multi-model-server's MetricsStore calls; each metric becomes a line in the endpoint log."""

    __slots__ = ()

    def add_metric(self, name: str, value: float, unit: str = "", idx: object = None, **_: object) -> None:
        metrics_log.info("metric %s=%s%s", name, value, f" {unit}" if unit else "")

    def add_time(self, name: str, value: float, idx: object = None, unit: str = "ms") -> None:
        self.add_metric(name, value, unit)

    def add_size(self, name: str, value: float, idx: object = None, unit: str = "MB") -> None:
        self.add_metric(name, value, unit)

    def add_percent(self, name: str, value: float, idx: object = None) -> None:
        self.add_metric(name, value, "percent")

    def add_counter(self, name: str, value: float, idx: object = None) -> None:
        self.add_metric(name, value, "count")

    def add_error(self, name: str, value: object) -> None:
        metrics_log.info("metric %s error: %s", name, value)


def system_properties(model_dir: str) -> dict[str, Any]:
    return {
        "model_dir": model_dir,
        "gpu_id": None,
        "batch_size": 1,
        "server_name": "moorage",
        "server_version": _server_version(),
    }


@functools.cache
def _server_version() -> str:
    """Read from the package metadata once: it takes milliseconds, and instance start-up asks twice."""
    try:
        return version("moorage")
    except PackageNotFoundError:
        return "unknown"


def _check(idx: int) -> None:
    if idx != 0:
        raise IndexError(f"request index {idx} out of range: the batch size is 1, so only index 0 exists")
