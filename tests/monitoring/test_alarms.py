"""The alarm operations on their own store: CloudWatch's bounds on an alarm's evaluation range, and
NextTokens a client made up answered as InvalidNextToken, never as a fault of the server's."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from moorage.api.cloudwatch.errors import InvalidNextToken, InvalidParameterValue
from moorage.control.context import Caller
from moorage.monitoring.alarms import Alarms
from moorage.store import Store
from tests.monitoring.conftest import T0
from tests.support.clock import FakeClock

CALLER = Caller("us-west-2", "123456789012")


def _alarm(**changes: Any) -> dict[str, Any]:
    return {
        "AlarmName": "latency",
        "Namespace": "AWS/SageMaker",
        "MetricName": "ModelLatency",
        "Dimensions": [
            {"Name": "EndpointName", "Value": "ep"},
            {"Name": "VariantName", "Value": "v"},
        ],
        "Statistic": "Average",
        "Period": 60,
        "EvaluationPeriods": 5,
        "Threshold": 1000.0,
        "ComparisonOperator": "GreaterThanThreshold",
        **changes,
    }


async def test_periods_under_an_hour_evaluate_at_most_a_day(store: Store) -> None:
    alarms = Alarms(store, FakeClock(T0))
    await alarms.put(CALLER, _alarm(Period=60, EvaluationPeriods=1440))  # one day exactly
    await alarms.put(CALLER, _alarm(Period=3600, EvaluationPeriods=168))  # an hour or more: 7 days
    with pytest.raises(InvalidParameterValue, match="under 3600 seconds evaluates at most 86400"):
        await alarms.put(CALLER, _alarm(Period=60, EvaluationPeriods=1441))
    with pytest.raises(InvalidParameterValue, match="604800 seconds"):
        await alarms.put(CALLER, _alarm(Period=3600, EvaluationPeriods=169))


def _token(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


@pytest.mark.parametrize(
    "position",
    [
        {"at": T0, "id": 10**30},  # beyond any row id the database holds
        {"at": T0, "id": -1},
        {"at": 1e400, "id": 1},  # JSON's Infinity
        {"at": T0},
        [T0, 1],
        "x",
    ],
)
async def test_made_up_history_tokens_are_invalid_next_tokens(store: Store, position: Any) -> None:
    alarms = Alarms(store, FakeClock(T0))
    with pytest.raises(InvalidNextToken):
        await alarms.history(CALLER, {"NextToken": _token(position)})


async def test_history_and_alarms_page_with_their_own_tokens(store: Store) -> None:
    clock = FakeClock(T0)
    alarms = Alarms(store, clock)
    for n in range(3):
        await alarms.put(CALLER, _alarm(AlarmName=f"a{n}"))
        await clock.advance(1)
    first = await alarms.history(CALLER, {"MaxRecords": 2})
    rest = await alarms.history(CALLER, {"MaxRecords": 2, "NextToken": first["NextToken"]})
    names = [item["AlarmName"] for item in first["AlarmHistoryItems"] + rest["AlarmHistoryItems"]]
    assert names == ["a2", "a1", "a0"] and "NextToken" not in rest
    page = await alarms.describe(CALLER, {"MaxRecords": 2})
    more = await alarms.describe(CALLER, {"MaxRecords": 2, "NextToken": page["NextToken"]})
    assert [a["AlarmName"] for a in page["MetricAlarms"] + more["MetricAlarms"]] == ["a0", "a1", "a2"]
    with pytest.raises(InvalidNextToken):
        await alarms.describe(CALLER, {"NextToken": _token({"after": 1})})
