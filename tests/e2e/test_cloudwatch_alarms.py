"""CloudWatch alarms end to end: one `moorage serve --credentials FILE`, unchanged boto3 clients signing
with its keys. Alarm create and replace, DescribeAlarms' filters and pages, all-or-nothing
DeleteAlarms, SetAlarmState, the history each writes, PutMetricAlarm's checks, and the signature rules
(docs/security.md) in each of CloudWatch's protocols."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.cloudwatch import cloudwatch_client
from tests.support.moorage_server import RunningServer, moorage_server

REGION = "eu-west-1"
ACCOUNT = "444455556666"
KEY = ("AKIAOPSEXAMPLE000001", "ops-secret-0123456789abcdefghijklmnopqrs")
KEYS_FILE = f"""\
[ops]
aws_access_key_id = {KEY[0]}
aws_secret_access_key = {KEY[1]}
aws_account_id = {ACCOUNT}
"""
# periods of a second are allowed; the evaluator's next turn is an hour away, so states stay as set
ENV = {
    "MOORAGE_ALARM_MIN_PERIOD_SECONDS": "1",
    "MOORAGE_ALARM_EVALUATION_SECONDS": "3600",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("cloudwatch-alarms")
    keys = root / "keys"
    keys.write_text(KEYS_FILE)
    keys.chmod(0o600)
    with moorage_server(root / "state", env=ENV, args=("--no-s3", "--credentials", str(keys))) as running:
        yield running


@pytest.fixture(scope="module")
def cw(server: RunningServer) -> Any:
    return client(server)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cloudwatch-models")


def client(server: RunningServer, key: tuple[str, str] = KEY, **config: Any) -> Any:
    """boto3's own cloudwatch client, in whatever protocol the installed botocore picks."""
    return boto3.session.Session().client(
        "cloudwatch",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
    )


def put(cw: Any, name: str, **changes: Any) -> None:
    cw.put_metric_alarm(
        **{
            "AlarmName": name,
            "Namespace": "AWS/SageMaker",
            "MetricName": "Invocation5XXErrors",
            "Dimensions": [
                {"Name": "EndpointName", "Value": "guarded"},
                {"Name": "VariantName", "Value": "AllTraffic"},
            ],
            "Statistic": "Sum",
            "Period": 1,
            "EvaluationPeriods": 2,
            "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            **changes,
        }
    )


def described(cw: Any, name: str) -> dict[str, Any]:
    [alarm] = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"]
    return dict(alarm)


def history(cw: Any, name: str, **filters: Any) -> list[dict[str, Any]]:
    return list(cw.describe_alarm_history(AlarmName=name, **filters)["AlarmHistoryItems"])


def error_of(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    error: dict[str, Any] = caught.value.response["Error"]
    error["HTTPStatusCode"] = caught.value.response["ResponseMetadata"]["HTTPStatusCode"]
    return error


def test_a_new_alarm_waits_for_data_in_the_keys_account(cw: Any) -> None:
    put(cw, "fresh", Tags=[{"Key": "stage", "Value": "canary"}])
    alarm = described(cw, "fresh")
    assert alarm["AlarmArn"] == f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:fresh"
    assert alarm["StateValue"] == "INSUFFICIENT_DATA"
    assert alarm["StateReason"] == "Unchecked: Initial alarm creation"
    assert alarm["Period"] == 1  # below CloudWatch's 10: MOORAGE_ALARM_MIN_PERIOD_SECONDS=1
    assert alarm["ActionsEnabled"] is True and alarm["AlarmActions"] == []
    [created] = history(cw, "fresh")
    assert (created["HistoryItemType"], created["HistorySummary"]) == (
        "ConfigurationUpdate",
        'Alarm "fresh" created',
    )
    data = json.loads(created["HistoryData"])
    assert data["type"] == "Create" and data["createdAlarm"]["metricName"] == "Invocation5XXErrors"


def test_put_again_replaces_the_configuration_and_keeps_the_state(cw: Any) -> None:
    put(cw, "replaced", AlarmActions=["arn:aws:sns:eu-west-1:444455556666:pager"])
    cw.set_alarm_state(AlarmName="replaced", StateValue="ALARM", StateReason="drill")
    first = described(cw, "replaced")
    put(cw, "replaced", Threshold=5.0, Statistic="Maximum")
    second = described(cw, "replaced")
    assert (second["Threshold"], second["Statistic"], second["AlarmActions"]) == (5.0, "Maximum", [])
    assert (second["StateValue"], second["StateReason"]) == ("ALARM", "drill")
    assert second["AlarmArn"] == first["AlarmArn"]
    assert second["StateTransitionedTimestamp"] == first["StateTransitionedTimestamp"]
    assert second["AlarmConfigurationUpdatedTimestamp"] > first["AlarmConfigurationUpdatedTimestamp"]
    newest = history(cw, "replaced", HistoryItemType="ConfigurationUpdate")[0]
    data = json.loads(newest["HistoryData"])
    assert data["type"] == "Update" and data["updatedAlarm"]["threshold"] == 5.0
    assert data["originalUpdatedFields"] == {
        "threshold": 1.0,
        "statistic": "Sum",
        "alarmActions": ["arn:aws:sns:eu-west-1:444455556666:pager"],
    }


def test_set_alarm_state_records_each_change_of_state(cw: Any) -> None:
    put(cw, "manual")
    cw.set_alarm_state(
        AlarmName="manual", StateValue="ALARM", StateReason="by hand", StateReasonData='{"ticket": 7}'
    )
    alarm = described(cw, "manual")
    assert (alarm["StateValue"], alarm["StateReason"]) == ("ALARM", "by hand")
    assert json.loads(alarm["StateReasonData"]) == {"ticket": 7}
    transitioned = alarm["StateTransitionedTimestamp"]
    cw.set_alarm_state(AlarmName="manual", StateValue="ALARM", StateReason="still by hand")
    again = described(cw, "manual")
    assert again["StateTransitionedTimestamp"] == transitioned  # the same state: no transition
    assert again["StateUpdatedTimestamp"] > alarm["StateUpdatedTimestamp"]
    cw.set_alarm_state(AlarmName="manual", StateValue="OK", StateReason="resolved")
    updates = history(cw, "manual", HistoryItemType="StateUpdate")
    assert [item["HistorySummary"] for item in updates] == [
        "Alarm updated from ALARM to OK",
        "Alarm updated from INSUFFICIENT_DATA to ALARM",
    ]
    assert cw.describe_alarms(AlarmNames=["manual"], StateValue="OK")["MetricAlarms"]
    assert not cw.describe_alarms(AlarmNames=["manual"], StateValue="ALARM")["MetricAlarms"]

    bad = error_of(
        lambda: cw.set_alarm_state(AlarmName="manual", StateValue="OK", StateReason="x", StateReasonData="{")
    )
    assert (bad["Code"], bad["HTTPStatusCode"]) == ("InvalidFormat", 400)
    absent = error_of(lambda: cw.set_alarm_state(AlarmName="absent", StateValue="OK", StateReason="x"))
    assert (absent["Code"], absent["HTTPStatusCode"]) == ("ResourceNotFound", 404)


def test_delete_alarms_deletes_all_the_named_or_none(cw: Any) -> None:
    put(cw, "doomed-1")
    put(cw, "doomed-2")
    error = error_of(lambda: cw.delete_alarms(AlarmNames=["doomed-1", "doomed-missing"]))
    assert (error["Code"], error["HTTPStatusCode"]) == ("ResourceNotFound", 404)
    assert "doomed-missing" in error["Message"]
    assert len(cw.describe_alarms(AlarmNamePrefix="doomed-")["MetricAlarms"]) == 2
    cw.delete_alarms(AlarmNames=["doomed-1", "doomed-2"])
    assert cw.describe_alarms(AlarmNamePrefix="doomed-")["MetricAlarms"] == []
    [deleted, _created] = history(cw, "doomed-1")  # a deleted alarm's history stays readable
    assert deleted["HistorySummary"] == 'Alarm "doomed-1" deleted'
    assert json.loads(deleted["HistoryData"])["type"] == "Delete"


def test_describe_alarms_filters_and_pages(cw: Any) -> None:
    names = [f"paged-{i:02d}" for i in range(7)]
    for i, name in enumerate(names):
        actions = {"OKActions": ["arn:aws:sns:eu-west-1:444455556666:ok"]} if i % 2 else {}
        put(cw, name, **actions)
    cw.set_alarm_state(AlarmName="paged-03", StateValue="ALARM", StateReason="drill")

    pages, token = [], None
    while True:
        page = cw.describe_alarms(
            AlarmNamePrefix="paged-", MaxRecords=3, **({"NextToken": token} if token else {})
        )
        pages.append([alarm["AlarmName"] for alarm in page["MetricAlarms"]])
        token = page.get("NextToken")
        if token is None:
            break
    assert pages == [names[:3], names[3:6], names[6:]]
    paginated = cw.get_paginator("describe_alarms").paginate(
        AlarmNamePrefix="paged-", PaginationConfig={"PageSize": 2}
    )
    assert [a["AlarmName"] for page in paginated for a in page["MetricAlarms"]] == names

    by_action = cw.describe_alarms(
        AlarmNamePrefix="paged-", ActionPrefix="arn:aws:sns:eu-west-1:444455556666:ok"
    )
    assert [a["AlarmName"] for a in by_action["MetricAlarms"]] == names[1::2]
    in_alarm = cw.describe_alarms(AlarmNamePrefix="paged-", StateValue="ALARM")
    assert [a["AlarmName"] for a in in_alarm["MetricAlarms"]] == ["paged-03"]
    chosen = cw.describe_alarms(AlarmNames=["paged-05", "paged-01", "paged-nope"])
    assert [a["AlarmName"] for a in chosen["MetricAlarms"]] == ["paged-01", "paged-05"]
    composite = cw.describe_alarms(AlarmNamePrefix="paged-", AlarmTypes=["CompositeAlarm"])
    assert composite["MetricAlarms"] == [] and composite["CompositeAlarms"] == []

    both = error_of(lambda: cw.describe_alarms(AlarmNames=["paged-01"], AlarmNamePrefix="paged-"))
    assert both["Code"] == "InvalidParameterCombination"


def test_alarm_history_pages_and_filters_by_date(cw: Any) -> None:
    put(cw, "chatty")
    for state in ("ALARM", "OK", "ALARM", "OK"):
        cw.set_alarm_state(AlarmName="chatty", StateValue=state, StateReason=f"to {state}")
    everything = history(cw, "chatty")
    assert len(everything) == 5
    seen, token = [], None
    while True:
        page = cw.describe_alarm_history(
            AlarmName="chatty",
            MaxRecords=2,
            ScanBy="TimestampAscending",
            **({"NextToken": token} if token else {}),
        )
        seen += page["AlarmHistoryItems"]
        token = page.get("NextToken")
        if token is None:
            break
    assert seen == everything[::-1]
    last = everything[0]["Timestamp"]
    assert history(cw, "chatty", StartDate=last) == everything[:1]
    assert history(cw, "chatty", EndDate=last - timedelta(days=1)) == []
    assert history(cw, "chatty", AlarmTypes=["CompositeAlarm"]) == []


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"Statistic": None}, "MissingParameter", "Statistic or ExtendedStatistic"),
        ({"ExtendedStatistic": "p99"}, "InvalidParameterCombination", "not both"),
        ({"Statistic": None, "ExtendedStatistic": "tm90"}, "ValidationError", "not supported by Moorage"),
        (
            {"Statistic": None, "ExtendedStatistic": "median"},
            "InvalidParameterValue",
            "not a valid statistic",
        ),
        ({"Threshold": None}, "MissingParameter", "Threshold is required"),
        ({"DatapointsToAlarm": 3}, "InvalidParameterValue", "less than or equal to EvaluationPeriods"),
        ({"TreatMissingData": "sometimes"}, "InvalidParameterValue", "breaching, notBreaching"),
        ({"Period": 86400, "EvaluationPeriods": 8}, "InvalidParameterValue", "7 days"),
        (
            {"ComparisonOperator": "GreaterThanUpperThreshold"},
            "ValidationError",
            "Anomaly detection alarms (ComparisonOperator GreaterThanUpperThreshold) are not supported",
        ),
        (
            {
                "MetricName": None,
                "Namespace": None,
                "Statistic": None,
                "Period": None,
                "Metrics": [{"Id": "errors", "Expression": "m1 / m2 * 100", "ReturnData": True}],
            },
            "ValidationError",
            "Metric math alarms (Metrics, ThresholdMetricId) are not supported by Moorage",
        ),
        (
            {"Tags": [{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}]},
            "InvalidParameterValue",
            "tag key",
        ),
    ],
)
def test_put_metric_alarm_refuses_what_it_cannot_evaluate(
    cw: Any, changes: dict[str, Any], code: str, words: str
) -> None:
    request = {
        "AlarmName": "refused",
        "Namespace": "AWS/SageMaker",
        "MetricName": "ModelLatency",
        "Statistic": "Average",
        "Period": 1,
        "EvaluationPeriods": 2,
        "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanThreshold",
        **changes,
    }
    request = {key: value for key, value in request.items() if value is not None}
    error = error_of(lambda: cw.put_metric_alarm(**request))
    assert (error["Code"], error["HTTPStatusCode"]) == (code, 400)
    assert words in error["Message"]
    assert cw.describe_alarms(AlarmNames=["refused"])["MetricAlarms"] == []


def test_signatures_are_checked_in_every_protocol(server: RunningServer, models: Path) -> None:
    protocols = {
        "query": "SignatureDoesNotMatch",
        "json": "InvalidSignatureException",
        "smithy-rpc-v2-cbor": "InvalidSignatureException",
    }
    for protocol, wrong_secret in protocols.items():
        good = cloudwatch_client(server.url, protocol, models, key=KEY, region=REGION)
        assert good.describe_alarms(AlarmNames=["fresh-none"])["MetricAlarms"] == []
        bad = cloudwatch_client(server.url, protocol, models, key=(KEY[0], "not-the-secret"), region=REGION)
        error = error_of(lambda: bad.describe_alarms())  # noqa: B023
        assert (error["Code"], error["HTTPStatusCode"]) == (wrong_secret, 403)
        unsigned = cloudwatch_client(server.url, protocol, models, signature_version=UNSIGNED)
        error = error_of(lambda: unsigned.describe_alarms())  # noqa: B023
        missing = (
            "MissingAuthenticationToken" if protocol == "query" else "MissingAuthenticationTokenException"
        )
        assert (error["Code"], error["HTTPStatusCode"]) == (missing, 403)


@pytest.mark.parametrize("protocol", ["json", "smithy-rpc-v2-cbor"])
def test_a_signature_for_another_service_is_refused(
    server: RunningServer, models: Path, protocol: str
) -> None:
    other = cloudwatch_client(server.url, protocol, models, key=KEY, region=REGION, signing_name="sagemaker")
    error = error_of(lambda: other.describe_alarms())
    assert (error["Code"], error["HTTPStatusCode"]) == ("InvalidSignatureException", 403)
    assert "scoped to correct service: 'monitoring'" in error["Message"]
