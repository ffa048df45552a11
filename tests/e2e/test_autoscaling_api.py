"""Application Auto Scaling against a real `moorage serve`, driven by an unchanged boto3
`application-autoscaling` client on the same port as SageMaker.

The server runs with a 1 s scaling period and 2-datapoint alarms, so scaling decisions take seconds."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.conftest import FAST_WAIT, deploy, unique
from tests.support.models import build_model_tar
from tests.support.moorage_server import RunningServer, moorage_server

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
FAST_SCALING = {
    "MOORAGE_SCALING_PERIOD_SECONDS": "1",
    "MOORAGE_SCALE_OUT_DATAPOINTS": "2",
    "MOORAGE_SCALE_IN_DATAPOINTS": "3",
}
INVOCATIONS = {
    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
}


@pytest.fixture(scope="module")
def scaling_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state"), env=FAST_SCALING) as running:
        yield running


@pytest.fixture(scope="module")
def sm(scaling_server: RunningServer) -> Any:
    return scaling_server.client("sagemaker")


@pytest.fixture(scope="module")
def smr(scaling_server: RunningServer) -> Any:
    return scaling_server.client("sagemaker-runtime")


@pytest.fixture(scope="module")
def aas(scaling_server: RunningServer) -> Any:
    return scaling_server.client("application-autoscaling")


def target(endpoint: str, variant: str = "AllTraffic") -> dict[str, str]:
    return {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{endpoint}/variant/{variant}",
        "ScalableDimension": DIMENSION,
    }


def error(call: Callable[..., Any], **params: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def eventually(check: Callable[[], Any], timeout: float = 90, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def variant_counts(sm: Any, endpoint: str) -> tuple[int, int]:
    (variant,) = sm.describe_endpoint(EndpointName=endpoint)["ProductionVariants"]
    return variant["DesiredInstanceCount"], variant["CurrentInstanceCount"]


def test_register_describe_deregister_round_trip(sm: Any, aas: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model)
    arn = aas.register_scalable_target(**target(name), MinCapacity=1, MaxCapacity=3)["ScalableTargetARN"]
    assert re.fullmatch(
        r"arn:aws:application-autoscaling:us-west-2:\d{12}:scalable-target/056m[0-9a-f]{32}", arn
    )
    (described,) = aas.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[target(name)["ResourceId"]]
    )["ScalableTargets"]
    assert (described["MinCapacity"], described["MaxCapacity"], described["ScalableTargetARN"]) == (1, 3, arn)
    policy = aas.put_scaling_policy(
        PolicyName="invocations",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **INVOCATIONS},
        **target(name),
    )
    assert policy["PolicyARN"].endswith(
        f":resource/sagemaker/endpoint/{name}/variant/AllTraffic:policyName/invocations"
    )
    high, low = (a["AlarmName"] for a in policy["Alarms"])
    assert high.startswith(f"TargetTracking-endpoint/{name}/variant/AllTraffic-AlarmHigh-")
    assert low.startswith(f"TargetTracking-endpoint/{name}/variant/AllTraffic-AlarmLow-")
    aas.deregister_scalable_target(**target(name))
    assert (
        aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=target(name)["ResourceId"])[
            "ScalingPolicies"
        ]
        == []
    )
    sm.delete_endpoint(EndpointName=name)


def test_errors_in_aws_codes_and_words(sm: Any, aas: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model)
    code, message = error(aas.register_scalable_target, **target(name), MinCapacity=3, MaxCapacity=1)
    assert (code, message) == ("ValidationException", "Maximum capacity cannot be less than minimum capacity")
    code, message = error(
        aas.register_scalable_target, **target("no-such-endpoint"), MinCapacity=1, MaxCapacity=2
    )
    assert code == "ValidationException" and "doesn't exist" in message
    code, message = error(
        aas.register_scalable_target,
        ServiceNamespace="ecs",
        ResourceId="service/default/web",
        ScalableDimension="ecs:service:DesiredCount",
        MinCapacity=1,
        MaxCapacity=2,
    )
    assert code == "ValidationException"
    assert message.startswith("Unsupported service namespace, resource type or scalable dimension")
    code, message = error(
        aas.register_scalable_target,
        **{**target(name), "ResourceId": f"endpoint/{name}"},
        MinCapacity=1,
        MaxCapacity=2,
    )
    assert code == "ValidationException"
    code, message = error(
        aas.put_scaling_policy,
        PolicyName="p",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **INVOCATIONS},
        **target(name),
    )
    assert code == "ObjectNotFoundException"
    assert message.startswith("No scalable target registered for service namespace: sagemaker")
    assert error(aas.deregister_scalable_target, **target(name))[0] == "ObjectNotFoundException"
    assert error(aas.delete_scaling_policy, PolicyName="p", **target(name))[0] == "ObjectNotFoundException"
    assert error(aas.describe_scalable_targets, ServiceNamespace="sagemaker", NextToken="x")[0] == (
        "InvalidNextTokenException"
    )
    aas.register_scalable_target(**target(name), MinCapacity=1, MaxCapacity=2)
    code, message = error(
        aas.put_scaling_policy,
        PolicyName="steps",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={"AdjustmentType": "ChangeInCapacity"},
        **target(name),
    )
    assert code == "ValidationException" and "StepScaling policies are not supported" in message
    sm.delete_endpoint(EndpointName=name)


def test_raising_min_capacity_adds_instances(sm: Any, aas: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model)
    aas.register_scalable_target(**target(name), MinCapacity=2, MaxCapacity=3)
    eventually(lambda: variant_counts(sm, name) == (2, 2), what="two serving instances")

    def fulfilled() -> Any:
        listed = aas.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=target(name)["ResourceId"]
        )
        return [a for a in listed["ScalingActivities"] if a["StatusCode"] == "Successful"]

    (activity,) = eventually(fulfilled, what="a successful activity")
    assert activity["Cause"] == "minimum capacity was set to 2"
    assert activity["Description"] == "Setting desired instance count to 2."
    sm.delete_endpoint(EndpointName=name)


def test_load_scales_out_and_the_activity_says_why(sm: Any, smr: Any, aas: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model)
    aas.register_scalable_target(**target(name), MinCapacity=1, MaxCapacity=3)
    policy = aas.put_scaling_policy(
        PolicyName="busy",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 60.0,  # one invocation per second per instance
            "ScaleOutCooldown": 0,
            "ScaleInCooldown": 600,
            **INVOCATIONS,
        },
        **target(name),
    )
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            smr.invoke_endpoint(EndpointName=name, Body=b"{}", ContentType="application/json")
            time.sleep(0.05)

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    try:
        eventually(lambda: variant_counts(sm, name)[1] >= 2, what="a scale-out")
    finally:
        stop.set()
        worker.join(30)
    listed = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    ours = [a for a in listed if a["ResourceId"] == target(name)["ResourceId"]]
    high = policy["Alarms"][0]["AlarmName"]
    assert ours[-1]["Cause"] == f"monitor alarm {high} in state ALARM triggered policy busy"
    sm.delete_endpoint(EndpointName=name)


class Traffic:
    """Requests at a chosen rate from a thread; the rate can change while it runs."""

    def __init__(self, smr: Any, name: str, per_second: float) -> None:
        self.smr, self.name, self.per_second = smr, name, per_second
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.smr.invoke_endpoint(EndpointName=self.name, Body=b"{}", ContentType="application/json")
            except ClientError as err:
                self.failures.append(str(err))
            self._stop.wait(1 / self.per_second)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_light_load_scales_in_and_disable_scale_in_holds(
    sm: Any, smr: Any, aas: Any, echo_model: str
) -> None:
    """Load above the target scales out; load well under it scales back in (an idle variant has no
    datapoints, as on AWS, so the low alarm needs some traffic); DisableScaleIn keeps the capacity."""
    name = deploy(sm, echo_model)
    aas.register_scalable_target(**target(name), MinCapacity=1, MaxCapacity=3)

    def policy(disable_scale_in: bool) -> dict[str, Any]:
        result: dict[str, Any] = aas.put_scaling_policy(
            PolicyName="follow",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 120.0,  # two invocations per second per instance
                "ScaleOutCooldown": 0,
                "ScaleInCooldown": 0,
                "DisableScaleIn": disable_scale_in,
                **INVOCATIONS,
            },
            **target(name),
        )
        return result

    alarms = policy(disable_scale_in=False)["Alarms"]
    with Traffic(smr, name, per_second=15) as traffic:
        eventually(lambda: variant_counts(sm, name) == (3, 3), what="a scale-out to the maximum")
        traffic.per_second = 2  # 40 a minute per instance of 3, far under 90 % of the target
        eventually(lambda: variant_counts(sm, name) == (1, 1), what="a scale-in to the minimum")
        low = next(a["AlarmName"] for a in alarms if "AlarmLow" in a["AlarmName"])

        def latest() -> dict[str, Any]:
            activity: dict[str, Any] = aas.describe_scaling_activities(**target(name))["ScalingActivities"][0]
            return activity

        # the engine marks the activity fulfilled at its next look after the instances are gone
        eventually(lambda: latest()["StatusCode"] == "Successful", what="the scale-in to be fulfilled")
        assert latest()["Cause"] == f"monitor alarm {low} in state ALARM triggered policy follow"
        assert latest()["Description"] == "Setting desired instance count to 1."

        policy(disable_scale_in=True)
        traffic.per_second = 15
        eventually(lambda: variant_counts(sm, name)[1] >= 2, what="a scale-out")
        traffic.per_second = 2
        # a scale-out may still be on its way to a higher desired count: wait until it has arrived
        eventually(lambda: len(set(variant_counts(sm, name))) == 1, what="the scale-out to settle")
        scaled = variant_counts(sm, name)
        time.sleep(8)  # many periods of low datapoints (3 make a low alarm)
        assert variant_counts(sm, name) == scaled
    assert traffic.failures == []
    sm.delete_endpoint(EndpointName=name)


def test_deleting_the_endpoint_deregisters_its_target(sm: Any, aas: Any, echo_model: str) -> None:
    name = deploy(sm, echo_model)
    aas.register_scalable_target(**target(name), MinCapacity=1, MaxCapacity=2)
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(EndpointName=name, WaiterConfig=FAST_WAIT)
    assert (
        aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[target(name)["ResourceId"]])[
            "ScalableTargets"
        ]
        == []
    )


def test_targets_policies_and_activities_survive_a_restart(tmp_path: Path) -> None:
    model = build_model_tar(tmp_path / "m" / "model.tar.gz").as_uri()
    state = tmp_path / "state"
    name = unique("ep")
    with moorage_server(state, env=FAST_SCALING) as server:
        sm, aas = server.client(), server.client("application-autoscaling")
        deploy(sm, model, name=name)
        aas.register_scalable_target(**target(name), MinCapacity=2, MaxCapacity=3)
        aas.put_scaling_policy(
            PolicyName="kept",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **INVOCATIONS},
            **target(name),
        )
        eventually(lambda: variant_counts(sm, name) == (2, 2), what="two serving instances")
        before = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    with moorage_server(state, env=FAST_SCALING) as server:
        sm, aas = server.client(), server.client("application-autoscaling")
        assert (
            aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"][0]["MinCapacity"]
            == 2
        )
        assert [
            p["PolicyName"]
            for p in aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
        ] == ["kept"]
        after = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
        assert {a["ActivityId"] for a in before} <= {a["ActivityId"] for a in after}
        # the scaled count survives (the fleet port persists it, as UpdateEndpointWeightsAndCapacities
        # does); if it did not, the engine brings the variant back inside MinCapacity at start-up
        eventually(lambda: variant_counts(sm, name) == (2, 2), what="two serving instances again")
