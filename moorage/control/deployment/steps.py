"""The shape of a deployment, worked out before anything starts: the traffic shares a blue/green
deployment moves through, and the instance counts of a rolling deployment's batches and of its rollback.
Pure functions, so the plan is checked on its own."""

from __future__ import annotations

import math
from dataclasses import dataclass

from moorage.control.deployment.config import Guardrails

# shares closer than this are one step (three steps of 33% end at 100%, not at 99% and then 100%)
_SAME_SHARE = 1e-9


def traffic_steps(guardrails: Guardrails, green_instances: int) -> list[float]:
    """The share of traffic on the new fleet after each blue/green step; each step bakes.

    ALL_AT_ONCE: everything at once. CANARY: the canary's share of the new fleet's capacity, then the
    rest. LINEAR: the step's share, again and again, until everything (the last step may be smaller)."""
    step = guardrails.step
    if guardrails.traffic == "ALL_AT_ONCE" or step is None:
        return [1.0]
    fraction = min(1.0, step.fraction(green_instances))
    if guardrails.traffic == "CANARY":
        return [fraction, 1.0] if fraction < 1.0 - _SAME_SHARE else [1.0]
    shares: list[float] = []
    share = 0.0
    while share < 1.0 - _SAME_SHARE:
        share = min(1.0, share + fraction)
        shares.append(1.0 if share > 1.0 - _SAME_SHARE else share)
    return shares


@dataclass(frozen=True)
class Batch:
    """Instances of each fleet once a batch is done: the new fleet's after it is provisioned, the old
    fleet's after the same capacity has left it."""

    green: int
    blue: int


def rolling_batches(blue: int, green: int, batch: int) -> list[Batch]:
    """A rolling deployment from `blue` old instances to `green` new ones, `batch` new ones at a time;
    the old fleet shrinks in proportion, to none with the last batch."""
    batch = max(1, batch)
    steps = []
    for k in range(1, math.ceil(green / batch) + 1):
        added = min(green, k * batch)
        steps.append(Batch(added, blue - math.floor(blue * added / green)))
    return steps


def rollback_batches(blue_now: int, blue_full: int, green_now: int, batch: int | None) -> list[Batch]:
    """Back from (`green_now`, `blue_now`) to the whole old fleet: `batch` old instances at a time (None:
    all at once), the new fleet shrinking in proportion, to none with the last batch."""
    missing = blue_full - blue_now
    if missing <= 0:
        return [Batch(0, blue_full)]
    batch = missing if batch is None else max(1, batch)
    steps = []
    for k in range(1, math.ceil(missing / batch) + 1):
        restored = min(missing, k * batch)
        steps.append(Batch(green_now - math.ceil(green_now * restored / missing), blue_now + restored))
    return steps


def capacity_share(green: int, blue: int) -> float:
    """The new fleet's share of traffic when traffic follows capacity."""
    total = green + blue
    return green / total if total > 0 else 1.0


def baking_periods(guardrails: Guardrails, green_instances: int) -> int:
    """How many times a deployment bakes WaitIntervalInSeconds."""
    if guardrails.policy == "rolling":
        size = guardrails.step
        batch = size.instances(green_instances) if size is not None else green_instances
        return len(rolling_batches(green_instances, green_instances, batch))
    return len(traffic_steps(guardrails, green_instances))
