"""Captured requests as SageMaker writes them: one JSON line per request, objects named by endpoint,
variant and hour.

A line (compact JSON, keys in AWS's order)::

    {"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT","data":"1,2\\n",
    "encoding":"CSV"},"endpointOutput":{"observedContentType":"text/csv; charset=utf-8","mode":"OUTPUT",
    "data":"0.5","encoding":"CSV"}},"eventMetadata":{"eventId":"<uuid4>","inferenceId":"abc",
    "customAttributes":["c1=v1"],"inferenceTime":"2024-05-01T12:03:04Z"},"eventVersion":"0"}

`endpointInput` / `endpointOutput` appear as CaptureOptions ask; `inferenceId` and `customAttributes`
only when the request carried them. The data is the body as text when its content type is listed in
CsvContentTypes / JsonContentTypes (matched without parameters, case-insensitively) and it is UTF-8,
else base64 with encoding BASE64. An object is
``<DestinationS3Uri>/<EndpointName>/<VariantName>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<uuid4>.jsonl``, its
time that of its first record (UTC), as SageMaker names them.

A captured request travels from the server to the capture process (process.py) as a `Record`, a tuple of
plain values that `marshal` serializes in C; the lines are made there. `LineFormat` makes them with
the fixed parts of each line rendered once per (variant, content types) and only the bodies escaped
(`json.encoder`'s C escaping), which gives the bytes `json.dumps(..., separators=(",", ":"),
ensure_ascii=False)` gives, at a fraction of its cost."""

from __future__ import annotations

import binascii
import json.encoder
import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from moorage.capture.config import media_type
from moorage.jobs.objects import child

# a body without a Content-Type (the request's or the model's) is recorded as what the runtime answers
# such a response with
DEFAULT_CONTENT_TYPE = b"application/octet-stream"

# (tap number, time.time() of the request, request body, its Content-Type, response body, its headers,
# InferenceId, CustomAttributes): a body is None where CaptureOptions leave that side out, a header None
# where the request had none
Record = tuple[
    int,
    float,
    bytes | None,
    bytes | None,
    bytes | None,
    list[tuple[bytes, bytes]] | None,
    bytes | None,
    bytes | None,
]

_escape = json.encoder.encode_basestring  # C: quotes and escapes as json.dumps(ensure_ascii=False)


@dataclass(frozen=True)
class Target:
    """Where one tap's records go and how their bodies are encoded (what a tap tells the capture process
    once, so a record carries only its number)."""

    destination: str
    endpoint: str
    variant: str
    csv_types: frozenset[str]
    json_types: frozenset[str]

    def to_wire(self) -> tuple[str, str, str, tuple[str, ...], tuple[str, ...]]:
        return (
            self.destination,
            self.endpoint,
            self.variant,
            tuple(sorted(self.csv_types)),
            tuple(sorted(self.json_types)),
        )

    @classmethod
    def from_wire(cls, wire: Any) -> Target:
        destination, endpoint, variant, csv_types, json_types = wire
        return cls(destination, endpoint, variant, frozenset(csv_types), frozenset(json_types))


def content_type_of(headers: list[tuple[bytes, bytes]] | None) -> bytes | None:
    """The Content-Type among a response's headers (the first, any case)."""
    for key, value in headers or ():
        if key.lower() == b"content-type":
            return value
    return None


class _Side:
    """The fixed parts of one side (endpointInput / endpointOutput) for one content type."""

    __slots__ = ("as_base64", "as_text", "text")

    def __init__(self, target: Target, name: str, mode: str, content_type: bytes | None) -> None:
        observed = (content_type or DEFAULT_CONTENT_TYPE).decode("latin-1")
        kind = media_type(observed)
        encoding = "CSV" if kind in target.csv_types else "JSON" if kind in target.json_types else None
        self.text = encoding is not None  # else always BASE64
        # a % in the content type stays itself in the templates below
        observed_json = _escape(observed).replace("%", "%%")
        head = f'"{name}":{{"observedContentType":{observed_json},"mode":"{mode}","data":'
        self.as_text = f'{head}%s,"encoding":"{encoding}"}}'.encode()
        self.as_base64 = f'{head}"%s","encoding":"BASE64"}}'.encode()

    def render(self, body: bytes) -> bytes:
        if self.text:
            try:
                return self.as_text % _escape(body.decode()).encode()
            except UnicodeDecodeError:  # not text after all: kept whole, as base64, and labelled so
                pass
        return self.as_base64 % binascii.b2a_base64(body, newline=False)


_META = b'},"eventMetadata":{"eventId":"'
_LINE = b'{"captureData":{%s%s%s' + _META + b'%s"%s%s,"inferenceTime":"%s"},"eventVersion":"0"}\n'
# the same, the eventId a random prefix of the batch and the record's 12 last hex digits
_LINE_WITH_ID = (
    b'{"captureData":{%s%s%s' + _META + b'%s%012x"%s%s,"inferenceTime":"%s"},"eventVersion":"0"}\n'
)
_LAST_DIGITS = 1 << 48


class LineFormat:
    """Makes the lines of one target's records; keeps the rendered fixed parts per content type."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._inputs: dict[bytes | None, _Side] = {}
        self._outputs: dict[bytes | None, _Side] = {}
        self._second = -1
        self._time = b""

    def line(self, record: Record, event_id: bytes) -> bytes:
        """The JSON line of one record (with its newline)."""
        first, comma, second, inference_id, custom_attributes, time_text = self._parts(record)
        return _LINE % (first, comma, second, event_id, inference_id, custom_attributes, time_text)

    def lines(self, records: list[Record]) -> bytes:
        """The lines of `records`, each with its own eventId: a UUID (version 4) whose first 20 hex
        digits are random for the batch and whose last 12 count on from a random number, so ids are
        unique without a random draw per record."""
        prefix = event_id()[:24]  # 8-4-4-4 digits and the dash before the last 12
        number = int.from_bytes(os.urandom(6))
        parts = self._parts
        out = []
        for record in records:
            first, comma, second, inference_id, custom_attributes, time_text = parts(record)
            out.append(
                _LINE_WITH_ID
                % (first, comma, second, prefix, number, inference_id, custom_attributes, time_text)
            )
            number = (number + 1) % _LAST_DIGITS
        return b"".join(out)

    def _parts(self, record: Record) -> tuple[bytes, bytes, bytes, bytes, bytes, bytes]:
        _, at, request, request_type, response, headers, inference_id, custom_attributes = record
        first = second = comma = b""
        if request is not None:
            side = self._inputs.get(request_type)
            if side is None:
                side = self._inputs[request_type] = _Side(self.target, "endpointInput", "INPUT", request_type)
            first = side.render(request)
        if response is not None:
            response_type = content_type_of(headers)
            side = self._outputs.get(response_type)
            if side is None:
                side = _Side(self.target, "endpointOutput", "OUTPUT", response_type)
                self._outputs[response_type] = side
            second = side.render(response)
            if request is not None:
                comma = b","
        second_now = int(at)
        if second_now != self._second:
            self._second, self._time = second_now, inference_time(at).encode()
        return (
            first,
            comma,
            second,
            b""
            if inference_id is None
            else b',"inferenceId":%s' % _escape(inference_id.decode("latin-1")).encode(),
            b""
            if custom_attributes is None
            else b',"customAttributes":[%s]' % _escape(custom_attributes.decode("latin-1")).encode(),
            self._time,
        )


def _metadata(name: str, value: bytes) -> bytes:
    text = _escape(value.decode("latin-1")).encode()
    return (
        b',"%s":[%s]' % (name.encode(), text)
        if name == "customAttributes"
        else b',"%s":%s' % (name.encode(), text)
    )


def inference_time(at: float) -> str:
    """`2024-05-01T12:03:04Z`: UTC, whole seconds, as SageMaker's records give it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def event_id() -> bytes:
    """A random UUID (version 4) as text: a record's eventId."""
    return str(uuid.uuid4()).encode()


def object_uri(destination: str, endpoint: str, variant: str, at: float, name_id: str | None = None) -> str:
    """Where a batch whose first record is at `at` is written (an s3:// URI or a path, as `destination`)."""
    stamp = time.gmtime(at)
    millis = int(at % 1 * 1000)
    name = f"{time.strftime('%M-%S', stamp)}-{millis:03d}-{name_id or uuid.uuid4()}.jsonl"
    return child(destination, f"{endpoint}/{variant}/{time.strftime('%Y/%m/%d/%H', stamp)}/{name}")
