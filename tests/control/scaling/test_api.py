"""The seven Application Auto Scaling operations through a real boto3 client (served in-process by the
JsonService adapter, against a real store and a fake fleet): shapes, update semantics, pagination and
every error, with AWS's codes and wording."""

from __future__ import annotations

import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from moorage.api import errors
from moorage.api.json_service import JsonService
from moorage.control.context import Caller
from moorage.control.scaling import activities
from moorage.control.scaling.resources import TargetKey
from moorage.control.scaling.targets import ScalableTargets
from moorage.store import Store
from moorage.store.tables import ScalableTargetRow
from tests.control.scaling.fakes import FakeFleetPort
from tests.control.scaling.wire import in_process_client
from tests.support.clock import FakeClock

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
TARGET = {
    "ServiceNamespace": "sagemaker",
    "ResourceId": "endpoint/ep/variant/v",
    "ScalableDimension": DIMENSION,
}
INVOCATIONS = {
    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
}
UNSUPPORTED = "Unsupported service namespace, resource type or scalable dimension"


def register(aas: Any, **members: Any) -> dict[str, Any]:
    result: dict[str, Any] = aas.register_scalable_target(**{**TARGET, **members})
    return result


def put(aas: Any, name: str = "p", **configuration: Any) -> dict[str, Any]:
    result: dict[str, Any] = aas.put_scaling_policy(
        PolicyName=name,
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **INVOCATIONS, **configuration},
        **TARGET,
    )
    return result


def refused(call: Any, code: str, **params: Any) -> str:
    """The error message of a call that must fail with `code`."""
    with pytest.raises(ClientError) as caught:
        call(**params)
    assert caught.value.response["Error"]["Code"] == code, caught.value.response["Error"]
    message: str = caught.value.response["Error"]["Message"]
    return message


def only_target(aas: Any) -> dict[str, Any]:
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    return dict(target)


# --- RegisterScalableTarget ---------------------------------------------------------------------------


def test_register_answers_an_arn_and_describe_shows_the_target(aas: Any, clock: FakeClock) -> None:
    arn = register(aas, MinCapacity=1, MaxCapacity=4)["ScalableTargetARN"]
    assert re.fullmatch(
        r"arn:aws:application-autoscaling:us-west-2:123456789012:scalable-target/056m[0-9a-f]{32}", arn
    )
    target = only_target(aas)
    assert target["ScalableTargetARN"] == arn
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 4)
    assert target["RoleARN"] == (
        "arn:aws:iam::123456789012:role/aws-service-role/sagemaker.application-autoscaling.amazonaws.com/"
        "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint"
    )
    assert target["SuspendedState"] == {
        "DynamicScalingInSuspended": False,
        "DynamicScalingOutSuspended": False,
        "ScheduledScalingSuspended": False,
    }
    assert target["CreationTime"].timestamp() == pytest.approx(clock.time(), abs=0.001)


def test_registering_again_changes_only_the_members_given(aas: Any, clock: FakeClock) -> None:
    arn = register(aas, MinCapacity=1, MaxCapacity=4, SuspendedState={"DynamicScalingInSuspended": True})[
        "ScalableTargetARN"
    ]
    created = only_target(aas)["CreationTime"]
    assert register(aas, MaxCapacity=8)["ScalableTargetARN"] == arn
    register(aas, SuspendedState={"DynamicScalingOutSuspended": True})
    target = only_target(aas)
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 8)
    assert target["SuspendedState"] == {
        "DynamicScalingInSuspended": True,  # kept: only the flags given change
        "DynamicScalingOutSuspended": True,
        "ScheduledScalingSuspended": False,
    }
    assert target["CreationTime"] == created


def test_min_above_max_is_refused_on_create_and_on_update(aas: Any) -> None:
    message = refused(
        aas.register_scalable_target, "ValidationException", **TARGET, MinCapacity=5, MaxCapacity=2
    )
    assert message == "Maximum capacity cannot be less than minimum capacity"
    register(aas, MinCapacity=1, MaxCapacity=4)
    message = refused(aas.register_scalable_target, "ValidationException", **TARGET, MinCapacity=6)
    assert message == "Maximum capacity cannot be less than minimum capacity"
    assert only_target(aas)["MinCapacity"] == 1  # nothing changed


def test_a_new_target_needs_both_capacities_and_no_negative_one(aas: Any) -> None:
    assert refused(aas.register_scalable_target, "ValidationException", **TARGET, MaxCapacity=2) == (
        "Minimum capacity must be specified"
    )
    assert refused(aas.register_scalable_target, "ValidationException", **TARGET, MinCapacity=2) == (
        "Maximum capacity must be specified"
    )
    assert refused(
        aas.register_scalable_target, "ValidationException", **TARGET, MinCapacity=-1, MaxCapacity=2
    ) == ("Minimum capacity cannot be less than 0")


def test_min_capacity_zero_needs_an_async_endpoint(aas: Any, fleet: FakeFleetPort) -> None:
    message = refused(
        aas.register_scalable_target, "ValidationException", **TARGET, MinCapacity=0, MaxCapacity=2
    )
    assert "AsyncInferenceConfig" in message and "endpoint/ep/variant/v" in message
    fleet.add("async-ep", "v", asynchronous=True)
    aas.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId="endpoint/async-ep/variant/v",
        ScalableDimension=DIMENSION,
        MinCapacity=0,
        MaxCapacity=2,
    )


@pytest.mark.parametrize("resource_id", ["endpoint/nope/variant/v", "endpoint/ep/variant/nope"])
def test_the_endpoint_and_variant_must_exist(aas: Any, resource_id: str) -> None:
    message = refused(
        aas.register_scalable_target,
        "ValidationException",
        ServiceNamespace="sagemaker",
        ResourceId=resource_id,
        ScalableDimension=DIMENSION,
        MinCapacity=1,
        MaxCapacity=2,
    )
    assert message.startswith(f"SageMaker endpoint variant doesn't exist: {resource_id}.")


@pytest.mark.parametrize(
    ("namespace", "resource_id", "dimension"),
    [
        ("ecs", "service/default/web", "ecs:service:DesiredCount"),  # a namespace this server does not scale
        ("sagemaker", "endpoint/ep/variant/v", "ecs:service:DesiredCount"),  # dimension of another namespace
        ("sagemaker", "endpoint/ep", DIMENSION),  # not a variant
        ("sagemaker", "ep/variant/v", DIMENSION),
        ("sagemaker", "endpoint/ep/variant/v/extra", DIMENSION),
        ("sagemaker", "inference-component/ic", DIMENSION),
    ],
)
def test_other_namespaces_dimensions_and_resource_ids_are_unsupported(
    aas: Any, namespace: str, resource_id: str, dimension: str
) -> None:
    message = refused(
        aas.register_scalable_target,
        "ValidationException",
        ServiceNamespace=namespace,
        ResourceId=resource_id,
        ScalableDimension=dimension,
        MinCapacity=1,
        MaxCapacity=2,
    )
    assert message.startswith(UNSUPPORTED)


def test_serverless_and_inference_component_dimensions_say_they_are_not_served(aas: Any) -> None:
    message = refused(
        aas.register_scalable_target,
        "ValidationException",
        **{**TARGET, "ScalableDimension": "sagemaker:variant:DesiredProvisionedConcurrency"},
        MinCapacity=1,
        MaxCapacity=2,
    )
    assert "sagemaker:variant:DesiredProvisionedConcurrency is not supported" in message
    assert "sagemaker:variant:DesiredInstanceCount" in message


def test_an_unknown_namespace_fails_botocore_model_validation(aas: Any) -> None:
    message = refused(
        aas.register_scalable_target,
        "ValidationException",
        **{**TARGET, "ServiceNamespace": "sagemaker-x"},
        MinCapacity=1,
        MaxCapacity=2,
    )
    assert message.startswith("1 validation error detected: Value 'sagemaker-x' at 'serviceNamespace'")


def test_tags_only_on_creation(aas: Any) -> None:
    register(aas, MinCapacity=1, MaxCapacity=2, Tags={"team": "ml"})
    message = refused(aas.register_scalable_target, "ValidationException", **TARGET, Tags={"team": "ops"})
    assert message == (
        "The scalable target that you tried to tag already exists. To update tags on an existing scalable "
        "target, use the TagResource API."
    )


def test_at_most_500_targets(aas: Any, store: Store, clock: FakeClock) -> None:
    with store.session() as session:
        for i in range(500):
            session.add(
                ScalableTargetRow(
                    resource_id=f"endpoint/e{i}/variant/v",
                    scalable_dimension=DIMENSION,
                    service_namespace="sagemaker",
                    endpoint_key=f"e{i}",
                    endpoint_name=f"e{i}",
                    variant_name="v",
                    arn=f"arn:{i}",
                    min_capacity=1,
                    max_capacity=1,
                    suspended_state={},
                    tags={},
                    creation_time=clock.time(),
                )
            )
    message = refused(
        aas.register_scalable_target, "LimitExceededException", **TARGET, MinCapacity=1, MaxCapacity=2
    )
    assert "500" in message


def test_an_unexpected_failure_is_an_internal_service_exception(aas: Any, fleet: FakeFleetPort) -> None:
    async def broken(endpoint: str, variant: str) -> None:
        raise RuntimeError("the fleet is on fire")

    fleet.variant_info = broken  # type: ignore[method-assign]
    message = refused(
        aas.register_scalable_target, "InternalServiceException", **TARGET, MinCapacity=1, MaxCapacity=2
    )
    assert "fire" not in message  # details go to the log, not the client


# --- DescribeScalableTargets / DeregisterScalableTarget ----------------------------------------------


def _targets(aas: Any, fleet: FakeFleetPort, count: int) -> list[str]:
    ids = []
    for i in range(count):
        fleet.add(f"ep{i}", "v")
        ids.append(f"endpoint/ep{i}/variant/v")
        aas.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=ids[-1],
            ScalableDimension=DIMENSION,
            MinCapacity=1,
            MaxCapacity=2,
        )
    return ids


def test_describe_targets_pages_filters_and_checks_its_token(aas: Any, fleet: FakeFleetPort) -> None:
    ids = _targets(aas, fleet, 3)
    paginator = aas.get_paginator("describe_scalable_targets")
    pages = list(paginator.paginate(ServiceNamespace="sagemaker", PaginationConfig={"PageSize": 2}))
    assert [len(p["ScalableTargets"]) for p in pages] == [2, 1]
    assert [t["ResourceId"] for p in pages for t in p["ScalableTargets"]] == ids
    picked = aas.describe_scalable_targets(
        ServiceNamespace="sagemaker", ResourceIds=[ids[1]], ScalableDimension=DIMENSION
    )["ScalableTargets"]
    assert [t["ResourceId"] for t in picked] == [ids[1]]
    assert aas.describe_scalable_targets(ServiceNamespace="ecs")["ScalableTargets"] == []
    refused(
        aas.describe_scalable_targets,
        "InvalidNextTokenException",
        ServiceNamespace="sagemaker",
        NextToken="nope",
    )
    message = refused(
        aas.describe_scalable_targets,
        "ValidationException",
        ServiceNamespace="sagemaker",
        ScalableDimension=DIMENSION,
    )
    assert message == "ResourceIds must be specified when ScalableDimension is specified"
    message = refused(
        aas.describe_scalable_targets,
        "ValidationException",
        ServiceNamespace="sagemaker",
        ResourceIds=["table/t"],
    )
    assert message == UNSUPPORTED


def test_describe_targets_caps_max_results_at_50(aas: Any, fleet: FakeFleetPort) -> None:
    _targets(aas, fleet, 1)
    assert (
        len(aas.describe_scalable_targets(ServiceNamespace="sagemaker", MaxResults=500)["ScalableTargets"])
        == 1
    )
    refused(aas.describe_scalable_targets, "ValidationException", ServiceNamespace="sagemaker", MaxResults=-1)


def test_deregister_removes_the_target_and_its_policies(aas: Any) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    put(aas)
    aas.deregister_scalable_target(**TARGET)
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    message = refused(aas.deregister_scalable_target, "ObjectNotFoundException", **TARGET)
    assert message == (
        "No scalable target found for service namespace: sagemaker, resource ID: endpoint/ep/variant/v, "
        "scalable dimension: sagemaker:variant:DesiredInstanceCount"
    )


# --- PutScalingPolicy / DescribeScalingPolicies / DeleteScalingPolicy ---------------------------------


def test_a_policy_needs_a_registered_target(aas: Any) -> None:
    message = refused(
        aas.put_scaling_policy,
        "ObjectNotFoundException",
        PolicyName="p",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **INVOCATIONS},
        **TARGET,
    )
    assert message == (
        "No scalable target registered for service namespace: sagemaker, resource ID: endpoint/ep/variant/v, "
        "scalable dimension: sagemaker:variant:DesiredInstanceCount"
    )


def test_put_policy_answers_its_arn_and_alarms_and_update_keeps_them(aas: Any) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    created = put(aas, "invocations", ScaleOutCooldown=30)
    assert re.fullmatch(
        r"arn:aws:autoscaling:us-west-2:123456789012:scalingPolicy:[0-9a-f-]{36}:"
        r"resource/sagemaker/endpoint/ep/variant/v:policyName/invocations",
        created["PolicyARN"],
    )
    high, low = created["Alarms"]
    uuid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    assert re.fullmatch(rf"TargetTracking-endpoint/ep/variant/v-AlarmHigh-{uuid}", high["AlarmName"])
    assert re.fullmatch(rf"TargetTracking-endpoint/ep/variant/v-AlarmLow-{uuid}", low["AlarmName"])
    assert high["AlarmARN"] == f"arn:aws:cloudwatch:us-west-2:123456789012:alarm:{high['AlarmName']}"
    updated = put(aas, "invocations", TargetValue=120.0, DisableScaleIn=True)
    assert (updated["PolicyARN"], updated["Alarms"]) == (created["PolicyARN"], created["Alarms"])
    (policy,) = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert policy["TargetTrackingScalingPolicyConfiguration"] == {
        "TargetValue": 120.0,
        "DisableScaleIn": True,
        **INVOCATIONS,
    }
    assert policy["Alarms"] == created["Alarms"]


def test_step_and_predictive_scaling_are_refused_with_the_reason(aas: Any) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    message = refused(
        aas.put_scaling_policy,
        "ValidationException",
        PolicyName="steps",
        PolicyType="StepScaling",
        StepScalingPolicyConfiguration={
            "AdjustmentType": "ChangeInCapacity",
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
        },
        **TARGET,
    )
    assert "StepScaling policies are not supported" in message and "CloudWatch" in message
    message = refused(
        aas.put_scaling_policy,
        "ValidationException",
        PolicyName="p",
        PolicyType="PredictiveScaling",
        **TARGET,
    )
    assert "PredictiveScaling" in message
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []


def test_policy_type_and_configuration_are_needed(aas: Any) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    message = refused(
        aas.put_scaling_policy,
        "ValidationException",
        PolicyName="p",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **INVOCATIONS},
        **TARGET,
    )
    assert message.startswith("PolicyType must be specified")
    message = refused(
        aas.put_scaling_policy,
        "ValidationException",
        PolicyName="p",
        PolicyType="TargetTrackingScaling",
        **TARGET,
    )
    assert message.startswith("TargetTrackingScalingPolicyConfiguration must be specified")


@pytest.mark.parametrize(("value", "shown"), [(0.0, "0.0"), (-5.0, "-5.0"), (1e109, "1.0E109")])
def test_target_value_range_in_aws_words(aas: Any, value: float, shown: str) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    message = refused(
        aas.put_scaling_policy,
        "ValidationException",
        PolicyName="p",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": value, **INVOCATIONS},
        **TARGET,
    )
    assert message == (
        "For target tracking scaling, target value must be between '8.51592E-109' and '1.174271E108', "
        f"but was '{shown}'."
    )


def _custom(**spec: Any) -> dict[str, Any]:
    base = {
        "MetricName": "ModelLatency",
        "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "v"}],
        "Statistic": "Average",
    }
    return {"CustomizedMetricSpecification": {k: v for k, v in {**base, **spec}.items() if v is not None}}


PROVISIONED = {"PredefinedMetricType": "SageMakerVariantProvisionedConcurrencyUtilization"}
CONCURRENCY = {"PredefinedMetricType": "SageMakerVariantConcurrentRequestsPerModelHighResolution"}
ONLY_SUPPORTS = (
    "Scalable dimension sagemaker:variant:DesiredInstanceCount only supports the following predefined metric "
    "types: SageMakerVariantInvocationsPerInstance, SageMakerVariantConcurrentRequestsPerModelHighResolution"
)
EXACTLY_ONE = "Exactly one of PredefinedMetricSpecification and CustomizedMetricSpecification"
OTHER_ENDPOINT = [{"Name": "EndpointName", "Value": "other"}, {"Name": "VariantName", "Value": "v"}]


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ({"PredefinedMetricSpecification": PROVISIONED}, ONLY_SUPPORTS),
        ({**INVOCATIONS, **_custom()}, EXACTLY_ONE),
        ({}, EXACTLY_ONE),
        (_custom(Metrics=[{"Id": "m1", "Expression": "m2 * 2"}]), "metric math) is not supported"),
        (_custom(Statistic=None), "CustomizedMetricSpecification must specify Statistic"),
        (_custom(Namespace="AWS/EC2"), "Namespace AWS/EC2 is not available on this server"),
        (_custom(MetricName="GPUUtilization"), "Metric GPUUtilization of AWS/SageMaker is not computed"),
        (_custom(Dimensions=OTHER_ENDPOINT), "Dimensions must be EndpointName=ep and VariantName=v"),
        (_custom(Dimensions=OTHER_ENDPOINT[:1]), "Dimensions must be EndpointName=ep"),
        (_custom(Statistic="Maximum"), "Statistic Maximum of ModelLatency is not supported by this server"),
        (_custom(MetricName="CPUUtilization", Statistic="Sum"), "Statistic Sum of CPUUtilization"),
        (_custom(Unit="Milliseconds"), "Unit Milliseconds does not match ModelLatency"),
    ],
)
def test_metrics_that_cannot_be_computed_are_refused(aas: Any, metric: dict[str, Any], expected: str) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    message = refused(
        aas.put_scaling_policy,
        "ValidationException",
        PolicyName="p",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **metric},
        **TARGET,
    )
    assert expected in message


@pytest.mark.parametrize(
    "metric",
    [
        {"PredefinedMetricSpecification": CONCURRENCY},
        _custom(),
        _custom(MetricName="Invocation5XXErrors", Statistic="Average"),
        _custom(MetricName="CPUUtilization", Unit="Percent"),
        _custom(MetricName="ConcurrentRequestsPerModel", Statistic="Maximum"),
    ],
)
def test_computable_metrics_are_accepted(aas: Any, metric: dict[str, Any]) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    aas.put_scaling_policy(
        PolicyName="p",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **metric},
        **TARGET,
    )


def test_at_most_50_policies_per_target(aas: Any) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    for i in range(50):
        put(aas, f"p{i}")
    message = refused(
        aas.put_scaling_policy,
        "LimitExceededException",
        PolicyName="one-more",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={"TargetValue": 70.0, **INVOCATIONS},
        **TARGET,
    )
    assert "50" in message
    put(aas, "p7", TargetValue=10.0)  # updating an existing one is still fine


def test_describe_policies_pages_by_10_and_filters(aas: Any) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    names = [f"p{i:02}" for i in range(12)]
    for name in names:
        put(aas, name)
    first = aas.describe_scaling_policies(ServiceNamespace="sagemaker", MaxResults=50)
    assert [p["PolicyName"] for p in first["ScalingPolicies"]] == names[:10]
    rest = aas.describe_scaling_policies(ServiceNamespace="sagemaker", NextToken=first["NextToken"])
    assert [p["PolicyName"] for p in rest["ScalingPolicies"]] == names[10:] and "NextToken" not in rest
    chosen = aas.describe_scaling_policies(
        ServiceNamespace="sagemaker",
        PolicyNames=["p03", "p11", "absent"],
        **{k: TARGET[k] for k in ("ResourceId",)},
    )
    assert [p["PolicyName"] for p in chosen["ScalingPolicies"]] == ["p03", "p11"]
    message = refused(
        aas.describe_scaling_policies,
        "ValidationException",
        ServiceNamespace="sagemaker",
        ScalableDimension=DIMENSION,
    )
    assert message == "ResourceId must be specified when ScalableDimension is specified"


def test_delete_policy(aas: Any) -> None:
    register(aas, MinCapacity=1, MaxCapacity=4)
    put(aas, "keep")
    put(aas, "drop")
    aas.delete_scaling_policy(PolicyName="drop", **TARGET)
    names = [
        p["PolicyName"]
        for p in aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    ]
    assert names == ["keep"]
    message = refused(aas.delete_scaling_policy, "ObjectNotFoundException", PolicyName="drop", **TARGET)
    assert message == (
        "No scaling policy found for service namespace: sagemaker, resource ID: endpoint/ep/variant/v, "
        "scalable dimension: sagemaker:variant:DesiredInstanceCount, policy name: drop"
    )


def test_policy_operations_check_the_target_triple(aas: Any) -> None:
    message = refused(
        aas.delete_scaling_policy,
        "ValidationException",
        PolicyName="p",
        **{**TARGET, "ResourceId": "endpoint/ep"},
    )
    assert message == UNSUPPORTED


# --- DescribeScalingActivities ------------------------------------------------------------------------


async def test_activities_newest_first_paged_and_not_scaled_only_on_request(
    aas: Any, store: Store, clock: FakeClock
) -> None:
    key = TargetKey("sagemaker", "endpoint/ep/variant/v", DIMENSION)
    ids = []
    for capacity in (3, 4, 5):
        ids.append(
            await store.run(
                activities.begin,
                store,
                clock,
                key,
                kind="scale-out",
                from_capacity=2,
                capacity=capacity,
                cause="monitor alarm x",
            )
        )
        await clock.advance(1)  # a later start time
    await store.run(
        activities.not_scaled,
        store,
        clock,
        key,
        cause="monitor alarm h in state ALARM triggered policy p",
        policy_name="p",
        reason={"Code": "AlreadyAtMaxCapacity", "MaxCapacity": 5},
    )
    listed = aas.describe_scaling_activities(ServiceNamespace="sagemaker")["ScalingActivities"]
    assert [a["ActivityId"] for a in listed] == ids[::-1]
    assert listed[0]["Description"] == "Setting desired instance count to 5."
    assert listed[0]["StatusCode"] == "Pending" and "EndTime" not in listed[0]
    every = aas.describe_scaling_activities(
        ServiceNamespace="sagemaker",
        IncludeNotScaledActivities=True,
        MaxResults=2,
        **{"ResourceId": TARGET["ResourceId"]},
    )
    assert every["ScalingActivities"][0]["NotScaledReasons"] == [
        {"Code": "AlreadyAtMaxCapacity", "MaxCapacity": 5}
    ]
    assert every["ScalingActivities"][0]["StatusCode"] == "Failed"
    rest = aas.describe_scaling_activities(
        ServiceNamespace="sagemaker", IncludeNotScaledActivities=True, NextToken=every["NextToken"]
    )
    assert [a["ActivityId"] for a in rest["ScalingActivities"]] == ids[:2][::-1]
    assert aas.describe_scaling_activities(ServiceNamespace="ecs")["ScalingActivities"] == []
    message = refused(
        aas.describe_scaling_activities,
        "ValidationException",
        ServiceNamespace="sagemaker",
        ScalableDimension=DIMENSION,
    )
    assert message == "ResourceId must be specified when ScalableDimension is specified"


async def test_caller_region_is_minted_into_arns(
    store: Store, fleet: FakeFleetPort, clock: FakeClock
) -> None:
    targets = ScalableTargets(store, fleet, clock, bounds_changed=lambda: None)
    arn = await targets.register(
        Caller("eu-west-1", "111122223333"), {**TARGET, "MinCapacity": 1, "MaxCapacity": 2}
    )
    assert arn["ScalableTargetARN"].startswith("arn:aws:application-autoscaling:eu-west-1:111122223333:")


@pytest.mark.parametrize(
    "error",
    [
        errors.ObjectNotFoundException,
        errors.LimitExceededException,
        errors.ConcurrentUpdateException,
        errors.FailedResourceAccessException,
        errors.InvalidNextTokenException,
        errors.InternalServiceException,
        errors.ValidationException,
    ],
)
def test_application_autoscaling_errors_reach_boto3_as_their_modelled_classes(
    error: type[errors.AwsError],
) -> None:
    async def failing(caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
        raise error("it went wrong")

    service = JsonService(
        "application-autoscaling", {"DescribeScalableTargets": failing}, "1", "us-east-1", 1024
    )
    client = in_process_client(service)
    with pytest.raises(getattr(client.exceptions, error.code)) as caught:
        client.describe_scalable_targets(ServiceNamespace="sagemaker")
    assert caught.value.response["Error"]["Message"] == "it went wrong"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == error.status
