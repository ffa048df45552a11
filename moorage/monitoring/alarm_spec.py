"""What PutMetricAlarm accepts beyond the model's own checks: a static-threshold alarm on one metric
(Namespace, MetricName, Dimensions, Statistic or a percentile ExtendedStatistic), the rules CloudWatch
applies to its period and evaluation range, and a clear refusal of the kinds of alarm Moorage does not
evaluate (metric math, anomaly detection, PromQL, warm-up, wall-clock windows)."""

from __future__ import annotations

import math
import re
from typing import Any

from moorage.api.cloudwatch.errors import (
    InvalidParameterCombination,
    InvalidParameterValue,
    MissingParameter,
    ValidationError,
)
from moorage.monitoring.series import parse_statistic

Params = dict[str, Any]
# the PutMetricAlarm members a single-metric, static-threshold alarm needs
REQUIRED = ("Namespace", "MetricName", "Period", "EvaluationPeriods", "Threshold", "ComparisonOperator")
TREAT_MISSING_DATA = ("breaching", "notBreaching", "ignore", "missing")
LOW_SAMPLE_COUNT = ("evaluate", "ignore")
ANOMALY_OPERATORS = frozenset(
    {"LessThanLowerOrGreaterThanUpperThreshold", "LessThanLowerThreshold", "GreaterThanUpperThreshold"}
)
AWS_PERIODS = "10, 20, 30 or a multiple of 60"
MAX_EVALUATION_RANGE_SECONDS = 7 * 24 * 3600
SHORT_PERIOD_SECONDS = 3600  # alarms with a Period under this evaluate at most a day
MAX_SHORT_EVALUATION_RANGE_SECONDS = 24 * 3600
MAX_TAGS = 50
# CloudWatch's other extended statistics (trimmed mean, winsorized mean, ...): valid there, not here
_OTHER_EXTENDED = re.compile(r"(tm|tc|ts|wm)[0-9.]+|IQM|(PR|TC|TM|TS|WM)\(.*\)")
_NOT_SUPPORTED = "{what} {are} not supported by Moorage; it evaluates static-threshold alarms on one metric."
_UNSUPPORTED_MEMBERS = (
    (("Metrics", "ThresholdMetricId"), "Metric math alarms (Metrics, ThresholdMetricId)"),
    (("EvaluationCriteria", "EvaluationInterval"), "PromQL alarms (EvaluationCriteria, EvaluationInterval)"),
    (("WarmUpConfiguration",), "Warm-up periods (WarmUpConfiguration)"),
)


def metric_alarm_spec(params: Params, min_period: int) -> Params:
    """The alarm's configuration to store: the accepted PutMetricAlarm members, AlarmName and Tags
    aside. `min_period` is the server's MOORAGE_ALARM_MIN_PERIOD_SECONDS: below 10, any whole
    number of seconds from it up is a valid Period (for short tests and demos)."""
    _refuse_unsupported(params)
    missing = [name for name in REQUIRED if name not in params]
    if missing:
        several = len(missing) > 1
        raise MissingParameter(
            f"The parameter{'s' if several else ''} {', '.join(missing)} {'are' if several else 'is'} "
            "required for a metric alarm."
        )
    _check_statistic(params)
    _check_period(params["Period"], min_period)
    evaluation_periods = params["EvaluationPeriods"]
    _check_evaluation_range(params["Period"], evaluation_periods)
    datapoints = params.get("DatapointsToAlarm", evaluation_periods)
    if datapoints > evaluation_periods:
        raise InvalidParameterValue(
            f"DatapointsToAlarm ({datapoints}) must be less than or equal to EvaluationPeriods "
            f"({evaluation_periods})."
        )
    if not math.isfinite(params["Threshold"]):
        raise InvalidParameterValue(f"Threshold must be a finite number, not {params['Threshold']}.")
    _check_choice(params, "TreatMissingData", TREAT_MISSING_DATA)
    _check_choice(params, "EvaluateLowSampleCountPercentile", LOW_SAMPLE_COUNT)
    names = [dimension["Name"] for dimension in params.get("Dimensions", [])]
    if len(set(names)) != len(names):
        raise InvalidParameterValue(f"Dimensions names a dimension more than once: {', '.join(names)}.")
    check_tags(params.get("Tags", []))
    return {name: value for name, value in params.items() if name not in ("AlarmName", "Tags")}


def check_tags(tags: list[dict[str, str]]) -> None:
    keys = [tag["Key"] for tag in tags]
    if len(keys) > MAX_TAGS:
        raise InvalidParameterValue(f"An alarm may have at most {MAX_TAGS} tags; {len(keys)} were given.")
    if len(set(keys)) != len(keys):
        raise InvalidParameterValue("Tags has a key more than once; each tag key may appear only once.")


def _refuse_unsupported(params: Params) -> None:
    for members, what in _UNSUPPORTED_MEMBERS:
        if any(member in params for member in members):
            raise ValidationError(_NOT_SUPPORTED.format(what=what, are="are"))
    operator = params.get("ComparisonOperator")
    if operator in ANOMALY_OPERATORS:
        raise ValidationError(
            _NOT_SUPPORTED.format(what=f"Anomaly detection alarms (ComparisonOperator {operator})", are="are")
            + " Use GreaterThanThreshold, GreaterThanOrEqualToThreshold, LessThanThreshold or "
            "LessThanOrEqualToThreshold with a Threshold."
        )
    if "WallClockWindow" in params.get("EvaluationWindow", {}):
        raise ValidationError(
            _NOT_SUPPORTED.format(what="Wall-clock evaluation windows (EvaluationWindow)", are="are")
            + " Leave EvaluationWindow out for the default sliding window."
        )


def _check_statistic(params: Params) -> None:
    statistic, extended = params.get("Statistic"), params.get("ExtendedStatistic")
    if statistic is None and extended is None:
        raise MissingParameter("A metric alarm needs Statistic or ExtendedStatistic; neither was given.")
    if statistic is not None and extended is not None:
        raise InvalidParameterCombination("Give Statistic or ExtendedStatistic, not both.")
    if extended is None or _is_percentile(extended):
        return
    if _OTHER_EXTENDED.fullmatch(extended):
        raise ValidationError(
            _NOT_SUPPORTED.format(what=f"The extended statistic {extended}", are="is")
            + " Use a percentile such as p99 or p99.9, or a Statistic."
        )
    raise InvalidParameterValue(
        f"ExtendedStatistic {extended!r} is not a valid statistic; give a percentile such as p90 or p99.9."
    )


def _is_percentile(name: str) -> bool:
    """A percentile the evaluator computes (the same reading as GetMetricStatistics')."""
    statistic = parse_statistic(name)
    return statistic is not None and statistic.percentile is not None


def _check_period(period: int, min_period: int) -> None:
    if min_period < 10:
        if period < min_period:
            raise InvalidParameterValue(
                f"Period {period} is too short: this server accepts periods of {min_period} seconds or "
                "more (MOORAGE_ALARM_MIN_PERIOD_SECONDS)."
            )
        return
    if (period in (10, 20, 30) or period % 60 == 0) and period >= min_period:
        return
    floor = f" and at least {min_period}" if min_period > 10 else ""
    raise InvalidParameterValue(f"Period {period} is not valid: it must be {AWS_PERIODS} seconds{floor}.")


def _check_evaluation_range(period: int, evaluation_periods: int) -> None:
    """CloudWatch's bound on the data an alarm looks at: 7 days, and 1 day for periods under an hour
    (which also bounds the datapoints an evaluation reads)."""
    seconds = period * evaluation_periods
    if seconds > MAX_EVALUATION_RANGE_SECONDS:
        raise InvalidParameterValue(
            f"Period times EvaluationPeriods is {seconds} seconds; an alarm evaluates at most "
            f"{MAX_EVALUATION_RANGE_SECONDS} seconds (7 days) of data."
        )
    if period < SHORT_PERIOD_SECONDS and seconds > MAX_SHORT_EVALUATION_RANGE_SECONDS:
        raise InvalidParameterValue(
            f"Period times EvaluationPeriods is {seconds} seconds; an alarm with a Period under "
            f"{SHORT_PERIOD_SECONDS} seconds evaluates at most {MAX_SHORT_EVALUATION_RANGE_SECONDS} seconds "
            "(1 day) of data. Lower EvaluationPeriods, or raise Period."
        )


def _check_choice(params: Params, name: str, allowed: tuple[str, ...]) -> None:
    value = params.get(name)
    if value is not None and value not in allowed:
        raise InvalidParameterValue(f"{name} {value!r} is not valid; it must be one of {', '.join(allowed)}.")
