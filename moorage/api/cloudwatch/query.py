"""awsQuery, what boto3 speaks to CloudWatch up to botocore 1.42.6.

A call is a form (``Action=DescribeAlarms&Version=2010-08-01&AlarmNames.member.1=cpu``) in a POST body,
or in the query string of a GET. Its flat names are read back into the input shape the way botocore's
QuerySerializer flattens it (``.member.N`` lists, ``.entry.N.key`` / ``.value`` maps, ``a.b``
structures, ``Name=`` an empty list), then checked like any other input. Every value arrives as text, so
one that is not of its member's type is an ``InvalidParameterValue``. Errors are ``ErrorResponse`` XML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from botocore.model import OperationModel, OperationNotFoundError, ServiceModel

from moorage.api.cloudwatch import VERSION
from moorage.api.cloudwatch.errors import (
    InvalidAction,
    InvalidParameterValue,
    MalformedQueryString,
    Wire,
)
from moorage.api.cloudwatch.query_xml import xml_response
from moorage.api.cloudwatch.wire import Params, Request, request_headers
from moorage.api.errors import SerializationException
from moorage.api.validate import validate_input
from moorage.auth.errors import query_error
from moorage.http.responses import Response

CONTENT_TYPE = b"text/xml"
_FORM = b"application/x-www-form-urlencoded"
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")  # longer ones are no integer a member takes
_INDEX = re.compile(r"[0-9]{1,9}")
# parts of the longest name an input member has (PutAnomalyDetector's MetricMathAnomalyDetector.
# MetricDataQueries.member.N.MetricStat.Metric.Dimensions.member.N.Value has 10), with room to spare
_MAX_NAME_PARTS = 16
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?Infinity|NaN")


class AwsQuery:
    def operation(self, model: ServiceModel, request: Request) -> OperationModel:
        form = _form(request)
        action = form.get("Action", "")
        version = form.get("Version") or "NO_VERSION_SPECIFIED"
        if action and version == VERSION:
            try:
                return model.operation_model(action)
            except OperationNotFoundError:
                pass
        raise InvalidAction(f"Could not find operation {action} for version {version}")

    def params(self, operation: OperationModel, request: Request) -> Params:
        shape = operation.input_shape
        if shape is None:
            return {}
        form = _form(request)
        data = _read(shape, form, "", _children(form))
        try:
            return validate_input(shape, data)
        except SerializationException as exc:  # a value that is not text of its member's type
            raise InvalidParameterValue(exc.message) from None

    def response(self, operation: OperationModel, result: Mapping[str, Any], rid: str) -> Response:
        return Response(200, xml_response(operation, result, rid), CONTENT_TYPE, request_headers(rid))

    def error(self, error: Wire, rid: str) -> Response:
        return query_error(error.status, error.code, error.message, sender=error.fault == "Sender")


def _form(request: Request) -> dict[str, str]:
    """Query-string and form-body parameters (the body's win)."""
    sources = [request.url.partition(b"?")[2]]
    if request.body:
        content_type = request.headers.get(b"content-type", _FORM).split(b";")[0].strip().lower()
        if content_type != _FORM:
            raise MalformedQueryString(
                f"The body must be form-encoded ({_FORM.decode()}), not {content_type.decode('latin-1')}."
            )
        sources.append(request.body)
    form: dict[str, str] = {}
    for source in sources:
        if not source:
            continue
        try:
            pairs = parse_qsl(source.decode("utf-8"), keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise MalformedQueryString(
                "The parameters are not UTF-8 name=value pairs joined by '&'."
            ) from None
        form.update(pairs)
    return form


def _children(form: Mapping[str, str]) -> dict[str, set[str]]:
    """Every dotted prefix of the form's names -> the name parts that follow it. A name of more parts
    than any input member has names nothing and is skipped: indexing its every prefix would cost the
    square of its length (a 1 MiB name of dots, gigabytes)."""
    children: dict[str, set[str]] = {}
    for name in form:
        parts = name.split(".", _MAX_NAME_PARTS)
        if len(parts) > _MAX_NAME_PARTS:
            continue
        prefix = ""
        for part in parts:
            children.setdefault(prefix, set()).add(part)
            prefix = f"{prefix}.{part}" if prefix else part
    return children


def _indexes(children: Mapping[str, set[str]], prefix: str) -> list[int]:
    """The list or map entry numbers under `prefix` (``.member.N``, ``.entry.N``), in order; a part
    that is not ASCII digits (``²`` is a digit to `str.isdigit`, not to `int`) is no entry."""
    return sorted(int(part) for part in children.get(prefix, ()) if _INDEX.fullmatch(part))


def _read(shape: Any, form: Mapping[str, str], prefix: str, children: Mapping[str, set[str]]) -> Any:
    """The value of `shape` under the name `prefix`, or None when the form has nothing there."""
    kind = shape.type_name
    if kind == "structure":
        out = {}
        below = children.get(prefix, set())
        for name, member in shape.members.items():
            part = member.serialization.get("name", name)
            if part in below:
                value = _read(member, form, f"{prefix}.{part}" if prefix else part, children)
                if value is not None:
                    out[name] = value
        return out
    if kind == "list":
        if form.get(prefix) == "":
            return []
        if shape.serialization.get("flattened"):
            items = prefix
        else:
            items = f"{prefix}.{shape.member.serialization.get('name', 'member')}"
        return [_read(shape.member, form, f"{items}.{i}", children) for i in _indexes(children, items)]
    if kind == "map":
        entries = prefix if shape.serialization.get("flattened") else f"{prefix}.entry"
        key_part = shape.key.serialization.get("name", "key")
        value_part = shape.value.serialization.get("name", "value")
        out_map = {}
        for i in _indexes(children, entries):
            key = _read(shape.key, form, f"{entries}.{i}.{key_part}", children)
            if key is not None:
                out_map[key] = _read(shape.value, form, f"{entries}.{i}.{value_part}", children)
        return out_map
    text = form.get(prefix)
    return None if text is None else _scalar(kind, text)


def _scalar(kind: str, text: str) -> Any:
    """Text as its member's type where it reads as one; otherwise the text, which the checks refuse."""
    if kind in ("integer", "long") and _INTEGER.fullmatch(text):
        return int(text)
    if kind in ("double", "float") and _NUMBER.fullmatch(text):
        return float(text)
    if kind == "boolean" and text in ("true", "false"):
        return text == "true"
    return text
