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

Everything here runs on the capture writer's thread, never on the request path."""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from moorage.capture.config import CaptureSpec, media_type
from moorage.jobs.objects import child

# a body without a Content-Type (the request's or the model's) is recorded as what the runtime answers
# such a response with
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# what a waiting record costs besides its bytes (the object, its time, its place in the queue; about 150
# bytes measured, rounded up)
RECORD_OVERHEAD_BYTES = 256


@dataclass(slots=True, eq=False)
class Captured:
    """One answered request as the tap saw it: the raw bytes, not yet a record. `request` / `response`
    are None where CaptureOptions leave that side out."""

    spec: CaptureSpec
    endpoint: str
    variant: str
    at: float  # time.time() when the answer arrived
    request: bytes | None
    request_type: bytes | None
    response: bytes | None
    response_type: bytes | None
    inference_id: bytes | None = None
    custom_attributes: bytes | None = None
    attempts: int = 0  # writes that failed and may be tried again

    @property
    def size(self) -> int:
        """The bytes this record holds in memory until it is written: its bodies and headers, and the
        record itself (so many tiny requests are bounded too, not only large ones)."""
        return (
            RECORD_OVERHEAD_BYTES
            + len(self.request or b"")
            + len(self.response or b"")
            + len(self.request_type or b"")
            + len(self.response_type or b"")
            + len(self.inference_id or b"")
            + len(self.custom_attributes or b"")
        )

    @property
    def hour(self) -> int:
        return int(self.at // 3600)


def record_line(captured: Captured, event_id: str | None = None) -> bytes:
    """The JSON line for one captured request (with its newline)."""
    spec = captured.spec
    data: dict[str, Any] = {}
    if captured.request is not None:
        data["endpointInput"] = _side(spec, captured.request_type, "INPUT", captured.request)
    if captured.response is not None:
        data["endpointOutput"] = _side(spec, captured.response_type, "OUTPUT", captured.response)
    metadata: dict[str, Any] = {"eventId": event_id or str(uuid.uuid4())}
    if captured.inference_id is not None:
        metadata["inferenceId"] = captured.inference_id.decode("latin-1")
    if captured.custom_attributes is not None:
        metadata["customAttributes"] = [captured.custom_attributes.decode("latin-1")]
    metadata["inferenceTime"] = inference_time(captured.at)
    line = {"captureData": data, "eventMetadata": metadata, "eventVersion": "0"}
    return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def inference_time(at: float) -> str:
    """`2024-05-01T12:03:04Z`: UTC, whole seconds, as SageMaker's records give it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def _side(spec: CaptureSpec, content_type: bytes | None, mode: str, body: bytes) -> dict[str, str]:
    observed = content_type.decode("latin-1") if content_type is not None else DEFAULT_CONTENT_TYPE
    encoding = _encoding(spec, observed)
    if encoding != "BASE64":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:  # not text after all: kept whole, as base64, and labelled so
            encoding = "BASE64"
    if encoding == "BASE64":
        text = base64.b64encode(body).decode("ascii")
    return {"observedContentType": observed, "mode": mode, "data": text, "encoding": encoding}


def _encoding(spec: CaptureSpec, content_type: str) -> str:
    kind = media_type(content_type)
    if kind in spec.csv_types:
        return "CSV"
    if kind in spec.json_types:
        return "JSON"
    return "BASE64"


def object_uri(destination: str, endpoint: str, variant: str, at: float, name_id: str | None = None) -> str:
    """Where a batch whose first record is at `at` is written (an s3:// URI or a path, as `destination`)."""
    stamp = time.gmtime(at)
    millis = int(at % 1 * 1000)
    name = f"{time.strftime('%M-%S', stamp)}-{millis:03d}-{name_id or uuid.uuid4()}.jsonl"
    return child(destination, f"{endpoint}/{variant}/{time.strftime('%Y/%m/%d/%H', stamp)}/{name}")
