"""The datapoint maths: statistics over periods from the samples of several servers and intervals,
percentiles from histograms and from two-valued metrics, and the latency extremes a histogram allows."""

from __future__ import annotations

import pytest

from moorage.monitoring.series import (
    Sample,
    Statistic,
    aggregate,
    bucket_extremes,
    parse_statistic,
    period_start,
    value,
)

T0 = 1_780_000_200.0  # a whole minute (and hour) in epoch seconds
BOUNDS = (10.0, 20.0, 30.0)


def _stat(name: str) -> Statistic:
    parsed = parse_statistic(name)
    assert parsed is not None
    return parsed


def _errors(at: float, requests: int, errors: int) -> Sample:
    """An error count's sample: each request is 1 (an error) or 0."""
    return Sample(at, 1, requests, errors, 0.0 if errors < requests else 1.0, 1.0 if errors else 0.0)


def test_a_period_adds_up_every_server_and_interval_in_it() -> None:
    samples = [
        _errors(T0, 4, 1),  # server a
        _errors(T0, 6, 0),  # server b, same interval
        _errors(T0 + 30, 10, 3),
    ]
    [period] = aggregate(samples, T0, T0 + 60, 60)
    assert period.start == T0
    stats = {
        name: value(period, _stat(name), None)
        for name in ("SampleCount", "Sum", "Average", "Minimum", "Maximum")
    }
    assert stats == {"SampleCount": 20, "Sum": 4, "Average": 0.2, "Minimum": 0.0, "Maximum": 1.0}


def test_periods_are_aligned_to_their_length_and_a_period_without_samples_has_no_datapoint() -> None:
    samples = [
        _errors(T0 + 5, 1, 0),
        _errors(T0 + 59, 1, 1),
        _errors(T0 + 125, 2, 2),
        _errors(T0 + 200, 1, 0),
    ]
    # the query starts mid-minute: the period holding its start is whole; the end is exclusive
    periods = aggregate(samples, T0 + 30, T0 + 180, 60)
    assert [p.start for p in periods] == [T0, T0 + 120]
    assert [value(p, _stat("Sum"), None) for p in periods] == [1, 2]
    assert period_start(T0 + 59.9, 60) == T0
    assert period_start(T0 + 7, 5) == T0 + 5


def test_percentiles_interpolate_inside_the_bucket_the_rank_falls_in() -> None:
    # ten values in (10, 20], ten in (20, 30]; smallest 12, largest 28
    sample = Sample(T0, 1, 20, 400.0, 12.0, 28.0, (0, 10, 10, 0))
    [period] = aggregate([sample], T0, T0 + 1, 1)
    assert value(period, _stat("p50"), BOUNDS) == pytest.approx(20.0)  # the top of the first bucket
    assert value(period, _stat("p25"), BOUNDS) == pytest.approx(16.0)  # halfway through (12, 20]
    assert value(period, _stat("p75"), BOUNDS) == pytest.approx(24.0)  # halfway through (20, 28]
    assert value(period, _stat("p0"), BOUNDS) == 12.0
    assert value(period, _stat("p100"), BOUNDS) == 28.0


def test_percentiles_reach_into_the_open_last_bucket_up_to_the_maximum() -> None:
    sample = Sample(T0, 1, 4, 190.0, 5.0, 100.0, (1, 1, 0, 2))
    [period] = aggregate([sample], T0, T0 + 1, 1)
    assert value(period, _stat("p99"), BOUNDS) == pytest.approx(30 + 70 * (3.96 - 2) / 2)


def test_percentiles_of_a_metric_with_two_values_are_exact() -> None:
    # 10 requests, 3 of them errors, in two intervals
    periods = aggregate([_errors(T0, 6, 1), _errors(T0 + 1, 4, 2)], T0, T0 + 60, 60)
    assert value(periods[0], _stat("p70"), None) == 0.0
    assert value(periods[0], _stat("p71"), None) == 1.0
    # InvocationsPerInstance: 1/instances per request, the instance count changing between intervals
    shares = [Sample(T0, 1, 3, 3.0, 1.0, 1.0), Sample(T0 + 1, 1, 6, 3.0, 0.5, 0.5)]
    [period] = aggregate(shares, T0, T0 + 60, 60)
    assert value(period, _stat("p50"), None) == 0.5
    assert value(period, _stat("p90"), None) == 1.0
    assert value(period, _stat("Sum"), None) == 6.0


def test_a_single_value_is_its_own_minimum_and_maximum() -> None:
    assert bucket_extremes(BOUNDS, (0, 0, 1, 0), 23.5) == (23.5, 23.5)


def test_extremes_of_several_values_stay_inside_their_buckets_and_the_sum() -> None:
    # 12 and 13 in (10, 20]: the largest is at most 25 - 10, the smallest at least 10
    assert bucket_extremes(BOUNDS, (0, 2, 0, 0), 25.0) == (10.0, 15.0)
    # one value in the open bucket: the largest is at most the sum less the smallest possible others
    low, high = bucket_extremes(BOUNDS, (1, 0, 0, 1), 105.0)
    assert (low, high) == (0.0, 105.0)


@pytest.mark.parametrize(
    ("name", "percentile"),
    [("Sum", None), ("SampleCount", None), ("p99", 99.0), ("p99.9", 99.9), ("p0", 0.0), ("p100", 100.0)],
)
def test_statistics_moorage_computes(name: str, percentile: float | None) -> None:
    assert parse_statistic(name) == Statistic(name, percentile)


@pytest.mark.parametrize("name", ["p101", "p", "tm99", "IQM", "sum", "p99.9.9"])
def test_statistics_it_does_not(name: str) -> None:
    assert parse_statistic(name) is None
