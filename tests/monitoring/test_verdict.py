"""Alarm decisions: M of N datapoints, each TreatMissingData, the evaluation range, the comparison
operators, low-sample percentiles, and CloudWatch's StateReason and StateReasonData."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.monitoring.verdict import Point, Rule, decide

T0 = 1_796_520_600.0  # 2026-12-06 01:30:00 UTC
NOW = T0 + 65


def _rule(**spec: Any) -> Rule:
    rule = Rule.of(
        {
            "Namespace": "AWS/SageMaker",
            "MetricName": "Invocation5XXErrors",
            "Dimensions": [{"Name": "EndpointName", "Value": "ep"}, {"Name": "VariantName", "Value": "v"}],
            "Statistic": "Sum",
            "Period": 60,
            "EvaluationPeriods": 1,
            "Threshold": 0.0,
            "ComparisonOperator": "GreaterThanThreshold",
            **spec,
        }
    )
    assert rule is not None
    return rule


def _points(*values: float | None) -> list[Point]:
    """The evaluation range, oldest first, one minute apart, ending at the minute from T0."""
    first = T0 - (len(values) - 1) * 60
    return [Point(first + i * 60, v, 0 if v is None else 5) for i, v in enumerate(values)]


def test_a_breaching_datapoint_sets_off_the_alarm_in_cloudwatchs_words() -> None:
    verdict = decide(_rule(), _points(None, None, 5.0), "OK", NOW)
    assert verdict is not None and verdict.state == "ALARM"
    assert verdict.reason == (
        "Threshold Crossed: 1 out of the last 1 datapoints [5.0 (06/12/26 01:30:00)] was greater than the "
        "threshold (0.0) (minimum 1 datapoint for OK -> ALARM transition)."
    )
    assert verdict.data == {
        "version": "1.0",
        "queryDate": "2026-12-06T01:31:05.000+0000",
        "startDate": "2026-12-06T01:30:00.000+0000",
        "statistic": "Sum",
        "period": 60,
        "recentDatapoints": [5.0],
        "threshold": 0.0,
        "evaluatedDatapoints": [
            {"timestamp": "2026-12-06T01:30:00.000+0000", "sampleCount": 5.0, "value": 5.0}
        ],
    }


def test_back_to_ok_once_the_datapoints_stop_breaching() -> None:
    verdict = decide(_rule(), _points(5.0, 5.0, 0.0), "ALARM", NOW)
    assert verdict is not None and verdict.state == "OK"
    assert verdict.reason == (
        "Threshold Crossed: 1 out of the last 1 datapoints [0.0 (06/12/26 01:30:00)] was not greater than "
        "the threshold (0.0) (minimum 1 datapoint for ALARM -> OK transition)."
    )


@pytest.mark.parametrize(
    ("values", "state"),
    [
        ((0.0, 3.0, 0.0, 2.0, 4.0), "ALARM"),  # 2 of the last 3 breach
        ((3.0, 3.0, 0.0, 0.0, 4.0), "OK"),  # only 1 of the last 3
        ((3.0, 3.0, 3.0, None, 0.0), "ALARM"),  # a missing one: the range's older real ones count instead
    ],
)
def test_m_out_of_n(values: tuple[float | None, ...], state: str) -> None:
    verdict = decide(
        _rule(EvaluationPeriods=3, DatapointsToAlarm=2), _points(*values), "INSUFFICIENT_DATA", NOW
    )
    assert verdict is not None and verdict.state == state


def test_several_breaching_datapoints_are_listed_newest_first() -> None:
    verdict = decide(
        _rule(EvaluationPeriods=3, DatapointsToAlarm=2), _points(0.0, 0.0, 2.0, 0.0, 4.0), "OK", NOW
    )
    assert verdict is not None
    assert verdict.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints "
        "[4.0 (06/12/26 01:30:00), 2.0 (06/12/26 01:28:00)] were greater than the threshold (0.0) "
        "(minimum 2 datapoints for OK -> ALARM transition)."
    )
    assert verdict.data["recentDatapoints"] == [2.0, 0.0, 4.0]
    assert verdict.data["startDate"] == "2026-12-06T01:28:00.000+0000"


@pytest.mark.parametrize(
    ("treat", "state", "reason"),
    [
        ("missing", "INSUFFICIENT_DATA", "Insufficient Data: 1 datapoint was unknown."),
        ("ignore", None, None),
        (
            "breaching",
            "ALARM",
            "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was "
            "treated as [Breaching].",
        ),
        (
            "notBreaching",
            "OK",
            "Threshold Crossed: no datapoints were received for 1 period and 1 missing datapoint was "
            "treated as [NonBreaching].",
        ),
    ],
)
def test_no_data_at_all_is_treated_as_treat_missing_data_says(
    treat: str, state: str | None, reason: str | None
) -> None:
    verdict = decide(_rule(TreatMissingData=treat), _points(None, None, None), "OK", NOW)
    got = (verdict.state, verdict.reason) if verdict is not None else (None, None)
    assert got == (state, reason)


def test_missing_data_is_the_default_treatment() -> None:
    verdict = decide(_rule(), _points(None, None, None), "ALARM", NOW)
    assert verdict is not None and verdict.state == "INSUFFICIENT_DATA"


@pytest.mark.parametrize(
    ("treat", "values", "state"),
    [
        # 3 of 3 to alarm, only one real datapoint in the range
        ("missing", (None, None, None, None, 5.0), None),  # cannot tell yet: the state stays
        ("ignore", (None, None, None, None, 5.0), None),
        ("breaching", (None, None, None, None, 5.0), "ALARM"),  # the two missing ones breach too
        ("notBreaching", (None, None, None, None, 5.0), "OK"),
        ("missing", (None, None, None, None, 0.0), "OK"),  # 3 of 3 can no longer be reached
    ],
)
def test_some_data_missing(treat: str, values: tuple[float | None, ...], state: str | None) -> None:
    rule = _rule(EvaluationPeriods=3, TreatMissingData=treat)
    verdict = decide(rule, _points(*values), "INSUFFICIENT_DATA", NOW)
    assert (verdict.state if verdict else None) == state


def test_missing_datapoints_treated_as_breaching_are_named_in_the_reason() -> None:
    rule = _rule(EvaluationPeriods=2, TreatMissingData="breaching")
    verdict = decide(rule, _points(None, None, None, 3.0), "OK", NOW)
    assert verdict is not None and verdict.state == "ALARM"
    assert verdict.reason.endswith(" 1 missing datapoint was treated as [Breaching].")
    assert verdict.data["evaluatedDatapoints"][1] == {"timestamp": "2026-12-06T01:29:00.000+0000"}


@pytest.mark.parametrize(
    ("operator", "breaching", "fine"),
    [
        ("GreaterThanOrEqualToThreshold", 1.0, 0.5),
        ("GreaterThanThreshold", 1.5, 1.0),
        ("LessThanThreshold", 0.5, 1.0),
        ("LessThanOrEqualToThreshold", 1.0, 1.5),
    ],
)
def test_comparison_operators(operator: str, breaching: float, fine: float) -> None:
    rule = _rule(ComparisonOperator=operator, Threshold=1.0)
    alarm = decide(rule, _points(breaching), "OK", NOW)
    ok = decide(rule, _points(fine), "ALARM", NOW)
    assert alarm is not None and alarm.state == "ALARM"
    assert ok is not None and ok.state == "OK"


def test_a_percentile_over_too_few_samples_changes_nothing_when_told_to_ignore_them() -> None:
    spec = {"Statistic": None, "ExtendedStatistic": "p99", "MetricName": "ModelLatency", "Threshold": 100.0}
    few = [Point(T0, 500.0, 50)]  # p99 needs 1,000 samples
    assert decide(_rule(**spec, EvaluateLowSampleCountPercentile="ignore"), few, "OK", NOW) is None
    verdict = decide(_rule(**spec), few, "OK", NOW)
    assert verdict is not None and verdict.state == "ALARM"
    assert verdict.data["extendedStatistic"] == "p99"


def test_large_and_small_values_are_printed_as_java_prints_doubles() -> None:
    verdict = decide(_rule(Threshold=1e7), _points(2.5e7), "OK", NOW)
    assert verdict is not None
    assert "[2.5E7 (06/12/26 01:30:00)]" in verdict.reason and "threshold (1.0E7)" in verdict.reason


def test_alarms_this_server_does_not_evaluate() -> None:
    base = {"Namespace": "AWS/SageMaker", "MetricName": "Invocations", "Period": 60, "EvaluationPeriods": 1}
    assert (
        Rule.of(
            {**base, "Threshold": 1.0, "ComparisonOperator": "GreaterThanUpperThreshold", "Statistic": "Sum"}
        )
        is None
    )
    assert Rule.of({"Metrics": [{"Id": "m1"}], "EvaluationPeriods": 1, "Threshold": 1.0}) is None
