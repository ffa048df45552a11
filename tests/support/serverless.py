"""Serverless endpoints for the end-to-end tests: a model, a one-variant serverless endpoint config and
the endpoint, made the way a SageMaker user makes them (boto3), and a JSON invocation."""

from __future__ import annotations

from typing import Any

from tests.e2e.conftest import FAST_WAIT, unique
from tests.support.images import invoke_json as invoke_json  # the tests' JSON invocation

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def serverless_config(
    sm: Any,
    model_url: str,
    *,
    memory: int = 1024,
    max_concurrency: int = 2,
    provisioned: int | None = None,
    environment: dict[str, str] | None = None,
    image: str = "example/image:latest",
) -> str:
    """A model and an endpoint config of one serverless variant (AllTraffic), both under the name
    returned."""
    name = unique("sls")
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": model_url}
    if environment is not None:
        container["Environment"] = environment
    sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer=container)
    config: dict[str, int] = {"MemorySizeInMB": memory, "MaxConcurrency": max_concurrency}
    if provisioned is not None:
        config["ProvisionedConcurrency"] = provisioned
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name, "ServerlessConfig": config}],
    )
    return name


def serverless_endpoint(sm: Any, model_url: str, **config: Any) -> str:
    """`serverless_config`, then an endpoint of the same name, waited for until InService."""
    name = serverless_config(sm, model_url, **config)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    return name
