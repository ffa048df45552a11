"""CloudWatch over the metric history, through the real boto3 `cloudwatch` client: what
GetMetricStatistics, GetMetricData and ListMetrics say matches the requests sent, and an alarm on the
5xx errors of a variant goes OK -> ALARM -> OK with the requests, its history showing each change."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from tests.e2e.conftest import deploy, unique
from tests.support.moorage_server import RunningServer, moorage_server

T = TypeVar("T")
ENV = {
    "MOORAGE_METRIC_RESOLUTION_SECONDS": "1",
    "MOORAGE_ALARM_EVALUATION_SECONDS": "0.5",
    "MOORAGE_ALARM_MIN_PERIOD_SECONDS": "1",
}
OK, CRASHES, REFUSED = 20, 3, 2
SENT = OK + CRASHES + REFUSED


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("state"), env=ENV) as running:
        yield running


@pytest.fixture(scope="module")
def cw(server: RunningServer) -> Any:
    return server.client("cloudwatch")


@pytest.fixture(scope="module")
def endpoint(sm: Any, echo_model: str) -> str:
    return deploy(sm, echo_model)


def _invoke(smr: Any, endpoint: str, body: bytes, content_type: str = "application/json") -> None:
    with contextlib.suppress(smr.exceptions.ModelError):  # the crashes and refusals are meant
        smr.invoke_endpoint(EndpointName=endpoint, ContentType=content_type, Body=body)


def _until(check: Callable[[], T | None], what: str, timeout: float = 20) -> T:
    deadline = time.monotonic() + timeout
    while (found := check()) is None:
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


def _dimensions(endpoint: str) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]


@pytest.fixture(scope="module")
def traffic(smr: Any, endpoint: str) -> datetime:
    """The requests every test here looks at; returns when they started."""
    began = datetime.now(UTC)
    for _ in range(OK):
        _invoke(smr, endpoint, b'{"sleep": 0.005}')
    for _ in range(CRASHES):  # predict_fn raises: the model answers 500
        _invoke(smr, endpoint, b'{"crash": "x"}')
    for _ in range(REFUSED):  # input_fn refuses the content type: 415
        _invoke(smr, endpoint, b"hi", content_type="text/plain")
    return began


def test_statistics_count_what_was_sent(cw: Any, endpoint: str, traffic: datetime) -> None:
    window = {
        "Namespace": "AWS/SageMaker",
        "Dimensions": _dimensions(endpoint),
        "StartTime": traffic - timedelta(minutes=5),
        "EndTime": traffic + timedelta(minutes=5),
        "Period": 600,
    }

    def sums(metric: str) -> list[float]:
        answer = cw.get_metric_statistics(MetricName=metric, Statistics=["Sum", "SampleCount"], **window)
        return [point["Sum"] for point in answer["Datapoints"]]

    _until(lambda: True if sum(sums("Invocations")) == SENT else None, f"Invocations to reach {SENT}")
    assert sum(sums("Invocation5XXErrors")) == CRASHES
    assert sum(sums("Invocation4XXErrors")) == REFUSED
    assert sum(sums("InvocationModelErrors")) == CRASHES + REFUSED
    assert sum(sums("InvocationsPerInstance")) == SENT  # one instance
    latency = cw.get_metric_statistics(
        MetricName="ModelLatency", ExtendedStatistics=["p50", "p99"], Unit="Microseconds", **window
    )["Datapoints"]
    assert latency and all(p["Unit"] == "Microseconds" for p in latency)
    for point in latency:
        assert 0 < point["ExtendedStatistics"]["p50"] <= point["ExtendedStatistics"]["p99"]
    assert (
        cw.get_metric_statistics(MetricName="Invocations", Statistics=["Sum"], Unit="Seconds", **window)[
            "Datapoints"
        ]
        == []
    )


def test_metric_data_and_list_metrics(cw: Any, endpoint: str, traffic: datetime) -> None:
    def query(id_: str, metric: str, stat: str) -> dict[str, Any]:
        metric_of = {"Namespace": "AWS/SageMaker", "MetricName": metric, "Dimensions": _dimensions(endpoint)}
        return {"Id": id_, "MetricStat": {"Metric": metric_of, "Period": 1, "Stat": stat}}

    def data() -> dict[str, list[float]] | None:
        answer = cw.get_metric_data(
            MetricDataQueries=[
                query("calls", "Invocations", "Sum"),
                query("crashes", "Invocation5XXErrors", "Sum"),
                query("slowest", "ModelLatency", "p90"),
            ],
            StartTime=traffic - timedelta(minutes=1),
            EndTime=traffic + timedelta(minutes=10),
        )
        assert all(r["StatusCode"] == "Complete" for r in answer["MetricDataResults"])
        values = {r["Id"]: r["Values"] for r in answer["MetricDataResults"]}
        return values if sum(values["calls"]) == SENT else None

    values = _until(data, f"GetMetricData's Invocations to reach {SENT}")
    assert sum(values["crashes"]) == CRASHES
    assert values["slowest"] and all(v > 0 for v in values["slowest"])

    with pytest.raises(cw.exceptions.ClientError, match="metric math is not supported"):
        cw.get_metric_data(
            MetricDataQueries=[{"Id": "e1", "Expression": "SUM(METRICS())"}],
            StartTime=traffic,
            EndTime=traffic + timedelta(minutes=1),
        )
    listed = cw.list_metrics(
        Namespace="AWS/SageMaker", Dimensions=[{"Name": "EndpointName", "Value": endpoint}]
    )
    names = {m["MetricName"] for m in listed["Metrics"]}
    assert {"Invocations", "Invocation5XXErrors", "ModelLatency", "OverheadLatency"} <= names
    assert all(m["Dimensions"] == _dimensions(endpoint) for m in listed["Metrics"])


def test_an_alarm_fires_on_errors_and_clears_after(
    cw: Any, smr: Any, endpoint: str, traffic: datetime
) -> None:
    def quiet() -> bool | None:
        """Whether a datapoint without errors, newer than the errors sent before and old enough to be
        evaluated, is there: the alarm then starts from it rather than from those errors."""
        _invoke(smr, endpoint, b"{}")
        now = datetime.now(UTC)
        points = cw.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="Invocation5XXErrors",
            Dimensions=_dimensions(endpoint),
            StartTime=now - timedelta(minutes=1),
            EndTime=now + timedelta(minutes=1),
            Period=1,
            Statistics=["Sum"],
        )["Datapoints"]
        errors = max((p["Timestamp"] for p in points if p["Sum"] > 0), default=now - timedelta(hours=1))
        clean = [p for p in points if p["Sum"] == 0 and errors < p["Timestamp"] <= now - timedelta(seconds=2)]
        return True if clean else None

    _until(quiet, "a datapoint without errors")
    name = unique("errors")
    cw.put_metric_alarm(
        AlarmName=name,
        Namespace="AWS/SageMaker",
        MetricName="Invocation5XXErrors",
        Dimensions=_dimensions(endpoint),
        Statistic="Sum",
        Period=1,
        EvaluationPeriods=1,
        Threshold=0,
        ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )

    def state(wanted: str, send: bytes | None = None) -> dict[str, Any] | None:
        if send is not None:
            _invoke(smr, endpoint, send)
        [alarm] = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        return alarm if alarm["StateValue"] == wanted else None

    _until(lambda: state("OK"), "the new alarm to be OK")
    alarm = _until(lambda: state("ALARM", send=b'{"crash": "x"}'), "the alarm to fire on 5xx errors")
    assert alarm["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [")
    assert "was greater than the threshold (0.0)" in alarm["StateReason"]
    _until(lambda: state("OK", send=b"{}"), "the alarm to clear once the requests succeed")
    history = cw.describe_alarm_history(AlarmName=name, HistoryItemType="StateUpdate")["AlarmHistoryItems"]
    assert [item["HistorySummary"] for item in history] == [
        "Alarm updated from ALARM to OK",
        "Alarm updated from OK to ALARM",
        "Alarm updated from INSUFFICIENT_DATA to OK",
    ]
