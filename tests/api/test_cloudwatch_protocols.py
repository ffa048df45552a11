"""CloudWatch on the port in each protocol a boto3 release may send (awsQuery up to botocore 1.42.6,
awsJson1_0 since, and rpc-v2-cbor, which the model also lists): real boto3 clients pinned to each one
(tests/support/cloudwatch.py) against one real `moorage serve`, answers and errors read back by
botocore's own parsers, and the wire checked to be the protocol asked for."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError

from tests.support.cloudwatch import EXTRA_OPERATION, PROTOCOLS, cloudwatch_client, wire_log
from tests.support.moorage_server import RunningServer, moorage_server

# alarm states are left as the tests set them: the evaluator's next turn is an hour away
ENV = {"MOORAGE_ALARM_EVALUATION_SECONDS": "3600"}
REGION = "us-west-2"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with moorage_server(tmp_path_factory.mktemp("cloudwatch-state"), env=ENV) as running:
        yield running


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cloudwatch-models")


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cw(server: RunningServer, models: Path, protocol: str) -> Any:
    return cloudwatch_client(server.url, protocol, models)


def alarm(name: str, **changes: Any) -> dict[str, Any]:
    """A PutMetricAlarm request with every kind of member: text that XML must escape, lists of
    structures, a percentile, integers, a double, booleans."""
    return {
        "AlarmName": name,
        "AlarmDescription": "p99.9 <latency> & 'errors' for the café endpoint",
        "ActionsEnabled": False,
        "AlarmActions": ["arn:aws:sns:us-west-2:123456789012:on-call"],
        "OKActions": [],
        "Namespace": "AWS/SageMaker",
        "MetricName": "ModelLatency",
        "Dimensions": [
            {"Name": "EndpointName", "Value": "recommender"},
            {"Name": "VariantName", "Value": "AllTraffic"},
        ],
        "ExtendedStatistic": "p99.9",
        "Period": 60,
        "Unit": "Microseconds",
        "EvaluationPeriods": 5,
        "DatapointsToAlarm": 3,
        "Threshold": 250000.5,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold",
        "TreatMissingData": "notBreaching",
        "EvaluateLowSampleCountPercentile": "ignore",
        "Tags": [{"Key": "team", "Value": "search"}],
        **changes,
    }


def error_of(call: Callable[[], Any]) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value


def code_and_status(error: ClientError) -> tuple[str, int]:
    return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]


def test_each_protocol_goes_on_the_wire_as_named(server: RunningServer, models: Path) -> None:
    for protocol in PROTOCOLS:
        client = cloudwatch_client(server.url, protocol, models)
        sent = wire_log(client)
        client.describe_alarms(AlarmNames=["nothing-here"])
        method, path, headers, body = sent[-1]
        assert method == "POST"
        if protocol == "query":
            assert path == "/" and body.startswith(b"Action=DescribeAlarms&Version=2010-08-01")
        elif protocol == "json":
            assert path == "/" and headers["x-amz-target"] == "GraniteServiceVersion20100801.DescribeAlarms"
            assert headers["content-type"] == "application/x-amz-json-1.0"
        else:
            assert path == "/service/GraniteServiceVersion20100801/operation/DescribeAlarms"
            assert headers["smithy-protocol"] == "rpc-v2-cbor"


def test_an_alarm_round_trips(cw: Any, protocol: str) -> None:
    name = f"round-trip-{protocol}"
    before = datetime.now(UTC) - timedelta(seconds=1)
    cw.put_metric_alarm(**alarm(name))
    after = datetime.now(UTC) + timedelta(seconds=1)
    described = cw.describe_alarms(AlarmNames=[name])
    assert described["CompositeAlarms"] == []
    [got] = described["MetricAlarms"]
    sent = alarm(name)
    del sent["Tags"]
    assert {key: got.get(key) for key in sent} == sent
    assert got["AlarmArn"] == f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{name}"
    assert got["InsufficientDataActions"] == []
    assert (got["StateValue"], got["StateReason"]) == (
        "INSUFFICIENT_DATA",
        "Unchecked: Initial alarm creation",
    )
    assert "StateReasonData" not in got and "Statistic" not in got
    stamps = {got[f] for f in ("AlarmConfigurationUpdatedTimestamp", "StateUpdatedTimestamp")}
    stamps.add(got["StateTransitionedTimestamp"])
    [stamp] = stamps
    assert before <= stamp <= after
    cw.delete_alarms(AlarmNames=[name])
    assert cw.describe_alarms(AlarmNames=[name])["MetricAlarms"] == []


def test_history_timestamps_cross_each_wire(cw: Any, protocol: str) -> None:
    name = f"history-{protocol}"
    start = datetime.now(UTC) - timedelta(seconds=5)
    cw.put_metric_alarm(**alarm(name))
    cw.set_alarm_state(
        AlarmName=name, StateValue="ALARM", StateReason="rehearsal", StateReasonData='{"by": "test"}'
    )
    [described] = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    assert (described["StateValue"], described["StateReason"]) == ("ALARM", "rehearsal")
    assert json.loads(described["StateReasonData"]) == {"by": "test"}
    items = cw.describe_alarm_history(AlarmName=name, StartDate=start, EndDate=start + timedelta(minutes=1))
    kinds = [item["HistoryItemType"] for item in items["AlarmHistoryItems"]]
    assert kinds == ["StateUpdate", "ConfigurationUpdate"]  # newest first
    update = items["AlarmHistoryItems"][0]
    assert update["HistorySummary"] == "Alarm updated from INSUFFICIENT_DATA to ALARM"
    assert json.loads(update["HistoryData"])["newState"]["stateReasonData"] == {"by": "test"}
    assert update["Timestamp"] >= start
    later = cw.describe_alarm_history(AlarmName=name, StartDate=start + timedelta(minutes=10))
    assert later["AlarmHistoryItems"] == []
    oldest_first = cw.describe_alarm_history(AlarmName=name, ScanBy="TimestampAscending")
    assert [i["HistoryItemType"] for i in oldest_first["AlarmHistoryItems"]] == kinds[::-1]
    cw.delete_alarms(AlarmNames=[name])


def test_errors_are_cloudwatchs_in_each_protocol(cw: Any, protocol: str) -> None:
    missing = error_of(lambda: cw.delete_alarms(AlarmNames=["no-such-alarm"]))
    assert code_and_status(missing) == ("ResourceNotFound", 404)
    assert type(missing) is not ClientError  # botocore raised the model's exception class
    assert "no-such-alarm" in missing.response["Error"]["Message"]

    bad_period = error_of(lambda: cw.put_metric_alarm(**alarm("bad-period", Period=45)))
    assert isinstance(bad_period, cw.exceptions.InvalidParameterValueException)
    assert code_and_status(bad_period) == ("InvalidParameterValue", 400)
    assert "10, 20, 30 or a multiple of 60" in bad_period.response["Error"]["Message"]

    too_long = error_of(lambda: cw.put_metric_alarm(**alarm("x" * 256)))
    assert code_and_status(too_long) == ("ValidationError", 400)
    assert "Member must have length less than or equal to 255" in too_long.response["Error"]["Message"]

    token = error_of(lambda: cw.describe_alarms(NextToken="not-a-token"))
    assert isinstance(token, cw.exceptions.InvalidNextToken)

    not_served = error_of(lambda: cw.list_dashboards())
    assert code_and_status(not_served) == ("NotImplemented", 501)
    assert "ListDashboards is not supported by Moorage" in not_served.response["Error"]["Message"]

    unknown = error_of(lambda: cw.describe_moorage_nothing())
    expected = "InvalidAction" if protocol == "query" else "UnknownOperationException"
    assert code_and_status(unknown) == (expected, 400)
    assert EXTRA_OPERATION in unknown.response["Error"]["Message"]


@pytest.mark.parametrize("protocol", ["query", "json"])
def test_a_value_of_the_wrong_type_is_refused(server: RunningServer, models: Path, protocol: str) -> None:
    """botocore checks types itself; with that off it sends the text, which the server refuses."""
    cw = cloudwatch_client(server.url, protocol, models, parameter_validation=False)
    error = error_of(lambda: cw.describe_alarms(MaxRecords="many"))
    expected = "InvalidParameterValue" if protocol == "query" else "SerializationException"
    assert code_and_status(error) == (expected, 400)
    assert "Value 'many' at 'maxRecords' is not an integer" in error.response["Error"]["Message"]


def test_metric_operations_are_served(cw: Any) -> None:
    now = datetime.now(UTC)
    statistics = cw.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=[
            {"Name": "EndpointName", "Value": "no-such-endpoint"},
            {"Name": "VariantName", "Value": "A"},
        ],
        StartTime=now - timedelta(minutes=5),
        EndTime=now,
        Period=60,
        Statistics=["Sum"],
    )
    assert statistics["Datapoints"] == []
    data = cw.get_metric_data(  # nested lists of structures: the deepest form awsQuery flattens here
        MetricDataQueries=[
            {
                "Id": "errors",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": "Invocation5XXErrors",
                        "Dimensions": [
                            {"Name": "EndpointName", "Value": "no-such-endpoint"},
                            {"Name": "VariantName", "Value": "A"},
                        ],
                    },
                    "Period": 60,
                    "Stat": "Sum",
                },
            }
        ],
        StartTime=now - timedelta(minutes=5),
        EndTime=now,
    )
    [result] = data["MetricDataResults"]
    assert (result["Id"], result["Timestamps"], result["Values"]) == ("errors", [], [])
    listed = cw.list_metrics(
        Namespace="AWS/SageMaker", Dimensions=[{"Name": "EndpointName", "Value": "no-such-endpoint"}]
    )
    assert listed["Metrics"] == []


def test_unsigned_requests_find_cloudwatch_and_sts(server: RunningServer, models: Path) -> None:
    """Unsigned, a form is CloudWatch's by its Version and STS's otherwise; the rpc-v2-cbor path is
    CloudWatch's, not S3's."""
    for protocol in PROTOCOLS:
        client = cloudwatch_client(server.url, protocol, models, signature_version=UNSIGNED)
        assert client.describe_alarms(AlarmNamePrefix="unsigned")["MetricAlarms"] == []
    sts = server.client("sts", signature_version=UNSIGNED)
    assert sts.get_caller_identity()["Account"] == "123456789012"


def test_a_body_over_the_limit_is_refused_in_cbor(server: RunningServer, models: Path) -> None:
    cw = cloudwatch_client(server.url, "smithy-rpc-v2-cbor", models, parameter_validation=False)
    error = error_of(lambda: cw.put_metric_alarm(**alarm("huge", AlarmDescription="x" * 2 * 1024 * 1024)))
    assert code_and_status(error) == ("RequestEntityTooLarge", 413)
