"""DeploymentConfig checked as SageMaker checks it: sizes against the new fleet, which endpoints a policy
applies to, the timeout against the waits, the alarms; and what RetainAllVariantProperties keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from moorage.api.errors import ValidationException
from moorage.control.deployment import check_alarms_exist, check_deployment_config
from moorage.control.endpoints import _retain_variant_properties
from moorage.store import open_store
from moorage.store.tables import AlarmRow


def _snapshot(
    instances: int = 4, variants: tuple[str, ...] = ("v",), name: str = "new", **extra: Any
) -> dict[str, Any]:
    return {
        "config": {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": variant,
                    "ModelName": "m",
                    "InitialInstanceCount": instances,
                    "InstanceType": "ml.m5.large",
                    **extra,
                }
                for variant in variants
            ],
        },
        "models": {},
    }


def _serverless() -> dict[str, Any]:
    snapshot = _snapshot()
    variant = snapshot["config"]["ProductionVariants"][0]
    del variant["InitialInstanceCount"], variant["InstanceType"]
    variant["ServerlessConfig"] = {"MemorySizeInMB": 1024, "MaxConcurrency": 2}
    return snapshot


def _blue_green(kind: str, wait: int = 60, timeout: int | None = None, **routing: Any) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "TrafficRoutingConfiguration": {"Type": kind, "WaitIntervalInSeconds": wait, **routing}
    }
    if timeout is not None:
        policy["MaximumExecutionTimeoutInSeconds"] = timeout
    return {"BlueGreenUpdatePolicy": policy}


def _rolling(kind: str = "INSTANCE_COUNT", value: int = 1, **more: Any) -> dict[str, Any]:
    return {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": kind, "Value": value},
            "WaitIntervalInSeconds": 60,
            **more,
        }
    }


def _refused(config: dict[str, Any], snapshot: dict[str, Any], deployed: dict[str, Any] | None = None) -> str:
    with pytest.raises(ValidationException) as refused:
        check_deployment_config(config, snapshot, deployed)
    return refused.value.message


@pytest.mark.parametrize(
    "config",
    [
        _blue_green("ALL_AT_ONCE", wait=0),
        _blue_green("CANARY", CanarySize={"Type": "INSTANCE_COUNT", "Value": 2}),
        _blue_green("CANARY", CanarySize={"Type": "CAPACITY_PERCENT", "Value": 50}),
        _blue_green("LINEAR", LinearStepSize={"Type": "CAPACITY_PERCENT", "Value": 10}),
        _blue_green("LINEAR", LinearStepSize={"Type": "INSTANCE_COUNT", "Value": 2}),
        _rolling(value=2),
        _rolling("CAPACITY_PERCENT", 5, RollbackMaximumBatchSize={"Type": "CAPACITY_PERCENT", "Value": 100}),
        {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "a"}]}},
        None,
    ],
)
def test_accepted(config: dict[str, Any] | None) -> None:
    check_deployment_config(config, _snapshot(), _snapshot(name="old"))


def test_one_update_policy_at_most() -> None:
    config = {**_blue_green("ALL_AT_ONCE"), **_rolling()}
    assert "give one update policy" in _refused(config, _snapshot())


@pytest.mark.parametrize(
    ("size", "instances"),
    [
        ({"Type": "INSTANCE_COUNT", "Value": 3}, 4),
        ({"Type": "INSTANCE_COUNT", "Value": 1}, 1),
        ({"Type": "CAPACITY_PERCENT", "Value": 51}, 4),
    ],
)
def test_canary_at_most_half_the_new_fleet(size: dict[str, Any], instances: int) -> None:
    message = _refused(_blue_green("CANARY", CanarySize=size), _snapshot(instances))
    assert "CanarySize" in message and "at most 50%" in message


@pytest.mark.parametrize(
    "size",
    [
        {"Type": "CAPACITY_PERCENT", "Value": 9},
        {"Type": "CAPACITY_PERCENT", "Value": 60},
        {"Type": "INSTANCE_COUNT", "Value": 3},
    ],
)
def test_linear_step_between_10_and_50_percent(size: dict[str, Any]) -> None:
    assert "must be 10-50%" in _refused(_blue_green("LINEAR", LinearStepSize=size), _snapshot(4))


def test_each_size_belongs_to_its_routing_type() -> None:
    canary = {"Type": "INSTANCE_COUNT", "Value": 1}
    assert "applies to CANARY" in _refused(_blue_green("LINEAR", CanarySize=canary), _snapshot())
    assert "applies to CANARY" in _refused(_blue_green("ALL_AT_ONCE", CanarySize=canary), _snapshot())
    assert "needs LinearStepSize" in _refused(_blue_green("LINEAR"), _snapshot())
    assert "needs CanarySize" in _refused(_blue_green("CANARY"), _snapshot())


def test_serverless_endpoints_shift_all_at_once_only() -> None:
    canary = _blue_green("CANARY", CanarySize={"Type": "CAPACITY_PERCENT", "Value": 10})
    assert "serverless" in _refused(canary, _serverless())
    assert "serverless" in _refused(canary, _snapshot(), deployed=_serverless())
    check_deployment_config(_blue_green("ALL_AT_ONCE"), _serverless(), _serverless())


def test_rolling_applies_to_one_real_time_variant_of_two_instances_or_more() -> None:
    assert "one production variant" in _refused(_rolling(), _snapshot(variants=("a", "b")))
    assert "serverless" in _refused(_rolling(), _serverless())
    assert "at least 2 instances" in _refused(_rolling(), _snapshot(instances=1))


@pytest.mark.parametrize(
    "size",
    [
        {"Type": "INSTANCE_COUNT", "Value": 3},
        {"Type": "CAPACITY_PERCENT", "Value": 4},
        {"Type": "CAPACITY_PERCENT", "Value": 51},
    ],
)
def test_rolling_batch_between_5_and_50_percent(size: dict[str, Any]) -> None:
    config = _rolling(size["Type"], size["Value"])
    assert "MaximumBatchSize" in _refused(config, _snapshot(4))


def test_rollback_batch_at_most_the_whole_fleet() -> None:
    config = _rolling(RollbackMaximumBatchSize={"Type": "CAPACITY_PERCENT", "Value": 101})
    assert "RollbackMaximumBatchSize" in _refused(config, _snapshot(4))


def test_timeout_must_exceed_every_wait() -> None:
    """Two canary bakes of 300 s and a termination wait of 60 s take 660 s: a 600 s timeout cannot fit."""
    config = _blue_green("CANARY", wait=300, timeout=600, CanarySize={"Type": "INSTANCE_COUNT", "Value": 1})
    config["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] = 60
    message = _refused(config, _snapshot())
    assert "660 s" in message and "2 baking period(s)" in message
    config["BlueGreenUpdatePolicy"]["MaximumExecutionTimeoutInSeconds"] = 661
    check_deployment_config(config, _snapshot(), None)
    rolling = _rolling(MaximumExecutionTimeoutInSeconds=600)
    rolling["RollingUpdatePolicy"]["WaitIntervalInSeconds"] = 150
    assert "4 baking period(s)" in _refused(rolling, _snapshot(4))  # four batches of one


def test_guardrails_move_traffic_between_same_named_variants() -> None:
    message = _refused(
        _blue_green("ALL_AT_ONCE"), _snapshot(variants=("green",)), _snapshot(variants=("blue",))
    )
    assert "same variant names" in message
    check_deployment_config(None, _snapshot(variants=("green",)), _snapshot(variants=("blue",)))
    check_deployment_config(
        _blue_green("ALL_AT_ONCE"), _snapshot(variants=("green",)), None
    )  # a new endpoint


def test_alarms_must_exist(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    with store.session() as session:
        session.add(
            AlarmRow(
                name="errors",
                arn="arn:aws:cloudwatch:us-east-1:123456789012:alarm:errors",
                spec={},
                state="OK",
                state_reason="",
                state_updated=0.0,
                state_transitioned=0.0,
                configuration_updated=0.0,
            )
        )
    config = {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}, {"AlarmName": "latency"}]}}
    with store.session() as session, pytest.raises(ValidationException) as refused:
        check_alarms_exist(session, config)
    assert "latency" in refused.value.message and "errors" not in refused.value.message.split(":")[1]
    with store.session() as session:
        check_alarms_exist(session, {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]}})
        check_alarms_exist(session, None)


def test_retaining_variant_properties_keeps_data_capture_unless_excluded() -> None:
    capture = {"EnableCapture": True, "InitialSamplingPercentage": 10, "DestinationS3Uri": "s3://b/p"}
    deployed = _snapshot(instances=3, name="old")
    deployed["config"]["DataCaptureConfig"] = capture
    new = _snapshot(instances=1)
    new["config"]["DataCaptureConfig"] = {**capture, "InitialSamplingPercentage": 50}
    _retain_variant_properties(new, deployed, [])
    assert new["config"]["DataCaptureConfig"] == capture
    assert new["config"]["ProductionVariants"][0]["InitialInstanceCount"] == 3

    new = _snapshot(instances=1)
    new["config"]["DataCaptureConfig"] = {**capture, "InitialSamplingPercentage": 50}
    _retain_variant_properties(
        new,
        deployed,
        [{"VariantPropertyType": "DataCaptureConfig"}, {"VariantPropertyType": "DesiredInstanceCount"}],
    )
    assert new["config"]["DataCaptureConfig"]["InitialSamplingPercentage"] == 50
    assert new["config"]["ProductionVariants"][0]["InitialInstanceCount"] == 1

    new = _snapshot(instances=1)
    new["config"]["DataCaptureConfig"] = capture
    _retain_variant_properties(new, _snapshot(name="old"), [])  # none now: none kept
    assert "DataCaptureConfig" not in new["config"]
