"""A multi-model endpoint's model-cache metrics in CloudWatch's names (docs/metrics.md): read at each
scrape from what its instances reported with their answers (moorage/dataplane/multimodel.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from moorage.fleet import EndpointFleet
from moorage.metrics.families import add_histogram

_VARIANT = ["endpoint", "variant"]
_INSTANCE = ["endpoint", "variant", "instance"]
_TIMES = {
    "waiting": ("model_loading_wait_time", "ModelLoadingWaitTime: a request's wait for its model to be "
                "downloaded and loaded (cache misses only)"),
    "downloading": ("model_downloading_time", "ModelDownloadingTime: time to download and unpack a model"),
    "loading": ("model_loading_time", "ModelLoadingTime: time to load a model (model_fn)"),
    "unloading": ("model_unloading_time", "ModelUnloadingTime: time to unload a model, each unload "
                  "once, whatever caused it (eviction, ModelCacheSetting Disabled)"),
}  # fmt: skip


def multi_model_metrics(fleets: Callable[[], Iterable[EndpointFleet]]) -> Callable[[], Iterator[Metric]]:
    """A FleetCollector `more` source: the families below, for every multi-model variant."""

    def collect() -> Iterator[Metric]:
        times = {
            field: HistogramMetricFamily(
                f"sagemaker_{name}_microseconds", f"{text}, in microseconds.", labels=_VARIANT
            )
            for field, (name, text) in _TIMES.items()
        }
        hits = CounterMetricFamily(
            "sagemaker_model_cache_hits",
            "ModelCacheHit (numerator): requests whose model was already loaded on the instance.",
            labels=_VARIANT,
        )
        lookups = CounterMetricFamily(
            "sagemaker_model_cache_lookups",
            "ModelCacheHit (denominator): requests to a multi-model endpoint that named a model.",
            labels=_VARIANT,
        )
        per_instance = GaugeMetricFamily(
            "sagemaker_loaded_model_count",
            "LoadedModelCount: models loaded on the instance (as it last reported).",
            labels=_INSTANCE,
        )
        per_variant = GaugeMetricFamily(
            "sagemaker_variant_loaded_model_count",
            "LoadedModelCount (Sum): models loaded over the variant's instances.",
            labels=_VARIANT,
        )
        for fleet in fleets():
            for variant in fleet.variants:
                stats = variant.route.stats
                mm = stats.multi_model if stats is not None else None
                if mm is None:
                    continue
                labels = [fleet.name, variant.name]
                for field, family in times.items():
                    add_histogram(family, labels, getattr(mm, field))
                hits.add_metric(labels, mm.cache_hits)
                lookups.add_metric(labels, mm.cache_lookups)
                total = 0
                present = {member.instance_id for member in variant.members}
                for gone in [i for i in mm.loaded if i not in present]:
                    del mm.loaded[gone]  # replaced or scaled in: its last report no longer counts
                for instance, count in mm.loaded.items():
                    per_instance.add_metric([*labels, instance], count)
                    total += count
                per_variant.add_metric(labels, total)
        yield from times.values()
        yield from (hits, lookups, per_instance, per_variant)

    return collect
