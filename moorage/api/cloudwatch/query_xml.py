"""awsQuery answers: ``<OpResponse><OpResult>…</OpResult><ResponseMetadata>…</ResponseMetadata>``, the
XML botocore's QueryParser reads with the cloudwatch model (lists as ``<member>`` elements, maps as
``<entry><key/><value/></entry>``, timestamps in ISO 8601, booleans as ``true``/``false``)."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from moorage.api.cloudwatch.wire import as_datetime

NAMESPACE = "http://monitoring.amazonaws.com/doc/2010-08-01/"
# characters XML 1.0 cannot carry even escaped; a stored string holding one must not break the document
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_response(operation: Any, result: Mapping[str, Any], rid: str) -> bytes:
    name = operation.name
    parts = [f'<{name}Response xmlns="{NAMESPACE}">']
    shape = operation.output_shape
    if shape is not None:
        wrapper = shape.serialization.get("resultWrapper", f"{name}Result")
        parts.append(f"<{wrapper}>")
        _members(shape, result, parts)
        parts.append(f"</{wrapper}>")
    parts.append(f"<ResponseMetadata><RequestId>{rid}</RequestId></ResponseMetadata></{name}Response>")
    return "".join(parts).encode("utf-8")


def _members(shape: Any, value: Mapping[str, Any], parts: list[str]) -> None:
    for name, member in shape.members.items():
        item = value.get(name)
        if item is None:
            continue
        tag = member.serialization.get("name", name)
        if member.type_name == "list" and member.serialization.get("flattened"):
            for entry in item:
                _element(tag, member.member, entry, parts)
        else:
            _element(tag, member, item, parts)


def _element(tag: str, shape: Any, value: Any, parts: list[str]) -> None:
    parts.append(f"<{tag}>")
    _content(shape, value, parts)
    parts.append(f"</{tag}>")


def _content(shape: Any, value: Any, parts: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        _members(shape, value, parts)
    elif kind == "list":
        member_tag = shape.member.serialization.get("name", "member")
        for item in value:
            _element(member_tag, shape.member, item, parts)
    elif kind == "map":
        key_tag = shape.key.serialization.get("name", "key")
        value_tag = shape.value.serialization.get("name", "value")
        for key, item in value.items():
            parts.append("<entry>")
            _element(key_tag, shape.key, key, parts)
            _element(value_tag, shape.value, item, parts)
            parts.append("</entry>")
    else:
        parts.append(_text(kind, value))


def _text(kind: str, value: Any) -> str:
    if kind == "boolean":
        return "true" if value else "false"
    if kind in ("double", "float"):
        number = float(value)
        if math.isnan(number):
            return "NaN"
        if math.isinf(number):
            return "Infinity" if number > 0 else "-Infinity"
        return repr(number)
    if kind == "timestamp":
        return as_datetime(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if kind == "blob":
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return base64.b64encode(raw).decode("ascii")
    return escape(_NOT_XML.sub("\ufffd", str(value)))
