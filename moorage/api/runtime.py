"""The runtime adapter: `POST /endpoints/{EndpointName}/invocations` (restJson1), the hot path.

Headers arrive as a dict of lower-cased names from the HTTP server; the body is passed through untouched
and only the routing table is consulted (no database, no control plane)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any
from urllib.parse import unquote

from botocore.model import StructureShape

from moorage.api.errors import (
    AwsError,
    InternalFailure,
    NotImplementedOperation,
    PayloadTooLarge,
    ValidationError,
)
from moorage.api.http import RUNTIME_CONTENT_TYPE, error_response, request_id
from moorage.api.spec import load_service
from moorage.api.validate import validate_members, validation_message
from moorage.dataplane.invoke import (
    MAX_PAYLOAD_BYTES,
    Invocation,
    InvocationResult,
    Targets,
    invoke,
    not_found,
)
from moorage.dataplane.routes import RoutingTable
from moorage.http.responses import Response

_JSON = RUNTIME_CONTENT_TYPE
_PREFIX = len(b"/endpoints/")
_TOO_LARGE = f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."  # AWS's words
_HEADER_LIMITS = (
    (b"content-type", "contentType", 1024),
    (b"accept", "accept", 1024),
    (b"x-amzn-sagemaker-custom-attributes", "customAttributes", 1024),
    (b"x-amzn-sagemaker-target-variant", "targetVariant", 63),
    (b"x-amzn-sagemaker-inference-id", "inferenceId", 64),
)
# Request members that select something this server does not run; ignoring them would answer from
# something other than what the caller asked for.
_UNSUPPORTED = {
    b"x-amzn-sagemaker-inference-component": ("InferenceComponentName", "has no inference components"),
    b"x-amzn-sagemaker-session-id": ("SessionId", "does not have stateful sessions enabled"),
    b"x-amzn-sagemaker-enable-explanations": ("EnableExplanations", "has no ExplainerConfig"),
}
_UNSUPPORTED_NAMES = frozenset(_UNSUPPORTED)
_TARGET_MODEL = b"x-amzn-sagemaker-target-model"
_TARGET_CONTAINER = b"x-amzn-sagemaker-target-container-hostname"
# headers that send the request somewhere the plain path does not look: checked on the slow path only
_SLOW_NAMES = _UNSUPPORTED_NAMES | {_TARGET_MODEL, _TARGET_CONTAINER}
_OTHER_OPERATIONS = {
    "async-invocations": "InvokeEndpointAsync",
    "invocations-response-stream": "InvokeEndpointWithResponseStream",
}
log = logging.getLogger("moorage.runtime")
# (endpoint, headers, body, request id) -> the 202 or the error
AsyncInvoke = Callable[[str, Mapping[bytes, bytes], bytes, str], "Response | asyncio.Future[Response]"]


def _check_lengths(headers: Mapping[bytes, bytes]) -> None:
    for name, member, limit in _HEADER_LIMITS:
        value = headers.get(name)
        if value is not None and len(value) > limit:
            raise ValidationError(
                f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {limit}"
            )


class RuntimeApi:
    TOO_LARGE = _TOO_LARGE

    def __init__(self, table: RoutingTable, account: str, timed: bool = True) -> None:
        self.table = table
        self.account = account
        self.timed = timed  # take the arrival time (OverheadLatency) only when metrics are kept
        # InvokeEndpointAsync (moorage/api/runtime_async.py), set once the queue is open
        self.asynchronous: AsyncInvoke | None = None

    def __call__(
        self, method: bytes, path: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | asyncio.Future[Response]:
        begun = perf_counter() if self.timed else 0.0
        rid = request_id()
        name, _, action = path[_PREFIX:].decode("latin-1").partition("/")
        try:
            if method != b"POST" or action != "invocations":
                if action == "async-invocations" and method == b"POST" and self.asynchronous is not None:
                    return self.asynchronous(unquote(name) if "%" in name else name, headers, body, rid)
                _refuse_path(method, path, action)
            if len(body) > MAX_PAYLOAD_BYTES:  # the HTTP server refuses these first; a backstop
                raise PayloadTooLarge(_TOO_LARGE)
            _check_lengths(headers)
            endpoint = unquote(name) if "%" in name else name
            route = self.table.get(endpoint)
            targeted = False
            if route is None or route.asynchronous is not None or not _SLOW_NAMES.isdisjoint(headers):
                targeted = self._refuse(endpoint, headers)
            target_variant = headers.get(b"x-amzn-sagemaker-target-variant")
            inv = Invocation(
                endpoint=endpoint,
                body=body,
                content_type=headers.get(b"content-type"),
                accept=headers.get(b"accept"),
                custom_attributes=headers.get(b"x-amzn-sagemaker-custom-attributes"),
                inference_id=headers.get(b"x-amzn-sagemaker-inference-id"),
                target_variant=target_variant.decode("latin-1") if target_variant is not None else None,
            )
            if targeted:  # checked against its variant in invoke (or the variant's gate)
                container = headers.get(_TARGET_CONTAINER)
                inv.targets = Targets(
                    headers.get(_TARGET_MODEL), container.decode("latin-1") if container is not None else None
                )
            pending = invoke(self.table, inv, self.account, begun)
        except AwsError as err:
            return error_response(err, rid, _JSON)
        response: asyncio.Future[Response] = pending.get_loop().create_future()
        pending.add_done_callback(lambda done: response.set_result(_render(done, rid)))
        return response

    def _refuse(self, endpoint: str, headers: Mapping[bytes, bytes]) -> bool:
        """The slow path: an unknown endpoint, a member asking for what no endpoint here has, or a target
        (model or container) to check before it is used. Returns when the request may go on.

        Only here is the whole request checked against the model (the hot path checks lengths only):
        a malformed name answers the Coral-style ValidationError AWS gives, not "not found"."""
        problems = validate_members(_invoke_shape(), _members(endpoint, headers))
        if problems:
            raise ValidationError(validation_message(problems))
        route = self.table.get(endpoint)
        if route is None:
            raise not_found(endpoint, self.account)
        if route.asynchronous is not None:
            raise ValidationError(
                f"Endpoint {endpoint} of account {self.account} is an asynchronous endpoint (its endpoint "
                "config has AsyncInferenceConfig); use InvokeEndpointAsync."
            )
        for header, (member, missing) in _UNSUPPORTED.items():
            if header in headers:
                raise ValidationError(
                    f"{member} was given, but endpoint {endpoint} {missing}; this server does not serve "
                    f"that yet. Remove the {header.decode()} header."
                )
        return _TARGET_MODEL in headers or _TARGET_CONTAINER in headers


def _refuse_path(method: bytes, path: bytes, action: str) -> None:
    operation = _OTHER_OPERATIONS.get(action)
    if method == b"POST" and operation is not None:
        raise NotImplementedOperation(
            f"{operation} is a SageMaker Runtime operation this server does not implement yet; "
            "use InvokeEndpoint."
        )
    raise ValidationError(
        f"{method.decode()} {path.decode('latin-1')} is not supported; use InvokeEndpoint "
        "(POST /endpoints/<name>/invocations)."
    )


@functools.cache
def _invoke_shape() -> StructureShape:
    shape = load_service("sagemaker-runtime").operation_model("InvokeEndpoint").input_shape
    assert isinstance(shape, StructureShape)
    return shape


def _members(endpoint: str, headers: Mapping[bytes, bytes]) -> dict[str, Any]:
    """InvokeEndpoint's input members as the request carries them (the body is checked elsewhere)."""
    params: dict[str, Any] = {"EndpointName": endpoint, "Body": b""}
    for member, shape in _invoke_shape().members.items():
        header = shape.serialization.get("name") if shape.serialization.get("location") == "header" else None
        value = headers.get(header.lower().encode()) if header else None
        if value is not None:
            params[member] = value.decode("latin-1")
    return params


def _render(done: asyncio.Future[InvocationResult], rid: str) -> Response:
    """The HTTP response for a finished invocation, success or SageMaker error."""
    err = done.exception()
    if err is not None:
        if isinstance(err, AwsError):
            return error_response(err, rid, _JSON)
        log.error("invocation failed inside the server", exc_info=err)
        return error_response(InternalFailure("The server hit an internal error; see its log."), rid, _JSON)
    result = done.result()
    response = result.response
    extra = b"x-Amzn-Invoked-Production-Variant: %s\r\nx-amzn-RequestId: %s\r\n" % (
        result.variant.encode(),
        rid.encode(),
    )
    custom = response.header(b"x-amzn-sagemaker-custom-attributes")
    if custom is not None:
        extra += b"X-Amzn-SageMaker-Custom-Attributes: %s\r\n" % custom
    content_type = response.header(b"content-type") or b"application/octet-stream"
    return Response(200, response.body, content_type, extra)
