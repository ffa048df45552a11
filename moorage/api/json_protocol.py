"""awsJson1_1, the protocol of the SageMaker and Application Auto Scaling control planes.

Every call is ``POST /`` with ``X-Amz-Target: <targetPrefix>.<Operation>`` and a JSON object of the input
shape; the answer is a JSON object of the output shape. Parsing validates (see ``validate``); serializing
writes only modelled members, so records may carry more than the wire shows.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

from botocore.model import OperationModel, OperationNotFoundError, ServiceModel

from moorage.api.errors import SerializationException, UnknownOperationException
from moorage.api.validate import validate_input

_PLAIN = frozenset({"string", "integer", "long", "float", "double", "boolean"})
# A \uD800-\uDFFF escape: JSON allows it, but alone (not as half of a pair) it is no Unicode
# character, and no store, log or encoder downstream can take it.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_NOT_UNICODE = (
    "The request body has a string that is not valid Unicode (a lone UTF-16 surrogate such as "
    "\\ud800); send UTF-8 text."
)


def operation_for_target(service: ServiceModel, target: str) -> OperationModel:
    """The operation named by an ``X-Amz-Target`` header such as ``SageMaker.CreateEndpoint``."""
    prefix, _, name = target.partition(".")
    if prefix == service.metadata.get("targetPrefix") and name:
        try:
            return service.operation_model(name)
        except OperationNotFoundError:
            pass
    raise UnknownOperationException(f"Unknown operation {target!r} for service {service.service_name}.")


def parse_json_request(operation: OperationModel, body: bytes) -> dict[str, Any]:
    """The validated input of ``operation``. An empty body is ``{}``. Members the model does not know are
    dropped rather than refused, so newer SDKs that send newer members keep working."""
    data: Any = {}
    if body.strip():
        try:
            text = body.decode("utf-8")  # strict: also refuses encoded surrogates
        except UnicodeDecodeError as exc:
            raise SerializationException(f"The request body is not valid UTF-8: {exc}") from None
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except ValueError as exc:
            raise SerializationException(f"The request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise SerializationException("The request body is nested too deeply.") from None
        if _SURROGATE_ESCAPE.search(text) and _has_surrogate(data):
            raise SerializationException(_NOT_UNICODE)
    if not isinstance(data, dict):
        raise SerializationException("The request body must be a JSON object.")
    shape = operation.input_shape
    if shape is None:
        return {}
    return validate_input(shape, data)


# Members of Moorage's own that an output may carry besides the modelled ones, at its top level (SDKs
# skip members their model does not name). DescribeEndpoint's: where each instance runs, which SageMaker's
# API has no field for; `moorage describe` shows it (docs/cluster.md)
INSTANCES_MEMBER = "MoorageInstances"
# DescribeTransformJob's records and objects done / total, and ListTransformJobs' per job: `moorage jobs`
PROGRESS_MEMBER = "MoorageProgress"
PROGRESS_BY_JOB_MEMBER = "MoorageProgressByJob"
EXTENSION_MEMBERS = frozenset({INSTANCES_MEMBER, PROGRESS_MEMBER, PROGRESS_BY_JOB_MEMBER})


def serialize_json_response(operation: OperationModel, result: Mapping[str, Any]) -> bytes:
    """``result`` as the JSON body of ``operation``'s output: modelled members only, ``None`` left out,
    timestamps as epoch seconds with milliseconds, blobs as base64."""
    shape = operation.output_shape
    if shape is None:
        return b"{}"
    output = _out(shape, result)
    for member in EXTENSION_MEMBERS.intersection(result):  # ours, at the top level only
        output[member] = result[member]
    return json.dumps(output, separators=(",", ":")).encode()


def _out(shape: Any, value: Any) -> Any:
    kind = shape.type_name
    if kind in _PLAIN:
        return value
    if kind == "structure":
        if shape.metadata.get("document"):
            return value
        members = shape.members
        plain = _plain_members(shape)
        return {
            name: item if name in plain else _out(members[name], item)
            for name, item in value.items()
            if item is not None and name in members
        }
    if kind == "list":
        member = shape.member
        if member.type_name in _PLAIN:
            return list(value)
        return [_out(member, item) for item in value]
    if kind == "map":
        member = shape.value
        if member.type_name in _PLAIN:
            return dict(value)
        return {key: _out(member, item) for key, item in value.items()}
    if kind == "timestamp":
        return _epoch(value)
    if kind == "blob":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode("ascii")
    return value


@functools.cache
def _plain_members(shape: Any) -> frozenset[str]:
    """Members written as they are; shapes live as long as their cached model, so caching by shape is safe."""
    return frozenset(name for name, member in shape.members.items() if member.type_name in _PLAIN)


def _epoch(value: Any) -> float:
    if isinstance(value, datetime):
        aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
        return round(aware.timestamp(), 3)
    return round(float(value), 3)  # already epoch seconds


def _has_surrogate(data: Any) -> bool:
    """Whether any string in decoded JSON (keys included) holds a lone surrogate; iterative, so depth
    costs no stack."""
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return True
        elif isinstance(value, dict):
            stack.extend(value)
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")
