"""The datapoints of a metric from its stored samples: CloudWatch's statistics over periods.

A sample is one interval of one metric of one variant as one server saw it: how many values, their
sum, minimum and maximum, and for latencies and utilization the histogram of the values. Samples of
several servers and intervals add up into a period's aggregate; a statistic is read from that.

Percentiles come from the histogram, interpolated linearly inside the bucket the rank falls in (the
lowest and highest buckets are narrowed to the period's minimum and maximum). A metric without a
histogram has at most two values per sample (1 or 0 for the error counts, 1/instances for
InvocationsPerInstance), so its percentiles are exact."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

STANDARD_STATISTICS = ("SampleCount", "Average", "Sum", "Minimum", "Maximum")
_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d{1,10})?|100(?:\.0{1,10})?)", re.ASCII)


@dataclass(frozen=True)
class Sample:
    """One interval of one metric as one server recorded it (a row of metric_samples)."""

    start: float  # epoch seconds
    seconds: float  # the interval's length
    count: int  # SampleCount: values in the interval
    total: float  # Sum
    minimum: float
    maximum: float
    buckets: tuple[int, ...] | None = None  # values per histogram bucket (the last is +Inf)


@dataclass
class Aggregate:
    """Every sample of one period, added up."""

    start: float
    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf
    buckets: list[int] | None = None
    # a metric without a histogram: value -> how many times it occurred
    points: dict[float, int] = field(default_factory=dict)

    def add(self, sample: Sample) -> None:
        self.count += sample.count
        self.total += sample.total
        self.minimum = min(self.minimum, sample.minimum)
        self.maximum = max(self.maximum, sample.maximum)
        if sample.buckets is not None:
            if self.buckets is None:
                self.buckets = list(sample.buckets)
            else:
                self.buckets = [a + b for a, b in zip(self.buckets, sample.buckets, strict=True)]
            return
        for value, times in _two_values(sample):
            self.points[value] = self.points.get(value, 0) + times


def _two_values(sample: Sample) -> list[tuple[float, int]]:
    """A histogram-less sample's values: only its minimum and maximum occur, so their counts follow
    from the sum."""
    if sample.maximum <= sample.minimum:
        return [(sample.minimum, sample.count)]
    high = round((sample.total - sample.count * sample.minimum) / (sample.maximum - sample.minimum))
    high = min(max(high, 0), sample.count)
    return [(v, n) for v, n in ((sample.minimum, sample.count - high), (sample.maximum, high)) if n]


@dataclass(frozen=True)
class Statistic:
    """A statistic as named in a request: one of STANDARD_STATISTICS, or a percentile (p0.0 to p100)."""

    name: str
    percentile: float | None = None


def parse_statistic(name: str) -> Statistic | None:
    """The statistic `name` asks for; None for one Moorage does not compute."""
    if name in STANDARD_STATISTICS:
        return Statistic(name)
    match = _PERCENTILE.fullmatch(name)
    if match is None:
        return None
    return Statistic(name, float(match.group(1)))


def period_start(at: float, period: float) -> float:
    """The start of the period `at` falls in: periods are aligned to multiples of their length (a
    60-second period starts on the minute, an hour on the hour)."""
    return math.floor(at / period) * period


def aggregate(samples: Iterable[Sample], start: float, end: float, period: float) -> list[Aggregate]:
    """The periods from the one holding `start` up to `end` (exclusive) that have samples, oldest first.
    A sample belongs to the period its interval starts in."""
    first = period_start(start, period)
    periods: dict[float, Aggregate] = {}
    for sample in samples:
        if not first <= sample.start < end:
            continue
        at = period_start(sample.start, period)
        if (into := periods.get(at)) is None:
            into = periods[at] = Aggregate(at)
        into.add(sample)
    return [periods[at] for at in sorted(periods) if periods[at].count > 0]


def value(agg: Aggregate, statistic: Statistic, bounds: Sequence[float] | None) -> float:
    """`statistic` of a period with at least one value; `bounds`: the metric's histogram bounds."""
    if statistic.percentile is not None:
        return percentile(agg, statistic.percentile, bounds)
    if statistic.name == "SampleCount":
        return float(agg.count)
    if statistic.name == "Sum":
        return agg.total
    if statistic.name == "Average":
        return agg.total / agg.count
    if statistic.name == "Minimum":
        return agg.minimum
    return agg.maximum


def percentile(agg: Aggregate, p: float, bounds: Sequence[float] | None) -> float:
    if p <= 0:
        return agg.minimum
    if p >= 100:
        return agg.maximum
    if agg.buckets is not None and bounds is not None:
        return _from_buckets(agg.buckets, bounds, p, agg.minimum, agg.maximum)
    return _nearest_rank(agg.points, p)


def _from_buckets(counts: Sequence[int], bounds: Sequence[float], p: float, low: float, high: float) -> float:
    rank = p / 100 * sum(counts)
    below = 0
    for index, count in enumerate(counts):
        if count and below + count >= rank:
            lower = bounds[index - 1] if index > 0 else 0.0
            upper = bounds[index] if index < len(bounds) else high
            lower, upper = min(max(lower, low), high), max(min(upper, high), low)
            return lower + (upper - lower) * (rank - below) / count
        below += count
    return high


def _nearest_rank(points: dict[float, int], p: float) -> float:
    rank = max(1, math.ceil(p / 100 * sum(points.values())))
    seen = 0
    for point in sorted(points):
        seen += points[point]
        if seen >= rank:
            return point
    return max(points)


def bucket_extremes(bounds: Sequence[float], counts: Sequence[int], total: float) -> tuple[float, float]:
    """Bounds on the smallest and largest of values known only by their histogram and sum (the data
    plane keeps no per-request minimum or maximum): each is inside its bucket, and the other values,
    inside theirs, leave it only so much of the sum. Exact for a single value."""
    n = sum(counts)
    if n == 1:
        return total, total
    first = next(i for i, c in enumerate(counts) if c)
    last = max(i for i, c in enumerate(counts) if c)
    lowest = bounds[first - 1] if first > 0 else 0.0
    highest = bounds[last] if last < len(bounds) else math.inf
    mean = total / n
    minimum = lowest if math.isinf(highest) else max(lowest, total - (n - 1) * highest)
    maximum = min(highest, total - (n - 1) * lowest)
    return min(minimum, mean), max(maximum, mean)
