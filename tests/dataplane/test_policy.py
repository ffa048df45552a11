"""The routing policy: variant by weight or TargetVariant, worker by least outstanding requests."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.policy import choose_random_instance, choose_variant, choose_worker
from moorage.dataplane.routes import EndpointRoute, VariantRoute, WorkerRoute

PICKS = 4000
RNG = random.Random(7)


def _endpoint(**weights: float) -> EndpointRoute:
    variants = [VariantRoute(name, weight, timeout=60.0) for name, weight in weights.items()]
    return EndpointRoute("ep", variants, log_stream_arn="arn:aws:logs:us-west-2:123456789012:log-group:ep")


def _workers(*outstanding: int, instance: str = "i-1") -> list[WorkerRoute]:
    """Workers whose clients report the given outstanding counts (the policy's only input)."""
    workers = []
    for index, load in enumerate(outstanding):
        client = WorkerClient(f"/nonexistent/w{index}.sock")
        client.outstanding = load
        workers.append(WorkerRoute(client, instance, index, kill=lambda: None))
    return workers


@pytest.mark.parametrize(
    ("weights", "target", "expected"),
    [
        ({"A": 1.0}, None, "A"),
        ({"A": 0.0}, None, None),
        ({"A": 0.0, "B": 0.0}, None, None),
        ({"A": 0.0, "B": 2.0}, None, "B"),
        ({"A": 1.0, "B": 1.0}, "B", "B"),
        ({"A": 1.0, "B": 0.0}, "B", "B"),
        ({"A": 0.0}, "A", "A"),
        ({"A": 1.0, "B": 1.0}, "C", None),
        ({"A": 1.0}, "a", None),
    ],
    ids=[
        "single",
        "single-zero-weight",
        "all-zero-weight",
        "only-positive-weight",
        "target-hit",
        "target-overrides-zero-weight",
        "target-single-zero-weight",
        "target-miss",
        "target-is-case-sensitive",
    ],
)
def test_choose_variant(weights: dict[str, float], target: str | None, expected: str | None) -> None:
    """Deterministic outcomes; repeated so a weighted draw cannot pass by luck."""
    route = _endpoint(**weights)
    for _ in range(200):
        variant = choose_variant(route, target, RNG)
        assert (variant.name if variant else None) == expected


@pytest.mark.parametrize(
    "weights",
    [
        {"A": 1.0, "B": 3.0},
        {"A": 0.2, "B": 0.3, "C": 0.5},
        {"A": 5.0, "B": 5.0},
        {"A": 1.0, "B": 0.0, "C": 1.0},
    ],
    ids=["1:3", "fractions", "equal", "zero-in-the-middle"],
)
def test_weighted_shares(weights: dict[str, float]) -> None:
    """Each variant receives about weight/sum of the traffic (a statistical band, not an exact count)."""
    route = _endpoint(**weights)
    picks = Counter(v.name for v in (choose_variant(route, None, RNG) for _ in range(PICKS)) if v is not None)
    assert sum(picks.values()) == PICKS
    total = sum(weights.values())
    for name, weight in weights.items():
        assert abs(picks[name] / PICKS - weight / total) < 0.05, (name, picks)


@pytest.mark.parametrize(
    ("outstanding", "expected"),
    [((), None), ((0,), 0), ((7,), 0), ((3, 1, 2), 1), ((5, 4, 9, 0), 3), ((2, 2, 1), 2)],
    ids=["none", "one-idle", "one-busy", "minimum-in-middle", "minimum-last", "minimum-after-tie"],
)
def test_least_outstanding(outstanding: tuple[int, ...], expected: int | None) -> None:
    """The worker with the fewest requests in flight wins whenever it is unique."""
    workers = _workers(*outstanding)
    for _ in range(50):
        chosen = choose_worker(workers)
        assert (chosen.index if chosen else None) == expected


@pytest.mark.parametrize(
    ("outstanding", "tied"),
    [((0, 0), {0, 1}), ((0, 0, 0), {0, 1, 2}), ((1, 4, 1, 1), {0, 2, 3}), ((3, 0, 2, 0), {1, 3})],
    ids=["two-idle", "three-idle", "three-tied-of-four", "two-tied-apart"],
)
def test_ties_spread_evenly(outstanding: tuple[int, ...], tied: set[int]) -> None:
    """Equally loaded workers share the picks about evenly; busier ones get none."""
    workers = _workers(*outstanding)
    picks = Counter(w.index for w in (choose_worker(workers) for _ in range(PICKS)) if w is not None)
    assert set(picks) == tied
    for index in tied:
        assert abs(picks[index] / PICKS - 1 / len(tied)) < 0.05, picks


def test_the_same_seed_gives_the_same_split() -> None:
    route = _endpoint(A=1.0, B=1.0, C=2.0)
    first, second = random.Random(42), random.Random(42)
    picks = [choose_variant(route, None, first) for _ in range(500)]
    assert picks == [choose_variant(route, None, second) for _ in range(500)]


def test_random_picks_instances_evenly_regardless_of_load() -> None:
    """RANDOM ignores how busy an instance is (LEAST_OUTSTANDING_REQUESTS would avoid the busy one),
    then takes the least busy worker inside the chosen instance."""
    busy = _workers(9, 5, instance="i-busy")
    idle = _workers(0, 0, instance="i-idle")
    picks = [choose_random_instance(busy + idle) for _ in range(PICKS)]
    by_instance = Counter(w.instance_id for w in picks if w is not None)
    assert abs(by_instance["i-busy"] / PICKS - 0.5) < 0.05, by_instance
    assert {w.index for w in picks if w is not None and w.instance_id == "i-busy"} == {1}
    assert choose_random_instance([]) is None
