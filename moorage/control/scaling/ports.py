"""What the scaling engine needs from whoever owns the fleets: read a variant, and change its desired count.

The engine never starts or stops instances itself; the fleet owner implements `FleetPort` (in the server,
on top of moorage/fleet), and tests use a fake. Every method is a coroutine, called on the event loop: an
implementation reads the live fleets there and reaches the store only through `Store.run`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class VariantReading:
    """One variant, read at one moment. Counters are cumulative since the server started, so the engine
    turns them into per-period values by difference; gauges are values now."""

    instances: int  # CurrentInstanceCount: instances serving now
    desired: int  # DesiredInstanceCount
    invocations: int  # cumulative since server start (monotone counter)
    invocation_4xx: int  # cumulative
    invocation_5xx: int  # cumulative
    model_errors: int  # cumulative
    model_latency_us_sum: float  # cumulative sum of ModelLatency (microseconds)
    overhead_latency_us_sum: float  # cumulative
    latency_count: int  # cumulative number of latencies summed above
    concurrent: int  # requests in flight now, summed over the variant's instances
    cpu_percent: float  # CPUUtilization now, averaged over instances (100 = one core)
    memory_percent: float  # MemoryUtilization now, averaged over instances
    # asynchronous endpoints (0 for the others): requests queued or running, and the oldest one's age
    backlog: int = 0
    backlog_age_seconds: float = 0.0


@dataclass(frozen=True)
class VariantInfo:
    """What registering a scalable target needs to know of a variant that exists, in any status."""

    serverless: bool  # the variant has a ServerlessConfig (it has no instance count to scale)
    asynchronous: bool  # the endpoint's config has AsyncInferenceConfig (only those may scale in to 0)


class CapacityChangeRefused(Exception):
    """The desired instance count cannot be changed now (endpoint Creating/Updating, quota, endpoint gone).
    `reason` is shown to the user in the Failed scaling activity, so it should say what to do."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FleetPort(Protocol):
    async def read(self, endpoint: str, variant: str) -> VariantReading | None:
        """The variant now; None while it is not serving (creating, failed, deleted)."""
        ...

    async def exists(self, endpoint: str, variant: str) -> bool:
        """Whether the endpoint and its variant are known, in any status."""
        ...

    async def variant_info(self, endpoint: str, variant: str) -> VariantInfo | None:
        """The endpoint's variant as registering a target sees it, read at once; None when it is unknown."""
        ...

    async def set_desired_instances(self, endpoint: str, variant: str, count: int) -> None:
        """Like UpdateEndpointWeightsAndCapacities(DesiredInstanceCount=count): returns once the change
        is accepted, not when it is finished; raises CapacityChangeRefused when it cannot be applied now."""
        ...
