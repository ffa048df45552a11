"""Multi-container endpoints through boto3: serial inference pipelines (content types chained from one
container to the next, errors naming the container, a start that fails listing every failing container)
and Direct invocation (TargetContainerHostname, its validation errors, per-container metrics)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import FAST_WAIT, settled, unique
from tests.support.metrics import endpoint_metric
from tests.support.models import ECHO_INFERENCE, build_model_tar
from tests.support.moorage_server import RunningServer

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"

# container 1: CSV in, JSON out (whatever the Accept: an intermediate container gets none from the caller)
PREPROCESS = """
import json

def model_fn(model_dir):
    return {"scale": 2}

def input_fn(body, content_type):
    if content_type != "text/csv":
        err = ValueError(f"preprocess wants text/csv, got {content_type}")
        err.status_code = 415
        raise err
    return [float(x) for x in body.strip().split(",")]

def predict_fn(data, model):
    return [x * model["scale"] for x in data]

def output_fn(prediction, accept):
    return json.dumps({"features": prediction, "accept_at_preprocess": accept}), "application/json"
"""

# the middle: JSON through unchanged; for the features 26, 14, 30 (13, 7, 15 before scaling) a failure,
# a hang, an answer over 5 MB
MIDDLE = """
import json, time

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    if content_type != "application/json":
        raise ValueError(f"middle wants application/json, got {content_type}")
    return json.loads(body)

def predict_fn(data, model):
    if 26.0 in data["features"]:
        raise RuntimeError("unlucky feature 13")
    if 14.0 in data["features"]:
        time.sleep(8)
    if 30.0 in data["features"]:  # more than one container may pass to the next
        return {**data, "pad": "x" * (5 * 1024 * 1024)}
    return {**data, "middle_saw": True}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""

# the last container: JSON in, answers in the caller's Accept (text/csv or application/json)
SCORER = """
import json

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    if content_type != "application/json":
        raise ValueError(f"scorer wants application/json, got {content_type}")
    return json.loads(body)

def predict_fn(data, model):
    return {**data, "score": sum(data["features"])}

def output_fn(prediction, accept):
    if accept == "text/csv":
        return f"{prediction['score']}", "text/csv"
    return json.dumps({**prediction, "accept_at_scorer": accept}), "application/json"
"""

BROKEN = """
def model_fn(model_dir):
    raise RuntimeError("cannot load this container's model")
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("pipeline-models")
    sources = {"pre": PREPROCESS, "mid": MIDDLE, "scorer": SCORER, "broken": BROKEN, "echo": ECHO_INFERENCE}
    return {
        name: build_model_tar(root / name / "model.tar.gz", code).as_uri() for name, code in sources.items()
    }


def container(url: str, hostname: str | None = None, **env: str) -> dict[str, Any]:
    """One entry of Containers: one worker each, so a pipeline stays small on a small machine."""
    entry: dict[str, Any] = {
        "Image": "example/image:latest",
        "ModelDataUrl": url,
        "Environment": {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **env},
    }
    if hostname is not None:
        entry["ContainerHostname"] = hostname
    return entry


def create_endpoint(
    sm: Any, containers: list[dict[str, Any]], mode: str | None = None, wait: bool = True, **config: Any
) -> str:
    name = unique("pipe")
    extra = {"InferenceExecutionConfig": {"Mode": mode}} if mode else {}
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, Containers=containers, **extra)
    variant = {"VariantName": "AllTraffic", "ModelName": name, "InitialInstanceCount": 1}
    sm.create_endpoint_config(
        EndpointConfigName=name, ProductionVariants=[{**variant, "InstanceType": "ml.m5.large"}], **config
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    return name


@pytest.fixture(scope="module")
def serial(sm: Any, models: dict[str, str]) -> str:
    """pre → mid → scorer, none with a ContainerHostname (a pipeline names all or none): they are
    container-1, container-2 and container-3; the scorer's model server timeout bounds the whole request."""
    scorer = container(models["scorer"], SAGEMAKER_MODEL_SERVER_TIMEOUT="2")
    return create_endpoint(sm, [container(models["pre"]), container(models["mid"]), scorer])


@pytest.fixture(scope="module")
def direct(sm: Any, models: dict[str, str]) -> str:
    return create_endpoint(
        sm,
        [
            container(models["echo"], "alpha", GREETING_SUFFIX="-alpha"),
            container(models["echo"], "beta", GREETING_SUFFIX="-beta"),
        ],
        mode="Direct",
    )


# ---- serial -----------------------------------------------------------------------------------------


def test_content_types_chain_and_the_callers_accept_reaches_the_last_container(smr: Any, serial: str) -> None:
    as_csv = smr.invoke_endpoint(
        EndpointName=serial, Body=b"1,2,3", ContentType="text/csv", Accept="text/csv"
    )
    assert as_csv["ContentType"] == "text/csv"
    assert as_csv["Body"].read() == b"12.0"

    as_json = smr.invoke_endpoint(
        EndpointName=serial, Body=b"1.5,2", ContentType="text/csv", Accept="application/x-scored+json"
    )
    answer = json.loads(as_json["Body"].read())
    assert as_json["ContentType"] == "application/json"
    assert answer["features"] == [3.0, 4.0] and answer["score"] == 7.0 and answer["middle_saw"] is True
    # the caller's Accept went to the last container only; the first got none (its default applies)
    assert answer["accept_at_scorer"] == "application/x-scored+json"
    assert answer["accept_at_preprocess"] != "application/x-scored+json"


def test_a_failing_middle_container_is_named_in_the_model_error(smr: Any, serial: str) -> None:
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(EndpointName=serial, Body=b"1,13", ContentType="text/csv")
    response = raised.value.response
    assert response["OriginalStatusCode"] == 500
    assert response["Error"]["Message"].startswith(
        "Received server error (500) from container-2 with message"
    )
    assert "unlucky feature 13" in response["OriginalMessage"]


def test_a_hop_that_runs_out_the_time_is_named_in_the_timeout(smr: Any, serial: str) -> None:
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(EndpointName=serial, Body=b"7", ContentType="text/csv")
    response = raised.value.response
    assert response["Error"]["Message"].startswith("Received server error (0) from container-2 ")
    assert "waiting for a response from container container-2" in response["OriginalMessage"]
    # container-2 had the request for less than its own model server timeout (60 s): its worker is not
    # hung, so it is left to finish; the pipeline answers again once it has
    answer = None
    for _ in range(60):
        try:
            answer = smr.invoke_endpoint(
                EndpointName=serial, Body=b"1", ContentType="text/csv", Accept="text/csv"
            )
            break
        except smr.exceptions.ModelError:
            continue
    assert answer is not None and answer["Body"].read() == b"2.0"


def test_a_hop_over_five_mib_is_a_model_error_naming_the_container(smr: Any, serial: str) -> None:
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(EndpointName=serial, Body=b"15", ContentType="text/csv")
    message = raised.value.response["Error"]["Message"]
    assert message.startswith("Received server error (200) from container-2 with a response of ")
    assert "over the 5242880 bytes one container of a pipeline may pass to the next" in message


def test_a_client_error_from_the_first_container_is_named(smr: Any, serial: str) -> None:
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(EndpointName=serial, Body=b'{"a": 1}', ContentType="application/json")
    assert raised.value.response["OriginalStatusCode"] == 415
    message = raised.value.response["Error"]["Message"]
    assert message.startswith("Received client error (415) from container-1 ")


def test_a_hostname_on_a_serial_endpoint_is_refused(smr: Any, serial: str) -> None:
    with pytest.raises(ClientError) as raised:
        smr.invoke_endpoint(
            EndpointName=serial, Body=b"1", ContentType="text/csv", TargetContainerHostname="pre"
        )
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert "serial inference pipeline" in raised.value.response["Error"]["Message"]


def test_serial_metrics_count_each_request_once(server: RunningServer, smr: Any, serial: str) -> None:
    before = _metric(server, "sagemaker_invocations_total", serial)
    for _ in range(3):
        smr.invoke_endpoint(EndpointName=serial, Body=b"1,2", ContentType="text/csv")
    assert _metric(server, "sagemaker_invocations_total", serial) == before + 3
    # ContainerLatency: each container's time, per container
    for name in ("container-1", "container-2", "container-3"):
        assert _metric(server, "sagemaker_container_latency_microseconds_count", serial, name) >= 3
    assert _metric(server, "sagemaker_container_invocations_total", serial) == 0  # Direct's families only


def test_failed_containers_are_all_listed_when_the_endpoint_fails(sm: Any, models: dict[str, str]) -> None:
    name = create_endpoint(
        sm,
        [
            container(models["pre"], "good"),
            container(models["broken"], "bad-one"),
            container(models["broken"], "bad-two"),
        ],
        wait=False,
    )
    described = settled(sm, name)
    assert described["EndpointStatus"] == "Failed"
    reason = described["FailureReason"]
    assert "2 of the 3 containers" in reason
    assert "container bad-one:" in reason and "container bad-two:" in reason
    assert "container good" not in reason
    assert "cannot load this container's model" in reason


def test_a_multi_model_container_inside_a_pipeline_fails_the_endpoint_clearly(
    sm: Any, models: dict[str, str]
) -> None:
    mme = {**container(models["echo"], "mme"), "Mode": "MultiModel"}
    name = create_endpoint(sm, [container(models["pre"], "pre"), mme], wait=False)
    described = settled(sm, name)
    assert described["EndpointStatus"] == "Failed"
    assert "multi-model container inside an inference pipeline" in described["FailureReason"]


def test_an_async_endpoint_with_a_pipeline_fails_clearly(
    sm: Any, models: dict[str, str], tmp_path: Any
) -> None:
    name = create_endpoint(
        sm,
        [container(models["pre"], "pre"), container(models["scorer"], "scorer")],
        wait=False,
        AsyncInferenceConfig={"OutputConfig": {"S3OutputPath": tmp_path.as_uri()}},
    )
    described = settled(sm, name)
    assert described["EndpointStatus"] == "Failed"
    assert "asynchronous endpoint" in described["FailureReason"]


# ---- Direct ---------------------------------------------------------------------------------------


def test_direct_invocation_reaches_the_named_container(smr: Any, direct: str) -> None:
    for hostname in ("alpha", "beta", "alpha"):
        response = smr.invoke_endpoint(
            EndpointName=direct,
            Body=json.dumps({"to": hostname}),
            ContentType="application/json",
            TargetContainerHostname=hostname,
        )
        answer = json.loads(response["Body"].read())
        assert answer["greeting"] == f"hello-{hostname}" and answer["echo"] == {"to": hostname}


def test_direct_errors_name_the_container(smr: Any, direct: str) -> None:
    with pytest.raises(smr.exceptions.ModelError) as raised:
        smr.invoke_endpoint(
            EndpointName=direct,
            Body=json.dumps({"crash": "kaput"}),
            ContentType="application/json",
            TargetContainerHostname="beta",
        )
    assert raised.value.response["Error"]["Message"].startswith("Received server error (500) from beta ")


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [
        (None, "uses Direct invocation; set TargetContainerHostname to one of: alpha, beta."),
        ("gamma", "TargetContainerHostname gamma is not a container of endpoint"),
    ],
)
def test_direct_invocation_validation(smr: Any, direct: str, hostname: str | None, expected: str) -> None:
    extra = {"TargetContainerHostname": hostname} if hostname else {}
    with pytest.raises(ClientError) as raised:
        smr.invoke_endpoint(EndpointName=direct, Body=b"{}", ContentType="application/json", **extra)
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert expected in raised.value.response["Error"]["Message"]
    if hostname:
        assert "alpha, beta" in raised.value.response["Error"]["Message"]


def test_direct_metrics_are_kept_per_container(server: RunningServer, smr: Any, direct: str) -> None:
    before = {
        c: _metric(server, "sagemaker_container_invocations_total", direct, c) for c in ("alpha", "beta")
    }
    variant_before = _metric(server, "sagemaker_invocations_total", direct)
    for hostname in ("alpha", "alpha", "beta"):
        smr.invoke_endpoint(
            EndpointName=direct, Body=b"{}", ContentType="application/json", TargetContainerHostname=hostname
        )
    assert _metric(server, "sagemaker_container_invocations_total", direct, "alpha") == before["alpha"] + 2
    assert _metric(server, "sagemaker_container_invocations_total", direct, "beta") == before["beta"] + 1
    assert _metric(server, "sagemaker_invocations_total", direct) == variant_before + 3
    assert _metric(server, "sagemaker_container_model_latency_microseconds_count", direct, "alpha") >= 2


# ---- CreateModel -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("containers", "mode", "expected"),
    [
        ([None, "b"], "Direct", "Mode Direct requires a ContainerHostname on every container"),
        (["a", "a"], "Serial", "ContainerHostname must be unique within a model; a is given"),
        (["a", None], "Serial", "If any container of a model has a ContainerHostname, every container must"),
    ],
)
def test_create_model_checks_hostnames(
    sm: Any, models: dict[str, str], containers: list[str | None], mode: str, expected: str
) -> None:
    with pytest.raises(ClientError) as raised:
        sm.create_model(
            ModelName=unique("bad"),
            ExecutionRoleArn=ROLE,
            Containers=[container(models["echo"], hostname) for hostname in containers],
            InferenceExecutionConfig={"Mode": mode},
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert expected in raised.value.response["Error"]["Message"]


def test_create_model_allows_one_multi_model_container(sm: Any, models: dict[str, str]) -> None:
    mme = {**container(models["echo"]), "Mode": "MultiModel"}
    with pytest.raises(ClientError) as raised:
        sm.create_model(ModelName=unique("bad"), ExecutionRoleArn=ROLE, Containers=[mme, mme])
    assert (
        "At most one container of a model may have Mode MultiModel"
        in raised.value.response["Error"]["Message"]
    )


def test_create_model_refuses_sixteen_containers(sm: Any, models: dict[str, str]) -> None:
    with pytest.raises(ClientError) as raised:
        sm.create_model(
            ModelName=unique("bad"), ExecutionRoleArn=ROLE, Containers=[container(models["echo"])] * 16
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"


def _metric(server: RunningServer, name: str, endpoint: str, container: str | None = None) -> float:
    return endpoint_metric(server.url, name, endpoint, container)


def test_batch_transform_refuses_a_multi_container_model(
    sm: Any, models: dict[str, str], tmp_path: Any
) -> None:
    name = unique("pipe-model")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        Containers=[container(models["pre"], "pre"), container(models["scorer"], "scorer")],
    )
    with pytest.raises(ClientError) as raised:
        sm.create_transform_job(
            TransformJobName=unique("job"),
            ModelName=name,
            TransformInput={
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": tmp_path.as_uri()}}
            },
            TransformOutput={"S3OutputPath": (tmp_path / "out").as_uri()},
            TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        )
    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert (
        "has 2 containers; batch transform with an inference pipeline"
        in raised.value.response["Error"]["Message"]
    )
