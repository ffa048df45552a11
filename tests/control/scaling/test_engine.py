"""The scaling engine on a fake clock and a fake fleet: alarms after N high / M low datapoints, cooldowns,
DisableScaleIn, min/max, suspension, refused-then-retried changes, bounds enforcement, restarts.

Settings (conftest): a 6 s period looked at every second, so periods end at t = 5, 11, 17, 23, ...; the
first period has no counter datapoint (no earlier reading to difference from)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from moorage.control.context import Caller
from moorage.control.scaling import ScalingEngine, ScalingSettings, activities
from moorage.control.scaling.policies import ScalingPolicies
from moorage.control.scaling.resources import TargetKey
from moorage.control.scaling.targets import ScalableTargets
from moorage.store import Store
from tests.control.scaling.fakes import FakeFleetPort
from tests.support.clock import FakeClock

CALLER = Caller("us-west-2", "123456789012")
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TARGET = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": "endpoint/ep/variant/v",
    "ScalableDimension": DIMENSION,
}
KEY = TargetKey("sagemaker", "endpoint/ep/variant/v", DIMENSION)
INVOCATIONS = {
    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
}


@pytest.fixture
async def running(engine: ScalingEngine, clock: FakeClock) -> AsyncIterator[ScalingEngine]:
    await engine.start()
    await clock.advance(0)
    yield engine
    await engine.stop()


async def register(
    store: Store, fleet: FakeFleetPort, clock: FakeClock, engine: ScalingEngine, **members: Any
) -> None:
    await ScalableTargets(store, fleet, clock, engine.wake).register(CALLER, {**TARGET, **members})


async def put(store: Store, clock: FakeClock, name: str = "p", **configuration: Any) -> dict[str, Any]:
    return await ScalingPolicies(store, clock).put(
        CALLER,
        {
            **TARGET,
            "PolicyName": name,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 100.0,
                **INVOCATIONS,
                **configuration,
            },
        },
    )


async def history(store: Store, *, not_scaled: bool = False) -> list[dict[str, Any]]:
    """Oldest first."""
    listed = (
        await store.run(
            activities.describe,
            store,
            {"ServiceNamespace": "sagemaker", "IncludeNotScaledActivities": not_scaled},
        )
    )["ScalingActivities"]
    return list(reversed(listed))


async def until(clock: FakeClock, t: float) -> None:
    """Run the engine until fake time t (seconds since the clock started)."""
    await clock.advance(t - clock.monotonic(), step=1.0)


@pytest.fixture
def setup(store: Store, fleet: FakeFleetPort, clock: FakeClock, engine: ScalingEngine) -> Any:
    async def target(minimum: int = 1, maximum: int = 10, **policy: Any) -> dict[str, Any]:
        await register(store, fleet, clock, engine, MinCapacity=minimum, MaxCapacity=maximum)
        return await put(store, clock, **{"ScaleOutCooldown": 60, "ScaleInCooldown": 60, **policy})

    return target


async def test_scale_out_after_three_high_datapoints(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    policy = await setup()
    fleet.variant().rate_per_minute = 600  # 2 instances: 300 invocations per instance per minute
    await until(clock, 22.5)  # datapoints at 5 (none), 11, 17: two above 100
    assert fleet.calls == []
    await until(clock, 23.5)  # the third
    assert fleet.calls == [("ep", "v", 6)]  # ceil(2 * 300 / 100)
    await until(clock, 24.5)
    (activity,) = await history(store)
    high_alarm = policy["Alarms"][0]["AlarmName"]
    assert re.fullmatch(r"TargetTracking-endpoint/ep/variant/v-AlarmHigh-[0-9a-f-]{36}", high_alarm)
    assert activity["Cause"] == f"monitor alarm {high_alarm} in state ALARM triggered policy p"
    assert activity["Description"] == "Setting desired instance count to 6."
    assert activity["StatusCode"] == "Successful"
    assert activity["StatusMessage"] == (
        "Successfully set desired instance count to 6. Change successfully fulfilled by sagemaker."
    )
    assert activity["StartTime"] == pytest.approx(clock.time() - 1.5)  # decided at t=23
    assert activity["EndTime"] == pytest.approx(activity["StartTime"])  # the fake fleet fulfils at once


async def test_scale_in_after_fifteen_low_datapoints_is_five_here(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    await setup(minimum=2)
    variant = fleet.variant()
    variant.instances = variant.desired = 4
    variant.rate_per_minute = 100  # 25 per instance, below 90 % of 100
    await until(clock, 34.5)  # four low datapoints (11..29) after the empty first one; 35 is the fifth
    assert fleet.calls == []
    await until(clock, 35.5)
    assert fleet.calls == [("ep", "v", 2)]  # ceil(4 * 25 / 100) = 1, clamped to MinCapacity
    assert (await history(store))[0]["Cause"].startswith(
        "monitor alarm TargetTracking-endpoint/ep/variant/v-AlarmLow-"
    )


async def test_an_idle_variant_is_not_scaled_in(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    """No invocations, no InvocationsPerInstance datapoints (SageMaker publishes none): the low alarm never
    fills, as on AWS."""
    await setup()
    await until(clock, 120)
    assert fleet.calls == [] and await history(store, not_scaled=True) == []


async def test_max_capacity_clamps_and_being_at_it_is_a_not_scaled_activity_recorded_once(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    await setup(maximum=5)
    fleet.variant().rate_per_minute = 6000  # wants ceil(2 * 3000 / 100) = 60
    await until(clock, 23.5)
    assert fleet.calls == [("ep", "v", 5)]
    await until(clock, 60)  # still in ALARM every period, now at the maximum
    assert fleet.calls == [("ep", "v", 5)]
    not_scaled = [a for a in await history(store, not_scaled=True) if a.get("NotScaledReasons")]
    assert len(not_scaled) == 1
    assert not_scaled[0]["NotScaledReasons"] == [{"Code": "AlreadyAtMaxCapacity", "MaxCapacity": 5}]
    assert not_scaled[0]["StatusCode"] == "Failed"
    assert len(await history(store)) == 1  # hidden unless asked for


async def test_disable_scale_in_keeps_scale_out(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    await setup(DisableScaleIn=True)
    variant = fleet.variant()
    variant.instances = variant.desired = 4
    variant.rate_per_minute = 40
    await until(clock, 90)  # low all along: no scale-in
    assert fleet.calls == []
    variant.rate_per_minute = 1200  # 300 per instance: high at 95, 101, 107
    await until(clock, 107.5)
    assert fleet.calls == [("ep", "v", 10)]  # ceil(4 * 300 / 100) = 12, at MaxCapacity


async def test_suspended_scale_out_holds_until_resumed(
    setup: Any,
    fleet: FakeFleetPort,
    clock: FakeClock,
    store: Store,
    engine: ScalingEngine,
    running: ScalingEngine,
) -> None:
    await setup()
    await register(store, fleet, clock, engine, SuspendedState={"DynamicScalingOutSuspended": True})
    fleet.variant().rate_per_minute = 600
    await until(clock, 40)
    assert fleet.calls == [] and await history(store, not_scaled=True) == []
    await register(store, fleet, clock, engine, SuspendedState={"DynamicScalingOutSuspended": False})
    await until(clock, 41.5)  # the alarm is still in breach: the next period end scales out
    assert fleet.calls == [("ep", "v", 6)]


async def test_suspended_scale_in(
    setup: Any,
    fleet: FakeFleetPort,
    clock: FakeClock,
    store: Store,
    engine: ScalingEngine,
    running: ScalingEngine,
) -> None:
    await setup()
    await register(store, fleet, clock, engine, SuspendedState={"DynamicScalingInSuspended": True})
    variant = fleet.variant()
    variant.instances = variant.desired = 4
    variant.rate_per_minute = 40
    await until(clock, 60)
    assert fleet.calls == []
    await register(store, fleet, clock, engine, SuspendedState={"DynamicScalingInSuspended": False})
    await until(clock, 66)
    assert fleet.calls == [("ep", "v", 1)]


async def test_scale_out_cooldown_counts_the_added_capacity_until_it_ends(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    await setup(ScaleOutCooldown=60)
    variant = fleet.variant()
    variant.rate_per_minute = 600
    await until(clock, 23.5)
    assert fleet.calls == [("ep", "v", 6)]  # fulfilled at once: the cooldown runs to t=83
    variant.rate_per_minute = 1200  # 200 per instance on 6 instances: the high alarm fires again by t=41
    await until(clock, 82)
    # while cooling, the next scale-out is reckoned from the 2 instances before the last one: 4 <= 6
    assert fleet.calls == [("ep", "v", 6)]
    await until(clock, 89.5)
    assert fleet.calls == [("ep", "v", 6), ("ep", "v", 10)]  # ceil(6 * 200 / 100) = 12, at MaxCapacity 10


async def test_while_instances_start_larger_scale_outs_follow_the_load_without_running_away(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    await setup(maximum=40, ScaleOutCooldown=600)
    fleet.fulfil = False  # new instances take long: 2 still serve
    variant = fleet.variant()
    variant.rate_per_minute = 600
    await until(clock, 23.5)
    assert fleet.calls == [("ep", "v", 6)]
    await until(clock, 50)  # still 300 per serving instance: reckoned from the 2 serving, 6 is not larger
    assert fleet.calls == [("ep", "v", 6)]
    variant.rate_per_minute = 1500  # 525 in the period that ends at 53, then 750 per instance
    await until(clock, 90)
    assert fleet.calls == [("ep", "v", 6), ("ep", "v", 11), ("ep", "v", 15)]  # ceil(2 * 750 / 100) = 15
    statuses = [a["StatusCode"] for a in await history(store)]
    assert statuses == ["Overridden", "Overridden", "InProgress"]
    assert (await history(store))[-1]["StatusMessage"] == (
        "Successfully set desired instance count to 15. Waiting for change to be fulfilled by sagemaker."
    )


async def test_scale_in_cooldown_holds_the_next_scale_in(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    await setup(ScaleInCooldown=120)
    variant = fleet.variant()
    variant.instances = variant.desired = 8
    variant.rate_per_minute = 480  # 60 per instance: ceil(8 * 60 / 100) = 5
    await until(clock, 35.5)
    assert fleet.calls == [("ep", "v", 5)]  # fulfilled at once: the cooldown runs to t=155
    variant.rate_per_minute = 240  # 48 per instance on 5: low again from t=41, five datapoints by t=65
    await until(clock, 150)
    assert fleet.calls == [("ep", "v", 5)]
    await until(clock, 155.5)  # the first period end out of the cooldown
    assert fleet.calls == [("ep", "v", 5), ("ep", "v", 3)]  # ceil(5 * 48 / 100)


async def test_a_refused_change_is_a_failed_activity_and_is_retried(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    await setup()
    fleet.refusal = "Endpoint ep is Updating; its instance count can change once it is InService."
    fleet.variant().rate_per_minute = 600
    await until(clock, 29.5)  # tried at 23 and again at 29
    assert fleet.calls == [("ep", "v", 6), ("ep", "v", 6)]
    failed = await history(store)
    assert [a["StatusCode"] for a in failed] == ["Failed", "Failed"]
    assert failed[0]["StatusMessage"] == (
        "Failed to set desired instance count to 6. Reason: Endpoint ep is Updating; its instance count can "
        "change once it is InService."
    )
    assert failed[0]["EndTime"] is not None
    fleet.refusal = None
    await until(clock, 36.5)
    assert [a["StatusCode"] for a in await history(store)] == ["Failed", "Failed", "Successful"]


async def test_new_bounds_bring_the_variant_inside_them_at_once(
    fleet: FakeFleetPort, clock: FakeClock, store: Store, engine: ScalingEngine, running: ScalingEngine
) -> None:
    await register(store, fleet, clock, engine, MinCapacity=4, MaxCapacity=6)  # the variant has 2
    await clock.advance(0.1)  # woken: no need to wait for a look
    assert fleet.calls == [("ep", "v", 4)]
    await register(store, fleet, clock, engine, MaxCapacity=3, MinCapacity=1)
    await clock.advance(0.1)
    assert fleet.calls == [("ep", "v", 4), ("ep", "v", 3)]
    await clock.advance(1)
    causes = [(a["Cause"], a["Description"], a["StatusCode"]) for a in await history(store)]
    assert causes == [
        ("minimum capacity was set to 4", "Setting desired instance count to 4.", "Successful"),
        ("maximum capacity was set to 3", "Setting desired instance count to 3.", "Successful"),
    ]


async def test_refused_bounds_are_retried_at_the_next_period(
    fleet: FakeFleetPort, clock: FakeClock, store: Store, engine: ScalingEngine, running: ScalingEngine
) -> None:
    fleet.refusal = "Endpoint ep is Creating."
    await register(store, fleet, clock, engine, MinCapacity=3, MaxCapacity=6)
    await until(clock, 4.5)
    assert fleet.calls == [("ep", "v", 3)]  # once, not at every look
    fleet.refusal = None
    await until(clock, 5.5)
    assert fleet.calls == [("ep", "v", 3), ("ep", "v", 3)]
    assert [a["StatusCode"] for a in await history(store)] == ["Failed", "Successful"]
    await until(clock, 20)
    assert len(fleet.calls) == 2  # done: nothing more to enforce


async def test_bounds_wait_for_a_serving_variant(
    fleet: FakeFleetPort, clock: FakeClock, store: Store, engine: ScalingEngine, running: ScalingEngine
) -> None:
    fleet.variant().serving = False
    await register(store, fleet, clock, engine, MinCapacity=3, MaxCapacity=6)
    await until(clock, 10)
    assert fleet.calls == []
    fleet.variant().serving = True
    await until(clock, 11.5)
    assert fleet.calls == [("ep", "v", 3)]


async def test_a_restart_keeps_cooldowns_and_abandons_unfinished_changes(
    store: Store, fleet: FakeFleetPort, clock: FakeClock, settings: ScalingSettings, setup: Any
) -> None:
    await setup(ScaleInCooldown=120)
    first = ScalingEngine(store, fleet, clock, settings)
    await first.start()
    variant = fleet.variant()
    variant.instances = variant.desired = 8
    variant.rate_per_minute = 480
    await until(clock, 35.5)
    assert fleet.calls == [("ep", "v", 5)]
    await until(clock, 37)
    await first.stop()
    variant.rate_per_minute = 240
    stuck = await store.run(
        activities.begin, store, clock, KEY, kind="scale-in", from_capacity=5, capacity=4, cause="x"
    )
    second = ScalingEngine(store, fleet, clock, settings)  # a new server on the same store
    await second.start()
    await until(clock, 150)  # the new engine has its five low datapoints long before the cooldown ends
    assert fleet.calls == [("ep", "v", 5)]
    await until(clock, 175)
    assert fleet.calls == [("ep", "v", 5), ("ep", "v", 3)]
    await second.stop()
    abandoned = next(a for a in await history(store) if a["ActivityId"] == stuck)
    assert abandoned["StatusCode"] == "Failed"
    assert abandoned["StatusMessage"].endswith("Reason: the server stopped before the change was made.")


async def test_deleting_the_endpoint_deregisters_its_targets_and_ends_unfinished_changes(
    setup: Any,
    fleet: FakeFleetPort,
    clock: FakeClock,
    store: Store,
    engine: ScalingEngine,
    running: ScalingEngine,
) -> None:
    await setup()
    fleet.fulfil = False
    fleet.variant().rate_per_minute = 600
    await until(clock, 24)
    assert (await history(store))[0]["StatusCode"] == "InProgress"
    del fleet.variants[("ep", "v")]
    # any spelling, as DeleteEndpoint
    assert await engine.endpoint_deleted("EP") == ["endpoint/ep/variant/v"]
    await clock.advance(0.1)
    (activity,) = await history(store)
    assert activity["StatusCode"] == "Unfulfilled"
    assert activity["StatusMessage"].endswith("the endpoint was deleted.")
    targets = ScalableTargets(store, fleet, clock, engine.wake)
    assert (await targets.describe(CALLER, {"ServiceNamespace": "sagemaker"}))["ScalableTargets"] == []
    assert (await ScalingPolicies(store, clock).describe(CALLER, {"ServiceNamespace": "sagemaker"}))[
        "ScalingPolicies"
    ] == []
    assert await engine.endpoint_deleted("ep") == []


async def test_a_change_the_variant_drops_is_unfulfilled(
    setup: Any, fleet: FakeFleetPort, clock: FakeClock, store: Store, running: ScalingEngine
) -> None:
    await setup()
    fleet.fulfil = False
    fleet.variant().rate_per_minute = 600
    await until(clock, 24)
    fleet.variant().desired = 2  # e.g. the new instances failed to start and the fleet gave up
    await until(clock, 25)
    (activity,) = await history(store)
    assert activity["StatusCode"] == "Unfulfilled"
    assert activity["StatusMessage"].endswith("the variant's desired instance count is now 2.")


async def test_custom_metric_policy_scales_on_model_latency(
    fleet: FakeFleetPort, clock: FakeClock, store: Store, engine: ScalingEngine, running: ScalingEngine
) -> None:
    await register(store, fleet, clock, engine, MinCapacity=1, MaxCapacity=10)
    await ScalingPolicies(store, clock).put(
        CALLER,
        {
            **TARGET,
            "PolicyName": "latency",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 500.0,
                "ScaleOutCooldown": 0,
                "CustomizedMetricSpecification": {
                    "MetricName": "ModelLatency",
                    "Namespace": "AWS/SageMaker",
                    "Dimensions": [
                        {"Name": "EndpointName", "Value": "ep"},
                        {"Name": "VariantName", "Value": "v"},
                    ],
                    "Statistic": "Average",
                    "Unit": "Microseconds",
                },
            },
        },
    )
    variant = fleet.variant()
    variant.rate_per_minute = 60
    variant.latency_us = 1500.0  # three times the target
    await until(clock, 23.5)
    assert fleet.calls == [("ep", "v", 6)]


async def test_concurrency_policy_uses_the_average_of_samples(
    fleet: FakeFleetPort, clock: FakeClock, store: Store, engine: ScalingEngine, running: ScalingEngine
) -> None:
    await register(store, fleet, clock, engine, MinCapacity=1, MaxCapacity=10)
    await ScalingPolicies(store, clock).put(
        CALLER,
        {
            **TARGET,
            "PolicyName": "concurrency",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 2.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantConcurrentRequestsPerModelHighResolution"
                },
            },
        },
    )
    fleet.variant().concurrent = 8  # 4 per instance
    await until(clock, 17.5)  # gauges need no earlier reading: periods 5, 11, 17
    assert fleet.calls == [("ep", "v", 4)]  # ceil(2 * 4 / 2)


async def test_start_up_brings_a_variant_that_came_back_smaller_inside_its_bounds(
    store: Store, fleet: FakeFleetPort, clock: FakeClock, engine: ScalingEngine
) -> None:
    # the variant has 2: nothing to do
    await register(store, fleet, clock, engine, MinCapacity=2, MaxCapacity=4)
    await engine.start()
    await clock.advance(0.1)
    await engine.stop()
    assert fleet.calls == []
    variant = fleet.variant()
    variant.instances = variant.desired = 1  # e.g. restarted from its endpoint config's InitialInstanceCount
    await engine.start()
    await clock.advance(0.1)
    await engine.stop()
    assert fleet.calls == [("ep", "v", 2)]
    assert (await history(store))[0]["Cause"] == "minimum capacity was set to 2"


async def test_new_bounds_after_a_refusal_are_tried_at_once(
    fleet: FakeFleetPort, clock: FakeClock, store: Store, engine: ScalingEngine, running: ScalingEngine
) -> None:
    fleet.refusal = "Endpoint ep is Updating."
    await register(store, fleet, clock, engine, MinCapacity=3, MaxCapacity=6)
    await clock.advance(0.1)
    fleet.refusal = None
    await register(store, fleet, clock, engine, MinCapacity=4)
    await clock.advance(0.1)  # not waiting for the end of the period
    assert fleet.calls == [("ep", "v", 3), ("ep", "v", 4)]
