"""LoadedModelCount as the scrape reports it: each instance's last report, and nothing for an instance
that has left the variant (replaced or scaled in), so the variant's sum counts only the ones serving."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from moorage.dataplane.stats import MultiModelStats, VariantStats
from moorage.metrics.multimodel import multi_model_metrics


def _fleet(stats: VariantStats, instances: list[str]) -> Any:
    members = [SimpleNamespace(instance_id=i) for i in instances]
    variant = SimpleNamespace(name="AllTraffic", route=SimpleNamespace(stats=stats), members=members)
    return SimpleNamespace(name="mme", variants=[variant])


def _counts(fleet: Any) -> dict[str, float]:
    seen: dict[str, float] = {}
    for family in multi_model_metrics(lambda: [cast(Any, fleet)])():
        if family.name.endswith("loaded_model_count"):
            for sample in family.samples:
                seen[f"{sample.name}:{sample.labels.get('instance', '')}"] = sample.value
    return seen


def test_an_instance_that_left_the_variant_no_longer_counts() -> None:
    stats = VariantStats()
    mm = stats.multi_model = MultiModelStats()
    mm.loaded.update({"i-a": 3, "i-b": 2})
    assert _counts(_fleet(stats, ["i-a", "i-b"])) == {
        "sagemaker_loaded_model_count:i-a": 3,
        "sagemaker_loaded_model_count:i-b": 2,
        "sagemaker_variant_loaded_model_count:": 5,
    }
    # i-b replaced by i-c, which has not answered yet
    assert _counts(_fleet(stats, ["i-a", "i-c"])) == {
        "sagemaker_loaded_model_count:i-a": 3,
        "sagemaker_variant_loaded_model_count:": 3,
    }
    assert mm.loaded == {"i-a": 3}  # its value is dropped, not merely hidden
