"""Captured requests as SageMaker's JSON lines: encodings, the options' sides, metadata and object names."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from moorage.capture.config import CaptureSpec
from moorage.capture.records import LineFormat, Record, Target, event_id, object_uri

AT = 1714564984.25  # 2024-05-01T12:03:04.250Z
EVENT_ID = "4651a1bf-4b00-4248-a309-4a18b11e4277"
CONFIG: dict[str, Any] = {
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": "s3://bucket/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
}


def _captured(config: dict[str, Any] = CONFIG, **fields: Any) -> tuple[LineFormat, Record]:
    """A record as the server hands it to the capture process, and the format of its tap."""
    spec = CaptureSpec.of(config)
    values: dict[str, Any] = {
        "request": b"1,2,3\n",
        "request_type": b"text/csv",
        "response": b"0.5",
        "response_type": b"text/csv; charset=utf-8",
        **fields,
    }
    headers = [(b"Content-Length", b"3")]
    if values["response_type"] is not None:
        headers.append((b"Content-Type", values["response_type"]))
    target = Target(spec.destination, "ep", "AllTraffic", spec.csv_types, spec.json_types)
    record: Record = (
        1,
        AT,
        values["request"] if spec.capture_input else None,
        values["request_type"],
        values["response"] if spec.capture_output else None,
        headers if spec.capture_output else None,
        values.get("inference_id"),
        values.get("custom_attributes"),
    )
    return LineFormat(target), record


def record_line(captured: tuple[LineFormat, Record], event: str = EVENT_ID) -> bytes:
    line_format, record = captured
    return line_format.line(record, event.encode())


def _line(captured: tuple[LineFormat, Record]) -> dict[str, Any]:
    raw = record_line(captured)
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1  # one JSON line
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


def test_csv_request_and_response_are_recorded_as_sagemaker_writes_them() -> None:
    raw = record_line(_captured())

    assert raw == (
        b'{"captureData":{"endpointInput":{"observedContentType":"text/csv","mode":"INPUT",'
        b'"data":"1,2,3\\n","encoding":"CSV"},"endpointOutput":{"observedContentType":'
        b'"text/csv; charset=utf-8","mode":"OUTPUT","data":"0.5","encoding":"CSV"}},'
        b'"eventMetadata":{"eventId":"4651a1bf-4b00-4248-a309-4a18b11e4277",'
        b'"inferenceTime":"2024-05-01T12:03:04Z"},"eventVersion":"0"}\n'
    )


def test_json_and_unlisted_types_and_content_type_parameters() -> None:
    record = _line(
        _captured(
            request=b'{"x": [1, 2]}',
            request_type=b"Application/JSON; charset=UTF-8",
            response=b"\x00\xffbinary",
            response_type=b"application/x-npy",
        )
    )["captureData"]

    assert record["endpointInput"] == {
        "observedContentType": "Application/JSON; charset=UTF-8",
        "mode": "INPUT",
        "data": '{"x": [1, 2]}',
        "encoding": "JSON",
    }
    assert record["endpointOutput"]["encoding"] == "BASE64"
    assert base64.b64decode(record["endpointOutput"]["data"]) == b"\x00\xffbinary"


def test_listed_type_that_is_not_utf8_is_kept_whole_as_base64() -> None:
    record = _line(_captured(request=b"caf\xe9,1\n"))["captureData"]["endpointInput"]

    assert record["encoding"] == "BASE64"
    assert base64.b64decode(record["data"]) == b"caf\xe9,1\n"


def test_without_content_type_header_everything_is_base64() -> None:
    config = {k: v for k, v in CONFIG.items() if k != "CaptureContentTypeHeader"}
    record = _line(_captured(config, request_type=None, response_type=None))["captureData"]

    for side, body in (("endpointInput", b"1,2,3\n"), ("endpointOutput", b"0.5")):
        assert record[side]["encoding"] == "BASE64"
        assert record[side]["observedContentType"] == "application/octet-stream"
        assert base64.b64decode(record[side]["data"]) == body


def test_capture_options_choose_the_sides() -> None:
    only_input = _line(_captured({**CONFIG, "CaptureOptions": [{"CaptureMode": "Input"}]}))
    only_output = _line(_captured({**CONFIG, "CaptureOptions": [{"CaptureMode": "Output"}]}))
    both = _line(_captured({**CONFIG, "CaptureOptions": [{"CaptureMode": "InputAndOutput"}]}))

    assert list(only_input["captureData"]) == ["endpointInput"]
    assert list(only_output["captureData"]) == ["endpointOutput"]
    assert list(both["captureData"]) == ["endpointInput", "endpointOutput"]


def test_inference_id_and_custom_attributes_in_the_metadata() -> None:
    metadata = _line(_captured(inference_id=b"order-17", custom_attributes=b"accept_eula=true"))[
        "eventMetadata"
    ]

    assert metadata == {
        "eventId": "4651a1bf-4b00-4248-a309-4a18b11e4277",
        "inferenceId": "order-17",
        "customAttributes": ["accept_eula=true"],
        "inferenceTime": "2024-05-01T12:03:04Z",
    }


def test_event_ids_are_fresh_uuids() -> None:
    line_format, record = _captured()
    ids = {_line_id(raw) for raw in line_format.lines([record] * 1000).splitlines()}
    ids.add(_line_id(line_format.line(record, event_id())))

    assert len(ids) == 1001
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", i) for i in ids)


def _line_id(raw: bytes) -> str:
    return str(json.loads(raw)["eventMetadata"]["eventId"])


def test_object_names_follow_endpoint_variant_and_hour() -> None:
    uri = object_uri("s3://bucket/capture/", "ep", "AllTraffic", AT, "cee08c3a-02ce-4790-b8ba-3173cfc12813")
    local = object_uri("/data/capture", "ep", "Shadow", AT)

    assert (
        uri
        == "s3://bucket/capture/ep/AllTraffic/2024/05/01/12/03-04-250-cee08c3a-02ce-4790-b8ba-3173cfc12813.jsonl"
    )
    assert re.fullmatch(r"/data/capture/ep/Shadow/2024/05/01/12/03-04-250-[0-9a-f-]{36}\.jsonl", local)


def test_lines_are_the_bytes_json_dumps_gives() -> None:
    """The lines are assembled from parts rendered once; they must be exactly what json.dumps (compact,
    UTF-8) makes of the record, escapes and non-ASCII text included."""
    for body in (b'a"b\\c\n\t\x00\x1f\x7f', "é€😀\u2028".encode(), b"\xff\xfe"):
        captured = _captured(
            request=body,
            request_type="text/csv; x=é%s".encode("latin-1"),
            response=body,
            response_type=b"application/json",
            inference_id='i"d\xe9'.encode("latin-1"),
            custom_attributes=b"a\\b",
        )
        try:
            text, encoding = body.decode(), None
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode(), "BASE64"
        line = {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "text/csv; x=é%s",
                    "mode": "INPUT",
                    "data": text,
                    "encoding": encoding or "CSV",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": text,
                    "encoding": encoding or "JSON",
                },
            },
            "eventMetadata": {
                "eventId": EVENT_ID,
                "inferenceId": 'i"dé',
                "customAttributes": ["a\\b"],
                "inferenceTime": "2024-05-01T12:03:04Z",
            },
            "eventVersion": "0",
        }

        assert (
            record_line(captured)
            == json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        )
