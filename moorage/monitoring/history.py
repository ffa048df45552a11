"""The metric history: every server writes what its data plane counted, interval by interval, to the
`metric_samples` table, where GetMetricStatistics, GetMetricData and alarm evaluation read it.

Every MOORAGE_METRIC_RESOLUTION_SECONDS (intervals aligned to the wall clock) the recorder reads the
StatsBook's running totals on the event loop (a few integer reads per variant), keeps the differences
since its last read, and writes them as rows on the store's threads, one transaction per tick. A variant
gets invocation rows only for an interval in which it had invocations, as SageMaker publishes nothing for
a period without requests. Each server writes its own rows under its own id; readers add them up.

Rows older than an hour are rolled up into one row per minute, and rows older than
MOORAGE_METRIC_RETENTION_SECONDS deleted. The last partial interval is written at shutdown."""

from __future__ import annotations

import logging
import math
import uuid
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from moorage.clock import Clock
from moorage.dataplane.routes import RoutingTable
from moorage.dataplane.stats import Histogram, StatsBook, VariantStats
from moorage.envvars import seconds
from moorage.metrics.usage import DEFAULT_INTERVAL_SECONDS as USAGE_SECONDS
from moorage.metrics.usage import UsageMeter
from moorage.monitoring.catalogue import INSTANCE_NAMESPACE, INVOCATIONS_NAMESPACE, METRICS, PERCENT_BUCKETS
from moorage.monitoring.rollup import maintain
from moorage.monitoring.series import Sample, bucket_extremes
from moorage.store import Store
from moorage.store.tables import MetricSampleRow

log = logging.getLogger("moorage.monitoring")

MAINTENANCE_SECONDS = 60.0  # how often rows are rolled up and old ones deleted
_PENDING_LIMIT = 100_000  # rows kept for the next tick while the database cannot be written


@dataclass(frozen=True)
class HistorySettings:
    resolution_seconds: float = 1.0
    retention_seconds: float = 86400.0

    def __post_init__(self) -> None:
        for name, value in (
            ("MOORAGE_METRIC_RESOLUTION_SECONDS", self.resolution_seconds),
            ("MOORAGE_METRIC_RETENTION_SECONDS", self.retention_seconds),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value}")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> HistorySettings:
        """Unset or empty is the default."""
        defaults = cls()
        return cls(
            seconds(environ, "MOORAGE_METRIC_RESOLUTION_SECONDS", defaults.resolution_seconds),
            seconds(environ, "MOORAGE_METRIC_RETENTION_SECONDS", defaults.retention_seconds),
        )


@dataclass(frozen=True)
class Record:
    """One sample of one variant's metric, on its way to a row."""

    namespace: str
    metric: str
    endpoint: str
    variant: str
    sample: Sample


# --- what the data plane counted since the last read ----------------------------------------------------


@dataclass(frozen=True)
class _Histogram:
    counts: tuple[int, ...]
    total: float

    @classmethod
    def of(cls, histogram: Histogram) -> _Histogram:
        return cls(tuple(histogram.counts), histogram.sum)

    def minus(self, other: _Histogram) -> _Histogram:
        return _Histogram(
            tuple(a - b for a, b in zip(self.counts, other.counts, strict=True)), self.total - other.total
        )


@dataclass(frozen=True)
class _Totals:
    invocations: int
    errors: tuple[int, int, int]  # 4xx, 5xx, model errors
    histograms: tuple[_Histogram, _Histogram, _Histogram]  # model latency, overhead latency, setup time

    @classmethod
    def of(cls, stats: VariantStats) -> _Totals:
        return cls(
            stats.invocations,
            (stats.errors_4xx, stats.errors_5xx, stats.model_errors),
            (
                _Histogram.of(stats.model_latency),
                _Histogram.of(stats.overhead_latency),
                _Histogram.of(stats.setup_time),
            ),
        )

    def minus(self, other: _Totals) -> _Totals:
        return _Totals(
            self.invocations - other.invocations,
            (
                self.errors[0] - other.errors[0],
                self.errors[1] - other.errors[1],
                self.errors[2] - other.errors[2],
            ),
            (
                self.histograms[0].minus(other.histograms[0]),
                self.histograms[1].minus(other.histograms[1]),
                self.histograms[2].minus(other.histograms[2]),
            ),
        )

    def went_back(self) -> bool:
        """A difference below zero: the variant's totals started over (its endpoint was deleted and
        created again between two reads)."""
        counts = [self.invocations, *self.errors, *(c for h in self.histograms for c in h.counts)]
        return any(c < 0 for c in counts)


_ERRORS = ("Invocation4XXErrors", "Invocation5XXErrors", "InvocationModelErrors")
_HISTOGRAMS = ("ModelLatency", "OverheadLatency", "ModelSetupTime")


def invocation_samples(delta: _Totals, instances: int, start: float, seconds: float) -> dict[str, Sample]:
    """The AWS/SageMaker samples of one variant's interval: SageMaker publishes each request's value, so
    Invocations is 1 per request, the error counts 1 or 0, InvocationsPerInstance 1/instances."""
    samples: dict[str, Sample] = {}
    n = delta.invocations
    if n > 0:
        samples["Invocations"] = Sample(start, seconds, n, float(n), 1.0, 1.0)
        for metric, errors in zip(_ERRORS, delta.errors, strict=True):
            errors = min(max(errors, 0), n)
            low, high = (0.0 if errors < n else 1.0), (1.0 if errors else 0.0)
            samples[metric] = Sample(start, seconds, n, float(errors), low, high)
        if instances > 0:
            share = 1.0 / instances
            samples["InvocationsPerInstance"] = Sample(start, seconds, n, n * share, share, share)
    for metric, histogram in zip(_HISTOGRAMS, delta.histograms, strict=True):
        count = sum(histogram.counts)
        if count > 0:
            samples[metric] = _histogram_sample(histogram, _bounds(metric), start, seconds)
    return samples


def _bounds(metric: str) -> Sequence[float]:
    bounds = METRICS[(INVOCATIONS_NAMESPACE, metric)].bounds
    assert bounds is not None
    return bounds


def _histogram_sample(histogram: _Histogram, bounds: Sequence[float], start: float, seconds: float) -> Sample:
    low, high = bucket_extremes(bounds, histogram.counts, histogram.total)
    return Sample(start, seconds, sum(histogram.counts), histogram.total, low, high, histogram.counts)


def gauge_sample(values: Sequence[float], start: float, seconds: float) -> Sample:
    """Instances' utilization readings (percent) as one sample with a histogram."""
    counts = [0] * (len(PERCENT_BUCKETS) + 1)
    for reading in values:
        counts[bisect_left(PERCENT_BUCKETS, reading)] += 1
    return Sample(start, seconds, len(values), sum(values), min(values), max(values), tuple(counts))


# --- the recorder ----------------------------------------------------------------------------------------


class MetricRecorder:
    """Runs on every server whose metrics are on; `run` until cancelled, then `flush`."""

    def __init__(
        self,
        store: Store,
        stats: StatsBook,
        table: RoutingTable,
        usage: UsageMeter | None,
        clock: Clock,
        settings: HistorySettings,
    ) -> None:
        self.store = store
        self.stats = stats
        self.table = table
        self.usage = usage
        self.clock = clock
        self.settings = settings
        self.server_id = uuid.uuid4().hex  # this process: a restarted server writes under a new id
        self._seen: dict[tuple[str, str], _Totals] = {}
        self._since = self._interval_start(clock.time())  # the interval being counted now
        self._usage_taken = -math.inf  # when utilization was last recorded (interval start)
        self._maintained = clock.monotonic()
        self._pending: list[Record] = []  # written at the next tick: the database refused them

    def _interval_start(self, at: float) -> float:
        return math.floor(at / self.settings.resolution_seconds) * self.settings.resolution_seconds

    async def run(self) -> None:
        resolution = self.settings.resolution_seconds
        while True:
            await self.clock.sleep(max(0.0, self._since + resolution - self.clock.time()))
            try:
                await self.tick()
            except Exception:  # the next interval is counted all the same
                log.exception("recording metrics failed")
                self._since = self._interval_start(self.clock.time())

    async def tick(self) -> None:
        """Write the interval that just ended (and, every minute, roll up and delete old rows)."""
        now = self.clock.time()
        records = self.take(self._since, self.settings.resolution_seconds)
        self._since = max(self._since + self.settings.resolution_seconds, self._interval_start(now))
        await self._write(records)
        if self.clock.monotonic() - self._maintained >= MAINTENANCE_SECONDS:
            self._maintained = self.clock.monotonic()
            try:
                await self.store.run(maintain, self.store, now, self.settings.retention_seconds)
            except Exception:
                log.exception("rolling up the metric history failed; trying again in a minute")

    async def flush(self) -> None:
        """At shutdown: the interval under way, as far as it went."""
        records = self.take(self._since, self.settings.resolution_seconds)
        self._since = self._interval_start(self.clock.time()) + self.settings.resolution_seconds
        await self._write(records)

    async def _write(self, records: list[Record]) -> None:
        batch, self._pending = [*self._pending, *records], []
        if not batch:
            return
        try:
            await self.store.run(write, self.store, self.server_id, batch)
        except Exception:
            log.exception("writing %d metric sample(s) failed; trying again at the next interval", len(batch))
            self._pending = batch[-_PENDING_LIMIT:]

    def take(self, start: float, seconds: float) -> list[Record]:
        """The samples of the interval [start, start + seconds): differences from the last read."""
        records: list[Record] = []
        seen: dict[tuple[str, str], _Totals] = {}
        for (endpoint, variant), stats in self.stats.items():
            now = seen[(endpoint, variant)] = _Totals.of(stats)
            before = self._seen.get((endpoint, variant))
            delta = now if before is None else now.minus(before)
            if delta.went_back():
                delta = now
            if delta.invocations == 0 and not any(sum(h.counts) for h in delta.histograms):
                continue
            instances = self._instances(endpoint, variant)
            for metric, sample in invocation_samples(delta, instances, start, seconds).items():
                records.append(Record(INVOCATIONS_NAMESPACE, metric, endpoint, variant, sample))
        self._seen = seen
        if self.usage is not None and start - self._usage_taken >= USAGE_SECONDS:
            usage = self._utilization(self.usage, start, seconds)
            if usage:
                self._usage_taken = start
                records.extend(usage)
        return records

    def _instances(self, endpoint: str, variant: str) -> int:
        """The variant's serving instances now (both fleets' during a blue/green deployment)."""
        route = self.table.get(endpoint)
        if route is None:
            return 0
        return len(
            {w.instance_id for v in (*route.variants, *route.shadows) if v.name == variant for w in v.workers}
        )

    def _utilization(self, usage: UsageMeter, start: float, seconds: float) -> list[Record]:
        """CPUUtilization and MemoryUtilization of each variant's instances, from the usage meter (it
        reads only this server's own instances, so only the server that runs them records them)."""
        records: list[Record] = []
        for endpoint, route in self.table.items():
            by_variant: dict[str, set[str]] = {}
            for v in (*route.variants, *route.shadows):
                by_variant.setdefault(v.name, set()).update(w.instance_id for w in v.workers)
            for variant, instances in by_variant.items():
                readings = [u for i in sorted(instances) if (u := usage.of(i)) is not None]
                if not readings:
                    continue
                cpu = gauge_sample([u.cpu_percent for u in readings], start, seconds)
                memory = gauge_sample([u.memory_percent for u in readings], start, seconds)
                records.append(Record(INSTANCE_NAMESPACE, "CPUUtilization", endpoint, variant, cpu))
                records.append(Record(INSTANCE_NAMESPACE, "MemoryUtilization", endpoint, variant, memory))
        return records


# --- on the store's threads --------------------------------------------------------------------------------


def _row(server_id: str, record: Record) -> dict[str, Any]:
    s = record.sample
    return {
        "server_id": server_id,
        "namespace": record.namespace,
        "metric_name": record.metric,
        "endpoint_name": record.endpoint,
        "variant_name": record.variant,
        "start": s.start,
        "seconds": s.seconds,
        "count": s.count,
        "total": s.total,
        "minimum": s.minimum,
        "maximum": s.maximum,
        "buckets": list(s.buckets) if s.buckets is not None else None,
    }


def write(store: Store, server_id: str, records: Sequence[Record]) -> None:
    with store.session() as session:
        session.execute(insert(MetricSampleRow), [_row(server_id, r) for r in records])
