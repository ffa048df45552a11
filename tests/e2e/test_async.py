"""Asynchronous inference end to end: a real server with its embedded S3 store, unchanged boto3 clients,
a webhook receiver on 127.0.0.1 standing in for the SNS topics' subscribers."""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import FAST_WAIT, deploy, unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, free_port, moorage_server

ACCOUNT = "123456789012"
SUCCESS_TOPIC = f"arn:aws:sns:us-west-2:{ACCOUNT}:async-done"
ERROR_TOPIC = f"arn:aws:sns:us-west-2:{ACCOUNT}:async-failed"
FAST_SCALING = {
    "MOORAGE_SCALING_PERIOD_SECONDS": "1",
    "MOORAGE_SCALE_OUT_DATAPOINTS": "1",
    "MOORAGE_SCALE_IN_DATAPOINTS": "2",
}
# the echo model, plus a record of each request it ran (to see that nothing runs twice)
RECORDING_MODEL = """
import json, os, time

def model_fn(model_dir):
    return {}

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    if data.get("crash"):
        raise RuntimeError("boom: " + str(data["crash"]))
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    record = os.environ.get("RECORD")
    if record and "n" in data:
        with open(record, "a") as f:
            f.write(f"{data['n']}\\n")
    return {"echo": data}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


class Webhook:
    """Collects the SNS notifications POSTed to it."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[dict[str, str], dict[str, Any]]] = queue.Queue()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/sns"
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.put(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def message_for(self, inference_id: str, timeout: float = 60) -> tuple[dict[str, str], dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                headers, envelope = self.received.get(timeout=0.5)
            except queue.Empty:
                continue
            if json.loads(envelope["Message"])["inferenceId"] == inference_id:
                return headers, envelope
        raise AssertionError(f"no notification for {inference_id}")


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.httpd.shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, webhook: Webhook) -> Iterator[RunningServer]:
    args = ("--sns-webhook", f"{SUCCESS_TOPIC}={webhook.url}")
    env = {**FAST_SCALING, "MOORAGE_SNS_WEBHOOKS": f"{ERROR_TOPIC}={webhook.url}"}
    with moorage_server(tmp_path_factory.mktemp("state"), args=args, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def s3(server: RunningServer) -> Any:
    client = server.client("s3")
    client.create_bucket(Bucket="async")
    return client


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_model_tar(tmp_path_factory.mktemp("m") / "model.tar.gz", RECORDING_MODEL).as_uri()


def deploy_async(
    sm: Any,
    model_url: str,
    async_config: dict[str, Any],
    environment: dict[str, str] | None = None,
    instances: int = 1,
) -> str:
    return deploy(
        sm,
        model_url,
        name=unique("async"),
        instances=instances,
        environment=environment,
        config={"AsyncInferenceConfig": async_config},
    )


def wait_object(s3: Any, uri: str, timeout: float = 120) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    deadline = time.monotonic() + timeout
    while True:
        try:
            body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            return body
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchKey" or time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def exists(s3: Any, uri: str) -> bool:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def put_input(s3: Any, payload: dict[str, Any]) -> str:
    key = f"in/{unique('req')}.json"
    s3.put_object(Bucket="async", Key=key, Body=json.dumps(payload).encode())
    return f"s3://async/{key}"


def test_config_is_checked_and_echoed(server: RunningServer, s3: Any, model: str) -> None:
    sm = server.client()
    name = unique("cfg")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole",
        PrimaryContainer={"Image": "example/image:latest", "ModelDataUrl": model},
    )
    variants = [
        {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    ]
    with pytest.raises(ClientError) as missing:
        sm.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=variants, AsyncInferenceConfig={"OutputConfig": {}}
        )
    assert "S3OutputPath is required" in missing.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as topic:
        sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=variants,
            AsyncInferenceConfig={
                "OutputConfig": {
                    "S3OutputPath": "s3://async/out",
                    "NotificationConfig": {"IncludeInferenceResponseIn": ["ERROR_NOTIFICATION_TOPIC"]},
                }
            },
        )
    assert "ErrorTopic is not set" in topic.value.response["Error"]["Message"]
    config = {
        "OutputConfig": {"S3OutputPath": "s3://async/out", "S3FailurePath": "s3://async/failed"},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
    }
    sm.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=variants, AsyncInferenceConfig=config
    )
    assert sm.describe_endpoint_config(EndpointConfigName=name)["AsyncInferenceConfig"] == config


def test_s3_input_to_s3_output_with_notification(
    server: RunningServer, s3: Any, model: str, webhook: Webhook
) -> None:
    sm, smr = server.client(), server.client("sagemaker-runtime")
    config = {
        "OutputConfig": {
            "S3OutputPath": "s3://async/out",
            "S3FailurePath": "s3://async/failed",
            "NotificationConfig": {
                "SuccessTopic": SUCCESS_TOPIC,
                "ErrorTopic": ERROR_TOPIC,
                "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
            },
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
    }
    name = deploy_async(sm, model, config)
    assert sm.describe_endpoint(EndpointName=name)["AsyncInferenceConfig"] == config
    location = put_input(s3, {"hello": "world"})
    answer = smr.invoke_endpoint_async(
        EndpointName=name, InputLocation=location, ContentType="application/json", CustomAttributes="c=1"
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    inference_id = answer["InferenceId"]
    assert answer["OutputLocation"] == f"s3://async/out/{inference_id}.out"
    assert answer["FailureLocation"] == f"s3://async/failed/{inference_id}-error.out"
    assert json.loads(wait_object(s3, answer["OutputLocation"])) == {"echo": {"hello": "world"}}
    assert not exists(s3, answer["FailureLocation"])

    headers, envelope = webhook.message_for(inference_id)
    assert envelope["Type"] == "Notification" and envelope["TopicArn"] == SUCCESS_TOPIC
    assert headers["x-amz-sns-message-type"] == "Notification"
    message = json.loads(envelope["Message"])
    assert message["invocationStatus"] == "Completed" and message["eventName"] == "InferenceResult"
    assert message["requestParameters"]["inputLocation"] == location
    assert message["requestParameters"]["endpointName"] == name
    assert message["responseParameters"]["outputLocation"] == answer["OutputLocation"]
    assert json.loads(message["responseParameters"]["responseBody"]["content"]) == {
        "echo": {"hello": "world"}
    }

    # a chosen InferenceId, an output path extension and file name, an inline body
    named = smr.invoke_endpoint_async(
        EndpointName=name,
        Body=json.dumps({"inline": True}).encode(),
        ContentType="application/json",
        InferenceId="my-request-1",
        S3OutputPathExtension="batch/7",
        Filename="result.json",
    )
    assert named["InferenceId"] == "my-request-1"
    assert named["OutputLocation"] == "s3://async/out/batch/7/result.json"
    assert json.loads(wait_object(s3, named["OutputLocation"])) == {"echo": {"inline": True}}


def test_wrong_kind_of_invocation_is_refused_with_validation_errors(
    server: RunningServer, model: str, echo_model: str
) -> None:
    sm, smr = server.client(), server.client("sagemaker-runtime")
    name = deploy_async(sm, model, {"OutputConfig": {"S3OutputPath": "s3://async/out"}})
    with pytest.raises(smr.exceptions.ValidationError) as sync_call:
        smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")
    assert "asynchronous endpoint" in sync_call.value.response["Error"]["Message"]
    assert "InvokeEndpointAsync" in sync_call.value.response["Error"]["Message"]
    real_time = deploy(sm, echo_model)
    with pytest.raises(smr.exceptions.ValidationError) as async_call:
        smr.invoke_endpoint_async(EndpointName=real_time, InputLocation="s3://async/in/x.json")
    assert "is not an asynchronous endpoint" in async_call.value.response["Error"]["Message"]
    with pytest.raises(smr.exceptions.ValidationError) as unknown:
        smr.invoke_endpoint_async(EndpointName="no-such-endpoint", InputLocation="s3://async/in/x.json")
    assert (
        unknown.value.response["Error"]["Message"]
        == f"Endpoint no-such-endpoint of account {ACCOUNT} not found."
    )
    with pytest.raises(smr.exceptions.ValidationError) as neither:
        smr.invoke_endpoint_async(EndpointName=name)
    assert "exactly one of InputLocation and Body" in neither.value.response["Error"]["Message"]
    with pytest.raises(smr.exceptions.ValidationError) as extension:
        smr.invoke_endpoint_async(
            EndpointName=name, InputLocation="s3://async/x", S3OutputPathExtension="s3://elsewhere"
        )
    assert "s3OutputPathExtension" in extension.value.response["Error"]["Message"]


def test_model_error_and_unreadable_input_write_failure_objects(
    server: RunningServer, s3: Any, model: str, webhook: Webhook, tmp_path: Path
) -> None:
    sm, smr = server.client(), server.client("sagemaker-runtime")
    out = tmp_path / "out"
    config = {
        "OutputConfig": {
            "S3OutputPath": out.as_uri(),
            "NotificationConfig": {"ErrorTopic": ERROR_TOPIC},
        }
    }
    name = deploy_async(sm, model, config)
    local_input = tmp_path / "input.json"
    local_input.write_text(json.dumps({"crash": "on purpose"}))
    answer = smr.invoke_endpoint_async(
        EndpointName=name, InputLocation=local_input.as_uri(), ContentType="application/json"
    )
    failure = Path(answer["FailureLocation"].removeprefix("file://"))
    assert failure == out / f"{answer['InferenceId']}-error.out"
    _, envelope = webhook.message_for(answer["InferenceId"])
    message = json.loads(envelope["Message"])
    assert envelope["TopicArn"] == ERROR_TOPIC and message["invocationStatus"] == "Failed"
    assert "boom: on purpose" in message["failureReason"]
    text = failure.read_text()
    assert "Received server error (500)" in text and "boom: on purpose" in text
    assert not (out / f"{answer['InferenceId']}.out").exists()

    missing = smr.invoke_endpoint_async(EndpointName=name, InputLocation="s3://async/in/not-there.json")
    _, envelope = webhook.message_for(missing["InferenceId"])
    assert "The input could not be read" in json.loads(envelope["Message"])["failureReason"]
    assert "NoSuchKey" in Path(missing["FailureLocation"].removeprefix("file://")).read_text()


def test_invocation_timeout_and_ttl_expiry(server: RunningServer, s3: Any, model: str) -> None:
    """One slot: the first request overruns its InvocationTimeoutSeconds, and the second, queued behind
    it, outlives its RequestTTLSeconds (60 s, the least allowed) before a slot frees."""
    sm, smr = server.client(), server.client("sagemaker-runtime")
    config = {
        "OutputConfig": {"S3OutputPath": "s3://async/slow", "S3FailurePath": "s3://async/slow-failed"},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
    }
    name = deploy_async(sm, model, config)
    hung = smr.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=put_input(s3, {"sleep": 600}),
        ContentType="application/json",
        InvocationTimeoutSeconds=62,
    )
    queued = smr.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=put_input(s3, {"n": 1}),
        ContentType="application/json",
        RequestTTLSeconds=60,
    )
    timed_out = wait_object(s3, hung["FailureLocation"], timeout=180).decode()
    assert "InvocationTimeoutSeconds (62 s)" in timed_out
    expired = wait_object(s3, queued["FailureLocation"], timeout=60).decode()
    assert "expired" in expired and "RequestTTLSeconds (60 s)" in expired
    assert not exists(s3, queued["OutputLocation"])
    # the worker that hung was replaced: the endpoint serves again
    after = smr.invoke_endpoint_async(
        EndpointName=name, InputLocation=put_input(s3, {"after": 1}), ContentType="application/json"
    )
    assert json.loads(wait_object(s3, after["OutputLocation"])) == {"echo": {"after": 1}}


def test_kill9_with_requests_queued_loses_nothing_and_runs_nothing_twice(tmp_path: Path, model: str) -> None:
    record = tmp_path / "ran.txt"
    out = tmp_path / "out"
    state = tmp_path / "state"
    count = 40
    with moorage_server(state) as running:
        sm, smr = running.client(), running.client("sagemaker-runtime")
        config = {
            "OutputConfig": {"S3OutputPath": out.as_uri()},
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1},
        }
        name = deploy_async(sm, model, config, environment={"RECORD": str(record)})
        answers = [
            smr.invoke_endpoint_async(
                EndpointName=name,
                Body=json.dumps({"n": n, "sleep": 0.1}).encode(),
                ContentType="application/json",
            )
            for n in range(count)
        ]
        deadline = time.monotonic() + 60
        while len(list(out.glob("*.out"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        running.process.kill()
        running.process.wait()
    written_before = {p.name for p in out.glob("*.out")}
    assert 0 < len(written_before) < count, "the kill should come while requests are queued"
    with moorage_server(state) as running:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*.out"))) < count and time.monotonic() < deadline:
            time.sleep(0.1)
    for n, answer in enumerate(answers):
        path = Path(answer["OutputLocation"].removeprefix("file://"))
        assert json.loads(path.read_text()) == {"echo": {"n": n, "sleep": 0.1}}
    assert not list(out.glob("*-error.out"))
    runs = [int(line) for line in record.read_text().split()]
    assert sorted(set(runs)) == list(range(count))
    finished_before = {
        n for n, a in enumerate(answers) if a["OutputLocation"].rsplit("/", 1)[1] in written_before
    }
    assert all(runs.count(n) == 1 for n in finished_before), "a request finished before the kill ran again"


def test_scales_to_zero_and_back_when_work_arrives(server: RunningServer, s3: Any, model: str) -> None:
    sm, smr = server.client(), server.client("sagemaker-runtime")
    aas = server.client("application-autoscaling")
    name = deploy_async(sm, model, {"OutputConfig": {"S3OutputPath": "s3://async/zero"}})
    resource = f"endpoint/{name}/variant/AllTraffic"
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=0,
        MaxCapacity=2,
    )
    aas.put_scaling_policy(
        PolicyName="backlog",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 5.0,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance",
                "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": name}],
                "Statistic": "Average",
            },
            "ScaleInCooldown": 0,
            "ScaleOutCooldown": 0,
        },
    )

    def instances() -> int:
        variant = sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]
        return int(variant["CurrentInstanceCount"])

    deadline = time.monotonic() + 120
    while instances() > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert instances() == 0, "an idle asynchronous endpoint scales in to 0"
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    answer = smr.invoke_endpoint_async(
        EndpointName=name, InputLocation=put_input(s3, {"woke": True}), ContentType="application/json"
    )
    metrics = _metrics(server)
    assert f'sagemaker_approximate_backlog_size{{endpoint="{name}"}}' in metrics
    assert json.loads(wait_object(s3, answer["OutputLocation"], timeout=180)) == {"echo": {"woke": True}}
    activities = aas.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=resource)
    causes = [a["Cause"] for a in activities["ScalingActivities"]]
    assert any("HasBacklogWithoutCapacity" in cause for cause in causes)


def _metrics(server: RunningServer) -> str:
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        return str(response.read().decode())


def test_sns_webhook_setting_is_checked() -> None:
    """A mapping that is not ARN=URL stops `moorage serve` with a message, before anything starts."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "moorage", "serve", "--sns-webhook", "not-a-mapping"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert result.returncode == 2
    assert "not TOPIC_ARN=URL" in result.stderr
