"""Reading the metric history (on the store's threads): one metric's samples over a time range, and
which metrics have any. Every server's rows count; the caller adds them up (series.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from moorage.monitoring.catalogue import DIMENSIONS
from moorage.monitoring.series import Sample
from moorage.store.tables import MetricSampleRow


@dataclass(frozen=True, order=True)
class MetricId:
    """A metric as CloudWatch names one: namespace, name and its one dimension set."""

    namespace: str
    name: str
    endpoint: str
    variant: str

    @property
    def dimensions(self) -> list[dict[str, str]]:
        return [
            {"Name": "EndpointName", "Value": self.endpoint},
            {"Name": "VariantName", "Value": self.variant},
        ]


def variant_of(dimensions: Mapping[str, str]) -> tuple[str, str] | None:
    """(endpoint, variant) when `dimensions` are exactly {EndpointName, VariantName}; CloudWatch matches
    a metric's whole dimension set, so any other set has no data here."""
    if set(dimensions) != set(DIMENSIONS):
        return None
    return dimensions["EndpointName"], dimensions["VariantName"]


def samples_of(session: Session, metric: MetricId, start: float, end: float) -> list[Sample]:
    """The metric's samples that start in [start, end), every server's."""
    rows = session.execute(
        select(
            MetricSampleRow.start,
            MetricSampleRow.seconds,
            MetricSampleRow.count,
            MetricSampleRow.total,
            MetricSampleRow.minimum,
            MetricSampleRow.maximum,
            MetricSampleRow.buckets,
        ).where(
            MetricSampleRow.namespace == metric.namespace,
            MetricSampleRow.metric_name == metric.name,
            MetricSampleRow.endpoint_name == metric.endpoint,
            MetricSampleRow.variant_name == metric.variant,
            MetricSampleRow.start >= start,
            MetricSampleRow.start < end,
        )
    ).all()
    return [
        Sample(at, seconds, count, total, low, high, tuple(buckets) if buckets is not None else None)
        for at, seconds, count, total, low, high, buckets in rows
    ]


def metrics_since(session: Session, since: float | None) -> list[MetricId]:
    """Every metric with a sample starting at or after `since` (None: any kept), sorted."""
    query = select(
        MetricSampleRow.namespace,
        MetricSampleRow.metric_name,
        MetricSampleRow.endpoint_name,
        MetricSampleRow.variant_name,
    ).distinct()
    if since is not None:
        query = query.where(MetricSampleRow.start >= since)
    return sorted(MetricId(*row) for row in session.execute(query).all())
