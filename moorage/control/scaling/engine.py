"""The scaling engine: one asyncio task that looks at every scalable target on a period and acts through
the fleet port, on an injected Clock (tests run it on a fake one).

Every `sample_seconds` (a sixth of the period) it reads each target's variant; at the end of each period
it turns the samples into one datapoint per tracked metric and lets the target tracking policies decide
(moorage/control/scaling/tracking.py). Between looks it brings variants inside changed Min/MaxCapacity
(woken at once by RegisterScalableTarget) and follows accepted changes until the fleet fulfils them.
Every decision is a scaling activity in the store; a refused change is a Failed activity and is tried
again at a later evaluation.

The engine runs on the event loop that also carries invocations, so it never opens a store session there:
its store work runs on the store's threads (`Store.run`), in the module-level functions at the bottom,
which touch nothing of the loop's (live fleets, watches, events). What the fleet is doing is read on the
loop, through the fleet port."""

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
from moorage.control.scaling.tracking import Capacity, PastActivity, Tracking, decide
from moorage.store import Store
from moorage.store.tables import ScalableTargetRow, ScalingPolicyRow

log = logging.getLogger("moorage.scaling")
_INTERNAL = "The server hit an internal error while changing the instance count; see its log."
# a target's last policy scale-out and latest policy activity (activities.past)
_Past = tuple[PastActivity | None, PastActivity | None]


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
        self._starting = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start evaluating (on the running event loop, once the fleets can be read). Changes the server was
        making when it stopped are settled first, and every target is checked against its bounds once."""
        if self._task is not None or self._starting:
            raise RuntimeError("the scaling engine is already running")
        self._starting = True
        try:
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            await self.store.run(_restart, self.store, self.clock)
            self._task = self._loop.create_task(self._run(), name="moorage-scaling")
        finally:
            self._starting = False

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

    async def endpoint_deleted(self, endpoint: str) -> list[str]:
        """DeleteEndpoint's hook: deregister the endpoint's scalable targets (and so delete their
        policies), as AWS does. Idempotent; returns the ResourceIds deregistered."""
        removed = await self.store.run(deregister_endpoint, self.store, endpoint)
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
        # one trip to the store for the targets, their policies and (to evaluate them) their past activities
        targets, past = await self.store.run(_read_look, self.store, period_ends)
        self._forget_others(targets)
        now = self.clock.monotonic()
        readings: dict[str, VariantReading | None] = {}
        for target in targets:
            reading = await self.fleet.read(target.variant.endpoint, target.variant.variant)
            readings[target.key.resource_id] = reading
            self._watches.setdefault(target.key.resource_id, Watch()).sample(now, reading)
            await self._wake_from_zero(target, reading)
        if period_ends:
            keep = max(self.settings.scale_out_datapoints, self.settings.scale_in_datapoints)
            for target in targets:
                watch = self._watches.get(target.key.resource_id)
                if watch is None:  # deregistered (its endpoint deleted) since it was read
                    continue
                watch.close_period((p.metric for p in target.policies), keep)
                await self._evaluate(
                    target,
                    watch,
                    readings[target.key.resource_id],
                    past.get(target.key.resource_id, (None, None)),
                )
        # the look's own reading of the targets serves: a bounds change since then wakes the engine again
        await self._settle(retry_refused=period_ends, targets=targets)

    async def _settle(self, retry_refused: bool, targets: list[_Target] | None = None) -> None:
        if targets is None:
            targets = await self.store.run(_read_targets, self.store)
        await self._enforce_bounds(targets, retry_refused)
        await self._follow_changes()

    # --- decisions ----------------------------------------------------------------------------------

    async def _evaluate(
        self, target: _Target, watch: Watch, reading: VariantReading | None, past: _Past
    ) -> None:
        if reading is None or not target.policies:
            return
        last_out, latest = past
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
            await self.store.run(
                activities.not_scaled,
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

    async def _wake_from_zero(self, target: _Target, reading: VariantReading | None) -> None:
        """An asynchronous endpoint at 0 instances with requests queued (HasBacklogWithoutCapacity) gets
        an instance at once: no per-instance metric can be computed at 0, so no policy could ask."""
        if reading is None or reading.backlog <= 0 or reading.instances > 0 or reading.desired > 0:
            return
        if target.max_capacity < 1 or target.suspended.get("DynamicScalingOutSuspended"):
            return
        await self._change(
            target,
            0,
            max(1, target.min_capacity),
            kind="scale-out",
            cause=f"HasBacklogWithoutCapacity: {reading.backlog} request(s) queued and no instance",
            policy=None,
        )

    async def _enforce_bounds(self, targets: list[_Target], retry_refused: bool) -> None:
        """Bring variants whose Min/MaxCapacity changed inside them (not a policy action: no cooldown,
        no suspension). A refused change is tried again at the end of a period."""
        for target in targets:
            since = target.bounds_pending_since
            resource_id = target.key.resource_id
            if since is None or (self._refused_bounds.get(resource_id) == since and not retry_refused):
                continue
            reading = await self.fleet.read(target.variant.endpoint, target.variant.variant)
            if reading is None:  # not serving yet: looked at again later
                continue
            if reading.desired < target.min_capacity:
                capacity, cause = target.min_capacity, activities.bounds_cause("minimum", target.min_capacity)
            elif reading.desired > target.max_capacity:
                capacity, cause = target.max_capacity, activities.bounds_cause("maximum", target.max_capacity)
            else:
                await self._bounds_enforced(target, since)
                continue
            if await self._change(target, reading.desired, capacity, kind="bounds", cause=cause, policy=None):
                await self._bounds_enforced(target, since)
            else:
                self._refused_bounds[resource_id] = since

    async def _bounds_enforced(self, target: _Target, since: float) -> None:
        self._refused_bounds.pop(target.key.resource_id, None)
        await self.store.run(_clear_bounds_pending, self.store, target.key, since)

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
        activity = await self.store.run(
            activities.begin,
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
            await self.store.run(activities.refused, self.store, self.clock, activity, refusal.reason)
            log.info("autoscaling: %s: change refused: %s", target.key.resource_id, refusal.reason)
            return False
        except Exception:
            log.exception(
                "autoscaling: %s: changing the desired instance count failed", target.key.resource_id
            )
            await self.store.run(activities.refused, self.store, self.clock, activity, _INTERNAL)
            return False
        await self.store.run(activities.accepted, self.store, self.clock, activity)
        return True

    async def _follow_changes(self) -> None:
        """InProgress activities end when the variant serves the count they set, or cannot anymore."""
        outcomes: list[tuple[str, str | None]] = []  # (ActivityId, None when fulfilled, else why not)
        for row in await self.store.run(activities.in_progress, self.store):
            variant = scalable_variant(
                TargetKey(row.service_namespace, row.resource_id, row.scalable_dimension)
            )
            reading = await self.fleet.read(variant.endpoint, variant.variant)
            if reading is None:
                if not await self.fleet.exists(variant.endpoint, variant.variant):
                    outcomes.append((row.activity_id, "the endpoint was deleted."))
                continue
            if reading.desired != row.capacity:
                outcomes.append(
                    (row.activity_id, f"the variant's desired instance count is now {reading.desired}.")
                )
            elif reading.instances == row.capacity:
                outcomes.append((row.activity_id, None))
        if outcomes:
            await self.store.run(activities.conclude, self.store, self.clock, outcomes)

    # --- state --------------------------------------------------------------------------------------

    def _forget_others(self, targets: list[_Target]) -> None:
        registered = {t.key.resource_id for t in targets}
        for resource_id in set(self._watches) - registered:
            del self._watches[resource_id]
        for resource_id in set(self._refused_bounds) - registered:
            del self._refused_bounds[resource_id]


# --- store work (on the store's threads, through Store.run) -----------------------------------------


def _read_targets(store: Store) -> list[_Target]:
    with store.session() as session:
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


def _read_look(store: Store, with_past: bool) -> tuple[list[_Target], dict[str, _Past]]:
    """The targets and, when `with_past` (a period ends and policies are evaluated), the past activities of
    each target that has policies. Only the engine writes activities, so they cannot change before the
    evaluation that reads them."""
    targets = _read_targets(store)
    past = (
        {t.key.resource_id: activities.past(store, t.key.resource_id) for t in targets if t.policies}
        if with_past
        else {}
    )
    return targets, past


def _restart(store: Store, clock: Clock) -> None:
    """At start-up: a change the server was making when it stopped is not known to have happened, and
    every target is checked against its Min/MaxCapacity once, so a variant that came back from a restart
    with another instance count is brought inside them (no activity when it already is)."""
    activities.abandon_pending(store, clock)
    with store.session() as session:
        session.execute(
            update(ScalableTargetRow)
            .where(ScalableTargetRow.bounds_pending_since.is_(None))
            .values(bounds_pending_since=clock.time())
        )


def _clear_bounds_pending(store: Store, key: TargetKey, since: float) -> None:
    """The variant is inside the bounds set at `since`; unless they changed again meanwhile, nothing is
    left to enforce."""
    with store.session() as session:
        session.execute(
            update(ScalableTargetRow)
            .where(
                ScalableTargetRow.resource_id == key.resource_id,
                ScalableTargetRow.scalable_dimension == key.dimension,
                ScalableTargetRow.bounds_pending_since == since,
            )
            .values(bounds_pending_since=None)
        )
