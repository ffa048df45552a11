"""Scaling policies: PutScalingPolicy (create, or replace the configuration of an existing one),
DescribeScalingPolicies, DeleteScalingPolicy.

Target tracking is supported. Step scaling is refused: on AWS a step policy does nothing until a
CloudWatch alarm that the user creates invokes it, and this server has no CloudWatch, so accepting one
would be a policy that never acts. Predictive scaling is ECS-only on AWS."""

from __future__ import annotations

import decimal
import logging
import math
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from moorage.api.errors import ConcurrentUpdateException, LimitExceededException, ValidationException
from moorage.clock import Clock
from moorage.control.context import Caller
from moorage.control.scaling.metrics import metric_of
from moorage.control.scaling.paging import page
from moorage.control.scaling.resources import (
    TargetKey,
    VariantRef,
    described_rows,
    policy_arn,
    policy_not_found,
    target_not_registered,
    tracking_alarms,
)
from moorage.control.scaling.targets import find
from moorage.control.scaling.tracking import DEFAULT_COOLDOWN, Tracking
from moorage.store import Store
from moorage.store.tables import ScalingPolicyRow

Params = dict[str, Any]
log = logging.getLogger("moorage.scaling")
MAX_POLICIES = 50  # AWS's quota of scaling policies per scalable target
TRACKING = "TargetTrackingScaling"
_DEFAULT_PAGE = 10
# The range AWS accepts for TargetValue, and how its message prints the bounds
_TARGET_RANGE = (8.51592e-109, 1.174271e108)
_TARGET_RANGE_TEXT = ("8.51592E-109", "1.174271E108")
_STEP_SCALING = (
    "StepScaling policies are not supported by this server: on AWS a step scaling policy acts only when "
    "a CloudWatch alarm that you create invokes it, and this server has no CloudWatch. Use PolicyType "
    "TargetTrackingScaling with a TargetTrackingScalingPolicyConfiguration."
)


class ScalingPolicies:
    """The three policy operations: coroutines on the event loop whose work, all of it store work, runs on
    the store's threads (`Store.run`)."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def put(self, caller: Caller, params: Params) -> Params:
        return await self.store.run(self._put, caller, params)

    async def describe(self, caller: Caller, params: Params) -> Params:
        return await self.store.run(self._describe, caller, params)

    async def delete(self, caller: Caller, params: Params) -> Params:
        return await self.store.run(self._delete, caller, params)

    def _put(self, caller: Caller, params: Params) -> Params:
        key = TargetKey.of(params)
        name = params["PolicyName"]
        try:
            with self.store.session() as session:
                target = find(session, key)
                if target is None:
                    raise target_not_registered(key)
                existing = session.get(ScalingPolicyRow, (key.resource_id, key.dimension, name))
                policy_type = params.get("PolicyType") or (existing.policy_type if existing else None)
                configuration = _tracking_configuration(policy_type, params)
                metric_of(configuration, VariantRef(target.endpoint_name, target.variant_name))
                if existing is not None:
                    existing.policy_type = TRACKING
                    existing.configuration = configuration
                    return {"PolicyARN": existing.arn, "Alarms": existing.alarms}
                count = session.scalar(
                    select(func.count())
                    .select_from(ScalingPolicyRow)
                    .where(
                        ScalingPolicyRow.resource_id == key.resource_id,
                        ScalingPolicyRow.scalable_dimension == key.dimension,
                    )
                )
                if count is not None and count >= MAX_POLICIES:
                    raise LimitExceededException(
                        f"{key.resource_id} already has {MAX_POLICIES} scaling policies, the most a scalable "
                        "target may have; delete one you no longer need."
                    )
                row = ScalingPolicyRow(
                    resource_id=key.resource_id,
                    scalable_dimension=key.dimension,
                    policy_name=name,
                    arn=policy_arn(caller, key, name),
                    service_namespace=key.namespace,
                    policy_type=TRACKING,
                    configuration=configuration,
                    alarms=tracking_alarms(caller, key),
                    creation_time=self.clock.time(),
                )
                session.add(row)
                session.flush()
                return {"PolicyARN": row.arn, "Alarms": row.alarms}
        except IntegrityError:
            raise ConcurrentUpdateException(
                f"Another request put scaling policy {name} at the same time; retry the request."
            ) from None

    def _describe(self, caller: Caller, params: Params) -> Params:
        query = described_rows(ScalingPolicyRow, params)
        if params.get("PolicyNames"):
            query = query.where(ScalingPolicyRow.policy_name.in_(params["PolicyNames"]))
        with self.store.session() as session:
            rows = session.scalars(
                query.order_by(
                    ScalingPolicyRow.resource_id,
                    ScalingPolicyRow.scalable_dimension,
                    ScalingPolicyRow.policy_name,
                )
            ).all()
        chosen, token = page(
            rows,
            lambda r: (r.resource_id, r.scalable_dimension, r.policy_name),
            params,
            default_max=_DEFAULT_PAGE,
        )
        return {"ScalingPolicies": [_summary(r) for r in chosen], "NextToken": token}

    def _delete(self, caller: Caller, params: Params) -> Params:
        key = TargetKey.of(params)
        name = params["PolicyName"]
        with self.store.session() as session:
            row = session.get(ScalingPolicyRow, (key.resource_id, key.dimension, name))
            if row is None or row.service_namespace != key.namespace:
                raise policy_not_found(key, name)
            session.delete(row)
        return {}


def trackers(rows: Sequence[ScalingPolicyRow], variant: VariantRef) -> list[Tracking]:
    """The target's policies as the engine evaluates them. Their metrics were checked when put; one that
    no longer passes is skipped (and logged) rather than stopping the others."""
    policies = []
    for row in rows:
        configuration = row.configuration
        try:
            metric = metric_of(configuration, variant)
        except ValidationException as exc:
            log.warning(
                "autoscaling: policy %s of %s skipped: %s", row.policy_name, row.resource_id, exc.message
            )
            continue
        high, low = (alarm["AlarmName"] for alarm in row.alarms)
        policies.append(
            Tracking(
                name=row.policy_name,
                metric=metric,
                target=float(configuration["TargetValue"]),
                scale_out_cooldown=max(0.0, float(configuration.get("ScaleOutCooldown", DEFAULT_COOLDOWN))),
                scale_in_cooldown=max(0.0, float(configuration.get("ScaleInCooldown", DEFAULT_COOLDOWN))),
                disable_scale_in=bool(configuration.get("DisableScaleIn", False)),
                alarm_high=high,
                alarm_low=low,
            )
        )
    return policies


def _tracking_configuration(policy_type: str | None, params: Params) -> Params:
    """The TargetTrackingScalingPolicyConfiguration to store; every other policy shape is refused."""
    if policy_type is None:
        raise ValidationException(
            "PolicyType must be specified when creating a scaling policy; use TargetTrackingScaling."
        )
    if policy_type == "StepScaling":
        raise ValidationException(_STEP_SCALING)
    if policy_type == "PredictiveScaling":
        raise ValidationException(
            "PredictiveScaling policies are only supported for Amazon ECS services; use "
            "TargetTrackingScaling for a SageMaker endpoint variant."
        )
    for other in ("StepScalingPolicyConfiguration", "PredictiveScalingPolicyConfiguration"):
        if other in params:
            raise ValidationException(f"{other} cannot be specified for a TargetTrackingScaling policy.")
    configuration = params.get("TargetTrackingScalingPolicyConfiguration")
    if configuration is None:
        raise ValidationException(
            "TargetTrackingScalingPolicyConfiguration must be specified for a TargetTrackingScaling policy."
        )
    target = configuration["TargetValue"]
    low, high = _TARGET_RANGE
    if not (math.isfinite(target) and low <= target <= high):
        raise ValidationException(
            f"For target tracking scaling, target value must be between '{_TARGET_RANGE_TEXT[0]}' and "
            f"'{_TARGET_RANGE_TEXT[1]}', but was '{java_double(target)}'."
        )
    return dict(configuration)


def java_double(value: float) -> str:
    """`value` as Java's Double.toString prints it (AWS's messages come from Java): 0.0, 100.0, 1.0E-200."""
    if not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    if 1e-3 <= abs(value) < 1e7:
        text = repr(value)
        return text if "." in text else f"{text}.0"
    sign, digits, exponent = decimal.Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits))
    power = exponent + len(mantissa) - 1
    fraction = mantissa[1:] or "0"
    return f"{'-' if sign else ''}{mantissa[0]}.{fraction}E{power}"


def _summary(row: ScalingPolicyRow) -> Params:
    return {
        "PolicyARN": row.arn,
        "PolicyName": row.policy_name,
        "ServiceNamespace": row.service_namespace,
        "ResourceId": row.resource_id,
        "ScalableDimension": row.scalable_dimension,
        "PolicyType": row.policy_type,
        "TargetTrackingScalingPolicyConfiguration": row.configuration,
        "Alarms": row.alarms,
        "CreationTime": row.creation_time,
    }
