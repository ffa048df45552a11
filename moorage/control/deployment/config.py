"""DeploymentConfig read into the `Guardrails` a deployment follows (validation.py checks it first).

With no DeploymentConfig, or no update policy in it, SageMaker deploys blue/green and shifts all traffic at
once; an endpoint using a feature excluded from guardrails (Inf1 instances, Elastic Inference) gets the
same, with no baking and no alarms watched."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from moorage.fleet.plan import variant_capacity

INSTANCE_COUNT = "INSTANCE_COUNT"
CAPACITY_PERCENT = "CAPACITY_PERCENT"


@dataclass(frozen=True)
class Size:
    """A CapacitySize: a number of instances, or a percentage of a fleet's capacity."""

    type: str
    value: int

    @classmethod
    def of(cls, member: Mapping[str, Any] | None) -> Size | None:
        return cls(str(member["Type"]), int(member["Value"])) if member else None

    def fraction(self, total: int) -> float:
        """The share of a fleet of `total` instances this size is."""
        if self.type == CAPACITY_PERCENT:
            return self.value / 100
        return self.value / total if total > 0 else 1.0

    def instances(self, total: int) -> int:
        """Whole instances of a fleet of `total`: at least one, at most all of them."""
        if self.type == CAPACITY_PERCENT:
            return max(1, min(total, math.floor(total * self.value / 100)))
        return max(1, min(total, self.value))

    def __str__(self) -> str:
        return f"{self.value}%" if self.type == CAPACITY_PERCENT else f"{self.value} instance(s)"


@dataclass(frozen=True)
class Guardrails:
    """How one deployment runs (seconds as configured; the server's time scale applies when it runs)."""

    policy: Literal["blue_green", "rolling"] = "blue_green"
    traffic: str = "ALL_AT_ONCE"  # blue/green: ALL_AT_ONCE | CANARY | LINEAR
    wait: float = 0.0  # WaitIntervalInSeconds: each baking period
    step: Size | None = None  # CanarySize, LinearStepSize or MaximumBatchSize
    rollback_step: Size | None = None  # RollbackMaximumBatchSize (None: everything at once)
    termination_wait: float = 0.0  # TerminationWaitInSeconds
    timeout: float | None = None  # MaximumExecutionTimeoutInSeconds (None: no bound)
    alarms: tuple[str, ...] = ()
    # why the endpoint cannot use guardrails and gets the plain all-at-once deployment ("" if it can)
    fallback: str = ""


ALL_AT_ONCE = Guardrails()


def guardrails_of(config: Mapping[str, Any] | None, snapshot: Mapping[str, Any]) -> Guardrails:
    """The plan a checked DeploymentConfig asks for, for deploying `snapshot`."""
    if not config:
        return ALL_AT_ONCE
    if excluded := excluded_feature(snapshot["config"]):
        return Guardrails(fallback=excluded)
    alarms = alarm_names(config)
    if (rolling := config.get("RollingUpdatePolicy")) is not None:
        return Guardrails(
            policy="rolling",
            wait=float(rolling["WaitIntervalInSeconds"]),
            step=Size.of(rolling["MaximumBatchSize"]),
            rollback_step=Size.of(rolling.get("RollbackMaximumBatchSize")),
            timeout=_float_or_none(rolling.get("MaximumExecutionTimeoutInSeconds")),
            alarms=alarms,
        )
    blue_green = config.get("BlueGreenUpdatePolicy")
    if blue_green is None:  # alarms only: the default traffic shifting, watched
        return Guardrails(alarms=alarms)
    routing = blue_green["TrafficRoutingConfiguration"]
    return Guardrails(
        traffic=routing["Type"],
        wait=float(routing["WaitIntervalInSeconds"]),
        step=Size.of(routing.get("CanarySize") or routing.get("LinearStepSize")),
        termination_wait=float(blue_green.get("TerminationWaitInSeconds") or 0),
        timeout=_float_or_none(blue_green.get("MaximumExecutionTimeoutInSeconds")),
        alarms=alarms,
    )


def alarm_names(config: Mapping[str, Any] | None) -> tuple[str, ...]:
    """AutoRollbackConfiguration's alarms, in the order given."""
    alarms = ((config or {}).get("AutoRollbackConfiguration") or {}).get("Alarms") or []
    return tuple(dict.fromkeys(str(a["AlarmName"]) for a in alarms))


def excluded_feature(config: Mapping[str, Any]) -> str:
    """Why an endpoint config cannot use deployment guardrails ("" if it can): SageMaker's exclusions."""
    for variant in config["ProductionVariants"]:
        if str(variant.get("InstanceType", "")).startswith("ml.inf1."):
            return f"variant {variant['VariantName']} uses Inf1 instances ({variant['InstanceType']})"
        if variant.get("AcceleratorType"):
            return f"variant {variant['VariantName']} uses Elastic Inference ({variant['AcceleratorType']})"
    return ""


def fleet_instances(snapshot: Mapping[str, Any]) -> int:
    """A fleet's instances: every production variant's count (what the sizes are fractions of)."""
    return sum(variant_capacity(snapshot, v)[0] for v in snapshot["config"]["ProductionVariants"])


def _float_or_none(value: Any) -> float | None:
    return float(value) if value is not None else None
