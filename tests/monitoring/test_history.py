"""The recorder: what the data plane counted in each interval becomes rows (only for variants with
traffic), every server's rows add up, shutdown writes the interval under way, instances' utilization is
kept, and old rows are rolled up by the minute and dropped after the retention."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from moorage.compute.base import ResourceUsage
from moorage.control.context import Caller
from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.stats import StatsBook
from moorage.metrics.usage import UsageMeter
from moorage.monitoring.history import HistorySettings, MetricRecorder, Record, write
from moorage.monitoring.metric_api import MetricApi
from moorage.monitoring.rollup import maintain
from moorage.monitoring.series import Sample
from moorage.store import Store, open_store
from moorage.store.tables import MetricSampleRow
from tests.monitoring.conftest import T0, answer
from tests.support.clock import FakeClock

CALLER = Caller("us-west-2", "123456789012")
DIMENSIONS = [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "v"}]


def _route(instances: int) -> EndpointRoute:
    workers = [
        WorkerRoute(WorkerClient(f"/tmp/{i}-{w}.sock"), f"i-{i}", w, lambda: None)
        for i in range(instances)
        for w in range(2)  # two workers each: instances, not workers, are counted
    ]
    return EndpointRoute("ep", [VariantRoute("v", 1.0, 60.0, workers=workers)], "arn:log")


def _recorder(
    store: Store, stats: StatsBook, clock: FakeClock, usage: UsageMeter | None = None
) -> MetricRecorder:
    table = RoutingTable()
    table.install(_route(2))
    return MetricRecorder(store, stats, table, usage, clock, HistorySettings())


async def _statistics(store: Store, metric: str, period: int = 1, **more: Any) -> list[dict[str, Any]]:
    api = MetricApi(store, FakeClock(T0))
    answer_ = await api.get_metric_statistics(
        CALLER,
        {
            "Namespace": "AWS/SageMaker",
            "MetricName": metric,
            "Dimensions": DIMENSIONS,
            "StartTime": T0 - 60,
            "EndTime": T0 + 120,
            "Period": period,
            "Statistics": ["Sum", "SampleCount", "Average", "Minimum", "Maximum"],
            **more,
        },
    )
    return list(answer_["Datapoints"])


async def test_each_interval_writes_what_was_counted_in_it(store: Store) -> None:
    stats, clock = StatsBook(), FakeClock(T0)
    recorder = _recorder(store, stats, clock)
    variant = stats.variant("ep", "v")
    answer(variant, 200, model_us=3_000)
    answer(variant, 500, model_us=9_000)
    answer(variant, 415, model_us=1_000)
    await clock.advance(1)
    await recorder.tick()  # [T0, T0 + 1): three requests
    await clock.advance(1)
    await recorder.tick()  # [T0 + 1, T0 + 2): nothing, so no rows
    answer(variant)
    await clock.advance(1)
    await recorder.tick()  # [T0 + 2, T0 + 3): one request

    invocations = await _statistics(store, "Invocations")
    assert [(p["Timestamp"].timestamp(), p["Sum"]) for p in invocations] == [(T0, 3.0), (T0 + 2, 1.0)]
    assert invocations[0]["Unit"] == "None"
    [first, _] = await _statistics(store, "Invocation5XXErrors")
    assert (first["Sum"], first["SampleCount"], first["Average"]) == (1.0, 3.0, pytest.approx(1 / 3))
    assert (first["Minimum"], first["Maximum"]) == (0.0, 1.0)
    [model_errors, _] = await _statistics(store, "InvocationModelErrors")
    assert model_errors["Sum"] == 2.0
    [per_instance, _] = await _statistics(store, "InvocationsPerInstance")
    assert (per_instance["Sum"], per_instance["Average"]) == (1.5, 0.5)  # two instances serve the variant
    [latency, single] = await _statistics(store, "ModelLatency")
    assert (latency["SampleCount"], latency["Sum"], latency["Unit"]) == (3.0, 13_000.0, "Microseconds")
    assert latency["Minimum"] <= 1_000.0 and latency["Maximum"] >= 9_000.0
    assert single["Minimum"] == single["Maximum"] == 2_000.0  # one request: exact
    [minute] = await _statistics(store, "Invocations", period=60)
    assert minute["Sum"] == 4.0 and minute["Timestamp"].timestamp() == T0


async def test_the_rows_of_several_servers_add_up(store: Store) -> None:
    clock = FakeClock(T0)
    books = [StatsBook(), StatsBook()]
    recorders = [_recorder(store, book, clock) for book in books]
    for n, book in enumerate(books, start=1):
        for _ in range(n):
            answer(book.variant("ep", "v"), 500)
    await clock.advance(1)
    for recorder in recorders:
        await recorder.tick()
    [point] = await _statistics(store, "Invocation5XXErrors")
    assert point["Sum"] == 3.0
    with store.session() as session:
        servers = session.scalars(select(func.count(func.distinct(MetricSampleRow.server_id)))).one()
    assert servers == 2


async def test_shutdown_writes_the_interval_under_way_once(store: Store) -> None:
    stats, clock = StatsBook(), FakeClock(T0)
    recorder = _recorder(store, stats, clock)
    answer(stats.variant("ep", "v"))
    await clock.advance(0.4)
    await recorder.flush()
    await recorder.flush()  # nothing new since
    assert [p["Sum"] for p in await _statistics(store, "Invocations")] == [1.0]


class _Instance:
    def __init__(self, instance_id: str, rss: int) -> None:
        self.instance_id = instance_id
        self.rss = rss
        self.cpu = 0.0

    def usage(self) -> ResourceUsage:
        return ResourceUsage(cpu_seconds=self.cpu, rss_bytes=self.rss, memory_total=1_000)


async def test_instances_utilization_is_kept_per_variant(store: Store) -> None:
    clock = FakeClock(T0)
    instances = [_Instance("i-0", 100), _Instance("i-1", 300)]
    usage = UsageMeter(clock, lambda: instances)
    usage.sample()
    await clock.advance(1)
    for instance in instances:
        instance.cpu += 0.5  # half a core over the second
    usage.sample()
    recorder = _recorder(store, StatsBook(), clock, usage)
    await recorder.tick()
    api = MetricApi(store, clock)
    request = {
        "Namespace": "/aws/sagemaker/Endpoints",
        "Dimensions": DIMENSIONS,
        "StartTime": T0,
        "EndTime": T0 + 60,
        "Period": 60,
        "Statistics": ["Average", "Maximum"],
    }
    [memory] = (await api.get_metric_statistics(CALLER, {**request, "MetricName": "MemoryUtilization"}))[
        "Datapoints"
    ]
    assert (memory["Average"], memory["Maximum"], memory["Unit"]) == (20.0, 30.0, "Percent")
    [cpu] = (await api.get_metric_statistics(CALLER, {**request, "MetricName": "CPUUtilization"}))[
        "Datapoints"
    ]
    assert cpu["Average"] == pytest.approx(50.0)


@pytest.fixture
def any_store(store_url: str, tmp_path: Any) -> Iterator[Store]:
    opened = open_store(tmp_path / "any", store_url)
    try:
        yield opened
    finally:
        opened.close()


def _record(at: float, count: int, variant: str = "a") -> Record:
    return Record(
        "AWS/SageMaker",
        "ModelLatency",
        "ep",
        variant,
        Sample(at, 1, count, 10.0 * count, 10.0, 10.0, (0, count)),
    )


async def test_old_rows_are_rolled_up_by_the_minute_and_dropped_after_the_retention(any_store: Store) -> None:
    now = T0 + 3 * 3600
    recent = [_record(now - 60 + s, 1) for s in range(3)]
    old = [_record(T0 + s, 1) for s in range(0, 120, 5)] + [_record(T0 + 7, 2, variant="b")]
    expired = [_record(T0 - 86_400 - 60, 4)]
    write(any_store, "server-1", [*recent, *old, *expired])
    write(any_store, "server-2", [_record(T0 + 7, 3)])
    maintain(any_store, now, 86_400)
    maintain(any_store, now, 86_400)  # nothing left to do
    with any_store.session() as session:
        rows = session.execute(
            select(
                MetricSampleRow.server_id,
                MetricSampleRow.variant_name,
                MetricSampleRow.start,
                MetricSampleRow.seconds,
                MetricSampleRow.count,
                MetricSampleRow.buckets,
            ).order_by(MetricSampleRow.start, MetricSampleRow.server_id, MetricSampleRow.variant_name)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("server-1", "a", T0, 60.0, 12, [0, 12]),
        ("server-1", "b", T0 + 0, 60.0, 2, [0, 2]),
        ("server-2", "a", T0, 60.0, 3, [0, 3]),
        ("server-1", "a", T0 + 60, 60.0, 12, [0, 12]),
        *(("server-1", "a", r.sample.start, 1.0, 1, [0, 1]) for r in recent),
    ]
