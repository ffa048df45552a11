"""What an alarm's state should be, given its metric's recent datapoints: CloudWatch's rules, pure.

The alarm looks at an evaluation range of a few more periods than EvaluationPeriods (N). With at least
N real datapoints in it, the N most recent decide: DatapointsToAlarm (M) of them breaching is ALARM,
fewer is OK, and TreatMissingData plays no part. With fewer, the missing ones are filled in as few times
as needed to make N, as TreatMissingData says: `breaching` and `notBreaching` count them so;
`missing` and `ignore` leave them out and decide only what the real ones already decide (M breaching:
ALARM; too many not breaching for M to be reached: OK; otherwise the state stays). With no real
datapoint at all, `missing` is INSUFFICIENT_DATA and `ignore` keeps the state.

The StateReason and StateReasonData are worded as CloudWatch words them."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from moorage.monitoring.series import Statistic, parse_statistic

EXTRA_PERIODS = 2  # the evaluation range: EvaluationPeriods and this many periods before them
_COMPARISONS: dict[str, tuple[str, Callable[[float, float], bool]]] = {
    "GreaterThanOrEqualToThreshold": ("greater than or equal to", operator.ge),
    "GreaterThanThreshold": ("greater than", operator.gt),
    "LessThanThreshold": ("less than", operator.lt),
    "LessThanOrEqualToThreshold": ("less than or equal to", operator.le),
}
_MISSING_TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


@dataclass(frozen=True)
class Rule:
    """The members of PutMetricAlarm that evaluation reads."""

    namespace: str
    metric_name: str
    dimensions: dict[str, str]
    statistic: Statistic
    period: int
    unit: str | None
    evaluation_periods: int
    datapoints_to_alarm: int
    threshold: float
    comparison: str
    treat_missing: str
    ignore_low_samples: bool  # EvaluateLowSampleCountPercentile=ignore

    @property
    def range_periods(self) -> int:
        return self.evaluation_periods + EXTRA_PERIODS

    @classmethod
    def of(cls, spec: dict[str, Any]) -> Rule | None:
        """None for an alarm this server does not evaluate (metric math, anomaly detection bands)."""
        name = spec.get("Statistic") or spec.get("ExtendedStatistic")
        statistic = parse_statistic(name) if isinstance(name, str) else None
        comparison = spec.get("ComparisonOperator")
        needed = ("MetricName", "Namespace", "Period", "EvaluationPeriods", "Threshold")
        if statistic is None or comparison not in _COMPARISONS or any(spec.get(m) is None for m in needed):
            return None
        periods = int(spec["EvaluationPeriods"])
        treat = spec.get("TreatMissingData") or "missing"
        return cls(
            namespace=spec["Namespace"],
            metric_name=spec["MetricName"],
            dimensions={d["Name"]: d["Value"] for d in spec.get("Dimensions") or []},
            statistic=statistic,
            period=int(spec["Period"]),
            unit=spec.get("Unit"),
            evaluation_periods=periods,
            datapoints_to_alarm=int(spec.get("DatapointsToAlarm") or periods),
            threshold=float(spec["Threshold"]),
            comparison=comparison,
            treat_missing=treat if treat in _MISSING_TREATMENTS else "missing",
            ignore_low_samples=spec.get("EvaluateLowSampleCountPercentile") == "ignore",
        )

    def breaches(self, value: float) -> bool:
        return _COMPARISONS[self.comparison][1](value, self.threshold)


@dataclass(frozen=True)
class Point:
    """One period of the evaluation range: its datapoint, or None where there is none."""

    start: float
    value: float | None
    count: int = 0  # the period's SampleCount


@dataclass(frozen=True)
class Verdict:
    state: str
    reason: str
    data: dict[str, Any]


def decide(rule: Rule, points: Sequence[Point], state: str, now: float) -> Verdict | None:
    """The state the alarm should be in, with its reason; None where the datapoints leave it as it is.
    `points`: the evaluation range, oldest first, every period of it present."""
    n, m = rule.evaluation_periods, rule.datapoints_to_alarm
    real = [p for p in reversed(points) if p.value is not None]  # most recent first
    if len(real) >= n:
        real = real[:n]
    if rule.ignore_low_samples and rule.statistic.percentile is not None:
        needed = 10 / max(1e-9, 1 - rule.statistic.percentile / 100)
        if any(p.count < needed for p in real):
            return None  # too few samples for the percentile to mean anything
    fill = n - len(real)
    breaching = [p for p in real if rule.breaches(_value(p))]
    fine = [p for p in real if not rule.breaches(_value(p))]
    filled_breaching = fill if rule.treat_missing == "breaching" else 0
    filled_fine = fill if rule.treat_missing == "notBreaching" else 0
    if not real and rule.treat_missing in ("missing", "ignore"):
        if rule.treat_missing == "ignore":
            return None
        reason = f"Insufficient Data: {_count(n, 'datapoint')} {_was(n)} unknown."
        return Verdict("INSUFFICIENT_DATA", reason, _data(rule, points, real, fill, now))
    if len(breaching) + filled_breaching >= m:
        new = "ALARM"
        reason = _crossed(rule, real, breaching, fill, state, new, minimum=m)
    elif len(fine) + filled_fine > n - m:
        new = "OK"
        reason = _crossed(rule, real, fine, fill, state, new, minimum=n - m + 1)
    else:
        return None
    return Verdict(new, reason, _data(rule, points, real, fill, now))


def _value(point: Point) -> float:
    assert point.value is not None
    return point.value


def _crossed(
    rule: Rule, real: list[Point], shown: list[Point], fill: int, old: str, new: str, minimum: int
) -> str:
    """ "Threshold Crossed: 1 out of the last 1 datapoints [5.0 (06/12/26 01:30:00)] was greater than
    the threshold (0.0) (minimum 1 datapoint for OK -> ALARM transition)." and its variants."""
    treated = "Breaching" if rule.treat_missing == "breaching" else "NonBreaching"
    filled = f"{_count(fill, 'missing datapoint')} {_was(fill)} treated as [{treated}]."
    if not real:
        return f"Threshold Crossed: no datapoints were received for {_count(fill, 'period')} and {filled}"
    operator = _COMPARISONS[rule.comparison][0]
    relation = operator if new == "ALARM" else f"not {operator}"
    values = ", ".join(f"{_java_double(_value(p))} ({_reason_time(p.start)})" for p in shown)
    reason = (
        f"Threshold Crossed: {len(shown)} out of the last {len(real)} datapoints [{values}] "
        f"{_was(len(shown))} {relation} the threshold ({_java_double(rule.threshold)}) "
        f"(minimum {_count(minimum, 'datapoint')} for {old} -> {new} transition)."
    )
    if fill and rule.treat_missing in ("breaching", "notBreaching"):
        reason += f" {filled}"
    return reason


def _data(rule: Rule, points: Sequence[Point], real: list[Point], fill: int, now: float) -> dict[str, Any]:
    """StateReasonData, as CloudWatch writes it."""
    evaluated = list(real)
    missing = [p for p in reversed(points) if p.value is None][:fill]
    evaluated = sorted([*evaluated, *missing], key=lambda p: p.start, reverse=True)
    data: dict[str, Any] = {"version": "1.0", "queryDate": _iso(now)}
    if evaluated:
        data["startDate"] = _iso(evaluated[-1].start)
    if rule.statistic.percentile is None:
        data["statistic"] = rule.statistic.name
    else:
        data["extendedStatistic"] = rule.statistic.name
    if rule.unit is not None:
        data["unit"] = rule.unit
    data["period"] = rule.period
    data["recentDatapoints"] = [p.value for p in reversed(evaluated) if p.value is not None]
    data["threshold"] = rule.threshold
    data["evaluatedDatapoints"] = [
        {"timestamp": _iso(p.start), "sampleCount": float(p.count), "value": p.value}
        if p.value is not None
        else {"timestamp": _iso(p.start)}
        for p in evaluated
    ]
    return data


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _was(n: int) -> str:
    return "was" if n == 1 else "were"


def _reason_time(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%d/%m/%y %H:%M:%S")


def _iso(at: float) -> str:
    moment = datetime.fromtimestamp(at, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _java_double(value: float) -> str:
    """A double as CloudWatch (Java) prints it: 5.0, 0.25, 1.0E7."""
    if value == 0 or not math.isfinite(value):
        return "0.0" if value == 0 else str(value)
    if 1e-3 <= abs(value) < 1e7:
        return repr(float(value))
    number = Decimal(repr(float(value)))
    sign, digits, _ = number.as_tuple()
    mantissa = f"{digits[0]}." + ("".join(map(str, digits[1:])).rstrip("0") or "0")
    return f"{'-' if sign else ''}{mantissa}E{number.adjusted()}"
