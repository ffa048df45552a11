"""Data capture (DataCaptureConfig) end to end: real `moorage serve` processes with their embedded S3
store, unchanged boto3 clients, and the capture files read back as a SageMaker user reads them.

One server (writing every 0.2 s) serves the module; the SIGTERM test runs its own, short-lived one."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import FAST_WAIT, deploy, unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server

# answers in the content type it was asked in: JSON, CSV (with a charset, as many models do), or bytes
CAPTURE_MODEL = """
import json

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return (body.encode() if isinstance(body, str) else body), content_type

def predict_fn(data, model):
    return data

def output_fn(prediction, accept):
    body, content_type = prediction
    if content_type == "application/json":
        return json.dumps({"echo": json.loads(body)}), "application/json"
    if content_type == "text/csv":
        return ",".join(reversed(body.decode().strip().split(","))) + "\\n", "text/csv; charset=utf-8"
    return bytes(reversed(body)), "application/octet-stream"
"""
FLUSH = {"MOORAGE_CAPTURE_FLUSH_SECONDS": "0.2"}
KEY = re.compile(r"(?P<endpoint>[^/]+)/AllTraffic/\d{4}/\d\d/\d\d/\d\d/\d\d-\d\d-\d{3}-[0-9a-f-]{36}\.jsonl")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`moorage serve` with its embedded S3 store, writing captured data every 0.2 s."""
    with moorage_server(tmp_path_factory.mktemp("state"), env=FLUSH, args=()) as running:
        yield running


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_model_tar(tmp_path_factory.mktemp("model") / "model.tar.gz", CAPTURE_MODEL).as_uri()


@pytest.fixture(scope="module")
def bucket(server: RunningServer) -> str:
    name = unique("capture")
    server.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("captured")


@pytest.fixture(scope="module")
def endpoints(server: RunningServer, model: str, bucket: str, local_dir: Path) -> dict[str, str]:
    """The module's endpoints, created together and waited for together."""
    sm = server.client("sagemaker")
    names = {
        # what the SageMaker SDK's DataCaptureConfig sends, with a KMS key
        "s3": deploy(sm, model, wait=False, config={"DataCaptureConfig": _capture(f"s3://{bucket}/capture")}),
        "local": deploy(
            sm,
            model,
            wait=False,
            config={"DataCaptureConfig": _capture(local_dir.as_uri(), options=["Input"], KmsKeyId="")},
        ),
        "toggled": deploy(
            sm,
            model,
            wait=False,
            config={"DataCaptureConfig": _capture(f"s3://{bucket}/toggled", EnableCapture=False)},
        ),
        "async": deploy(
            sm,
            model,
            wait=False,
            config={
                "DataCaptureConfig": _capture(f"s3://{bucket}/async"),
                "AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": f"s3://{bucket}/async-out"}},
            },
        ),
    }
    for name in names.values():
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    return names


def _capture(
    destination: str, options: tuple[str, ...] | list[str] = ("Input", "Output"), **more: Any
) -> Any:
    config = {
        "EnableCapture": True,
        "InitialSamplingPercentage": 100,
        "DestinationS3Uri": destination,
        "CaptureOptions": [{"CaptureMode": mode} for mode in options],
        "CaptureContentTypeHeader": {
            "CsvContentTypes": ["text/csv"],
            "JsonContentTypes": ["application/json"],
        },
        "KmsKeyId": "alias/capture",
        **more,
    }
    return {key: value for key, value in config.items() if value != ""}


def _invoke(server: RunningServer, endpoint: str, body: bytes, content_type: str, **more: Any) -> bytes:
    answer = server.client("sagemaker-runtime").invoke_endpoint(
        EndpointName=endpoint, Body=body, ContentType=content_type, **more
    )
    data: bytes = answer["Body"].read()
    return data


def _s3_records(server: RunningServer, bucket: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    s3 = server.client("s3")
    found = []
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        text = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read().decode()
        assert text.endswith("\n")
        found += [(item["Key"], json.loads(line)) for line in text.splitlines()]
    return found


def _until(read: Any, count: int, timeout: float = 30) -> Any:
    """What `read()` returns once it holds `count` records (it never should hold more)."""
    deadline = time.monotonic() + timeout
    while True:
        found = read()
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, found
            return found
        time.sleep(0.1)


def _data(side: dict[str, Any]) -> bytes:
    if side["encoding"] == "BASE64":
        return base64.b64decode(side["data"])
    return str(side["data"]).encode()


def _encodings(record: dict[str, Any]) -> list[str]:
    return [record["captureData"][side]["encoding"] for side in ("endpointInput", "endpointOutput")]


def test_s3_capture_records_match_the_requests_and_answers(
    server: RunningServer, endpoints: dict[str, str], bucket: str
) -> None:
    name = endpoints["s3"]
    sent = [
        (b"1,2,3\n", "text/csv", {"InferenceId": "row-1"}),
        (b'{"x": [1, 2]}', "application/json", {"CustomAttributes": "accept_eula=true"}),
        (b"\x00\x01binary\xff", "application/x-npy", {}),
    ]
    answers = [_invoke(server, name, body, content_type, **more) for body, content_type, more in sent]

    records = _until(lambda: _s3_records(server, bucket, f"capture/{name}/"), len(sent))

    assert answers == [b"3,2,1\n", b'{"echo": {"x": [1, 2]}}', b"\xffyranib\x01\x00"]
    for key, _ in records:
        match = KEY.fullmatch(key.removeprefix("capture/"))
        assert match is not None and match["endpoint"] == name, key
    by_input = {_data(r["captureData"]["endpointInput"]): r for _, r in records}
    assert set(by_input) == {body for body, _, _ in sent}
    csv, js, raw = (by_input[body] for body, _, _ in sent)
    assert csv["captureData"] == {
        "endpointInput": {
            "observedContentType": "text/csv",
            "mode": "INPUT",
            "data": "1,2,3\n",
            "encoding": "CSV",
        },
        "endpointOutput": {
            "observedContentType": "text/csv; charset=utf-8",
            "mode": "OUTPUT",
            "data": "3,2,1\n",
            "encoding": "CSV",
        },
    }
    assert _encodings(js) == ["JSON", "JSON"]
    assert _data(js["captureData"]["endpointOutput"]) == answers[1]
    assert _encodings(raw) == ["BASE64", "BASE64"]
    assert raw["captureData"]["endpointInput"]["observedContentType"] == "application/x-npy"
    assert _data(raw["captureData"]["endpointOutput"]) == answers[2]
    assert csv["eventMetadata"]["inferenceId"] == "row-1"
    assert js["eventMetadata"]["customAttributes"] == ["accept_eula=true"]
    assert "inferenceId" not in raw["eventMetadata"] and "customAttributes" not in raw["eventMetadata"]
    for record in (csv, js, raw):
        assert record["eventVersion"] == "0"
        assert TIME.fullmatch(record["eventMetadata"]["inferenceTime"])
    assert len({r["eventMetadata"]["eventId"] for r in (csv, js, raw)}) == 3

    described = server.client("sagemaker").describe_endpoint(EndpointName=name)["DataCaptureConfig"]
    assert described == {
        "EnableCapture": True,
        "CaptureStatus": "Started",
        "CurrentSamplingPercentage": 100,
        "DestinationS3Uri": f"s3://{bucket}/capture",
        "KmsKeyId": "alias/capture",
    }


def test_input_only_capture_to_a_local_folder(
    server: RunningServer, endpoints: dict[str, str], local_dir: Path
) -> None:
    name = endpoints["local"]
    bodies = [b'{"n": 1}', b'{"n": 2}']
    for body in bodies:
        _invoke(server, name, body, "application/json")

    def read() -> list[dict[str, Any]]:
        return [
            json.loads(line) for path in local_dir.rglob("*.jsonl") for line in path.read_text().splitlines()
        ]

    records = _until(read, len(bodies))
    files = [KEY.fullmatch(str(p.relative_to(local_dir))) for p in local_dir.rglob("*.jsonl")]
    assert files and all(match is not None and match["endpoint"] == name for match in files)
    assert sorted(_data(r["captureData"]["endpointInput"]) for r in records) == bodies
    assert all(list(r["captureData"]) == ["endpointInput"] for r in records)


def test_update_endpoint_turns_capture_on_samples_zero_and_turns_it_off(
    server: RunningServer, endpoints: dict[str, str], bucket: str
) -> None:
    sm = server.client("sagemaker")
    name = endpoints["toggled"]
    statuses = []

    def update(**capture: Any) -> None:
        config = unique("toggle")
        sm.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                }
            ],
            DataCaptureConfig=_capture(f"s3://{bucket}/toggled", **capture),
        )
        sm.update_endpoint(EndpointName=name, EndpointConfigName=config)
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)

    def send(body: bytes) -> None:
        described = sm.describe_endpoint(EndpointName=name)["DataCaptureConfig"]
        statuses.append((described["CaptureStatus"], described["CurrentSamplingPercentage"]))
        _invoke(server, name, body, "application/json")

    send(b'{"phase": "off"}')
    update()
    send(b'{"phase": "on"}')
    update(InitialSamplingPercentage=0)
    send(b'{"phase": "zero"}')
    update(EnableCapture=False)
    send(b'{"phase": "off again"}')
    # the writer writes everything waiting at once: when this later request is in its files, any
    # capture of the requests above would be too
    _invoke(server, endpoints["s3"], b'{"marker": true}', "application/json")
    _until(
        lambda: [
            r for _, r in _s3_records(server, bucket, f"capture/{endpoints['s3']}/") if "marker" in str(r)
        ],
        1,
    )

    assert statuses == [("Stopped", 100), ("Started", 100), ("Started", 0), ("Stopped", 100)]
    records = _s3_records(server, bucket, f"toggled/{name}/")
    assert [_data(r["captureData"]["endpointInput"]) for _, r in records] == [b'{"phase": "on"}']


def test_asynchronous_requests_are_captured(
    server: RunningServer, endpoints: dict[str, str], bucket: str
) -> None:
    name = endpoints["async"]
    server.client("s3").put_object(Bucket=bucket, Key="async-in/one.csv", Body=b"4,5,6\n")

    answer = server.client("sagemaker-runtime").invoke_endpoint_async(
        EndpointName=name, InputLocation=f"s3://{bucket}/async-in/one.csv", ContentType="text/csv"
    )
    [(_, record)] = _until(lambda: _s3_records(server, bucket, f"async/{name}/"), 1)

    assert _data(record["captureData"]["endpointInput"]) == b"4,5,6\n"
    assert record["captureData"]["endpointOutput"]["data"] == "6,5,4\n"
    assert record["eventMetadata"]["inferenceId"] == answer["InferenceId"]


def test_create_endpoint_config_refuses_what_aws_refuses(
    server: RunningServer, endpoints: dict[str, str]
) -> None:
    sm = server.client("sagemaker")
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": endpoints["s3"],
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }
    cases = [
        (_capture("s3://bucket/x", InitialSamplingPercentage=101), "less than or equal to 100"),
        (_capture("https://bucket.s3.amazonaws.com/x"), "is an https:// URL"),
        (_capture("s3://bucket/x", options=["Everything"]), "Member must satisfy enum value set"),
    ]
    for capture, words in cases:
        with pytest.raises(ClientError) as refused:
            sm.create_endpoint_config(
                EndpointConfigName=unique("bad"), ProductionVariants=[variant], DataCaptureConfig=capture
            )
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert words in refused.value.response["Error"]["Message"]


def test_what_was_captured_survives_sigterm(model: str, tmp_path: Path) -> None:
    """Nothing is written before the shutdown (a 10-minute interval): SIGTERM right after the last
    answer, and every request is in the embedded store when the server comes back."""
    state = tmp_path / "state"
    bodies = [json.dumps({"n": n}).encode() for n in range(20)]
    with moorage_server(state, env={"MOORAGE_CAPTURE_FLUSH_SECONDS": "600"}, args=()) as running:
        bucket = unique("sigterm")
        running.client("s3").create_bucket(Bucket=bucket)
        name = deploy(
            running.client("sagemaker"), model, config={"DataCaptureConfig": _capture(f"s3://{bucket}")}
        )
        for body in bodies:
            _invoke(running, name, body, "application/json")
        running.process.terminate()
        assert running.process.wait(60) == 0
    with moorage_server(state, args=()) as again:
        records = _s3_records(again, bucket, f"{name}/")

    assert sorted(_data(r["captureData"]["endpointInput"]) for _, r in records) == sorted(bodies)
    assert {_data(r["captureData"]["endpointOutput"]) for _, r in records} == {
        json.dumps({"echo": {"n": n}}).encode() for n in range(20)
    }
