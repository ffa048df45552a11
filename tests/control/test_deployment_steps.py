"""The shape of a deployment, planned before anything starts: blue/green traffic shares, rolling batches
and their rollback, and how a DeploymentConfig reads into that plan."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.control.deployment.config import Guardrails, Size, guardrails_of
from moorage.control.deployment.steps import (
    Batch,
    baking_periods,
    capacity_share,
    rollback_batches,
    rolling_batches,
    traffic_steps,
)


def _snapshot(instances: int = 4, instance_type: str = "ml.m5.large", **variant: Any) -> dict[str, Any]:
    pv = {
        "VariantName": "v",
        "ModelName": "m",
        "InitialInstanceCount": instances,
        "InstanceType": instance_type,
    }
    return {"config": {"EndpointConfigName": "new", "ProductionVariants": [{**pv, **variant}]}, "models": {}}


def _blue_green(kind: str, wait: int = 60, **routing: Any) -> dict[str, Any]:
    return {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {"Type": kind, "WaitIntervalInSeconds": wait, **routing},
            "TerminationWaitInSeconds": 30,
            "MaximumExecutionTimeoutInSeconds": 3600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}, {"AlarmName": "latency"}]},
    }


def _shares(kind: str, size: Size | None, instances: int) -> list[float]:
    return traffic_steps(Guardrails(traffic=kind, step=size), instances)


def test_all_at_once_is_one_step() -> None:
    assert _shares("ALL_AT_ONCE", None, 3) == [1.0]


@pytest.mark.parametrize(
    ("size", "instances", "canary"),
    [
        (Size("CAPACITY_PERCENT", 25), 1, 0.25),  # a share of capacity, whatever the instance count
        (Size("INSTANCE_COUNT", 1), 4, 0.25),  # one instance of four
        (Size("INSTANCE_COUNT", 2), 4, 0.5),
    ],
)
def test_canary_takes_its_share_then_the_rest(size: Size, instances: int, canary: float) -> None:
    assert _shares("CANARY", size, instances) == [canary, 1.0]


@pytest.mark.parametrize(
    ("size", "instances", "shares"),
    [
        (Size("CAPACITY_PERCENT", 50), 1, [0.5, 1.0]),
        (Size("CAPACITY_PERCENT", 34), 1, [0.34, 0.68, 1.0]),  # the last step is what is left
        (Size("CAPACITY_PERCENT", 10), 1, [pytest.approx(k / 10) for k in range(1, 11)]),
        (Size("INSTANCE_COUNT", 1), 3, [pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]),
    ],
)
def test_linear_steps_until_everything(size: Size, instances: int, shares: list[float]) -> None:
    assert _shares("LINEAR", size, instances) == shares


def test_linear_ends_exactly_at_everything() -> None:
    """Three steps of a third end at 1.0, not at 0.999… followed by a fourth, empty step."""
    steps = _shares("LINEAR", Size("INSTANCE_COUNT", 1), 3)
    assert len(steps) == 3 and steps[-1] == 1.0


@pytest.mark.parametrize(
    ("blue", "green", "batch", "batches"),
    [
        (4, 4, 1, [Batch(1, 3), Batch(2, 2), Batch(3, 1), Batch(4, 0)]),
        (3, 3, 2, [Batch(2, 1), Batch(3, 0)]),  # the last batch is what is left
        (
            2,
            4,
            1,
            [Batch(1, 2), Batch(2, 1), Batch(3, 1), Batch(4, 0)],
        ),  # the old fleet shrinks in proportion
        (4, 2, 1, [Batch(1, 2), Batch(2, 0)]),
    ],
)
def test_rolling_batches(blue: int, green: int, batch: int, batches: list[Batch]) -> None:
    assert rolling_batches(blue, green, batch) == batches


@pytest.mark.parametrize(
    ("blue_now", "blue_full", "green_now", "batch", "batches"),
    [
        (1, 4, 3, None, [Batch(0, 4)]),  # RollbackMaximumBatchSize absent: everything at once
        (1, 4, 3, 1, [Batch(2, 2), Batch(1, 3), Batch(0, 4)]),
        (2, 4, 2, 3, [Batch(0, 4)]),
        (4, 4, 1, 1, [Batch(0, 4)]),  # nothing of the old fleet left yet: traffic simply returns
    ],
)
def test_rollback_batches(
    blue_now: int, blue_full: int, green_now: int, batch: int | None, batches: list[Batch]
) -> None:
    assert rollback_batches(blue_now, blue_full, green_now, batch) == batches


def test_traffic_follows_capacity() -> None:
    assert capacity_share(1, 3) == 0.25
    assert capacity_share(2, 0) == 1.0
    assert capacity_share(0, 0) == 1.0


@pytest.mark.parametrize(
    ("size", "total", "instances"),
    [
        (Size("INSTANCE_COUNT", 3), 10, 3),
        (Size("INSTANCE_COUNT", 30), 10, 10),
        (Size("CAPACITY_PERCENT", 25), 10, 2),  # whole instances, rounded down
        (Size("CAPACITY_PERCENT", 5), 10, 1),  # but at least one
    ],
)
def test_sizes_in_whole_instances(size: Size, total: int, instances: int) -> None:
    assert size.instances(total) == instances


def test_a_canary_config_reads_into_its_plan() -> None:
    config = _blue_green("CANARY", CanarySize={"Type": "INSTANCE_COUNT", "Value": 1})
    guardrails = guardrails_of(config, _snapshot())
    assert guardrails == Guardrails(
        traffic="CANARY",
        wait=60,
        step=Size("INSTANCE_COUNT", 1),
        termination_wait=30,
        timeout=3600,
        alarms=("errors", "latency"),
    )
    assert baking_periods(guardrails, 4) == 2


def test_a_rolling_config_reads_into_its_plan() -> None:
    config = {
        "RollingUpdatePolicy": {
            "MaximumBatchSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
            "WaitIntervalInSeconds": 10,
            "RollbackMaximumBatchSize": {"Type": "INSTANCE_COUNT", "Value": 1},
        }
    }
    guardrails = guardrails_of(config, _snapshot())
    assert guardrails.policy == "rolling"
    assert guardrails.step == Size("CAPACITY_PERCENT", 50)
    assert guardrails.rollback_step == Size("INSTANCE_COUNT", 1)
    assert guardrails.timeout is None
    assert baking_periods(guardrails, 4) == 2


def test_no_update_policy_is_all_at_once_watched_by_its_alarms() -> None:
    config = {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "errors"}]}}
    assert guardrails_of(config, _snapshot()) == Guardrails(alarms=("errors",))
    assert guardrails_of(None, _snapshot()) == Guardrails()


@pytest.mark.parametrize(
    "snapshot",
    [_snapshot(instance_type="ml.inf1.xlarge"), _snapshot(AcceleratorType="ml.eia2.medium")],
    ids=["inf1", "elastic-inference"],
)
def test_excluded_endpoints_fall_back_to_all_at_once(snapshot: dict[str, Any]) -> None:
    """SageMaker's exclusions: all-at-once traffic shifting, no baking, no alarms."""
    config = _blue_green("CANARY", CanarySize={"Type": "INSTANCE_COUNT", "Value": 1})
    guardrails = guardrails_of(config, snapshot)
    assert guardrails.fallback
    assert (guardrails.traffic, guardrails.wait, guardrails.alarms) == ("ALL_AT_ONCE", 0.0, ())
