"""Serverless endpoints end to end: zero instances until a request comes, the request held while one
starts, MaxConcurrency throttling, the idle scale-down, MemorySizeInMB, ProvisionedConcurrency and
ServerlessUpdateConfig, through unchanged boto3 clients against a real server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import FAST_WAIT, unique
from tests.support.metrics import endpoint_metric
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server
from tests.support.serverless import ROLE, invoke_json, serverless_endpoint

IDLE_SECONDS = 2.0

# predict writes `started` (a path) once it runs, then sleeps; `allocate` MiB are allocated on request
SERVERLESS_INFERENCE = """
import json, os, time

def model_fn(model_dir):
    if os.environ.get("ALLOCATE_AT_LOAD_MB"):
        return bytearray(int(os.environ["ALLOCATE_AT_LOAD_MB"]) * 1024 * 1024)
    return {"pid": os.getpid()}

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    if data.get("started"):
        open(data["started"], "w").close()
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    if data.get("allocate_mb"):
        block = bytearray(int(data["allocate_mb"]) * 1024 * 1024)
        return {"allocated": len(block)}
    return {"echo": data, "pid": os.getpid()}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {"MOORAGE_SERVERLESS_IDLE_SECONDS": str(IDLE_SECONDS)}
    with moorage_server(tmp_path_factory.mktemp("state"), env=env) as running:
        yield running


@pytest.fixture(scope="module")
def model_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("models") / "serverless" / "model.tar.gz"
    return build_model_tar(path, SERVERLESS_INFERENCE).as_uri()


def _instances(server: RunningServer, endpoint: str) -> float:
    return endpoint_metric(server.url, "sagemaker_variant_instances", endpoint)


def _starts(server: RunningServer, endpoint: str) -> float:
    return endpoint_metric(server.url, "sagemaker_model_setup_time_microseconds_count", endpoint)


def _wait_for(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def _error(call: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response: dict[str, Any] = caught.value.response
    return response


def test_first_request_at_zero_instances_is_answered(
    server: RunningServer, sm: Any, smr: Any, model_url: str
) -> None:
    name = serverless_endpoint(sm, model_url)
    variant = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    assert variant["CurrentServerlessConfig"] == {"MemorySizeInMB": 1024, "MaxConcurrency": 2}
    assert variant["DesiredServerlessConfig"] == variant["CurrentServerlessConfig"]
    assert "CurrentInstanceCount" not in variant
    assert _instances(server, name) == 0 and _starts(server, name) == 0

    assert invoke_json(smr, name, {"hello": 1})["echo"] == {"hello": 1}
    assert _instances(server, name) == 1 and _starts(server, name) == 1
    assert "a request arrived at zero instances" in (server.state_dir / "logs" / f"{name}.log").read_text()


def _parent(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def test_instances_are_forked_from_the_zygote(
    server: RunningServer, sm: Any, smr: Any, model_url: str
) -> None:
    """Locally a serverless instance is forked from a process that has the runtime imported already."""
    name = serverless_endpoint(sm, model_url, max_concurrency=1)
    worker = invoke_json(smr, name, {})["pid"]
    zygote = _parent(_parent(worker))  # worker -> instance main -> zygote -> server
    assert b"moorage.serving.zygote" in Path(f"/proc/{zygote}/cmdline").read_bytes()
    assert _parent(zygote) == server.process.pid


def test_idle_variant_scales_to_zero_and_starts_again(
    server: RunningServer, sm: Any, smr: Any, model_url: str
) -> None:
    name = serverless_endpoint(sm, model_url)
    first = invoke_json(smr, name, {"n": 1})["pid"]
    _wait_for(lambda: _instances(server, name) == 0, "the idle scale-down")
    assert "scaling to zero instances" in (server.state_dir / "logs" / f"{name}.log").read_text()
    assert invoke_json(smr, name, {"n": 2})["pid"] != first
    assert _starts(server, name) == 2


def test_requests_beyond_max_concurrency_are_throttled(
    server: RunningServer, sm: Any, smr: Any, model_url: str, tmp_path: Path
) -> None:
    name = serverless_endpoint(sm, model_url, max_concurrency=1)
    started = tmp_path / "started"
    slow = threading.Thread(target=invoke_json, args=(smr, name, {"started": str(started), "sleep": 3}))
    slow.start()
    try:
        _wait_for(started.exists, "the first request to reach the model")
        error = _error(smr.invoke_endpoint, EndpointName=name, ContentType="application/json", Body=b"{}")
        assert error["Error"]["Code"] == "ThrottlingException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "MaxConcurrency of 1" in error["Error"]["Message"]
    finally:
        slow.join()
    assert invoke_json(smr, name, {"after": True})["echo"] == {"after": True}


def test_payload_over_4_mb_is_refused(sm: Any, smr: Any, model_url: str) -> None:
    name = serverless_endpoint(sm, model_url)
    body = b"[" + b"0," * (2 * 1024 * 1024) + b"0]"
    error = _error(smr.invoke_endpoint, EndpointName=name, ContentType="application/json", Body=body)
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert "exceeded 4194304 bytes" in error["Error"]["Message"]


def test_memory_over_the_limit_is_a_model_error_and_the_endpoint_lives_on(
    server: RunningServer, sm: Any, smr: Any, model_url: str
) -> None:
    name = serverless_endpoint(sm, model_url, memory=1024)
    error = _error(
        smr.invoke_endpoint,
        EndpointName=name,
        ContentType="application/json",
        Body=json.dumps({"allocate_mb": 2048}),
    )
    assert error["Error"]["Code"] == "ModelError"
    assert "MemorySizeInMB" in error["Error"]["Message"]
    assert invoke_json(smr, name, {"allocate_mb": 16})["allocated"] == 16 * 1024 * 1024
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def test_model_too_big_to_load_is_a_model_error(sm: Any, smr: Any, model_url: str) -> None:
    name = serverless_endpoint(sm, model_url, memory=1024, environment={"ALLOCATE_AT_LOAD_MB": "2048"})
    error = _error(smr.invoke_endpoint, EndpointName=name, ContentType="application/json", Body=b"{}")
    assert error["Error"]["Code"] == "ModelError"
    assert "MemorySizeInMB" in error["Error"]["Message"] and "model_fn" in error["Error"]["Message"]


def test_provisioned_concurrency_keeps_an_instance_warm(
    server: RunningServer, sm: Any, smr: Any, model_url: str
) -> None:
    name = serverless_endpoint(sm, model_url, max_concurrency=1, provisioned=1)
    assert _instances(server, name) == 1  # started with the endpoint
    pid = invoke_json(smr, name, {})["pid"]
    time.sleep(IDLE_SECONDS * 2)  # well past the idle period
    assert invoke_json(smr, name, {})["pid"] == pid
    assert _starts(server, name) == 1


def test_serverless_update_config(server: RunningServer, sm: Any, smr: Any, model_url: str) -> None:
    name = serverless_endpoint(sm, model_url, max_concurrency=1)
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[
            {
                "VariantName": "AllTraffic",
                "ServerlessUpdateConfig": {"MaxConcurrency": 3, "ProvisionedConcurrency": 2},
            }
        ],
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    variant = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
    wanted = {"MemorySizeInMB": 1024, "MaxConcurrency": 3, "ProvisionedConcurrency": 2}
    assert variant["CurrentServerlessConfig"] == variant["DesiredServerlessConfig"] == wanted
    _wait_for(lambda: _instances(server, name) == 1, "the provisioned instance")

    error = _error(
        sm.update_endpoint_weights_and_capacities,
        EndpointName=name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "AllTraffic", "ServerlessUpdateConfig": {"MaxConcurrency": 1}}
        ],
    )
    assert error["Error"]["Code"] == "ValidationException"
    assert "must not exceed MaxConcurrency" in error["Error"]["Message"]
    error = _error(
        sm.update_endpoint_weights_and_capacities,
        EndpointName=name,
        DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
    )
    assert "is serverless" in error["Error"]["Message"]


@pytest.mark.parametrize(
    ("extra_config", "model_extra", "complaint"),
    [
        (
            {
                "DataCaptureConfig": {
                    "InitialSamplingPercentage": 10,
                    "DestinationS3Uri": "s3://b/c",
                    "CaptureOptions": [{"CaptureMode": "Input"}],
                }
            },
            {},
            "data capture",
        ),
        ({}, {"VpcConfig": {"SecurityGroupIds": ["sg-12345678"], "Subnets": ["subnet-12345678"]}}, "VPC"),
        ({}, {"Mode": "MultiModel"}, "multi-model"),
        ({"second_variant": True}, {}, "exactly one production variant"),
    ],
)
def test_features_serverless_excludes_are_refused(
    sm: Any, model_url: str, extra_config: dict[str, Any], model_extra: dict[str, Any], complaint: str
) -> None:
    name = unique("slsbad")
    container: dict[str, Any] = {"Image": "example/image:latest", "ModelDataUrl": model_url}
    model: dict[str, Any] = {"ModelName": name, "ExecutionRoleArn": ROLE, "PrimaryContainer": container}
    if "Mode" in model_extra:
        container["Mode"] = model_extra["Mode"]
    elif model_extra:
        model.update(model_extra)
    sm.create_model(**model)
    variants: list[dict[str, Any]] = [
        {
            "VariantName": "a",
            "ModelName": name,
            "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1},
        }
    ]
    if extra_config.pop("second_variant", False):
        variants.append(
            {"VariantName": "b", "ModelName": name, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
        )
    error = _error(
        sm.create_endpoint_config, EndpointConfigName=name, ProductionVariants=variants, **extra_config
    )
    assert error["Error"]["Code"] == "ValidationException"
    assert complaint in error["Error"]["Message"]
