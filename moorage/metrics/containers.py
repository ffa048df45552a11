"""Per-container invocation metrics of multi-container endpoints (CloudWatch's [EndpointName, VariantName,
ContainerName] dimension). Direct invocation: Invocations, the error counts and ModelLatency per container,
here the variant's families' names with `container_` added and a `container` label. An inference pipeline
(Serial): ContainerLatency, the time each container took with its hop of a request. docs/metrics.md,
docs/pipelines.md. Read at each scrape from moorage/dataplane/containers.py's totals."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from moorage.dataplane.containers import SerialGate
from moorage.fleet import EndpointFleet
from moorage.metrics.families import add_histogram

_CONTAINER = ["endpoint", "variant", "container"]
_COUNTERS = {
    "invocations": ("sagemaker_container_invocations", "Invocations: requests sent to the container."),
    "errors_4xx": ("sagemaker_container_invocation_4xx_errors", "Invocation4XXErrors of the container."),
    "errors_5xx": ("sagemaker_container_invocation_5xx_errors", "Invocation5XXErrors of the container."),
    "model_errors": (
        "sagemaker_container_invocation_model_errors",
        "InvocationModelErrors: the container's requests without a 2xx (error status, lost, timed out).",
    ),
}
_HISTOGRAMS = {
    "model_latency": (
        "sagemaker_container_model_latency_microseconds",
        "ModelLatency: time the container took to answer, in microseconds.",
    ),
    "overhead_latency": (
        "sagemaker_container_overhead_latency_microseconds",
        "OverheadLatency: time the container's requests spent in Moorage outside it, in microseconds.",
    ),
}
_CONTAINER_LATENCY = (
    "sagemaker_container_latency_microseconds",
    "ContainerLatency: time a container of an inference pipeline took to answer its hop, in microseconds.",
)


def container_metrics(fleets: Callable[[], Iterable[EndpointFleet]]) -> Callable[[], Iterator[Metric]]:
    """A FleetCollector `more` source: the families above, for every variant that keeps them."""

    def collect() -> Iterator[Metric]:
        counters = {f: CounterMetricFamily(n, h, labels=_CONTAINER) for f, (n, h) in _COUNTERS.items()}
        histograms = {f: HistogramMetricFamily(n, h, labels=_CONTAINER) for f, (n, h) in _HISTOGRAMS.items()}
        latency = HistogramMetricFamily(*_CONTAINER_LATENCY, labels=_CONTAINER)
        for fleet in fleets():
            for variant in fleet.variants:
                stats = variant.route.stats
                if stats is None or not stats.containers:
                    continue
                gate = variant.route.gate
                if isinstance(gate, SerialGate):  # a pipeline's hops: their time only
                    for container in gate.hostnames:
                        if (own := stats.containers.get(container)) is not None:
                            add_histogram(latency, [fleet.name, variant.name, container], own.model_latency)
                    continue
                for container, own in stats.containers.items():
                    labels = [fleet.name, variant.name, container]
                    for field, counter in counters.items():
                        counter.add_metric(labels, getattr(own, field))
                    for field, family in histograms.items():
                        add_histogram(family, labels, getattr(own, field))
        yield from counters.values()
        yield from histograms.values()
        yield latency

    return collect
