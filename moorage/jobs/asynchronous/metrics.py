"""The backlog metrics of asynchronous endpoints, as SageMaker publishes them (dimension EndpointName):
ApproximateBacklogSize, ApproximateBacklogSizePerInstance, ApproximateAgeOfOldestRequest and
HasBacklogWithoutCapacity, for GET /metrics (docs/metrics.md) and for autoscaling."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric

from moorage.fleet import EndpointFleet
from moorage.jobs.asynchronous.queue import Backlog

_ENDPOINT = ["endpoint"]


@dataclass(frozen=True)
class BacklogGauges:
    size: int
    per_instance: float | None  # None at 0 instances (no instance to divide by)
    oldest_age_seconds: float
    without_capacity: bool

    @classmethod
    def of(cls, backlog: Backlog, instances: int, now: float) -> BacklogGauges:
        oldest = backlog.oldest_accepted_at
        return cls(
            size=backlog.size,
            per_instance=backlog.size / instances if instances > 0 else None,
            oldest_age_seconds=max(0.0, now - oldest) if oldest is not None and backlog.size else 0.0,
            without_capacity=backlog.size > 0 and instances == 0,
        )


class _Backlogs(Protocol):
    """What the dispatcher knows of each endpoint's queue."""

    def backlog_of(self, endpoint: str) -> Backlog: ...


def backlog_metrics(dispatcher: _Backlogs | None, fleets: Iterable[EndpointFleet]) -> Iterator[Metric]:
    size = GaugeMetricFamily(
        "sagemaker_approximate_backlog_size",
        "ApproximateBacklogSize: asynchronous requests queued or running on the endpoint.",
        labels=_ENDPOINT,
    )
    per_instance = GaugeMetricFamily(
        "sagemaker_approximate_backlog_size_per_instance",
        "ApproximateBacklogSizePerInstance: the backlog divided by the endpoint's instances (absent at 0).",
        labels=_ENDPOINT,
    )
    age = GaugeMetricFamily(
        "sagemaker_approximate_age_of_oldest_request_seconds",
        "ApproximateAgeOfOldestRequest: seconds since the oldest request in the backlog was accepted.",
        labels=_ENDPOINT,
    )
    without = GaugeMetricFamily(
        "sagemaker_has_backlog_without_capacity",
        "HasBacklogWithoutCapacity: 1 when requests are queued and the endpoint has no instance.",
        labels=_ENDPOINT,
    )
    now = time.time()
    if dispatcher is not None:
        for fleet in fleets:
            if fleet.route.asynchronous is None:
                continue
            instances = sum(v.current for v in fleet.variants)
            gauges = BacklogGauges.of(dispatcher.backlog_of(fleet.name), instances, now)
            size.add_metric([fleet.name], gauges.size)
            if gauges.per_instance is not None:
                per_instance.add_metric([fleet.name], gauges.per_instance)
            age.add_metric([fleet.name], gauges.oldest_age_seconds)
            without.add_metric([fleet.name], 1.0 if gauges.without_capacity else 0.0)
    yield from (size, per_instance, age, without)
