"""What every fleet needs: where instances come from, where they log, the clock, and timing settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moorage.clock import Clock
from moorage.compute.base import InstanceProvider
from moorage.dataplane.stats import StatsBook
from moorage.images import ImageLookup
from moorage.logs import EndpointLogs


@dataclass(frozen=True)
class FleetSettings:
    # an instance leaving a fleet gets SIGTERM, then SIGKILL after this (SageMaker's 30 s)
    stop_grace_seconds: float = 30.0
    # the longest wait for a leaving instance's in-flight requests (the 60 s invocation budget + margin)
    drain_seconds: float = 65.0
    # several servers on one database: how long a leaving instance goes on serving after this server
    # stopped routing to it, until the other servers' routes have followed (two route sync periods)
    handover_seconds: float = 0.0
    # every instance's idle workers get GET /ping this often; one that does not answer within the
    # timeout this many times in a row is taken out of the routing table and replaced
    health_interval_seconds: float = 5.0
    health_timeout_seconds: float = 2.0
    health_failures: int = 2
    # repeated instance failures (exits, hangs, failed starts) wait this long before the next attempt,
    # doubling up to the maximum; an instance that served this long resets the count
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 60.0
    steady_seconds: float = 60.0
    # where models are cached and how big an unpacked artifact may be
    cache_dir: Path = Path(".moorage/cache")
    max_unpacked_bytes: int = 32 * 1024**3
    # a serverless variant without ProvisionedConcurrency scales to zero after this long idle
    serverless_idle_seconds: float = 300.0
    # multiplies a DeploymentConfig's waits and timeout (WaitIntervalInSeconds, TerminationWaitInSeconds,
    # MaximumExecutionTimeoutInSeconds), to rehearse a long guardrail plan quickly (docs/deployment.md)
    deployment_time_scale: float = 1.0


@dataclass(frozen=True)
class FleetContext:
    provider: InstanceProvider
    logs: EndpointLogs
    clock: Clock
    settings: FleetSettings
    region: str
    account: str
    stats: StatsBook | None = None  # None: metrics are off
    images: ImageLookup | None = None  # images registered with `moorage image add`
