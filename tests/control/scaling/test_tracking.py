"""Target tracking decisions as pure functions: alarms, capacities, several policies, cooldowns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from moorage.control.scaling.metrics import MetricSpec
from moorage.control.scaling.tracking import (
    Capacity,
    PastActivity,
    Tracking,
    breached_high,
    breached_low,
    capacity_for,
    decide,
)

INVOCATIONS = MetricSpec("InvocationsPerInstance", "Sum")
LATENCY = MetricSpec("ModelLatency", "Average")


def policy(name: str = "p", metric: MetricSpec = INVOCATIONS, target: float = 100.0, **kw: Any) -> Tracking:
    values: dict[str, Any] = {
        "scale_out_cooldown": 60.0,
        "scale_in_cooldown": 60.0,
        "disable_scale_in": False,
        **kw,
    }
    return Tracking(name, metric, target, alarm_high=f"{name}-high", alarm_low=f"{name}-low", **values)


def run(
    policies: list[Tracking],
    histories: Mapping[MetricSpec, Sequence[float | None]],
    capacity: Capacity | None = None,
    **kw: Any,
) -> Any:
    options: dict[str, Any] = {
        "suspended": {},
        "last_out": None,
        "latest": None,
        "now": 1000.0,
        "out_datapoints": 3,
        "in_datapoints": 3,
        **kw,
    }
    return decide(policies, histories, capacity or Capacity(4, 4, 1, 20), **options)


def test_alarms_need_every_recent_datapoint_and_a_gap_breaks_the_run() -> None:
    assert breached_high([50, 150, 150, 150], 100, 3)
    assert not breached_high([150, 150], 100, 3)
    assert not breached_high([150, None, 150, 150], 100, 4)
    assert not breached_high([150, 100, 150], 100, 3)  # equal to the target is not above it
    assert breached_low([89.9, 80, 0.0], 100, 3)
    assert not breached_low([90.0, 80, 0.0], 100, 3)  # 90 % of the target is not below it
    assert not breached_low([None, None, None], 100, 3)


def test_capacity_rounds_up_and_forgives_float_noise() -> None:
    assert capacity_for(3, 70.0, 70.0) == 3
    assert capacity_for(3, 0.1 + 0.2, 0.3) == 3
    assert capacity_for(2, 101.0, 100.0) == 3
    assert capacity_for(4, 10.0, 100.0) == 1


def test_scale_out_to_the_largest_capacity_any_policy_asks_for() -> None:
    decision = run(
        [policy("a"), policy("b", LATENCY, target=10.0)],
        {INVOCATIONS: [150, 150, 150], LATENCY: [30, 30, 30]},
    )
    assert (decision.direction, decision.capacity, decision.policy.name) == ("scale-out", 12, "b")
    assert decision.act and decision.alarm == "b-high"


def test_scale_in_only_when_every_policy_with_scale_in_asks() -> None:
    lows: dict[MetricSpec, list[float | None]] = {INVOCATIONS: [10, 10, 10], LATENCY: [1, 1, 1]}
    mixed: dict[MetricSpec, list[float | None]] = {
        INVOCATIONS: [10, 10, 10],
        LATENCY: [9.5, 9.5, 9.5],
    }  # latency is not below 90 % of 10
    assert run([policy("a"), policy("b", LATENCY, target=10.0)], mixed) is None
    decision = run([policy("a"), policy("b", LATENCY, target=10.0)], lows)
    assert (decision.direction, decision.capacity) == ("scale-in", 1)  # the largest of 1 and 1
    # a policy whose scale-in is disabled does not hold the others back
    decision = run([policy("a"), policy("b", LATENCY, target=10.0, disable_scale_in=True)], mixed)
    assert (decision.direction, decision.policy.name) == ("scale-in", "a")


def test_min_and_max_clamp_and_not_scaled_reasons() -> None:
    at_max = run([policy()], {INVOCATIONS: [900] * 3}, Capacity(20, 20, 1, 20))
    assert not at_max.act and at_max.not_scaled == {"Code": "AlreadyAtMaxCapacity", "MaxCapacity": 20}
    clamped = run([policy()], {INVOCATIONS: [900] * 3}, Capacity(4, 4, 1, 10))
    assert clamped.act and clamped.capacity == 10
    at_min = run([policy()], {INVOCATIONS: [10] * 3}, Capacity(2, 2, 2, 10))
    assert at_min.not_scaled == {"Code": "AlreadyAtMinCapacity", "MinCapacity": 2}
    partial = run([policy()], {INVOCATIONS: [80] * 3}, Capacity(10, 10, 1, 20))
    assert partial.act and partial.capacity == 8  # ceil(10 * 80 / 100)
    unchanged = run([policy()], {INVOCATIONS: [85] * 3}, Capacity(1, 1, 0, 20))
    assert unchanged.not_scaled == {"Code": "AlreadyAtDesiredCapacity", "CurrentCapacity": 1}


def test_suspension_holds_silently() -> None:
    assert run([policy()], {INVOCATIONS: [500] * 3}, suspended={"DynamicScalingOutSuspended": True}) is None
    assert run([policy()], {INVOCATIONS: [5] * 3}, suspended={"DynamicScalingInSuspended": True}) is None


def test_instances_still_starting_are_not_counted() -> None:
    decision = run(
        [policy()], {INVOCATIONS: [300] * 3}, Capacity(desired=6, serving=2, minimum=1, maximum=20)
    )
    assert decision.act is False and decision.not_scaled == {
        "Code": "AlreadyAtDesiredCapacity",
        "CurrentCapacity": 6,
    }


def test_scale_out_cooldown_counts_what_the_last_scale_out_added() -> None:
    last = PastActivity("scale-out", from_capacity=2, capacity=6, in_progress=False, ended_at=990.0)
    steady = Capacity(6, 6, 1, 40)
    # 200 per instance on 6: from the 2 before the last scale-out that is 4, not more than 6
    assert run([policy()], {INVOCATIONS: [200] * 3}, steady, last_out=last, now=1000.0) is None
    # once the cooldown is over, from the 6 there now
    after = run([policy()], {INVOCATIONS: [200] * 3}, steady, last_out=last, now=1050.0)
    assert after.act and after.capacity == 12
    # a larger scale-out goes ahead during the cooldown
    larger = run([policy()], {INVOCATIONS: [500] * 3}, steady, last_out=last, now=1000.0)
    assert larger.act and larger.capacity == 10


def test_scale_in_cooldown_and_a_scale_out_ending_it() -> None:
    scaled_in = PastActivity("scale-in", from_capacity=8, capacity=4, in_progress=False, ended_at=990.0)
    low = {INVOCATIONS: [10] * 3}
    assert run([policy()], low, last_out=None, latest=scaled_in, now=1000.0) is None
    assert run([policy()], low, latest=scaled_in, now=1051.0).act
    scaled_out = PastActivity("scale-out", from_capacity=4, capacity=5, in_progress=False, ended_at=995.0)
    assert run([policy()], low, last_out=scaled_out, latest=scaled_out, now=1000.0).act


@pytest.mark.parametrize("in_progress", [True, False])
def test_an_unfinished_scale_out_cools(in_progress: bool) -> None:
    last = PastActivity("scale-out", 2, 6, in_progress=in_progress, ended_at=None if in_progress else 0.0)
    decision = run([policy()], {INVOCATIONS: [200] * 3}, Capacity(6, 6, 1, 40), last_out=last, now=1000.0)
    assert (decision is None) is in_progress
