"""The CloudWatch metrics Moorage keeps a history of: their namespace, name, unit and, for those whose
percentiles are computed from a histogram, the histogram's bucket bounds.

SageMaker publishes the invocation metrics once per request, so each has a value per request: 1 for
Invocations, 1 or 0 for the error counts, 1/instances for InvocationsPerInstance and the request's
latency for ModelLatency and OverheadLatency. Their statistics (Sum, SampleCount, Average, ...) follow
from that, as on AWS. Units are SageMaker's: None for the counts, Microseconds for the latencies,
Percent for CPU and memory utilization."""

from __future__ import annotations

from dataclasses import dataclass

from moorage.dataplane.stats import LATENCY_BUCKETS_US, SETUP_BUCKETS_US

INVOCATIONS_NAMESPACE = "AWS/SageMaker"
INSTANCE_NAMESPACE = "/aws/sagemaker/Endpoints"
# the one dimension set every metric here has, in the order ListMetrics gives it
DIMENSIONS = ("EndpointName", "VariantName")
# utilization buckets (percent; 100 = one core busy, so a many-core instance goes past 100)
PERCENT_BUCKETS: tuple[float, ...] = (
    1, 2.5, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 150, 200, 400, 800, 1600, 3200,
)  # fmt: skip


@dataclass(frozen=True)
class MetricInfo:
    namespace: str
    name: str
    unit: str
    # None: the metric's values per sample are its minimum and maximum only (1, 0 or 1/instances)
    bounds: tuple[float, ...] | None = None


METRICS: dict[tuple[str, str], MetricInfo] = {
    (info.namespace, info.name): info
    for info in (
        MetricInfo(INVOCATIONS_NAMESPACE, "Invocations", "None"),
        MetricInfo(INVOCATIONS_NAMESPACE, "Invocation4XXErrors", "None"),
        MetricInfo(INVOCATIONS_NAMESPACE, "Invocation5XXErrors", "None"),
        MetricInfo(INVOCATIONS_NAMESPACE, "InvocationModelErrors", "None"),
        MetricInfo(INVOCATIONS_NAMESPACE, "InvocationsPerInstance", "None"),
        MetricInfo(INVOCATIONS_NAMESPACE, "ModelLatency", "Microseconds", LATENCY_BUCKETS_US),
        MetricInfo(INVOCATIONS_NAMESPACE, "OverheadLatency", "Microseconds", LATENCY_BUCKETS_US),
        MetricInfo(INVOCATIONS_NAMESPACE, "ModelSetupTime", "Microseconds", SETUP_BUCKETS_US),
        MetricInfo(INSTANCE_NAMESPACE, "CPUUtilization", "Percent", PERCENT_BUCKETS),
        MetricInfo(INSTANCE_NAMESPACE, "MemoryUtilization", "Percent", PERCENT_BUCKETS),
    )
}


def metric_info(namespace: str, name: str) -> MetricInfo | None:
    return METRICS.get((namespace, name))
