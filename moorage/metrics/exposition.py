"""GET /metrics: the AWS/SageMaker endpoint metrics in Prometheus' text format.

Nothing is recorded through prometheus_client on the request path; a collector reads the data plane's
running totals (moorage/dataplane/stats.py) and the usage meter when Prometheus scrapes. Names follow
CloudWatch's (Invocations -> sagemaker_invocations_total, ModelLatency ->
sagemaker_model_latency_microseconds, ...); docs/metrics.md has the whole mapping."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from moorage.dataplane.stats import VariantStats
from moorage.fleet import EndpointFleet
from moorage.metrics.containers import container_metrics
from moorage.metrics.families import add_histogram
from moorage.metrics.multimodel import multi_model_metrics
from moorage.metrics.shadow import shadow_metrics
from moorage.metrics.usage import UsageMeter

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
_VARIANT = ["endpoint", "variant"]
_INSTANCE = ["endpoint", "variant", "instance"]


class FleetCollector:
    """A prometheus_client collector over the live fleets."""

    def __init__(self, fleets: Callable[[], Iterable[EndpointFleet]], usage: UsageMeter) -> None:
        self.fleets = fleets  # during a deployment, an endpoint's new fleet after its serving one
        self.usage = usage
        # further metric families read at each scrape (multi-model caches, asynchronous endpoints' backlogs)
        self.more: list[Callable[[], Iterable[Metric]]] = [
            multi_model_metrics(self.serving),
            container_metrics(self.serving),  # Direct invocation's per-container metrics
            shadow_metrics(self.serving),  # copies a shadow variant shed
        ]

    def serving(self) -> list[EndpointFleet]:
        """One fleet per endpoint, the serving one: for families kept per endpoint or variant, whose
        statistics a deployment's two fleets share (so the new fleet would count them twice)."""
        first: dict[str, EndpointFleet] = {}
        for fleet in self.fleets():
            first.setdefault(fleet.name, fleet)
        return list(first.values())

    def collect(self) -> Iterator[Metric]:
        counters = {
            "invocations": CounterMetricFamily(
                "sagemaker_invocations",
                "Invocations: InvokeEndpoint requests sent to the variant.",
                labels=_VARIANT,
            ),
            "errors_4xx": CounterMetricFamily(
                "sagemaker_invocation_4xx_errors",
                "Invocation4XXErrors: requests the model answered with a 4xx status.",
                labels=_VARIANT,
            ),
            "errors_5xx": CounterMetricFamily(
                "sagemaker_invocation_5xx_errors",
                "Invocation5XXErrors: requests answered with a 5xx status (by the model, or no instance "
                "ready).",
                labels=_VARIANT,
            ),
            "model_errors": CounterMetricFamily(
                "sagemaker_invocation_model_errors",
                "InvocationModelErrors: requests without a 2xx from the model (error status, lost, "
                "timed out).",
                labels=_VARIANT,
            ),
        }
        histograms = {
            "model_latency": HistogramMetricFamily(
                "sagemaker_model_latency_microseconds",
                "ModelLatency: time the model's container took to answer, in microseconds.",
                labels=_VARIANT,
            ),
            "overhead_latency": HistogramMetricFamily(
                "sagemaker_overhead_latency_microseconds",
                "OverheadLatency: time the request spent in Moorage outside the model, in microseconds.",
                labels=_VARIANT,
            ),
            "setup_time": HistogramMetricFamily(
                "sagemaker_model_setup_time_microseconds",
                "ModelSetupTime: time from starting an instance to it being healthy, in microseconds.",
                labels=_VARIANT,
            ),
        }
        instances = GaugeMetricFamily(
            "sagemaker_variant_instances", "CurrentInstanceCount of the variant.", labels=_VARIANT
        )
        desired = GaugeMetricFamily(
            "sagemaker_variant_desired_instances", "DesiredInstanceCount of the variant.", labels=_VARIANT
        )
        per_instance = CounterMetricFamily(
            "sagemaker_invocations_per_instance",
            "InvocationsPerInstance: requests each instance answered (CloudWatch's value is the variant's "
            "rate divided by its instance count).",
            labels=_INSTANCE,
        )
        concurrent = GaugeMetricFamily(
            "sagemaker_concurrent_requests_per_model",
            "ConcurrentRequestsPerModel: requests in flight on the instance now.",
            labels=_INSTANCE,
        )
        cpu = GaugeMetricFamily(
            "sagemaker_cpu_utilization_percent",
            "CPUUtilization: CPU used by the instance's processes (100 = one core).",
            labels=_INSTANCE,
        )
        memory = GaugeMetricFamily(
            "sagemaker_memory_utilization_percent",
            "MemoryUtilization: the instance's resident memory as a share of the machine's.",
            labels=_INSTANCE,
        )
        # a deployment's old and new fleets have the same variants: one series each, counting both
        counts: dict[tuple[str, str], tuple[int, int]] = {}
        added: set[int] = set()  # statistics already added (the two fleets' variants share theirs)
        for fleet in self.fleets():
            for variant in fleet.every_variant:  # shadow variants' metrics are their own
                labels = [fleet.name, variant.name]
                current, wanted = counts.get((fleet.name, variant.name), (0, 0))
                counts[(fleet.name, variant.name)] = (current + variant.current, wanted + variant.desired)
                stats = variant.route.stats
                if stats is not None and id(stats) not in added:
                    added.add(id(stats))
                    _add_stats(stats, labels, counters, histograms)
                for member in variant.members:
                    member_labels = [*labels, member.instance_id]
                    if stats is not None:
                        per_instance.add_metric(member_labels, sum(w.served for w in member.workers))
                    concurrent.add_metric(member_labels, member.outstanding)
                    utilization = self.usage.of(member.instance_id)
                    if utilization is not None:
                        cpu.add_metric(member_labels, utilization.cpu_percent)
                        memory.add_metric(member_labels, utilization.memory_percent)
        for (endpoint, variant_name), (current, wanted) in counts.items():
            instances.add_metric([endpoint, variant_name], current)
            desired.add_metric([endpoint, variant_name], wanted)
        yield from counters.values()
        yield from histograms.values()
        yield from (instances, desired, per_instance, concurrent, cpu, memory)
        for more in self.more:
            yield from more()


def _add_stats(
    stats: VariantStats,
    labels: list[str],
    counters: dict[str, CounterMetricFamily],
    histograms: dict[str, HistogramMetricFamily],
) -> None:
    for field, family in counters.items():
        family.add_metric(labels, getattr(stats, field))
    for field, histogram in histograms.items():
        add_histogram(histogram, labels, getattr(stats, field))


def registry(collector: FleetCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)  # type: ignore[arg-type]
    return reg


def render(reg: CollectorRegistry) -> bytes:
    return generate_latest(reg)
