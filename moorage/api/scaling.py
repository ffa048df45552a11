"""Application Auto Scaling's operation table (`X-Amz-Target: AnyScaleFrontendService.<Op>`), for
SageMaker endpoint variants. The adapter (json_service.py) validates each request against botocore's
model before these run; the work is in moorage/control/scaling. Every operation is a coroutine on the event
loop whose store work runs on the store's threads (`Store.run`)."""

from __future__ import annotations

import functools
import logging

from moorage.api.errors import AwsError, InternalServiceException
from moorage.api.json_service import Operation, Params, on_store
from moorage.clock import Clock
from moorage.control.context import Caller
from moorage.control.scaling import activities
from moorage.control.scaling.engine import ScalingEngine
from moorage.control.scaling.policies import ScalingPolicies
from moorage.control.scaling.ports import FleetPort
from moorage.control.scaling.targets import ScalableTargets
from moorage.store import Store

log = logging.getLogger("moorage.api")


def operations(store: Store, fleet: FleetPort, clock: Clock, engine: ScalingEngine) -> dict[str, Operation]:
    """The table to serve as service "application-autoscaling". `engine` is told when a target's
    Min/MaxCapacity change, so it brings the variant inside them at once."""
    targets = ScalableTargets(store, fleet, clock, bounds_changed=engine.wake)
    policies = ScalingPolicies(store, clock)
    table: dict[str, Operation] = {
        "RegisterScalableTarget": targets.register,
        "DescribeScalableTargets": targets.describe,
        "DeregisterScalableTarget": targets.deregister,
        "PutScalingPolicy": policies.put,
        "DescribeScalingPolicies": policies.describe,
        "DeleteScalingPolicy": policies.delete,
        "DescribeScalingActivities": on_store(store, _describe_activities),
    }
    return {name: _in_service_terms(operation) for name, operation in table.items()}


def _describe_activities(store: Store, caller: Caller, params: Params) -> Params:
    return activities.describe(store, params)


def _in_service_terms(operation: Operation) -> Operation:
    """An unexpected failure answers Application Auto Scaling's InternalServiceException (500, which SDKs
    retry) rather than SageMaker's InternalFailure; details go to the log, not the client."""

    @functools.wraps(operation)
    async def run(caller: Caller, params: Params) -> Params:
        try:
            return await operation(caller, params)
        except AwsError:
            raise
        except Exception:
            log.exception("application-autoscaling operation failed")
            raise InternalServiceException("The server hit an internal error; see its log.") from None

    return run
