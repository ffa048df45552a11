"""What the three protocol modules share: the request as read, the interface each implements, and the
pieces of their answers that are the same in all of them."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from botocore.model import OperationModel, ServiceModel

from moorage.api.cloudwatch.errors import Wire
from moorage.api.spec import load_service
from moorage.http.responses import Response

Params = dict[str, Any]


@dataclass(frozen=True)
class Request:
    method: bytes
    url: bytes
    headers: Mapping[bytes, bytes]
    body: bytes


class CloudWatchProtocol(Protocol):
    """One of awsQuery, awsJson1_0, rpc-v2-cbor. Every method raises an AwsError for what it cannot read."""

    def operation(self, model: ServiceModel, request: Request) -> OperationModel:
        """The modelled operation the request names (no look at its parameters yet)."""
        ...

    def params(self, operation: OperationModel, request: Request) -> Params:
        """The request's parameters, checked against the operation's input shape."""
        ...

    def response(self, operation: OperationModel, result: Mapping[str, Any], rid: str) -> Response: ...

    def error(self, error: Wire, rid: str) -> Response: ...


def request_headers(rid: str) -> bytes:
    return b"x-amzn-RequestId: %s\r\n" % rid.encode()


def error_headers(error: Wire, rid: str) -> bytes:
    """The request id, and the awsQuery code and fault (x-amzn-query-error) that botocore prefers to
    the ``__type`` of a JSON or CBOR error body for a query-compatible service."""
    return request_headers(rid) + b"x-amzn-query-error: %s;%s\r\n" % (
        error.code.encode("latin-1"),
        error.fault.encode(),
    )


def error_type(error: Wire) -> str:
    """The ``__type`` of a JSON or CBOR error body: the id of the model's shape for the code (the code
    itself for the common errors the model does not list)."""
    return f"com.amazonaws.cloudwatch#{_shape_names().get(error.code, error.code)}"


@functools.cache
def _shape_names() -> dict[str, str]:
    """awsQuery code -> exception shape name; where two shapes share a code, the one named like it."""
    names: dict[str, str] = {}
    for shape in load_service("cloudwatch").error_shapes:
        if shape.error_code not in names or shape.name == shape.error_code:
            names[shape.error_code] = shape.name
    return names


def as_datetime(value: Any) -> datetime:
    """A result's timestamp, given as an aware or naive (UTC) datetime or as epoch seconds."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime.fromtimestamp(float(value), UTC)


def epoch(value: Any) -> float:
    """Epoch seconds, to the millisecond, for a result's timestamp."""
    return round(as_datetime(value).timestamp(), 3)
