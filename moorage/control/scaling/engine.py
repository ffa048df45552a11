"""The scaling engine: one asyncio task that looks at every scalable target on a period and acts through
the fleet port, on an injected Clock (tests run it on a fake one).

Every `sample_seconds` (a sixth of the period) it reads each target's variant; at the end of each period
it turns the samples into one datapoint per tracked metric and lets the target tracking policies decide
(moorage/control/scaling/tracking.py). Between looks it brings variants inside changed Min/MaxCapacity
(woken at once by RegisterScalableTarget) and follows accepted changes until the fleet fulfils them.
Every decision is a scaling activity in the store; a refused change is a Failed activity and is tried
again at a later evaluation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from sqlalchemy import select, update

from moorage.clock import Clock, sleep_or_wake
from moorage.control.scaling import activities
from moorage.control.scaling.policies import trackers
from moorage.control.scaling.ports import CapacityChangeRefused, FleetPort, VariantReading
from moorage.control.scaling.resources import TargetKey, VariantRef, scalable_variant
from moorage.control.scaling.sampling import Watch
from moorage.control.scaling.settings import SAMPLES_PER_PERIOD, ScalingSettings
from moorage.control.scaling.targets import deregister_endpoint, key_of
from moorage.control.scaling.tracking import Capacity, Tracking, decide
from moorage.store import Store
from moorage.store.tables import ScalableTargetRow, ScalingPolicyRow

log = logging.getLogger("moorage.scaling")
_INTERNAL = "The server hit an internal error while changing the instance count; see its log."


@dataclass(frozen=True)
class _Target:
    key: TargetKey
    variant: VariantRef
    min_capacity: int
    max_capacity: int
    suspended: dict[str, bool]
    bounds_pending_since: float | None
    policies: list[Tracking]


class ScalingEngine:
    def __init__(
        self, store: Store, fleet: FleetPort, clock: Clock, settings: ScalingSettings | None = None
    ) -> None:
        self.store = store
        self.fleet = fleet
        self.clock = clock
        self.settings = settings or ScalingSettings()
        self._watches: dict[str, Watch] = {}
        # resource id -> the bounds change whose enforcement was refused: retried at period ends only,
        # not at every look (a newer change is tried at once)
        self._refused_bounds: dict[str, float] = {}
        self._looks = 0
        self._wake = asyncio.Event()  # made again in start(): an Event belongs to the loop that waits on it
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start evaluating (call from the running event loop, once the fleets can be read)."""
        if self._task is not None:
            raise RuntimeError("the scaling engine is already running")
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        activities.abandon_pending(self.store, self.clock)
        self._recheck_bounds()
        self._task = self._loop.create_task(self._run(), name="moorage-scaling")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def wake(self) -> None:
        """Something changed (Min/MaxCapacity): act on it now rather than at the next look."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._wake.set()
        else:
            loop.call_soon_threadsafe(self._wake.set)

    def endpoint_deleted(self, endpoint: str) -> list[str]:
        """DeleteEndpoint's hook: deregister the endpoint's scalable targets (and so delete their
        policies), as AWS does. Idempotent; returns the ResourceIds deregistered."""
        removed = deregister_endpoint(self.store, endpoint)
        for resource_id in removed:
            self._watches.pop(resource_id, None)
            self._refused_bounds.pop(resource_id, None)
            log.info("autoscaling: %s deregistered because its endpoint was deleted", resource_id)
        if removed:
            self.wake()  # changes still on their way to the deleted variants end as Unfulfilled
        return removed

    # --- the loop -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        interval = self.settings.sample_seconds
        deadline = self.clock.monotonic()
        while True:
            now = self.clock.monotonic()
            if now >= deadline:
                await self._guarded(self._look())
                deadline = max(deadline + interval, now)
                continue
            if await sleep_or_wake(self.clock, deadline - now, self._wake):
                await self._guarded(self._settle(retry_refused=False))

    async def _guarded(self, work: Awaitable[None]) -> None:
        """One look going wrong (a store hiccup, a bug) is logged; the engine keeps looking."""
        try:
            await work
        except Exception:
            log.exception("autoscaling evaluation failed; trying again at the next look")

    async def _look(self) -> None:
        """Sample every target; at the end of a period, close the datapoints and evaluate the policies."""
        self._looks += 1
        period_ends = self._looks % SAMPLES_PER_PERIOD == 0
        targets = self._targets()
        self._forget_others(targets)
        now = self.clock.monotonic()
        readings: dict[str, VariantReading | None] = {}
        for target in targets:
            reading = self.fleet.read(target.variant.endpoint, target.variant.variant)
            readings[target.key.resource_id] = reading
            self._watches.setdefault(target.key.resource_id, Watch()).sample(now, reading)
        if period_ends:
            keep = max(self.settings.scale_out_datapoints, self.settings.scale_in_datapoints)
            for target in targets:
                watch = self._watches[target.key.resource_id]
                watch.close_period((p.metric for p in target.policies), keep)
                await self._evaluate(target, watch, readings[target.key.resource_id])
        await self._settle(retry_refused=period_ends)

    async def _settle(self, retry_refused: bool) -> None:
        await self._enforce_bounds(retry_refused)
        self._follow_changes()

    # --- decisions ----------------------------------------------------------------------------------

    async def _evaluate(self, target: _Target, watch: Watch, reading: VariantReading | None) -> None:
        if reading is None or not target.policies:
            return
        last_out, latest = activities.past(self.store, target.key.resource_id)
        capacity = Capacity(reading.desired, reading.instances, target.min_capacity, target.max_capacity)
        decision = decide(
            target.policies,
            watch.histories,
            capacity,
            suspended=target.suspended,
            last_out=last_out,
            latest=latest,
            now=self.clock.time(),
            out_datapoints=self.settings.scale_out_datapoints,
            in_datapoints=self.settings.scale_in_datapoints,
        )
        if decision is None:
            return
        cause = activities.alarm_cause(decision.alarm, decision.policy.name)
        if decision.not_scaled is not None:
            activities.not_scaled(
                self.store,
                self.clock,
                target.key,
                cause=cause,
                policy_name=decision.policy.name,
                reason=decision.not_scaled,
            )
        elif decision.act:
            await self._change(
                target,
                capacity.current,
                decision.capacity,
                kind=decision.direction,
                cause=cause,
                policy=decision.policy.name,
            )

    async def _enforce_bounds(self, retry_refused: bool) -> None:
        """Bring variants whose Min/MaxCapacity changed inside them (not a policy action: no cooldown,
        no suspension). A refused change is tried again at the end of a period."""
        for target in self._targets():
            since = target.bounds_pending_since
            resource_id = target.key.resource_id
            if since is None or (self._refused_bounds.get(resource_id) == since and not retry_refused):
                continue
            reading = self.fleet.read(target.variant.endpoint, target.variant.variant)
            if reading is None:  # not serving yet: looked at again later
                continue
            if reading.desired < target.min_capacity:
                capacity, cause = target.min_capacity, activities.bounds_cause("minimum", target.min_capacity)
            elif reading.desired > target.max_capacity:
                capacity, cause = target.max_capacity, activities.bounds_cause("maximum", target.max_capacity)
            else:
                self._bounds_enforced(target, since)
                continue
            if await self._change(target, reading.desired, capacity, kind="bounds", cause=cause, policy=None):
                self._bounds_enforced(target, since)
            else:
                self._refused_bounds[resource_id] = since

    def _bounds_enforced(self, target: _Target, since: float) -> None:
        self._refused_bounds.pop(target.key.resource_id, None)
        with self.store.session() as session:  # unless the bounds changed again meanwhile
            session.execute(
                update(ScalableTargetRow)
                .where(
                    ScalableTargetRow.resource_id == target.key.resource_id,
                    ScalableTargetRow.scalable_dimension == target.key.dimension,
                    ScalableTargetRow.bounds_pending_since == since,
                )
                .values(bounds_pending_since=None)
            )

    async def _change(
        self,
        target: _Target,
        current: int,
        capacity: int,
        *,
        kind: activities.Kind,
        cause: str,
        policy: str | None,
    ) -> bool:
        """Record the activity, ask the fleet, record the answer; True when the fleet accepted."""
        activity = activities.begin(
            self.store,
            self.clock,
            target.key,
            kind=kind,
            from_capacity=current,
            capacity=capacity,
            cause=cause,
            policy_name=policy,
        )
        log.info(
            "autoscaling: %s: setting desired instance count to %d (%s)",
            target.key.resource_id,
            capacity,
            cause,
        )
        try:
            await self.fleet.set_desired_instances(target.variant.endpoint, target.variant.variant, capacity)
        except CapacityChangeRefused as refusal:
            activities.refused(self.store, self.clock, activity, refusal.reason)
            log.info("autoscaling: %s: change refused: %s", target.key.resource_id, refusal.reason)
            return False
        except Exception:
            activities.refused(self.store, self.clock, activity, _INTERNAL)
            log.exception(
                "autoscaling: %s: changing the desired instance count failed", target.key.resource_id
            )
            return False
        activities.accepted(self.store, self.clock, activity)
        return True

    def _follow_changes(self) -> None:
        """InProgress activities end when the variant serves the count they set, or cannot anymore."""
        for row in activities.in_progress(self.store):
            variant = scalable_variant(
                TargetKey(row.service_namespace, row.resource_id, row.scalable_dimension)
            )
            reading = self.fleet.read(variant.endpoint, variant.variant)
            if reading is None:
                if not self.fleet.exists(variant.endpoint, variant.variant):
                    activities.unfulfilled(
                        self.store, self.clock, row.activity_id, "the endpoint was deleted."
                    )
                continue
            if reading.desired != row.capacity:
                activities.unfulfilled(
                    self.store,
                    self.clock,
                    row.activity_id,
                    f"the variant's desired instance count is now {reading.desired}.",
                )
            elif reading.instances == row.capacity:
                activities.fulfilled(self.store, self.clock, row.activity_id)

    # --- state --------------------------------------------------------------------------------------

    def _targets(self) -> list[_Target]:
        with self.store.session() as session:
            rows = session.scalars(select(ScalableTargetRow).order_by(ScalableTargetRow.resource_id)).all()
            policies = session.scalars(select(ScalingPolicyRow).order_by(ScalingPolicyRow.policy_name)).all()
        by_target: dict[tuple[str, str], list[ScalingPolicyRow]] = {}
        for policy in policies:
            by_target.setdefault((policy.resource_id, policy.scalable_dimension), []).append(policy)
        targets = []
        for row in rows:
            key = key_of(row)
            variant = VariantRef(row.endpoint_name, row.variant_name)
            targets.append(
                _Target(
                    key=key,
                    variant=variant,
                    min_capacity=row.min_capacity,
                    max_capacity=row.max_capacity,
                    suspended=dict(row.suspended_state),
                    bounds_pending_since=row.bounds_pending_since,
                    policies=trackers(by_target.get((row.resource_id, row.scalable_dimension), []), variant),
                )
            )
        return targets

    def _recheck_bounds(self) -> None:
        """At start-up, check every target against its Min/MaxCapacity once: a variant that came back from
        a restart with another instance count is brought inside them (no activity when it already is)."""
        with self.store.session() as session:
            session.execute(
                update(ScalableTargetRow)
                .where(ScalableTargetRow.bounds_pending_since.is_(None))
                .values(bounds_pending_since=self.clock.time())
            )

    def _forget_others(self, targets: list[_Target]) -> None:
        registered = {t.key.resource_id for t in targets}
        for resource_id in set(self._watches) - registered:
            del self._watches[resource_id]
        for resource_id in set(self._refused_bounds) - registered:
            del self._refused_bounds[resource_id]
