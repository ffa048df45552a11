"""ShadowProductionVariants through boto3: the shadow gets its share of copies, counted under its own
name; whatever it does, callers get production's answers; UpdateEndpointWeightsAndCapacities changes its
share; UpdateEndpoint promotes it; CreateEndpointConfig refuses what SageMaker refuses."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import FAST_WAIT, model_dir_tar, unique
from tests.support.metrics import endpoint_metric
from tests.support.moorage_server import RunningServer

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
ONE_WORKER = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}

# a shadow whose model takes its time and then fails every request
SLOW_FAILURE = """
import json, time

def model_fn(model_dir):
    return None

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(data, model):
    time.sleep(0.3)
    raise RuntimeError("the shadow model fails")

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def _model(sm: Any, url: str) -> str:
    name = unique("model")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "example/image:latest", "ModelDataUrl": url, "Environment": ONE_WORKER},
    )
    return name


def _variant(name: str, model: str, weight: float = 1.0) -> dict[str, Any]:
    return {
        "VariantName": name,
        "ModelName": model,
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
        "InitialVariantWeight": weight,
    }


def _shadowed(sm: Any, production: str, shadow: str, shadow_weight: float) -> str:
    """An endpoint (InService) with one production and one shadow variant, as the developer guide
    deploys one."""
    name = unique("shadow")
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[_variant("Production", production)],
        ShadowProductionVariants=[_variant("Shadow", shadow, shadow_weight)],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    return name


def _invoke(smr: Any, endpoint: str, n: int) -> dict[str, Any]:
    answer = smr.invoke_endpoint(
        EndpointName=endpoint, ContentType="application/json", Body=json.dumps({"n": n}).encode()
    )
    assert answer["InvokedProductionVariant"] == "Production"
    body: dict[str, Any] = json.loads(answer["Body"].read())
    assert body["echo"] == {"n": n}
    return body


def _variant_metric(server: RunningServer, name: str, endpoint: str, variant: str) -> float:
    """The sample `name` of one variant in GET /metrics."""
    with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
        and sample.labels.get("endpoint") == endpoint
        and sample.labels.get("variant") == variant
    )


def _settled_metric(server: RunningServer, name: str, endpoint: str, variant: str) -> float:
    """A shadow's counter once its copies in flight are answered (two reads in a row agree)."""
    deadline = time.monotonic() + 20
    last = _variant_metric(server, name, endpoint, variant)
    while True:
        time.sleep(0.3)
        value = _variant_metric(server, name, endpoint, variant)
        if value == last or time.monotonic() > deadline:
            return value
        last = value


def _copies(server: RunningServer, endpoint: str) -> float:
    """Copies the shadow was given: answered (its Invocations) or shed by its bound on copies in flight."""
    return sum(
        _variant_metric(server, metric, endpoint, "Shadow")
        for metric in ("sagemaker_invocations_total", "moorage_shadow_copies_dropped_total")
    )


def _until(what: str, read: Any, expected: float) -> None:
    """Poll `read()` until it gives `expected` (copies are answered off the callers' path)."""
    deadline = time.monotonic() + 20
    while (value := read()) != expected:
        assert time.monotonic() < deadline, f"{what}: {value}, expected {expected}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def models(sm: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root: Path = tmp_path_factory.mktemp("shadow-models")
    return {
        "production": _model(sm, model_dir_tar(root, "production", files={"weights.txt": "production"})),
        "shadow": _model(sm, model_dir_tar(root, "shadow", files={"weights.txt": "shadow"})),
        "failing": _model(sm, model_dir_tar(root, "failing", inference=SLOW_FAILURE)),
    }


def test_a_shadow_gets_its_share_and_is_promoted(
    server: RunningServer, sm: Any, smr: Any, models: dict[str, str]
) -> None:
    endpoint = _shadowed(sm, models["production"], models["shadow"], shadow_weight=0.5)
    described = sm.describe_endpoint(EndpointName=endpoint)
    [shadow] = described["ShadowProductionVariants"]
    assert shadow["VariantName"] == "Shadow"
    assert (shadow["CurrentWeight"], shadow["DesiredWeight"]) == (0.5, 0.5)
    assert (shadow["CurrentInstanceCount"], shadow["DesiredInstanceCount"]) == (1, 1)
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Production"]

    sent = 200  # a share of 0.5: about 100 copies (binomial, sd ~7)
    for n in range(sent):
        assert _invoke(smr, endpoint, n)["greeting"] == "production"
    _settled_metric(server, "sagemaker_invocations_total", endpoint, "Shadow")
    copies = _copies(server, endpoint)
    assert 0.35 * sent < copies < 0.65 * sent
    assert _variant_metric(server, "sagemaker_invocations_total", endpoint, "Production") == sent

    # the shadow's weight is its share (1.0 next to production's 1.0 copies every request); its
    # instance count changes like a production variant's
    sm.update_endpoint_weights_and_capacities(
        EndpointName=endpoint,
        DesiredWeightsAndCapacities=[
            {"VariantName": "Shadow", "DesiredWeight": 1.0, "DesiredInstanceCount": 2}
        ],
    )
    sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
    [shadow] = sm.describe_endpoint(EndpointName=endpoint)["ShadowProductionVariants"]
    assert (shadow["CurrentWeight"], shadow["CurrentInstanceCount"], shadow["DesiredInstanceCount"]) == (
        1.0,
        2,
        2,
    )
    for n in range(20):
        _invoke(smr, endpoint, n)
    _until("copies for the shadow", lambda: _copies(server, endpoint), copies + 20)

    # promotion: a config where the shadow's model is the production variant
    promoted = unique("promoted")
    sm.create_endpoint_config(
        EndpointConfigName=promoted, ProductionVariants=[_variant("Shadow", models["shadow"])]
    )
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=promoted)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=endpoint, WaiterConfig=FAST_WAIT)
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert "ShadowProductionVariants" not in described
    assert [v["VariantName"] for v in described["ProductionVariants"]] == ["Shadow"]
    answer = smr.invoke_endpoint(EndpointName=endpoint, ContentType="application/json", Body=b'{"n": -1}')
    assert answer["InvokedProductionVariant"] == "Shadow"
    assert json.loads(answer["Body"].read())["greeting"] == "shadow"
    sm.delete_endpoint(EndpointName=endpoint)


def test_a_failing_slow_shadow_never_reaches_the_caller(
    server: RunningServer, sm: Any, smr: Any, models: dict[str, str]
) -> None:
    """Every copy fails after a wait, and its one worker holds at most two copies: callers get
    production's answers all along; the shadow's errors and shed copies are counted as its own."""
    endpoint = _shadowed(sm, models["production"], models["failing"], shadow_weight=1.0)
    sent = 30
    for n in range(sent):
        assert _invoke(smr, endpoint, n)["greeting"] == "production"
    _until("copies for the shadow", lambda: _copies(server, endpoint), sent)
    answered = _variant_metric(server, "sagemaker_invocations_total", endpoint, "Shadow")
    assert answered >= 1 and sent - answered >= 1  # some copies were answered, some shed
    assert _variant_metric(server, "sagemaker_invocation_5xx_errors_total", endpoint, "Shadow") == answered
    assert _variant_metric(server, "sagemaker_invocation_model_errors_total", endpoint, "Production") == 0
    assert endpoint_metric(server.url, "sagemaker_invocations_total", endpoint) == sent + answered
    sm.delete_endpoint(EndpointName=endpoint)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("two production variants", "exactly one production variant and one shadow variant"),
        ("two shadows", "exactly one production variant and one shadow variant"),
        ("same name", "must be unique across ProductionVariants and ShadowProductionVariants"),
        ("asynchronous", "not supported on asynchronous endpoints"),
        ("serverless shadow", "not supported with serverless inference"),
        ("multi-model shadow", "not supported on multi-model endpoints"),
        ("no such model", "Could not find model"),
    ],
)
def test_create_endpoint_config_refuses(sm: Any, models: dict[str, str], case: str, message: str) -> None:
    production = [_variant("Production", models["production"])]
    shadows = [_variant("Shadow", models["shadow"])]
    extra: dict[str, Any] = {}
    if case == "two production variants":
        production.append(_variant("Other", models["production"]))
    elif case == "two shadows":
        shadows.append(_variant("Shadow2", models["shadow"]))
    elif case == "same name":
        shadows = [_variant("Production", models["shadow"])]
    elif case == "asynchronous":
        extra["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": "s3://bucket/out"}}
    elif case == "serverless shadow":
        shadows = [
            {
                "VariantName": "Shadow",
                "ModelName": models["shadow"],
                "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 1},
            }
        ]
    elif case == "multi-model shadow":
        multi = unique("mme")
        sm.create_model(
            ModelName=multi,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={
                "Image": "example/image:latest",
                "ModelDataUrl": "s3://bucket/models/",
                "Mode": "MultiModel",
            },
        )
        shadows = [_variant("Shadow", multi)]
    elif case == "no such model":
        shadows = [_variant("Shadow", "no-such-model")]
    with pytest.raises(ClientError) as info:
        sm.create_endpoint_config(
            EndpointConfigName=unique("refused"),
            ProductionVariants=production,
            ShadowProductionVariants=shadows,
            **extra,
        )
    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert message in info.value.response["Error"]["Message"]
