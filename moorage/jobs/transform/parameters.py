"""A transform job's execution parameters and the environment its instances get.

AWS's precedence: what CreateTransformJob set > the container's answer to GET /execution-parameters >
the defaults (MaxConcurrentTransforms 1, MaxPayloadInMB 6, BatchStrategy MultiRecord). The container
is told only what the user set (SAGEMAKER_* variables), with the container spelling of the strategy."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_CONCURRENCY = 1
DEFAULT_PAYLOAD_MB = 6
DEFAULT_STRATEGY = "MultiRecord"
MAX_PAYLOAD_MB = 100
_CONTAINER_STRATEGY = {"MultiRecord": "MULTI_RECORD", "SingleRecord": "SINGLE_RECORD"}
# a container may answer in either spelling
_API_STRATEGY = {**{v: k for k, v in _CONTAINER_STRATEGY.items()}, **{k: k for k in _CONTAINER_STRATEGY}}


@dataclass(frozen=True)
class ExecutionParameters:
    max_concurrent_transforms: int
    max_payload_mb: int
    batch_strategy: str  # API spelling: MultiRecord | SingleRecord


def batch_environment(job: Mapping[str, Any]) -> dict[str, str]:
    """SAGEMAKER_BATCH and the variables for what the user set, then the job's Environment."""
    env = {"SAGEMAKER_BATCH": "true"}
    if (payload := job.get("MaxPayloadInMB")) is not None:
        env["SAGEMAKER_MAX_PAYLOAD_IN_MB"] = str(payload)
    if (strategy := job.get("BatchStrategy")) is not None:
        env["SAGEMAKER_BATCH_STRATEGY"] = _CONTAINER_STRATEGY[strategy]
    if (concurrent := job.get("MaxConcurrentTransforms")) is not None:
        env["SAGEMAKER_MAX_CONCURRENT_TRANSFORMS"] = str(concurrent)
    return {**env, **(job.get("Environment") or {})}


def _whole(value: Any, low: int, high: int) -> int | None:
    """A container's number, if it is a usable one (a container's mistake falls back to the default)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if low <= number <= high else None


def resolve(job: Mapping[str, Any], container: Mapping[str, Any]) -> ExecutionParameters:
    """The parameters the job runs with; MaxConcurrentTransforms 0 counts as unset, as on AWS."""
    concurrent = job.get("MaxConcurrentTransforms") or _whole(
        container.get("MaxConcurrentTransforms"), 1, 1024
    )
    payload = job.get("MaxPayloadInMB") or _whole(container.get("MaxPayloadInMB"), 1, MAX_PAYLOAD_MB)
    strategy = job.get("BatchStrategy") or _API_STRATEGY.get(str(container.get("BatchStrategy", "")))
    return ExecutionParameters(
        max_concurrent_transforms=int(concurrent or DEFAULT_CONCURRENCY),
        max_payload_mb=int(payload or DEFAULT_PAYLOAD_MB),
        batch_strategy=strategy or DEFAULT_STRATEGY,
    )
