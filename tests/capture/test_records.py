"""Captured requests as SageMaker's JSON lines: encodings, the options' sides, metadata and object names."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from moorage.capture.config import CaptureSpec
from moorage.capture.records import Captured, object_uri, record_line

AT = 1714564984.25  # 2024-05-01T12:03:04.250Z
CONFIG: dict[str, Any] = {
    "InitialSamplingPercentage": 100,
    "DestinationS3Uri": "s3://bucket/capture",
    "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
    "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"], "JsonContentTypes": ["application/json"]},
}


def _captured(config: dict[str, Any] = CONFIG, **fields: Any) -> Captured:
    spec = CaptureSpec.of(config)
    values: dict[str, Any] = {
        "request": b"1,2,3\n",
        "request_type": b"text/csv",
        "response": b"0.5",
        "response_type": b"text/csv; charset=utf-8",
        **fields,
    }
    return Captured(
        spec,
        "ep",
        "AllTraffic",
        AT,
        values["request"] if spec.capture_input else None,
        values["request_type"],
        values["response"] if spec.capture_output else None,
        values["response_type"],
        values.get("inference_id"),
        values.get("custom_attributes"),
    )


def _line(captured: Captured) -> dict[str, Any]:
    raw = record_line(captured, "4651a1bf-4b00-4248-a309-4a18b11e4277")
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1  # one JSON line
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


def test_csv_request_and_response_are_recorded_as_sagemaker_writes_them() -> None:
    raw = record_line(_captured(), "4651a1bf-4b00-4248-a309-4a18b11e4277")

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
    ids = {_line_id(record_line(_captured())) for _ in range(3)}

    assert len(ids) == 3
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
