"""Filling Prometheus metric families from the data plane's own counters."""

from __future__ import annotations

from prometheus_client.core import HistogramMetricFamily

from moorage.dataplane.stats import Histogram


def add_histogram(family: HistogramMetricFamily, labels: list[str], histogram: Histogram) -> None:
    """One labelled series of `family` from `histogram`: Prometheus wants cumulative bucket counts."""
    buckets = []
    running = 0
    for bound, count in zip((*histogram.bounds, float("inf")), histogram.counts, strict=True):
        running += count
        buckets.append((_le(bound), running))
    family.add_metric(labels, buckets, histogram.sum)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else f"{bound:g}"
