"""End-to-end fixtures: a real server process driven by unchanged boto3 clients."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server

FAST_WAIT = {"Delay": 0.2, "MaxAttempts": 600}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state")) as running:
        yield running


@pytest.fixture(scope="module")
def sm(server: RunningServer) -> Any:
    return server.client("sagemaker")


@pytest.fixture(scope="module")
def smr(server: RunningServer) -> Any:
    return server.client("sagemaker-runtime")


@pytest.fixture(scope="module")
def echo_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_model_tar(tmp_path_factory.mktemp("models") / "echo" / "model.tar.gz").as_uri()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def model_and_config(
    sm: Any,
    model_data_url: str,
    *,
    name: str | None = None,
    instances: int = 1,
    instance_type: str = "ml.m5.large",
    environment: dict[str, str] | None = None,
    variant: str = "AllTraffic",
    container: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> str:
    """A Model and an EndpointConfig of one new name, as a SageMaker user writes them; returns the name.
    `container`: more ContainerDefinition fields (Mode, MultiModelConfig); `config`: more
    CreateEndpointConfig fields (AsyncInferenceConfig)."""
    name = name or unique("cfg")
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::123456789012:role/SageMakerRole",
        PrimaryContainer={
            "Image": "example/image:latest",
            "ModelDataUrl": model_data_url,
            "Environment": environment or {},
            **(container or {}),
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": name,
                "InitialInstanceCount": instances,
                "InstanceType": instance_type,
            }
        ],
        **(config or {}),
    )
    return name


def deploy(
    sm: Any,
    model_data_url: str,
    *,
    name: str | None = None,
    instances: int = 1,
    instance_type: str = "ml.m5.large",
    environment: dict[str, str] | None = None,
    wait: bool = True,
    variant: str = "AllTraffic",
    container: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> str:
    """Model -> EndpointConfig -> Endpoint as a SageMaker user writes it; returns the endpoint name.
    `container`, `config`: as for model_and_config."""
    env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", **(environment or {})}
    name = model_and_config(
        sm,
        model_data_url,
        name=name or unique("ep"),
        instances=instances,
        instance_type=instance_type,
        environment=env,
        variant=variant,
        container=container,
        config=config,
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    if wait:
        sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    return name


def settled(sm: Any, name: str, timeout: float = 180) -> dict[str, Any]:
    """DescribeEndpoint once the endpoint has left Creating/Updating (whatever it became)."""
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = sm.describe_endpoint(EndpointName=name)
        if described["EndpointStatus"] not in ("Creating", "Updating") or time.monotonic() > deadline:
            return described
        time.sleep(0.1)


def model_dir_tar(root: Path, name: str, **kwargs: Any) -> str:
    return build_model_tar(root / name / "model.tar.gz", **kwargs).as_uri()
