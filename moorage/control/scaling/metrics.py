"""The metric a target tracking policy tracks: which one it names, and its value for one period.

On AWS these are CloudWatch metrics that SageMaker publishes per request (Invocations and the error
counts are 1 per request, errors 1 or 0; InvocationsPerInstance is 1/instances per request) or per
instance (CPU, memory, concurrency), aggregated per one-minute period by a statistic. Here the same
numbers come from a variant's readings: cumulative counters turned into per-period differences, and
gauges sampled several times a period. Sums and counts are normalised to one minute, so a target value
means what it means on AWS whatever MOORAGE_SCALING_PERIOD_SECONDS is.

Like CloudWatch for SageMaker, a period without invocations has no datapoint for the invocation metrics
(not a zero): SageMaker publishes nothing then, which is why AWS does not scale in an idle variant."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from moorage.api.errors import ValidationException
from moorage.control.scaling.ports import VariantReading
from moorage.control.scaling.resources import VARIANT_INSTANCES, VariantRef

NAMESPACE = "AWS/SageMaker"


@dataclass(frozen=True)
class MetricSpec:
    """A CloudWatch metric of the scaled variant and the statistic that makes one datapoint of it."""

    name: str
    statistic: str


PREDEFINED = {
    # invocations per instance per minute: the Sum of InvocationsPerInstance over a minute
    "SageMakerVariantInvocationsPerInstance": MetricSpec("InvocationsPerInstance", "Sum"),
    # requests in flight per instance (one model copy each here), averaged over the period
    "SageMakerVariantConcurrentRequestsPerModelHighResolution": MetricSpec(
        "ConcurrentRequestsPerModel", "Average"
    ),
}


@dataclass(frozen=True)
class Sample:
    at: float  # clock.monotonic() when read
    reading: VariantReading


@dataclass(frozen=True)
class Window:
    """One period: `start` is the last sample of the period before (counters are differences from it;
    None right after start-up), `samples` are this period's, oldest first."""

    start: Sample | None
    samples: Sequence[Sample]


def datapoint(spec: MetricSpec, window: Window) -> float | None:
    """The metric's value for the period, or None where CloudWatch would have no datapoint."""
    return _METRICS[spec.name].compute(spec.statistic, window)


# --- counters: differences of cumulative values over the period ---------------------------------------


@dataclass(frozen=True)
class _Delta:
    invocations: int
    errors: dict[str, int]
    latency_sums: dict[str, float]
    latency_count: int
    per_minute: float  # multiply a per-period count by this to get a per-minute one
    instances: float  # serving instances, averaged over the period's samples


def _delta(window: Window) -> _Delta | None:
    if window.start is None or not window.samples:
        return None
    first, last = window.start, window.samples[-1]
    elapsed = last.at - first.at
    a, b = first.reading, last.reading
    delta = _Delta(
        invocations=b.invocations - a.invocations,
        errors={
            "Invocation4XXErrors": b.invocation_4xx - a.invocation_4xx,
            "Invocation5XXErrors": b.invocation_5xx - a.invocation_5xx,
            "InvocationModelErrors": b.model_errors - a.model_errors,
        },
        latency_sums={
            "ModelLatency": b.model_latency_us_sum - a.model_latency_us_sum,
            "OverheadLatency": b.overhead_latency_us_sum - a.overhead_latency_us_sum,
        },
        latency_count=b.latency_count - a.latency_count,
        per_minute=60.0 / elapsed if elapsed > 0 else 0.0,
        instances=sum(s.reading.instances for s in window.samples) / len(window.samples),
    )
    counters = [delta.invocations, delta.latency_count, *delta.errors.values(), *delta.latency_sums.values()]
    if elapsed <= 0 or any(c < 0 for c in counters):  # counters went back: the server restarted
        return None
    return delta


def _invocations(statistic: str, window: Window) -> float | None:
    d = _delta(window)
    if d is None or d.invocations <= 0:
        return None
    return d.invocations * d.per_minute if statistic in ("Sum", "SampleCount") else 1.0


def _invocations_per_instance(statistic: str, window: Window) -> float | None:
    d = _delta(window)
    if d is None or d.invocations <= 0 or d.instances <= 0:
        return None
    if statistic == "SampleCount":
        return d.invocations * d.per_minute
    share = 1.0 / d.instances  # what each request contributes
    return d.invocations * d.per_minute * share if statistic == "Sum" else share


def _errors(metric: str) -> Callable[[str, Window], float | None]:
    def compute(statistic: str, window: Window) -> float | None:
        d = _delta(window)
        if d is None or d.invocations <= 0:
            return None
        errors, requests = d.errors[metric], d.invocations
        values = {
            "Sum": errors * d.per_minute,
            "SampleCount": requests * d.per_minute,
            "Average": errors / requests,
            "Minimum": 0.0 if errors < requests else 1.0,
            "Maximum": 1.0 if errors > 0 else 0.0,
        }
        return values[statistic]

    return compute


def _latency(metric: str) -> Callable[[str, Window], float | None]:
    def compute(statistic: str, window: Window) -> float | None:
        d = _delta(window)
        if d is None or d.latency_count <= 0:
            return None
        total, count = d.latency_sums[metric], d.latency_count
        values = {"Average": total / count, "Sum": total * d.per_minute, "SampleCount": count * d.per_minute}
        return values[statistic]

    return compute


# --- gauges: sampled during the period, only while instances serve ------------------------------------


def _gauge(
    value: Callable[[VariantReading], float], serving_only: bool = True
) -> Callable[[str, Window], float | None]:
    """`serving_only`: sampled only while instances serve (per-instance values); else always (a queue
    has a size at 0 instances too)."""

    def compute(statistic: str, window: Window) -> float | None:
        values = [value(s.reading) for s in window.samples if s.reading.instances > 0 or not serving_only]
        if not values:
            return None
        if statistic == "Minimum":
            return min(values)
        if statistic == "Maximum":
            return max(values)
        return sum(values) / len(values)

    return compute


@dataclass(frozen=True)
class _Metric:
    unit: str
    statistics: tuple[str, ...]
    compute: Callable[[str, Window], float | None]
    # why the other statistics are refused
    limitation: str = ""


_ALL = ("Average", "Sum", "Minimum", "Maximum", "SampleCount")
_PER_INSTANCE_ONLY = (
    "this server keeps the variant's average over its instances, not each instance's value, so only "
    "Average can be computed"
)
_SAMPLED = "the backlog is sampled, so a Sum or SampleCount would count samples rather than requests"
_METRICS: dict[str, _Metric] = {
    "Invocations": _Metric("None", _ALL, _invocations),
    "InvocationsPerInstance": _Metric("None", _ALL, _invocations_per_instance),
    "Invocation4XXErrors": _Metric("None", _ALL, _errors("Invocation4XXErrors")),
    "Invocation5XXErrors": _Metric("None", _ALL, _errors("Invocation5XXErrors")),
    "InvocationModelErrors": _Metric("None", _ALL, _errors("InvocationModelErrors")),
    "ModelLatency": _Metric(
        "Microseconds",
        ("Average", "Sum", "SampleCount"),
        _latency("ModelLatency"),
        "this server keeps the sum and count of latencies, not each one, so Minimum and Maximum cannot "
        "be computed",
    ),
    "OverheadLatency": _Metric(
        "Microseconds",
        ("Average", "Sum", "SampleCount"),
        _latency("OverheadLatency"),
        "this server keeps the sum and count of latencies, not each one, so Minimum and Maximum cannot "
        "be computed",
    ),
    "CPUUtilization": _Metric("Percent", ("Average",), _gauge(lambda r: r.cpu_percent), _PER_INSTANCE_ONLY),
    "MemoryUtilization": _Metric(
        "Percent", ("Average",), _gauge(lambda r: r.memory_percent), _PER_INSTANCE_ONLY
    ),
    "ConcurrentRequestsPerModel": _Metric(
        "None",
        ("Average", "Minimum", "Maximum"),
        _gauge(lambda r: r.concurrent / r.instances),
        "concurrency is sampled, so a Sum or SampleCount would count samples rather than requests",
    ),
    # asynchronous endpoints' queue (dimension EndpointName on AWS), sampled like the gauges above
    "ApproximateBacklogSize": _Metric(
        "None", ("Average", "Minimum", "Maximum"), _gauge(lambda r: r.backlog, serving_only=False), _SAMPLED
    ),
    "ApproximateBacklogSizePerInstance": _Metric(
        "None", ("Average", "Minimum", "Maximum"), _gauge(lambda r: r.backlog / r.instances), _SAMPLED
    ),
    "ApproximateAgeOfOldestRequest": _Metric(
        "Seconds",
        ("Average", "Minimum", "Maximum"),
        _gauge(lambda r: r.backlog_age_seconds, serving_only=False),
        _SAMPLED,
    ),
    "HasBacklogWithoutCapacity": _Metric(
        "None",
        ("Average", "Minimum", "Maximum"),
        _gauge(lambda r: 1.0 if r.backlog and not r.instances else 0.0, serving_only=False),
        _SAMPLED,
    ),
}
# metrics SageMaker publishes per endpoint (dimension EndpointName alone), not per variant
_ENDPOINT_METRICS = frozenset(
    {
        "ApproximateBacklogSize",
        "ApproximateBacklogSizePerInstance",
        "ApproximateAgeOfOldestRequest",
        "HasBacklogWithoutCapacity",
    }
)


# --- a policy's metric, checked when the policy is put -------------------------------------------------


def metric_of(configuration: dict[str, Any], variant: VariantRef) -> MetricSpec:
    """The metric a TargetTrackingScalingPolicyConfiguration tracks; anything that cannot be computed
    here is refused now rather than accepted and never triggering."""
    predefined = configuration.get("PredefinedMetricSpecification")
    customized = configuration.get("CustomizedMetricSpecification")
    if (predefined is None) == (customized is None):
        raise ValidationException(
            "Exactly one of PredefinedMetricSpecification and CustomizedMetricSpecification must be "
            "specified in TargetTrackingScalingPolicyConfiguration."
        )
    if predefined is not None:
        kind = predefined["PredefinedMetricType"]
        if kind not in PREDEFINED:
            raise ValidationException(
                f"Scalable dimension {VARIANT_INSTANCES} only supports the following predefined metric "
                f"types: {', '.join(PREDEFINED)}"
            )
        return PREDEFINED[kind]
    assert customized is not None
    return _customized(customized, variant)


def _customized(spec: dict[str, Any], variant: VariantRef) -> MetricSpec:
    if "Metrics" in spec:
        raise ValidationException(
            "CustomizedMetricSpecification.Metrics (metric math) is not supported by this server; "
            "give MetricName, Namespace, Dimensions and Statistic of one AWS/SageMaker metric instead."
        )
    missing = [m for m in ("MetricName", "Namespace", "Statistic") if m not in spec]
    if missing:
        raise ValidationException(
            f"CustomizedMetricSpecification must specify {', '.join(missing)} (or Metrics)."
        )
    if spec["Namespace"] != NAMESPACE:
        raise ValidationException(
            f"Namespace {spec['Namespace']} is not available on this server: it has no CloudWatch, only "
            f"the {NAMESPACE} metrics of the variant being scaled ({', '.join(_METRICS)})."
        )
    metric = _METRICS.get(spec["MetricName"])
    if metric is None:
        raise ValidationException(
            f"Metric {spec['MetricName']} of {NAMESPACE} is not computed by this server; it computes "
            f"{', '.join(_METRICS)}."
        )
    dimensions = {d["Name"]: d["Value"] for d in spec.get("Dimensions", [])}
    wanted = {"EndpointName": variant.endpoint, "VariantName": variant.variant}
    endpoint_only = {"EndpointName": variant.endpoint}
    per_endpoint = spec["MetricName"] in _ENDPOINT_METRICS and dimensions == endpoint_only
    if not per_endpoint and (dimensions != wanted or len(spec.get("Dimensions", [])) != 2):
        raise ValidationException(
            f"CustomizedMetricSpecification.Dimensions must be EndpointName={variant.endpoint} and "
            f"VariantName={variant.variant}: this server computes the metrics of the variant being "
            "scaled only."
        )
    statistic = spec["Statistic"]
    if statistic not in metric.statistics:
        raise ValidationException(
            f"Statistic {statistic} of {spec['MetricName']} is not supported by this server: "
            f"{metric.limitation}. Use {' or '.join(metric.statistics)}."
        )
    unit = spec.get("Unit")
    if unit is not None and unit != metric.unit:
        raise ValidationException(
            f"Unit {unit} does not match {spec['MetricName']}, which SageMaker publishes in "
            f"{metric.unit}; leave Unit out or give {metric.unit}."
        )
    return MetricSpec(spec["MetricName"], statistic)
