"""Shadow variants' copies that were not sent (docs/shadow.md): the copies in flight to a shadow are
bounded, so a slow shadow sheds copies instead of piling them up; this says how many it shed. Everything
else about a shadow (Invocations, errors, latencies) is in the variant families under its own name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from moorage.dataplane.shadow import shadow_taps
from moorage.fleet import EndpointFleet


def shadow_metrics(fleets: Callable[[], Iterable[EndpointFleet]]) -> Callable[[], Iterator[Metric]]:
    """A FleetCollector `more` source: copies dropped per shadow variant."""

    def collect() -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "moorage_shadow_copies_dropped",
            "Copies of production requests not sent to the shadow variant: its bound on copies in flight "
            "(2 per worker) was reached, or it had no instance ready.",
            labels=["endpoint", "variant"],
        )
        for fleet in fleets():
            seen: set[int] = set()
            for variant in fleet.variants:
                for tap in shadow_taps(variant.route.tap):
                    if id(tap) in seen:
                        continue
                    seen.add(id(tap))
                    for shadow in tap.shadows:
                        dropped.add_metric([fleet.name, shadow.route.name], shadow.dropped)
        yield dropped

    return collect
