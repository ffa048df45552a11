"""Per-variant counters the invocation path keeps: plain integer and float fields, updated inline.

A Prometheus client call per request would cost more than the rest of the bookkeeping; these are
attribute increments and one bisect, read only when /metrics is scraped or autoscaling samples them.
Latency buckets are microseconds, as CloudWatch reports ModelLatency and OverheadLatency."""

from __future__ import annotations

from bisect import bisect_left

# upper bounds in microseconds: 100 µs to 60 s (the invocation budget)
LATENCY_BUCKETS_US: tuple[float, ...] = (
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
)  # fmt: skip
# instance start-up (ModelSetupTime): 100 ms to 1 h
SETUP_BUCKETS_US: tuple[float, ...] = (
    100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 30_000_000, 60_000_000,
    120_000_000, 300_000_000, 600_000_000, 3_600_000_000,
)  # fmt: skip
# a multi-model endpoint's downloads, loads and unloads: 100 µs to 1 h
MODEL_CACHE_BUCKETS_US: tuple[float, ...] = (*LATENCY_BUCKETS_US, 120_000_000, 300_000_000, 3_600_000_000)


class Histogram:
    """Counts per bucket (the last one is +Inf), their sum and their number."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class VariantStats:
    """CloudWatch's AWS/SageMaker invocation metrics for one variant, as running totals."""

    __slots__ = (
        "containers",
        "errors_4xx",
        "errors_5xx",
        "invocations",
        "model_errors",
        "model_latency",
        "multi_model",
        "overhead_latency",
        "setup_time",
    )

    def __init__(self) -> None:
        self.invocations = 0  # requests sent to the variant (Invocations)
        self.errors_4xx = 0  # answered 4xx: by the model, or refused for it (Invocation4XXErrors)
        self.errors_5xx = 0  # answered 5xx: by the model, or no instance ready (Invocation5XXErrors)
        self.model_errors = 0  # not a 2xx from the model: status, lost, timed out (InvocationModelErrors)
        self.model_latency = Histogram(LATENCY_BUCKETS_US)  # worker's answer time (ModelLatency)
        self.overhead_latency = Histogram(LATENCY_BUCKETS_US)  # the rest of the request's time here
        self.setup_time = Histogram(SETUP_BUCKETS_US)  # instance start to healthy (ModelSetupTime)
        # Direct invocation: the same metrics per ContainerName (dataplane/containers.py); None: not kept
        self.containers: dict[str, VariantStats] | None = None
        # a multi-model variant's model cache (dataplane/multimodel.py); None: not one
        self.multi_model: MultiModelStats | None = None


class MultiModelStats:
    """A multi-model variant's model cache, from what its instances report with each answer (µs)."""

    __slots__ = ("cache_hits", "cache_lookups", "downloading", "loaded", "loading", "unloading", "waiting")

    def __init__(self) -> None:
        self.cache_hits = 0  # requests whose model was loaded already (ModelCacheHit = hits / lookups)
        self.cache_lookups = 0
        self.waiting = Histogram(MODEL_CACHE_BUCKETS_US)  # ModelLoadingWaitTime: the miss's wait for its load
        self.downloading = Histogram(MODEL_CACHE_BUCKETS_US)  # ModelDownloadingTime
        self.loading = Histogram(MODEL_CACHE_BUCKETS_US)  # ModelLoadingTime
        self.unloading = Histogram(MODEL_CACHE_BUCKETS_US)  # ModelUnloadingTime: each eviction
        self.loaded: dict[str, int] = {}  # instance id -> models it last said it holds (LoadedModelCount)


class StatsBook:
    """One VariantStats per endpoint variant for as long as the endpoint exists, so totals carry on
    across updates and instance replacements (a new fleet picks up its variant's running totals)."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str], VariantStats] = {}

    def variant(self, endpoint: str, variant: str) -> VariantStats:
        key = (endpoint, variant)
        stats = self._stats.get(key)
        if stats is None:
            stats = self._stats[key] = VariantStats()
        return stats

    def forget(self, endpoint: str) -> None:
        for key in [k for k in self._stats if k[0] == endpoint]:
            del self._stats[key]

    def items(self) -> list[tuple[tuple[str, str], VariantStats]]:
        return list(self._stats.items())
