"""Routing policy: variant by weight (or TargetVariant); within a variant, a worker by the variant's
RoutingStrategy: least outstanding requests (the default), or a random instance.

The variant choice draws from the routing table's random source, which a server setting can seed, so a
weighted split is reproducible in tests; worker tie-breaks use their own source so they never shift it."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # routes imports this module for its default strategy
    from moorage.dataplane.routes import EndpointRoute, VariantRoute, WorkerRoute

_ties = random.Random()
WorkerChoice = Callable[[list["WorkerRoute"]], "WorkerRoute | None"]


def choose_variant(route: EndpointRoute, target: str | None, rng: random.Random) -> VariantRoute | None:
    """None when TargetVariant names no variant of the endpoint or every weight is zero."""
    if target is not None:
        return route.by_name.get(target)
    variants = route.variants
    if len(variants) == 1:
        return variants[0] if route.total_weight > 0 else None
    if route.total_weight <= 0:
        return None
    pick = rng.random() * route.total_weight
    for variant, weight in zip(variants, route.weights, strict=True):
        pick -= weight
        if pick < 0:
            return variant
    return next(v for v, w in zip(reversed(variants), reversed(route.weights), strict=True) if w > 0)


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
            if _ties.random() * ties < 1:
                best = worker
    return best


def choose_random_instance(workers: list[WorkerRoute]) -> WorkerRoute | None:
    """RANDOM: an instance picked at random (the variant's instances have equal worker counts, so a
    random worker picks one uniformly), then its least busy worker, as the instance's own server would."""
    if not workers:
        return None
    pick = workers[_ties.randrange(len(workers))]
    same = [w for w in workers if w.instance_id == pick.instance_id]
    return choose_worker(same) if len(same) > 1 else pick


STRATEGIES: dict[str, WorkerChoice] = {
    "LEAST_OUTSTANDING_REQUESTS": choose_worker,
    "RANDOM": choose_random_instance,
}
