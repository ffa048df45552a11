"""Smithy RPC v2 CBOR, the first protocol CloudWatch's model lists (from botocore 1.42.7), for the SDKs
that choose it (botocore prefers awsJson1_0).

A call is ``POST /service/GraniteServiceVersion20100801/operation/<Op>`` with ``smithy-protocol:
rpc-v2-cbor`` and a CBOR map of the input shape (an empty body is an empty input). Timestamps are
tag 1 (epoch seconds, integer or float) both ways; blobs are byte strings. An error is a CBOR map
``{"__type": <shape id>, "message": ...}`` (botocore's RpcV2CBORParser reads ``__type``, and the
``x-amzn-query-error`` header first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import cbor2
from botocore.model import OperationModel, OperationNotFoundError, ServiceModel

from moorage.api.cloudwatch import RPC_PATH_PREFIX
from moorage.api.cloudwatch.errors import Wire
from moorage.api.cloudwatch.wire import Params, Request, epoch, error_headers, error_type, request_headers
from moorage.api.errors import SerializationException, UnknownOperationException
from moorage.api.validate import validate_input
from moorage.http.responses import Response

CONTENT_TYPE = b"application/cbor"
_PROTOCOL_HEADER = b"smithy-protocol: rpc-v2-cbor\r\n"
# CloudWatch's inputs nest a few levels; this bounds what a hostile body can make the decoder build
_MAX_DEPTH = 32
_PLAIN = frozenset({"string", "integer", "long", "boolean", "blob"})


def _refuse_shared(decoder: Any) -> Any:
    """Tags 28/29 (shared values) can make a structure that contains itself; no SDK sends them."""
    raise cbor2.CBORDecodeError("shared values (tags 28 and 29) are not accepted")


_DECODERS = {28: _refuse_shared, 29: _refuse_shared}


class RpcV2Cbor:
    def operation(self, model: ServiceModel, request: Request) -> OperationModel:
        path = request.url.partition(b"?")[0]
        name = path[len(RPC_PATH_PREFIX) :].decode("latin-1")
        if request.method != b"POST":
            raise UnknownOperationException(
                f"{request.method.decode('latin-1')} is not a CloudWatch call: rpc-v2-cbor operations are "
                "POST requests."
            )
        if name and "/" not in name:
            try:
                return model.operation_model(name)
            except OperationNotFoundError:
                pass
        raise UnknownOperationException(f"Unknown operation {name!r} for service CloudWatch.")

    def params(self, operation: OperationModel, request: Request) -> Params:
        data: Any = {}
        if request.body:
            try:
                data = cbor2.loads(
                    request.body,
                    semantic_decoders=_DECODERS,
                    max_depth=_MAX_DEPTH,
                    allow_duplicate_keys=False,
                )
            except (cbor2.CBORError, ValueError, TypeError, RecursionError, MemoryError) as exc:
                raise SerializationException(f"The request body is not valid CBOR: {exc}") from None
        if not isinstance(data, dict):
            raise SerializationException("The request body must be a CBOR map of the operation's input.")
        shape = operation.input_shape
        return {} if shape is None else validate_input(shape, data)

    def response(self, operation: OperationModel, result: Mapping[str, Any], rid: str) -> Response:
        shape = operation.output_shape
        body = b"" if shape is None else cbor2.dumps(_out(shape, result))
        return Response(200, body, CONTENT_TYPE, request_headers(rid) + _PROTOCOL_HEADER)

    def error(self, error: Wire, rid: str) -> Response:
        body = cbor2.dumps({"__type": error_type(error), "message": error.message})
        return Response(error.status, body, CONTENT_TYPE, error_headers(error, rid) + _PROTOCOL_HEADER)


def _out(shape: Any, value: Any) -> Any:
    """`value` as CBOR data of `shape`: modelled members only, None left out."""
    kind = shape.type_name
    if kind in _PLAIN:
        return value
    if kind in ("double", "float"):
        return float(value)
    if kind == "structure":
        members = shape.members
        return {
            name: _out(members[name], item)
            for name, item in value.items()
            if item is not None and name in members
        }
    if kind == "list":
        return [_out(shape.member, item) for item in value]
    if kind == "map":
        return {key: _out(shape.value, item) for key, item in value.items()}
    if kind == "timestamp":
        seconds = epoch(value)
        return cbor2.CBORTag(1, int(seconds) if seconds.is_integer() else seconds)
    return value
