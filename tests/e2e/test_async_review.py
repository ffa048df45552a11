"""Review of asynchronous inference, end to end (a real server, boto3): each test fails on the code as
reviewed, for the reason its docstring gives."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import FAST_WAIT, unique
from tests.e2e.test_async import RECORDING_MODEL, deploy_async
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_model_tar(tmp_path_factory.mktemp("m") / "model.tar.gz", RECORDING_MODEL).as_uri()


def test_inference_id_cannot_write_outside_the_output_folder(
    server: RunningServer, model: str, tmp_path: Path
) -> None:
    """Security: InferenceId is any printable text (botocore's pattern), and it is joined onto
    S3OutputPath as text (runtime_async.output_locations -> jobs.objects.child), so '../' climbs out of
    a file:// output folder: the server writes `<anywhere>.out` as its own user."""
    sm, smr = server.client(), server.client("sagemaker-runtime")
    out = tmp_path / "results" / "ep"
    name = deploy_async(sm, model, {"OutputConfig": {"S3OutputPath": out.as_uri()}})
    escaped = tmp_path / f"{unique('escaped')}.out"
    try:
        answer = smr.invoke_endpoint_async(
            EndpointName=name,
            Body=json.dumps({"n": 1}).encode(),
            ContentType="application/json",
            InferenceId=f"../../{escaped.stem}",
        )
    except ClientError:
        return  # refused: fine
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not escaped.exists() and not list(out.rglob("*.out")):
        time.sleep(0.1)
    assert not escaped.exists(), f"{answer['OutputLocation']} was written outside {out}: {escaped}"


def test_updating_an_async_endpoint_to_real_time_leaves_no_request_behind(
    server: RunningServer, model: str, tmp_path: Path
) -> None:
    """UpdateEndpoint accepts a real-time endpoint config for an asynchronous endpoint. Requests still
    queued then stay in async_requests for ever: the dispatcher drops the endpoint's queue once its route
    is not asynchronous (Dispatcher._look), so they neither run nor expire (no failure object, no
    notification), and InvokeEndpointAsync is refused from then on. Expected: the update is refused, or
    every accepted request ends with an output or failure object (here its 60 s TTL passes)."""
    sm, smr = server.client(), server.client("sagemaker-runtime")
    out = tmp_path / "out"
    config = {
        "OutputConfig": {"S3OutputPath": out.as_uri()},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
    }
    name = deploy_async(sm, model, config)
    busy = smr.invoke_endpoint_async(
        EndpointName=name, Body=json.dumps({"sleep": 20}).encode(), ContentType="application/json"
    )
    queued = smr.invoke_endpoint_async(
        EndpointName=name,
        Body=json.dumps({"n": 2}).encode(),
        ContentType="application/json",
        RequestTTLSeconds=60,
    )
    real_time = unique("rt")
    sm.create_endpoint_config(
        EndpointConfigName=real_time,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    try:
        sm.update_endpoint(EndpointName=name, EndpointConfigName=real_time)
    except ClientError:
        return  # refused: fine
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    ends = [Path(queued[k].removeprefix("file://")) for k in ("OutputLocation", "FailureLocation")]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(p.exists() for p in ends):
        time.sleep(0.5)
    assert Path(busy["OutputLocation"].removeprefix("file://")).exists()
    assert any(p.exists() for p in ends), "a request accepted with a 202 never ends (no output, no failure)"
