"""Target tracking as AWS documents it, as pure functions: alarm states, the capacity a breach asks for,
and whether it may be set now (suspension, cooldowns, Min/MaxCapacity).

- The high alarm is in ALARM when the last N datapoints are all above the target value; the low alarm
  when the last M are all below 90 % of it. A missing datapoint breaks the run (so an idle variant,
  which has no invocation datapoints, is not scaled in, as on AWS).
- New capacity = ceil(current capacity * metric / target), clamped to [MinCapacity, MaxCapacity]. The
  current capacity is the scalable dimension's value, the variant's DesiredInstanceCount, but no more
  instances than serve: the metrics are per serving instance, so instances still starting would
  otherwise be counted twice. Rounding up adds enough on the way out and removes too little rather than
  too much on the way in.
- Several policies: scale out when any asks to (to the largest capacity asked); scale in only when every
  policy whose scale-in is enabled asks to (to the largest capacity asked).
- Scale-out cooldown (from the end of the last policy scale-out; while it is in progress too): the
  capacity that scale-out added counts as already there, so the next one is computed from the current
  capacity before it and proceeds only when it is larger. Scale-in cooldown: no scale-in until it has
  run, unless a scale-out came after that scale-in (which ends it)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from moorage.control.scaling.metrics import MetricSpec

LOW_FRACTION = 0.9  # the low alarm's threshold, as a fraction of the target value
DEFAULT_COOLDOWN = 300.0  # AWS's default for SageMaker variants, both directions
Direction = Literal["scale-out", "scale-in"]


@dataclass(frozen=True)
class Tracking:
    """A target tracking policy as the engine evaluates it."""

    name: str
    metric: MetricSpec
    target: float
    scale_out_cooldown: float
    scale_in_cooldown: float
    disable_scale_in: bool
    alarm_high: str
    alarm_low: str


@dataclass(frozen=True)
class PastActivity:
    """A policy's earlier scaling activity on the target, as cooldowns need it."""

    direction: Direction
    from_capacity: int  # the current capacity it was computed from
    capacity: int  # the desired count it set
    in_progress: bool
    ended_at: float | None

    def cooling(self, now: float, cooldown: float) -> bool:
        return self.in_progress or (self.ended_at is not None and now < self.ended_at + cooldown)


@dataclass(frozen=True)
class Capacity:
    """The variant as the decision sees it."""

    desired: int
    serving: int
    minimum: int
    maximum: int

    @property
    def current(self) -> int:
        """What the metric was measured on: the desired count, but only the instances that serve."""
        return min(self.desired, self.serving)

    def clamp(self, wanted: int) -> int:
        return min(max(wanted, self.minimum), self.maximum)


@dataclass(frozen=True)
class Decision:
    direction: Direction
    policy: Tracking
    capacity: int  # the new desired count when `act`
    act: bool
    # Set when an alarm fired but the capacity cannot move (AWS's "not scaled" reasons)
    not_scaled: dict[str, Any] | None = None

    @property
    def alarm(self) -> str:
        return self.policy.alarm_high if self.direction == "scale-out" else self.policy.alarm_low


def breached_high(history: Sequence[float | None], target: float, datapoints: int) -> bool:
    recent = list(history)[-datapoints:]  # a deque does not slice
    return len(recent) == datapoints and all(v is not None and v > target for v in recent)


def breached_low(history: Sequence[float | None], target: float, datapoints: int) -> bool:
    recent = list(history)[-datapoints:]  # a deque does not slice
    return len(recent) == datapoints and all(v is not None and v < LOW_FRACTION * target for v in recent)


def capacity_for(current: int, value: float, target: float) -> int:
    """ceil(current * value / target), forgiving float noise (3 * 70 / 70 is 3, not 4)."""
    return max(0, math.ceil(current * value / target - 1e-9))


def decide(
    policies: Sequence[Tracking],
    histories: Mapping[MetricSpec, Sequence[float | None]],
    capacity: Capacity,
    *,
    suspended: Mapping[str, bool],
    last_out: PastActivity | None,
    latest: PastActivity | None,
    now: float,
    out_datapoints: int,
    in_datapoints: int,
) -> Decision | None:
    """What the policies do now; None when no alarm is in ALARM, or what it asks is held (suspended,
    cooling down) without anything to report. `last_out` is the target's last policy scale-out, `latest`
    its last policy activity of either direction."""
    highs: list[tuple[Tracking, float]] = []
    lows: list[tuple[Tracking, float]] = []
    every_policy_wants_in = True
    for policy in policies:
        history = histories.get(policy.metric, ())
        latest_value = history[-1] if history else None
        if latest_value is not None and breached_high(history, policy.target, out_datapoints):
            highs.append((policy, latest_value))
        if policy.disable_scale_in:
            continue
        if latest_value is not None and breached_low(history, policy.target, in_datapoints):
            lows.append((policy, latest_value))
        else:
            every_policy_wants_in = False
    if highs:
        return _scale_out(highs, capacity, suspended, last_out, now)
    if lows and every_policy_wants_in:
        return _scale_in(lows, capacity, suspended, latest, now)
    return None


def _scale_out(
    highs: list[tuple[Tracking, float]],
    capacity: Capacity,
    suspended: Mapping[str, bool],
    last_out: PastActivity | None,
    now: float,
) -> Decision | None:
    if suspended.get("DynamicScalingOutSuspended"):
        return None
    options = []
    for policy, value in highs:
        cooling = last_out is not None and last_out.cooling(now, policy.scale_out_cooldown)
        if cooling and last_out is not None:
            base, floor = last_out.from_capacity, max(capacity.desired, last_out.capacity)
        else:
            base, floor = capacity.current, capacity.desired
        options.append((capacity.clamp(capacity_for(base, value, policy.target)), floor, cooling, policy))
    wanted, floor, cooling, policy = max(options, key=lambda o: o[0])
    if wanted > floor:
        return Decision("scale-out", policy, wanted, act=True)
    if capacity.desired >= capacity.maximum:
        reason: dict[str, Any] = {"Code": "AlreadyAtMaxCapacity", "MaxCapacity": capacity.maximum}
    elif cooling:
        return None  # the cooldown holds it
    else:
        reason = {"Code": "AlreadyAtDesiredCapacity", "CurrentCapacity": capacity.desired}
    return Decision("scale-out", policy, capacity.desired, act=False, not_scaled=reason)


def _scale_in(
    lows: list[tuple[Tracking, float]],
    capacity: Capacity,
    suspended: Mapping[str, bool],
    latest: PastActivity | None,
    now: float,
) -> Decision | None:
    if suspended.get("DynamicScalingInSuspended"):
        return None
    wanted, policy = max(
        ((capacity.clamp(capacity_for(capacity.current, value, p.target)), p) for p, value in lows),
        key=lambda o: o[0],
    )
    if wanted >= capacity.desired:
        if capacity.desired <= capacity.minimum:
            reason: dict[str, Any] = {"Code": "AlreadyAtMinCapacity", "MinCapacity": capacity.minimum}
        else:
            reason = {"Code": "AlreadyAtDesiredCapacity", "CurrentCapacity": capacity.desired}
        return Decision("scale-in", policy, capacity.desired, act=False, not_scaled=reason)
    if (
        latest is not None
        and latest.direction == "scale-in"
        and latest.cooling(now, policy.scale_in_cooldown)
    ):
        return None
    return Decision("scale-in", policy, wanted, act=True)
