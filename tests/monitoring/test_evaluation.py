"""Alarm evaluation over the stored history: the state an alarm's datapoints call for is written with
its reason and a history item, only on a change, and a period counts once its rows are in."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from moorage.monitoring.evaluation import SETTLE_SECONDS, AlarmEvaluator
from moorage.monitoring.history import Record, write
from moorage.monitoring.series import Sample
from moorage.store import Store
from moorage.store.tables import AlarmHistoryRow, AlarmRow
from tests.monitoring.conftest import T0
from tests.support.clock import FakeClock


def _alarm(store: Store, **spec: Any) -> None:
    with store.session() as session:
        session.add(
            AlarmRow(
                name="errors",
                arn="arn:aws:cloudwatch:us-west-2:123456789012:alarm:errors",
                spec={
                    "Namespace": "AWS/SageMaker",
                    "MetricName": "Invocation5XXErrors",
                    "Dimensions": [
                        {"Name": "EndpointName", "Value": "ep"},
                        {"Name": "VariantName", "Value": "v"},
                    ],
                    "Statistic": "Sum",
                    "Period": 1,
                    "EvaluationPeriods": 1,
                    "Threshold": 0.0,
                    "ComparisonOperator": "GreaterThanThreshold",
                    **spec,
                },
                state="INSUFFICIENT_DATA",
                state_reason="Unchecked: Initial alarm creation",
                state_updated=T0,
                state_transitioned=T0,
                configuration_updated=T0,
                tags=[],
            )
        )


def _errors(store: Store, at: float, requests: int, errors: int) -> None:
    sample = Sample(at, 1, requests, float(errors), 0.0 if errors < requests else 1.0, 1.0 if errors else 0.0)
    write(store, "server", [Record("AWS/SageMaker", "Invocation5XXErrors", "ep", "v", sample)])


def _state(store: Store) -> tuple[str, str]:
    with store.session() as session:
        alarm = session.scalars(select(AlarmRow)).one()
        return alarm.state, alarm.state_reason


def test_an_alarm_follows_its_metric_through_alarm_and_back(store: Store) -> None:
    _alarm(store, TreatMissingData="notBreaching")
    evaluator = AlarmEvaluator(store, FakeClock(T0), resolution_seconds=1)
    assert evaluator.evaluate_all(T0 + 1 + SETTLE_SECONDS) == 1  # no data, treated as not breaching
    assert _state(store)[0] == "OK"
    _errors(store, T0 + 1, 4, 2)
    # the interval [T0 + 1, T0 + 2) is taken to be written only SETTLE_SECONDS after it ends
    assert evaluator.evaluate_all(T0 + 2) == 0
    assert evaluator.evaluate_all(T0 + 2 + SETTLE_SECONDS) == 1
    state, reason = _state(store)
    assert state == "ALARM"
    assert reason.startswith("Threshold Crossed: 1 out of the last 1 datapoints [2.0 (06/12/26 01:30:01)]")
    assert evaluator.evaluate_all(T0 + 2.9) == 0  # the same datapoint: no new history item
    _errors(store, T0 + 2, 3, 0)
    assert evaluator.evaluate_all(T0 + 3 + SETTLE_SECONDS) == 1
    assert _state(store)[0] == "OK"
    with store.session() as session:
        items = session.scalars(select(AlarmHistoryRow).order_by(AlarmHistoryRow.id)).all()
    assert [item.summary for item in items] == [
        "Alarm updated from INSUFFICIENT_DATA to OK",
        "Alarm updated from OK to ALARM",
        "Alarm updated from ALARM to OK",
    ]
    alarm_data = json.loads(items[1].data)["newState"]["stateReasonData"]
    assert alarm_data["recentDatapoints"] == [2.0] and alarm_data["period"] == 1


def test_an_alarm_without_data_is_insufficient_data_by_default_and_ignored_metrics_change_nothing(
    store: Store,
) -> None:
    _alarm(store, MetricName="NotAMetric")
    evaluator = AlarmEvaluator(store, FakeClock(T0), resolution_seconds=1)
    assert evaluator.evaluate_all(T0 + 10) == 0  # already INSUFFICIENT_DATA
    with store.session() as session:
        session.scalars(select(AlarmRow)).one().spec = {
            "Metrics": [{"Id": "m1"}]
        }  # metric math: not evaluated
    assert evaluator.evaluate_all(T0 + 10) == 0


def test_longer_periods_wait_for_their_last_interval(store: Store) -> None:
    _alarm(store, Period=60)
    evaluator = AlarmEvaluator(store, FakeClock(T0), resolution_seconds=1)
    assert evaluator.last_complete_period(60, T0 + 60) == T0 - 60
    assert evaluator.last_complete_period(60, T0 + 60 + SETTLE_SECONDS) == T0
    _errors(store, T0 + 59, 1, 1)
    evaluator.evaluate_all(T0 + 60 + SETTLE_SECONDS)
    assert _state(store)[0] == "ALARM"


def test_an_alarm_that_cannot_be_evaluated_leaves_the_others_evaluated(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    _alarm(store, TreatMissingData="breaching")
    with store.session() as session:  # sorts first; a spec this server cannot read
        broken = session.scalars(select(AlarmRow)).one()
        session.add(
            AlarmRow(
                name="broken",
                arn=broken.arn.replace(":errors", ":broken"),
                spec={**broken.spec, "EvaluationPeriods": "three"},
                state="INSUFFICIENT_DATA",
                state_reason="Unchecked: Initial alarm creation",
                state_updated=T0,
                state_transitioned=T0,
                configuration_updated=T0,
                tags=[],
            )
        )
    evaluator = AlarmEvaluator(store, FakeClock(T0), resolution_seconds=1)
    assert evaluator.evaluate_all(T0 + 1 + SETTLE_SECONDS) == 1
    assert evaluator.evaluate_all(T0 + 2 + SETTLE_SECONDS) == 0
    with store.session() as session:
        states = dict(session.execute(select(AlarmRow.name, AlarmRow.state)).tuples().all())
    assert states == {"broken": "INSUFFICIENT_DATA", "errors": "ALARM"}
    assert [r.message for r in caplog.records].count(
        "alarm broken cannot be evaluated; its state stays as it is"
    ) == 1
