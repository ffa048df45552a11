"""The metric maths: datapoints from readings, normalised to one minute, missing where CloudWatch has none."""

from __future__ import annotations

from dataclasses import replace

import pytest

from moorage.control.scaling.metrics import MetricSpec, Sample, Window, datapoint
from moorage.control.scaling.ports import VariantReading

ZERO = VariantReading(
    instances=2,
    desired=2,
    invocations=0,
    invocation_4xx=0,
    invocation_5xx=0,
    model_errors=0,
    model_latency_us_sum=0.0,
    overhead_latency_us_sum=0.0,
    latency_count=0,
    concurrent=0,
    cpu_percent=0.0,
    memory_percent=0.0,
)


def window(end: VariantReading, *, seconds: float = 6.0, start: VariantReading = ZERO) -> Window:
    return Window(Sample(0.0, start), [Sample(seconds / 2, end), Sample(seconds, end)])


def test_invocations_per_instance_is_per_minute_whatever_the_period() -> None:
    busy = replace(ZERO, invocations=60)
    spec = MetricSpec("InvocationsPerInstance", "Sum")
    assert datapoint(spec, window(busy, seconds=6)) == pytest.approx(300.0)  # 600 a minute over 2 instances
    assert datapoint(spec, window(busy, seconds=60)) == pytest.approx(30.0)
    assert datapoint(MetricSpec("InvocationsPerInstance", "Average"), window(busy)) == pytest.approx(0.5)
    assert datapoint(MetricSpec("InvocationsPerInstance", "SampleCount"), window(busy)) == pytest.approx(
        600.0
    )
    assert datapoint(MetricSpec("Invocations", "Sum"), window(busy)) == pytest.approx(600.0)
    assert datapoint(MetricSpec("Invocations", "Average"), window(busy)) == 1.0


def test_no_invocations_no_datapoint() -> None:
    for name in ("Invocations", "InvocationsPerInstance", "Invocation4XXErrors", "ModelLatency"):
        assert datapoint(MetricSpec(name, "Sum"), window(ZERO)) is None


def test_no_earlier_reading_or_counters_that_went_back_give_no_datapoint() -> None:
    busy = replace(ZERO, invocations=60, latency_count=60)
    assert datapoint(MetricSpec("Invocations", "Sum"), Window(None, [Sample(6.0, busy)])) is None
    restarted = window(replace(ZERO, invocations=5), start=replace(ZERO, invocations=100))
    assert datapoint(MetricSpec("Invocations", "Sum"), restarted) is None


def test_error_statistics_are_over_requests() -> None:
    some = window(replace(ZERO, invocations=40, invocation_4xx=10, invocation_5xx=0))
    assert datapoint(MetricSpec("Invocation4XXErrors", "Average"), some) == pytest.approx(0.25)
    assert datapoint(MetricSpec("Invocation4XXErrors", "Sum"), some) == pytest.approx(100.0)
    assert datapoint(MetricSpec("Invocation4XXErrors", "Maximum"), some) == 1.0
    assert datapoint(MetricSpec("Invocation4XXErrors", "Minimum"), some) == 0.0
    assert datapoint(MetricSpec("Invocation5XXErrors", "Maximum"), some) == 0.0
    assert datapoint(MetricSpec("InvocationModelErrors", "SampleCount"), some) == pytest.approx(400.0)


def test_latency_average_and_sum() -> None:
    served = window(replace(ZERO, invocations=4, latency_count=4, model_latency_us_sum=8000.0))
    assert datapoint(MetricSpec("ModelLatency", "Average"), served) == pytest.approx(2000.0)
    assert datapoint(MetricSpec("ModelLatency", "Sum"), served) == pytest.approx(80000.0)
    assert datapoint(MetricSpec("OverheadLatency", "Average"), served) == 0.0


def test_gauges_are_over_the_samples_of_serving_instances() -> None:
    samples = [
        Sample(1.0, replace(ZERO, concurrent=2, cpu_percent=50.0)),
        Sample(2.0, replace(ZERO, concurrent=6, cpu_percent=150.0)),
        Sample(3.0, replace(ZERO, instances=0, concurrent=0, cpu_percent=0.0)),  # nothing serving: no sample
    ]
    period = Window(None, samples)  # gauges need no earlier reading
    assert datapoint(MetricSpec("ConcurrentRequestsPerModel", "Average"), period) == pytest.approx(2.0)
    assert datapoint(MetricSpec("ConcurrentRequestsPerModel", "Maximum"), period) == pytest.approx(3.0)
    assert datapoint(MetricSpec("ConcurrentRequestsPerModel", "Minimum"), period) == pytest.approx(1.0)
    assert datapoint(MetricSpec("CPUUtilization", "Average"), period) == pytest.approx(100.0)
    assert datapoint(MetricSpec("MemoryUtilization", "Average"), Window(None, [])) is None
