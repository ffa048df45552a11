"""The `context` argument handlers may take: the parts of multi-model-server's `mms.context.Context`
that users call.

One light object per request (only built when some handler takes a context), so nothing a handler sets
leaks into the next request. The batch size is always 1: index 0 is the only request index.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

CUSTOM_ATTRIBUTES = "x-amzn-sagemaker-custom-attributes"
_INFERENCE_ID = b"x-amzn-sagemaker-inference-id"
_CUSTOM_ATTRIBUTES = CUSTOM_ATTRIBUTES.encode()


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
        "response_status",
        "response_type",
    )

    model_name = "model"

    def __init__(
        self, system_properties: Mapping[str, Any], headers: Mapping[bytes, bytes] | None = None
    ) -> None:
        self._system = system_properties
        self._headers = headers
        self._request_id: str | None = None
        self._response_headers: dict[str, str] | None = None
        self.response_status = 200
        self.response_type: str | None = None

    @property
    def system_properties(self) -> dict[str, Any]:
        """`model_dir`, `gpu_id` (None), `batch_size` (1) and `server_name` ("moorage"); a copy."""
        return dict(self._system)

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
        """Sets the status of a successful response; the reason phrase is always the standard one."""
        _check(idx)
        self.response_status = code

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


def system_properties(model_dir: str) -> dict[str, Any]:
    return {"model_dir": model_dir, "gpu_id": None, "batch_size": 1, "server_name": "moorage"}


def _check(idx: int) -> None:
    if idx != 0:
        raise IndexError(f"request index {idx} out of range: the batch size is 1, so only index 0 exists")
