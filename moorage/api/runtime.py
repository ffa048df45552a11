"""The runtime adapter: `POST /endpoints/{EndpointName}/invocations` (restJson1), the hot path.

Headers arrive as a dict of lower-cased names from the HTTP server; the body is passed through untouched
and only the routing table is consulted (no database, no control plane)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from urllib.parse import unquote

from moorage.api.errors import AwsError, InternalFailure, ValidationError
from moorage.api.http import error_response, request_id
from moorage.dataplane.invoke import MAX_PAYLOAD_BYTES, Invocation, InvocationResult, invoke
from moorage.dataplane.routes import RoutingTable
from moorage.http.responses import Response

_JSON = "application/json"
_PREFIX = len(b"/endpoints/")
_TOO_LARGE = b'{"message": "HTTP content length exceeded %d bytes."}' % MAX_PAYLOAD_BYTES
_HEADER_LIMITS = (
    (b"content-type", "contentType", 1024),
    (b"accept", "accept", 1024),
    (b"x-amzn-sagemaker-custom-attributes", "customAttributes", 1024),
    (b"x-amzn-sagemaker-target-variant", "targetVariant", 63),
    (b"x-amzn-sagemaker-inference-id", "inferenceId", 64),
    (b"x-amzn-sagemaker-target-model", "targetModel", 1024),
)
log = logging.getLogger("moorage.runtime")


def _check_lengths(headers: Mapping[bytes, bytes]) -> None:
    for name, member, limit in _HEADER_LIMITS:
        value = headers.get(name)
        if value is not None and len(value) > limit:
            raise ValidationError(
                f"1 validation error detected: Value at '{member}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {limit}"
            )


class RuntimeApi:
    def __init__(self, table: RoutingTable, account: str) -> None:
        self.table = table
        self.account = account

    def __call__(
        self, method: bytes, path: bytes, headers: Mapping[bytes, bytes], body: bytes
    ) -> Response | asyncio.Future[Response]:
        rid = request_id()
        name, _, action = path[_PREFIX:].decode("latin-1").partition("/")
        try:
            if method != b"POST" or action != "invocations":
                raise ValidationError(
                    f"{method.decode()} {path.decode('latin-1')} is not supported; use InvokeEndpoint "
                    "(POST /endpoints/<name>/invocations)."
                )
            if len(body) > MAX_PAYLOAD_BYTES:
                return self.too_large(rid)
            _check_lengths(headers)
            target_variant = headers.get(b"x-amzn-sagemaker-target-variant")
            inv = Invocation(
                endpoint=unquote(name) if "%" in name else name,
                body=body,
                content_type=headers.get(b"content-type"),
                accept=headers.get(b"accept"),
                custom_attributes=headers.get(b"x-amzn-sagemaker-custom-attributes"),
                inference_id=headers.get(b"x-amzn-sagemaker-inference-id"),
                target_model=headers.get(b"x-amzn-sagemaker-target-model"),
                target_variant=target_variant.decode("latin-1") if target_variant is not None else None,
            )
            pending = invoke(self.table, inv, self.account)
        except AwsError as err:
            return error_response(err, rid, _JSON)
        response: asyncio.Future[Response] = pending.get_loop().create_future()
        pending.add_done_callback(lambda done: response.set_result(_render(done, rid)))
        return response

    @staticmethod
    def too_large(rid: str | None = None) -> Response:
        """AWS's answer to a body over 6 MiB (also when the front door stops reading a huge one)."""
        return Response(
            413, _TOO_LARGE, b"application/json", b"x-amzn-RequestId: %s\r\n" % (rid or request_id()).encode()
        )


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
