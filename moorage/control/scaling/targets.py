"""Scalable targets: RegisterScalableTarget (create, or update only the members given),
DescribeScalableTargets, DeregisterScalableTarget, and the deregistration AWS does itself when an
endpoint is deleted. Deregistering a target deletes its scaling policies, as on AWS.

The operations are coroutines on the event loop: the fleet port is asked there, and the store's part
runs on its threads (`Store.run`). The module's functions open store sessions, so they too run there."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from moorage.api.errors import ConcurrentUpdateException, LimitExceededException, ValidationException
from moorage.clock import Clock
from moorage.control.context import Caller
from moorage.control.scaling.paging import page
from moorage.control.scaling.ports import FleetPort
from moorage.control.scaling.resources import (
    TargetKey,
    VariantRef,
    check_combination,
    scalable_variant,
    service_linked_role,
    target_arn,
    target_not_found,
)
from moorage.store import Store
from moorage.store.tables import ScalableTargetRow, ScalingPolicyRow

Params = dict[str, Any]
MAX_TARGETS = 500  # AWS's quota of scalable targets per resource type
SUSPENSIONS = ("DynamicScalingInSuspended", "DynamicScalingOutSuspended", "ScheduledScalingSuspended")
_DEFAULT_PAGE = 50
_TAGGED_EXISTING = (
    "The scalable target that you tried to tag already exists. To update tags on an existing scalable "
    "target, use the TagResource API."
)


class ScalableTargets:
    """The three target operations. `bounds_changed` is told when a target's Min/MaxCapacity changed, so
    the engine brings the variant inside them without waiting for its next period."""

    def __init__(
        self, store: Store, fleet: FleetPort, clock: Clock, bounds_changed: Callable[[], None]
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.clock = clock
        self.bounds_changed = bounds_changed

    async def register(self, caller: Caller, params: Params) -> Params:
        key = TargetKey.of(params)
        ref = scalable_variant(key)
        info = await self.fleet.variant_info(ref.endpoint, ref.variant)  # read here: the fleet is the loop's
        if info is None:
            raise ValidationException(
                f"SageMaker endpoint variant doesn't exist: {key.resource_id}. Create the endpoint first, "
                "or check the endpoint and variant names."
            )
        if info.serverless:
            raise ValidationException(
                f"Variant {ref.variant} of endpoint {ref.endpoint} is serverless: it has no instance count, "
                f"so {key.dimension} cannot be scaled. A serverless variant scales itself within its "
                "ServerlessConfig.MaxConcurrency; change that with UpdateEndpointWeightsAndCapacities "
                "(ServerlessUpdateConfig)."
            )
        arn, bounds_changed = await self.store.run(
            self._register, caller, key, ref, params, info.asynchronous
        )
        if bounds_changed:
            self.bounds_changed()
        return {"ScalableTargetARN": arn}

    def _register(
        self, caller: Caller, key: TargetKey, ref: VariantRef, params: Params, asynchronous: bool
    ) -> tuple[str, bool]:
        """The store's part of register (on its threads); `asynchronous`: the endpoint may scale to 0."""
        try:
            with self.store.session() as session:
                row = find(session, key)
                return (
                    self._create(session, caller, key, ref, params, asynchronous)
                    if row is None
                    else self._update(row, ref, params, asynchronous)
                )
        except IntegrityError:
            raise ConcurrentUpdateException(
                f"Another request registered {key.resource_id} at the same time; retry the request."
            ) from None

    def _create(
        self,
        session: Session,
        caller: Caller,
        key: TargetKey,
        ref: VariantRef,
        params: Params,
        asynchronous: bool,
    ) -> tuple[str, bool]:
        if "MinCapacity" not in params:
            raise ValidationException("Minimum capacity must be specified")
        if "MaxCapacity" not in params:
            raise ValidationException("Maximum capacity must be specified")
        count = session.scalar(
            select(func.count())
            .select_from(ScalableTargetRow)
            .where(ScalableTargetRow.service_namespace == key.namespace)
        )
        if count is not None and count >= MAX_TARGETS:
            raise LimitExceededException(
                f"Your account already has {MAX_TARGETS} scalable targets for SageMaker endpoint variants, "
                "the most allowed; deregister one you no longer need."
            )
        _check_capacities(params["MinCapacity"], params["MaxCapacity"], ref, asynchronous)
        now = self.clock.time()
        row = ScalableTargetRow(
            resource_id=key.resource_id,
            scalable_dimension=key.dimension,
            service_namespace=key.namespace,
            endpoint_key=ref.endpoint.lower(),
            endpoint_name=ref.endpoint,
            variant_name=ref.variant,
            arn=target_arn(caller),
            min_capacity=params["MinCapacity"],
            max_capacity=params["MaxCapacity"],
            suspended_state={name: bool(params.get("SuspendedState", {}).get(name)) for name in SUSPENSIONS},
            tags=params.get("Tags", {}),
            creation_time=now,
            bounds_pending_since=now,
        )
        session.add(row)
        session.flush()
        return row.arn, True

    def _update(
        self, row: ScalableTargetRow, ref: VariantRef, params: Params, asynchronous: bool
    ) -> tuple[str, bool]:
        if "Tags" in params:
            raise ValidationException(_TAGGED_EXISTING)
        minimum = params.get("MinCapacity", row.min_capacity)
        maximum = params.get("MaxCapacity", row.max_capacity)
        _check_capacities(minimum, maximum, ref, asynchronous)
        changed = (minimum, maximum) != (row.min_capacity, row.max_capacity)
        row.min_capacity, row.max_capacity = minimum, maximum
        if "SuspendedState" in params:  # only the flags given change
            row.suspended_state = {**row.suspended_state, **params["SuspendedState"]}
        if changed:
            row.bounds_pending_since = self.clock.time()
        return row.arn, changed

    async def describe(self, caller: Caller, params: Params) -> Params:
        return await self.store.run(self._describe, caller, params)

    def _describe(self, caller: Caller, params: Params) -> Params:
        namespace = params["ServiceNamespace"]
        resource_ids: list[str] = params.get("ResourceIds") or []
        dimension = params.get("ScalableDimension")
        if dimension is not None and not resource_ids:
            raise ValidationException("ResourceIds must be specified when ScalableDimension is specified")
        check_combination(namespace, dimension, resource_ids)
        query = select(ScalableTargetRow).where(ScalableTargetRow.service_namespace == namespace)
        if resource_ids:
            query = query.where(ScalableTargetRow.resource_id.in_(resource_ids))
        if dimension is not None:
            query = query.where(ScalableTargetRow.scalable_dimension == dimension)
        with self.store.session() as session:
            rows = session.scalars(
                query.order_by(ScalableTargetRow.resource_id, ScalableTargetRow.scalable_dimension)
            ).all()
        chosen, token = page(
            rows, lambda r: (r.resource_id, r.scalable_dimension), params, default_max=_DEFAULT_PAGE
        )
        return {"ScalableTargets": [_summary(r, caller) for r in chosen], "NextToken": token}

    async def deregister(self, caller: Caller, params: Params) -> Params:
        await self.store.run(self._deregister, TargetKey.of(params))
        return {}

    def _deregister(self, key: TargetKey) -> None:
        with self.store.session() as session:
            row = find(session, key)
            if row is None:
                raise target_not_found(key)
            _remove(session, row)


def _check_capacities(minimum: int, maximum: int, ref: VariantRef, asynchronous: bool) -> None:
    if minimum < 0:
        raise ValidationException("Minimum capacity cannot be less than 0")
    if maximum < minimum:
        raise ValidationException("Maximum capacity cannot be less than minimum capacity")
    if minimum == 0 and not asynchronous:
        raise ValidationException(
            f"Minimum capacity cannot be 0 for endpoint/{ref.endpoint}/variant/{ref.variant}: only an "
            "endpoint whose endpoint configuration has AsyncInferenceConfig can scale in to 0 instances. "
            "Use a MinCapacity of at least 1."
        )


def find(session: Session, key: TargetKey) -> ScalableTargetRow | None:
    row = session.get(ScalableTargetRow, (key.resource_id, key.dimension))
    return row if row is not None and row.service_namespace == key.namespace else None


def key_of(row: ScalableTargetRow) -> TargetKey:
    return TargetKey(row.service_namespace, row.resource_id, row.scalable_dimension)


def deregister_endpoint(store: Store, endpoint: str) -> list[str]:
    """What AWS does when an endpoint is deleted: its variants stop being scalable targets and their
    policies go. Any spelling of the name works, as for DeleteEndpoint. Returns the ResourceIds removed."""
    with store.session() as session:
        rows = session.scalars(
            select(ScalableTargetRow).where(ScalableTargetRow.endpoint_key == endpoint.lower())
        ).all()
        for row in rows:
            _remove(session, row)
        return [row.resource_id for row in rows]


def registered_variants(store: Store, endpoint: str) -> set[str]:
    """The endpoint's variants that are scalable targets (UpdateEndpoint may not change their instance
    type on AWS)."""
    with store.session() as session:
        return set(
            session.scalars(
                select(ScalableTargetRow.variant_name).where(
                    ScalableTargetRow.endpoint_key == endpoint.lower()
                )
            ).all()
        )


def _remove(session: Session, row: ScalableTargetRow) -> None:
    session.execute(
        delete(ScalingPolicyRow).where(
            ScalingPolicyRow.resource_id == row.resource_id,
            ScalingPolicyRow.scalable_dimension == row.scalable_dimension,
        )
    )
    session.delete(row)


def _summary(row: ScalableTargetRow, caller: Caller) -> Params:
    return {
        "ServiceNamespace": row.service_namespace,
        "ResourceId": row.resource_id,
        "ScalableDimension": row.scalable_dimension,
        "MinCapacity": row.min_capacity,
        "MaxCapacity": row.max_capacity,
        "RoleARN": service_linked_role(caller.account),
        "CreationTime": row.creation_time,
        "SuspendedState": {name: bool(row.suspended_state.get(name)) for name in SUSPENSIONS},
        "ScalableTargetARN": row.arn,
    }
