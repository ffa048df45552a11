"""GetMetricStatistics, GetMetricData and ListMetrics over stored samples: CloudWatch's checks and
limits, metric math refused, paging, scan order, and the metrics listed with their filters."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from moorage.api.cloudwatch.errors import (
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
    ValidationError,
)
from moorage.control.context import Caller
from moorage.monitoring.history import Record, write
from moorage.monitoring.metric_api import MetricApi
from moorage.monitoring.series import Sample
from moorage.store import Store, open_store
from tests.monitoring.conftest import T0
from tests.support.clock import FakeClock

CALLER = Caller("us-west-2", "123456789012")


def _dimensions(endpoint: str = "ep", variant: str = "v") -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": variant}]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """One store for the module: the tests only read what `api` writes (list_metrics adds an endpoint of
    its own)."""
    opened = open_store(tmp_path_factory.mktemp("state"))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture(scope="module")
def api(store: Store) -> MetricApi:
    """Invocations of ep/v: 2, 0 (no row), 5 requests in three seconds; ModelLatency of ep/shadow."""
    rows = [
        Record("AWS/SageMaker", "Invocations", "ep", "v", Sample(T0, 1, 2, 2.0, 1.0, 1.0)),
        Record("AWS/SageMaker", "Invocations", "ep", "v", Sample(T0 + 2, 1, 5, 5.0, 1.0, 1.0)),
        Record(
            "AWS/SageMaker",
            "ModelLatency",
            "ep",
            "shadow",
            Sample(T0 + 1, 1, 1, 7.0, 7.0, 7.0, (1,) + (0,) * 18),
        ),
    ]
    write(store, "server", rows)
    return MetricApi(store, FakeClock(T0 + 60))


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


async def test_statistics_and_percentiles_per_period(api: MetricApi) -> None:
    request = {
        "Namespace": "AWS/SageMaker",
        "MetricName": "Invocations",
        "Dimensions": _dimensions(),
        "StartTime": _at(T0),
        "EndTime": _at(T0 + 3),
        "Period": 1,
    }
    stats = await api.get_metric_statistics(CALLER, {**request, "Statistics": ["Sum", "Average"]})
    assert stats["Label"] == "Invocations"
    assert stats["Datapoints"] == [
        {"Timestamp": _at(T0), "Unit": "None", "Sum": 2.0, "Average": 1.0},
        {"Timestamp": _at(T0 + 2), "Unit": "None", "Sum": 5.0, "Average": 1.0},
    ]
    extended = await api.get_metric_statistics(CALLER, {**request, "ExtendedStatistics": ["p50", "p99.9"]})
    assert extended["Datapoints"][0]["ExtendedStatistics"] == {"p50": 1.0, "p99.9": 1.0}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"Unit": "Microseconds"}, []),  # not the unit SageMaker publishes Invocations in
        ({"Unit": "None"}, [7.0]),
        ({"Dimensions": _dimensions()[:1]}, []),  # CloudWatch matches the whole dimension set
        ({"MetricName": "NoSuchMetric"}, []),
    ],
)
async def test_what_has_no_data_answers_no_datapoints(
    api: MetricApi, change: dict[str, Any], expected: list[float]
) -> None:
    request = {
        "Namespace": "AWS/SageMaker",
        "MetricName": "Invocations",
        "Dimensions": _dimensions(),
        "StartTime": _at(T0),
        "EndTime": _at(T0 + 60),
        "Period": 60,
        "Statistics": ["Sum"],
        **change,
    }
    answer = await api.get_metric_statistics(CALLER, request)
    assert [p["Sum"] for p in answer["Datapoints"]] == expected


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (
            {"ExtendedStatistics": ["p90"]},
            InvalidParameterCombination,
            "either Statistics or ExtendedStatistics",
        ),
        ({"Statistics": []}, InvalidParameterCombination, "either Statistics or ExtendedStatistics"),
        ({"Statistics": None, "ExtendedStatistics": ["tm99"]}, InvalidParameterValue, "percentiles"),
        ({"Period": 7}, InvalidParameterValue, "1, 5, 10, 20, 30 or a multiple of 60"),
        ({"Period": 60 * 2**31}, InvalidParameterValue, "a multiple of 60 up to 2147483647"),
        (
            {"EndTime": _at(T0 - 1)},
            InvalidParameterValue,
            "StartTime must be less than the parameter EndTime",
        ),
        ({"Period": 1, "EndTime": _at(T0 + 1441)}, InvalidParameterCombination, "up to 1,441 datapoints"),
    ],
)
async def test_requests_cloudwatch_refuses(
    api: MetricApi, change: dict[str, Any], error: type[Exception], message: str
) -> None:
    request = {
        "Namespace": "AWS/SageMaker",
        "MetricName": "Invocations",
        "Dimensions": _dimensions(),
        "StartTime": _at(T0),
        "EndTime": _at(T0 + 60),
        "Period": 60,
        "Statistics": ["Sum"],
        **change,
    }
    with pytest.raises(error, match=message):
        await api.get_metric_statistics(CALLER, {k: v for k, v in request.items() if v is not None})


def _query(
    id_: str, metric: str = "Invocations", stat: str = "Sum", variant: str = "v", **more: Any
) -> dict[str, Any]:
    return {
        "Id": id_,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/SageMaker",
                "MetricName": metric,
                "Dimensions": _dimensions(variant=variant),
            },
            "Period": 1,
            "Stat": stat,
        },
        **more,
    }


async def test_metric_data_of_several_queries_newest_first(api: MetricApi) -> None:
    answer = await api.get_metric_data(
        CALLER,
        {
            "MetricDataQueries": [
                _query("calls", Label="Calls"),
                _query("latency", "ModelLatency", "p50", variant="shadow"),
                _query("hidden", ReturnData=False),
            ],
            "StartTime": _at(T0),
            "EndTime": _at(T0 + 10),
        },
    )
    assert answer["MetricDataResults"] == [
        {
            "Id": "calls",
            "Label": "Calls",
            "Timestamps": [_at(T0 + 2), _at(T0)],
            "Values": [5.0, 2.0],
            "StatusCode": "Complete",
            "Messages": [],
        },
        {
            "Id": "latency",
            "Label": "ModelLatency",
            "Timestamps": [_at(T0 + 1)],
            "Values": [7.0],
            "StatusCode": "Complete",
            "Messages": [],
        },
    ]
    assert "NextToken" not in answer


async def test_metric_data_pages_by_max_datapoints(api: MetricApi) -> None:
    request = {
        "MetricDataQueries": [
            _query("calls"),
            _query("latency", "ModelLatency", "Maximum", variant="shadow"),
        ],
        "StartTime": _at(T0),
        "EndTime": _at(T0 + 10),
        "ScanBy": "TimestampAscending",
        "MaxDatapoints": 1,
    }
    pages = []
    token = None
    while True:
        answer = await api.get_metric_data(CALLER, {**request, **({"NextToken": token} if token else {})})
        pages.append([(r["Id"], r["Values"], r["StatusCode"]) for r in answer["MetricDataResults"]])
        token = answer.get("NextToken")
        if token is None:
            break
    assert pages == [
        [("calls", [2.0], "PartialData"), ("latency", [], "PartialData")],
        [("calls", [5.0], "Complete"), ("latency", [], "PartialData")],
        [("calls", [], "Complete"), ("latency", [7.0], "Complete")],
    ]
    with pytest.raises(InvalidNextToken):
        await api.get_metric_data(CALLER, {**request, "NextToken": "not-a-token"})


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ([{"Id": "e1", "Expression": "SUM(METRICS())"}], "metric math is not supported by Moorage"),
        ([_query("Upper")], "starts with a lowercase letter"),
        ([_query("a"), _query("a")], "is not unique"),
        ([_query("a", stat="tm90")], "MetricStat.Stat is not supported"),
        ([], "at least one query"),
    ],
)
async def test_metric_data_queries_refused(
    api: MetricApi, queries: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        await api.get_metric_data(
            CALLER, {"MetricDataQueries": queries, "StartTime": _at(T0), "EndTime": _at(T0 + 1)}
        )


async def test_list_metrics_with_filters(api: MetricApi, store: Store) -> None:
    write(
        store,
        "server",
        [Record("AWS/SageMaker", "Invocations", "old", "v", Sample(T0 - 4 * 3600, 1, 1, 1.0, 1.0, 1.0))],
    )
    every = await api.list_metrics(CALLER, {})
    assert every["Metrics"] == [
        {"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Dimensions": _dimensions()},
        {"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Dimensions": _dimensions("old")},
        {
            "Namespace": "AWS/SageMaker",
            "MetricName": "ModelLatency",
            "Dimensions": _dimensions(variant="shadow"),
        },
    ]
    recent = await api.list_metrics(CALLER, {"RecentlyActive": "PT3H"})
    assert [m["Dimensions"][0]["Value"] for m in recent["Metrics"]] == ["ep", "ep"]
    named = await api.list_metrics(CALLER, {"MetricName": "ModelLatency", "Namespace": "AWS/SageMaker"})
    assert len(named["Metrics"]) == 1
    by_value = await api.list_metrics(CALLER, {"Dimensions": [{"Name": "VariantName", "Value": "shadow"}]})
    assert [m["MetricName"] for m in by_value["Metrics"]] == ["ModelLatency"]
    by_name = await api.list_metrics(CALLER, {"Dimensions": [{"Name": "ContainerName"}]})
    assert by_name["Metrics"] == []
    with pytest.raises(InvalidParameterValue):
        await api.list_metrics(CALLER, {"NextToken": "x"})
