"""DeploymentConfig checked the way SageMaker checks it when CreateEndpoint or UpdateEndpoint accepts it.

The request's shapes (enums, WaitIntervalInSeconds 0-3600, MaximumExecutionTimeoutInSeconds 600-28800,
CapacitySize Value ≥ 1, 1-10 alarms) were checked against botocore's model before this runs. What is
checked here depends on the endpoint: sizes against the new fleet's instance count, which endpoints a
policy applies to, the timeout against the waits, and whether the alarms exist."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from moorage.api.errors import ValidationException
from moorage.control.deployment.config import (
    CAPACITY_PERCENT,
    INSTANCE_COUNT,
    Size,
    alarm_names,
    fleet_instances,
    guardrails_of,
)
from moorage.control.deployment.steps import baking_periods
from moorage.store.tables import AlarmRow

Params = dict[str, Any]

# the bounds SageMaker documents, as fractions of the new fleet's capacity
CANARY_MAX = 0.5
LINEAR_MIN, LINEAR_MAX = 0.1, 0.5
BATCH_MIN, BATCH_MAX = 0.05, 0.5


def check_deployment_config(
    config: Mapping[str, Any] | None, snapshot: Mapping[str, Any], deployed: Mapping[str, Any] | None
) -> None:
    """Refuse a DeploymentConfig that SageMaker refuses for deploying `snapshot` (the new endpoint config,
    with the variant properties it keeps) over `deployed` (None: a new endpoint)."""
    if not config:
        return
    blue_green, rolling = config.get("BlueGreenUpdatePolicy"), config.get("RollingUpdatePolicy")
    if blue_green is not None and rolling is not None:
        raise ValidationException(
            "DeploymentConfig has both a BlueGreenUpdatePolicy and a RollingUpdatePolicy; give one update "
            "policy (or neither, for a blue/green deployment with all-at-once traffic shifting)."
        )
    if deployed is not None:
        _check_variant_names(snapshot["config"], deployed["config"])
    if blue_green is not None:
        _check_blue_green(blue_green, snapshot, deployed)
    if rolling is not None:
        _check_rolling(rolling, snapshot, deployed)
    guardrails = guardrails_of(config, snapshot)
    if guardrails.timeout is not None:
        periods = baking_periods(guardrails, fleet_instances(snapshot))
        waits = periods * guardrails.wait + guardrails.termination_wait
        if guardrails.timeout <= waits:
            raise ValidationException(
                f"MaximumExecutionTimeoutInSeconds ({guardrails.timeout:g}) must be larger than the "
                f"deployment's total waiting time, {waits:g} s ({periods} baking period(s) of "
                f"WaitIntervalInSeconds {guardrails.wait:g}"
                + (
                    f" plus TerminationWaitInSeconds {guardrails.termination_wait:g}"
                    if guardrails.termination_wait
                    else ""
                )
                + "). Raise it, or shorten the waits."
            )


def check_alarms_exist(session: Session, config: Mapping[str, Any] | None) -> None:
    """Refuse AutoRollbackConfiguration alarms that do not exist: a guardrail watching an alarm that
    does not exist would never roll anything back."""
    wanted = alarm_names(config)
    if not wanted:
        return
    found = set(session.scalars(select(AlarmRow.name).where(AlarmRow.name.in_(wanted))))
    if missing := [name for name in wanted if name not in found]:
        raise ValidationException(
            f"AutoRollbackConfiguration names CloudWatch alarm(s) that do not exist: {', '.join(missing)}. "
            "Create them with PutMetricAlarm first, or leave them out of the DeploymentConfig."
        )


def _check_blue_green(
    policy: Params, snapshot: Mapping[str, Any], deployed: Mapping[str, Any] | None
) -> None:
    routing = policy["TrafficRoutingConfiguration"]
    kind = routing["Type"]
    sizes = {
        "CanarySize": Size.of(routing.get("CanarySize")),
        "LinearStepSize": Size.of(routing.get("LinearStepSize")),
    }
    wanted = {"CANARY": "CanarySize", "LINEAR": "LinearStepSize"}.get(kind)
    for member, size in sizes.items():
        if size is not None and member != wanted:
            owner = "CANARY" if member == "CanarySize" else "LINEAR"
            raise ValidationException(
                f"TrafficRoutingConfiguration sets {member}, which applies to {owner} traffic routing only; "
                f"its Type is {kind}. Remove {member} or change the Type."
            )
    if wanted is not None and sizes[wanted] is None:
        raise ValidationException(f"TrafficRoutingConfiguration of Type {kind} needs {wanted}.")
    if kind != "ALL_AT_ONCE" and (serverless := _serverless_variant(snapshot, deployed)):
        raise ValidationException(
            f"Variant {serverless} is serverless: {kind} traffic shifting applies to real-time and "
            "asynchronous endpoints only. Use ALL_AT_ONCE traffic routing for a serverless endpoint."
        )
    total = fleet_instances(snapshot)
    canary, linear = sizes["CanarySize"], sizes["LinearStepSize"]
    if canary is not None and canary.fraction(total) > CANARY_MAX:
        raise ValidationException(
            f"CanarySize ({canary}) must be at most 50% of the new fleet's capacity ({total} instance(s)). "
            "Use a smaller canary, or more instances."
        )
    if linear is not None and not LINEAR_MIN <= linear.fraction(total) <= LINEAR_MAX:
        hint = (
            "Give it as CAPACITY_PERCENT, or use more instances."
            if linear.type == INSTANCE_COUNT
            else "Use a percentage from 10 to 50."
        )
        raise ValidationException(
            f"LinearStepSize ({linear}) must be 10-50% of the new fleet's capacity ({total} instance(s)). "
            + hint
        )


def _check_rolling(policy: Params, snapshot: Mapping[str, Any], deployed: Mapping[str, Any] | None) -> None:
    for which, config in (("new", snapshot["config"]), ("current", (deployed or {}).get("config"))):
        if config is None:
            continue
        variants = config["ProductionVariants"]
        if len(variants) != 1:
            raise ValidationException(
                f"RollingUpdatePolicy applies to endpoints with one production variant; the {which} endpoint "
                f"configuration {config['EndpointConfigName']} has {len(variants)}. Use a "
                "BlueGreenUpdatePolicy."
            )
        if "ServerlessConfig" in variants[0]:
            raise ValidationException(
                f"RollingUpdatePolicy does not apply to serverless endpoints; variant "
                f"{variants[0]['VariantName']} of the {which} endpoint configuration "
                f"{config['EndpointConfigName']} is serverless. Use a BlueGreenUpdatePolicy with ALL_AT_ONCE "
                "traffic routing."
            )
    total = fleet_instances(snapshot)
    batch = Size.of(policy["MaximumBatchSize"])
    assert batch is not None  # a required member
    if not BATCH_MIN <= batch.fraction(total) <= BATCH_MAX:
        hint = (
            "A rolling deployment needs a fleet of at least 2 instances."
            if total < 2
            else "Use a smaller batch, or more instances."
        )
        raise ValidationException(
            f"MaximumBatchSize ({batch}) must be 5-50% of the variant's total instance count ({total}). "
            + hint
        )
    rollback = Size.of(policy.get("RollbackMaximumBatchSize"))
    if rollback is not None and rollback.type == CAPACITY_PERCENT and rollback.value > 100:
        raise ValidationException(
            f"RollbackMaximumBatchSize ({rollback}) must be at most 100% of the fleet's capacity."
        )


def _check_variant_names(green: Params, blue: Params) -> None:
    """Guardrails shift traffic between the same variants of the old and the new fleet."""
    new = {v["VariantName"] for v in green["ProductionVariants"]}
    old = {v["VariantName"] for v in blue["ProductionVariants"]}
    if new != old:
        raise ValidationException(
            f"An update with a DeploymentConfig needs the same variant names in the new endpoint "
            f"configuration {green['EndpointConfigName']} ({', '.join(sorted(new))}) as in the current one, "
            f"{blue['EndpointConfigName']} ({', '.join(sorted(old))}). Give the variants the same names, or "
            "update without a DeploymentConfig."
        )


def _serverless_variant(snapshot: Mapping[str, Any], deployed: Mapping[str, Any] | None) -> str:
    for config in (snapshot["config"], (deployed or {}).get("config")):
        for variant in (config or {}).get("ProductionVariants", []):
            if "ServerlessConfig" in variant:
                return str(variant["VariantName"])
    return ""
