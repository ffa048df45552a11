"""Routing policy: variant by weight (or TargetVariant), worker by least outstanding requests."""

from __future__ import annotations

import random

from moorage.dataplane.routes import EndpointRoute, VariantRoute, WorkerRoute

_rng = random.Random()


def choose_variant(route: EndpointRoute, target: str | None) -> VariantRoute | None:
    """None when TargetVariant names no variant of the endpoint or every weight is zero."""
    if target is not None:
        return route.by_name.get(target)
    variants = route.variants
    if len(variants) == 1:
        return variants[0] if route.total_weight > 0 else None
    if route.total_weight <= 0:
        return None
    pick = _rng.random() * route.total_weight
    for variant in variants:
        pick -= variant.weight
        if pick < 0:
            return variant
    return variants[-1]


def choose_worker(workers: list[WorkerRoute]) -> WorkerRoute | None:
    """Least outstanding requests; ties go to a random one so idle workers share the load."""
    best: WorkerRoute | None = None
    best_load = 1 << 30
    ties = 0
    for worker in workers:
        load = worker.client.outstanding
        if load < best_load:
            best, best_load, ties = worker, load, 1
        elif load == best_load:
            ties += 1
            if _rng.random() * ties < 1:
                best = worker
    return best
