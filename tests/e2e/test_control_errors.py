"""Bad control-plane input answers ValidationException with AWS's wording, and the server keeps going."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import deploy, unique
from tests.support.models import ECHO_INFERENCE, build_model_tar


def _error(call: Any, **kwargs: Any) -> dict[str, str]:
    with pytest.raises(ClientError) as raised:
        call(**kwargs)
    return dict(raised.value.response["Error"])


def test_duplicate_names(sm: Any, echo_model: str) -> None:
    name = unique("dup")
    sm.create_model(ModelName=name, PrimaryContainer={"ModelDataUrl": echo_model})
    error = _error(sm.create_model, ModelName=name, PrimaryContainer={"ModelDataUrl": echo_model})
    assert error["Code"] == "ValidationException"
    assert (
        error["Message"]
        == f'Cannot create already existing model "arn:aws:sagemaker:us-west-2:123456789012:model/{name}".'
    )
    variants = [
        {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
    ]
    sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=variants)
    error = _error(sm.create_endpoint_config, EndpointConfigName=name, ProductionVariants=variants)
    assert error["Message"].startswith("Cannot create already existing endpoint configuration")


def test_constraints_botocore_does_not_check(sm: Any, echo_model: str) -> None:
    error = _error(sm.create_model, ModelName="x" * 64, PrimaryContainer={"ModelDataUrl": echo_model})
    assert error["Code"] == "ValidationException"
    assert "modelName" in error["Message"] and "length less than or equal to 63" in error["Message"]
    error = _error(sm.create_model, ModelName="bad_name!", PrimaryContainer={"ModelDataUrl": echo_model})
    assert "regular expression pattern" in error["Message"]
    name = unique("enum")
    sm.create_model(ModelName=name, PrimaryContainer={"ModelDataUrl": echo_model})
    error = _error(
        sm.create_endpoint_config,
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.nope"}
        ],
    )
    assert "enum value set" in error["Message"]
    assert "productionVariants.1.member.instanceType" in error["Message"]


def test_missing_resources(sm: Any) -> None:
    name = unique("missing")
    error = _error(sm.describe_model, ModelName=name)
    assert error == {
        "Code": "ValidationException",
        "Message": f'Could not find model "arn:aws:sagemaker:us-west-2:123456789012:model/{name}".',
    } or error["Message"].startswith("Could not find model")
    error = _error(
        sm.create_endpoint_config,
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
    )
    assert error["Message"].startswith("Could not find model")
    error = _error(sm.create_endpoint, EndpointName=name, EndpointConfigName=name)
    assert error["Message"].startswith("Could not find endpoint configuration")
    error = _error(sm.delete_endpoint, EndpointName=name)
    assert error["Code"] == "ValidationException"


def test_update_requires_in_service(sm: Any, tmp_path: Path) -> None:
    slow = ECHO_INFERENCE.replace(
        "def model_fn(model_dir):\n", "def model_fn(model_dir):\n    time.sleep(5)\n"
    )
    name = deploy(sm, build_model_tar(tmp_path / "model.tar.gz", slow).as_uri(), wait=False)
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Creating"
    error = _error(sm.update_endpoint, EndpointName=name, EndpointConfigName=name)
    assert error["Code"] == "ValidationException"
    assert "Cannot update in-progress endpoint" in error["Message"]
    sm.delete_endpoint(EndpointName=name)


def test_unknown_operation_is_named(sm: Any) -> None:
    error = _error(sm.list_training_jobs)
    assert error["Code"] == "NotImplemented"
    assert "ListTrainingJobs" in error["Message"]


@pytest.mark.parametrize("size", [2 * 1024 * 1024, 17 * 1024 * 1024])
def test_request_over_the_control_plane_limit_is_a_serialization_error(sm: Any, size: int) -> None:
    huge = "v" * size  # botocore checks no maximum length, so this reaches the server
    error = _error(
        sm.create_model,
        ModelName=unique("huge"),
        ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer={"Image": "x", "ModelDataUrl": "file:///nowhere"},
        Tags=[{"Key": "k", "Value": huge}],
    )
    assert error["Code"] == "SerializationException"
    assert "larger than 1048576 bytes" in error["Message"]


def test_duplicate_from_another_region_names_the_existing_arn(server: Any, sm: Any, echo_model: str) -> None:
    name = unique("region")
    arn = sm.create_model(ModelName=name, PrimaryContainer={"ModelDataUrl": echo_model})["ModelArn"]
    eu = boto3.client(  # same server, another signing region
        "sagemaker",
        endpoint_url=server.url,
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    error = _error(eu.create_model, ModelName=name, PrimaryContainer={"ModelDataUrl": echo_model})
    assert error["Message"] == f'Cannot create already existing model "{arn}".'


@pytest.mark.parametrize(
    ("serverless", "extra", "complaint"),
    [
        ({"MemorySizeInMB": 1500, "MaxConcurrency": 2}, {}, "use 1024, 2048"),
        ({"MemorySizeInMB": 2048, "MaxConcurrency": 2, "ProvisionedConcurrency": 5}, {}, "must not exceed"),
        ({"MemorySizeInMB": 2048, "MaxConcurrency": 2}, {"InstanceType": "ml.m5.large"}, "has no instances"),
    ],
)
def test_serverless_rules(
    sm: Any, echo_model: str, serverless: dict[str, int], extra: dict[str, Any], complaint: str
) -> None:
    name = unique("sls")
    sm.create_model(ModelName=name, PrimaryContainer={"ModelDataUrl": echo_model})
    variant = {"VariantName": "v", "ModelName": name, "ServerlessConfig": serverless, **extra}
    error = _error(sm.create_endpoint_config, EndpointConfigName=name, ProductionVariants=[variant])
    assert error["Code"] == "ValidationException" and complaint in error["Message"]


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("/tmp/" + "a" * 300 + "/model.tar.gz", "Could not read model data"),
        ("~no-such-user-here/model.tar.gz", "names no user here"),
    ],
)
def test_unreadable_local_model_data_is_a_validation_error(sm: Any, url: str, complaint: str) -> None:
    error = _error(sm.create_model, ModelName=unique("lp"), PrimaryContainer={"ModelDataUrl": url})
    assert error["Code"] == "ValidationException" and complaint in error["Message"]
