"""The pure parts of serverless variants: the config in force after ServerlessUpdateConfig, the instance's
environment and size, and what CreateEndpointConfig refuses."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.api.errors import ValidationException
from moorage.compute.instance_types import INSTANCE_TYPES, resources_for
from moorage.control.serverless import check_serverless_config, serverless_update
from moorage.fleet.serverless import (
    MEMORY_VARIABLE,
    WORKERS_VARIABLE,
    instance_environment,
    instance_type,
    serverless_config,
    warm_instances,
)

CONFIG = {"MemorySizeInMB": 2048, "MaxConcurrency": 4}
VARIANT = {"VariantName": "v", "ModelName": "m", "ServerlessConfig": CONFIG}


def test_the_last_update_applies_over_the_config() -> None:
    snapshot: dict[str, Any] = {
        "capacity": {"v": {"serverless": {"MaxConcurrency": 8, "ProvisionedConcurrency": 2}}}
    }
    assert serverless_config(snapshot, VARIANT) == {
        **CONFIG,
        "MaxConcurrency": 8,
        "ProvisionedConcurrency": 2,
    }
    assert serverless_config({}, VARIANT) == CONFIG
    assert serverless_config({}, {"VariantName": "r", "InstanceType": "ml.m5.large"}) is None


def test_provisioned_concurrency_keeps_one_instance() -> None:
    assert warm_instances(CONFIG) == 0
    assert warm_instances({**CONFIG, "ProvisionedConcurrency": 3}) == 1


def test_instance_environment_caps_memory_and_workers() -> None:
    env = instance_environment(CONFIG, {"A": "1"})
    assert env[MEMORY_VARIABLE] == "2048" and env["A"] == "1"
    assert 1 <= int(env[WORKERS_VARIABLE]) <= 4
    assert instance_environment(CONFIG, {WORKERS_VARIABLE: "3"})[WORKERS_VARIABLE] == "3"
    size = resources_for(instance_type(CONFIG), INSTANCE_TYPES)
    assert (size.cpus, size.memory_bytes) == (1.0, 2048 * 1024**2)


def test_serverless_update_checks_the_merged_config() -> None:
    assert serverless_update("v", CONFIG, {"ProvisionedConcurrency": 4}) == {
        "MaxConcurrency": 4,
        "ProvisionedConcurrency": 4,
    }
    with pytest.raises(ValidationException, match="must not exceed MaxConcurrency"):
        serverless_update("v", {**CONFIG, "ProvisionedConcurrency": 3}, {"MaxConcurrency": 2})
    with pytest.raises(ValidationException, match="is empty"):
        serverless_update("v", CONFIG, {})


@pytest.mark.parametrize(
    ("params", "model", "complaint"),
    [
        ({"AsyncInferenceConfig": {"OutputConfig": {}}}, {}, "asynchronous inference"),
        ({"ShadowProductionVariants": [{"VariantName": "s"}]}, {}, "shadow variants"),
        ({}, {"Containers": [{}, {}]}, "inference pipelines"),
        ({}, {"PrimaryContainer": {"ModelDataSource": {"S3DataSource": {}}}}, "ModelDataSource"),
        ({}, {"EnableNetworkIsolation": True}, "network isolation"),
    ],
)
def test_what_serverless_excludes(params: dict[str, Any], model: dict[str, Any], complaint: str) -> None:
    spec = {"ModelName": "m", "PrimaryContainer": {}, **model}
    if "Containers" in model:
        del spec["PrimaryContainer"]
    with pytest.raises(ValidationException, match=complaint):
        check_serverless_config(
            {"EndpointConfigName": "c", "ProductionVariants": [VARIANT], **params}, lambda names: {"m": spec}
        )


def test_real_time_configs_are_not_looked_at() -> None:
    def no_models(names: set[str]) -> dict[str, Any]:
        raise AssertionError("a real-time config needs no model lookup")

    realtime = {
        "VariantName": "r",
        "ModelName": "m",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
    check_serverless_config(
        {"EndpointConfigName": "c", "ProductionVariants": [realtime, realtime]}, no_models
    )
