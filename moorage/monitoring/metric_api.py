"""GetMetricStatistics, GetMetricData and ListMetrics over the metric history (docs/cloudwatch.md).

Requests are checked as CloudWatch checks them (periods, the 1,440-datapoint limit, one of Statistics
and ExtendedStatistics); a metric, dimension set or unit with no data answers no datapoints, as on AWS.
Metric math (a query's Expression) is refused with a message that says so."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from moorage.api.cloudwatch.errors import (
    InvalidNextToken,
    InvalidParameterCombination,
    InvalidParameterValue,
    ValidationError,
)
from moorage.api.cloudwatch.wire import as_datetime
from moorage.api.errors import AwsError
from moorage.clock import Clock
from moorage.control.context import Caller
from moorage.monitoring import tokens
from moorage.monitoring.catalogue import metric_info
from moorage.monitoring.queries import MetricId, metrics_since, samples_of, variant_of
from moorage.monitoring.series import Aggregate, Statistic, aggregate, parse_statistic, period_start, value
from moorage.store import Store

Params = dict[str, Any]

MAX_STATISTICS_DATAPOINTS = 1440  # GetMetricStatistics
MAX_DATA_DATAPOINTS = 100_800  # GetMetricData, per call
MAX_QUERIES = 500
LIST_PAGE = 500  # ListMetrics
RECENTLY_ACTIVE_SECONDS = 3 * 3600  # RecentlyActive=PT3H
_HIGH_RESOLUTION_PERIODS = (1, 5, 10, 20, 30)
MAX_PERIOD = 2**31 - 1  # the model's Period is an integer (32 bits)
_QUERY_ID = re.compile(r"[a-z][a-zA-Z0-9_]*")


@dataclass(frozen=True)
class _Series:
    """What one query asks for: a metric, a period and its statistics."""

    metric: MetricId | None  # None: a dimension set no metric here has
    period: int
    unit: str | None


class MetricApi:
    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def get_metric_statistics(self, caller: Caller, params: Params) -> Params:
        start, end = _epoch(params["StartTime"]), _epoch(params["EndTime"])
        period = params["Period"]
        statistics = _statistics(params)
        _check_period(period, "Period", InvalidParameterValue)
        if start >= end:
            raise InvalidParameterValue("The parameter StartTime must be less than the parameter EndTime.")
        wanted = math.ceil((end - period_start(start, period)) / period)
        if wanted > MAX_STATISTICS_DATAPOINTS:
            raise InvalidParameterCombination(
                f"You have requested up to {wanted:,} datapoints, which exceeds the limit of "
                f"{MAX_STATISTICS_DATAPOINTS:,}. You may reduce the datapoints requested by increasing "
                "Period, or decreasing the time range."
            )
        series = _series(
            params["Namespace"],
            params["MetricName"],
            params.get("Dimensions", []),
            period,
            params.get("Unit"),
        )
        periods = await self.store.run(self._periods, series, start, end)
        info = metric_info(params["Namespace"], params["MetricName"])
        bounds = info.bounds if info is not None else None
        datapoints = []
        for agg in periods:
            point: Params = {"Timestamp": as_datetime(agg.start), "Unit": info.unit if info else "None"}
            for statistic in statistics:
                if statistic.percentile is None:
                    point[statistic.name] = value(agg, statistic, bounds)
                else:
                    point.setdefault("ExtendedStatistics", {})[statistic.name] = value(agg, statistic, bounds)
            datapoints.append(point)
        return {"Label": params["MetricName"], "Datapoints": datapoints}

    async def get_metric_data(self, caller: Caller, params: Params) -> Params:
        start, end = _epoch(params["StartTime"]), _epoch(params["EndTime"])
        if start >= end:
            raise ValidationError("The parameter StartTime must be less than the parameter EndTime.")
        queries = _data_queries(params["MetricDataQueries"])
        limit = params.get("MaxDatapoints", MAX_DATA_DATAPOINTS)
        if limit < 1:
            raise ValidationError("The parameter MaxDatapoints must be greater than 0.")
        offset = _offset(params.get("NextToken"), InvalidNextToken)
        descending = params.get("ScanBy", "TimestampDescending") == "TimestampDescending"
        results: list[tuple[Params, list[tuple[float, float]]]] = []
        for query, series, statistic in queries:
            if not query.get("ReturnData", True):
                continue
            periods = await self.store.run(self._periods, series, start, end)
            info = metric_info(*_names(query))
            bounds = info.bounds if info is not None else None
            points = [(agg.start, value(agg, statistic, bounds)) for agg in periods]
            if descending:
                points.reverse()
            label = query.get("Label") or query["MetricStat"]["Metric"]["MetricName"]
            results.append(({"Id": query["Id"], "Label": label}, points))
        total = sum(len(points) for _, points in results)
        if offset > total:
            raise InvalidNextToken("The NextToken is not valid for this request.")
        page_end = offset + limit
        answered: list[Params] = []
        before = 0  # datapoints of the queries before this one
        for head, points in results:
            shown = points[max(0, offset - before) : max(0, page_end - before)]
            complete = before + len(points) <= page_end
            answered.append(
                {
                    **head,
                    "Timestamps": [as_datetime(at) for at, _ in shown],
                    "Values": [v for _, v in shown],
                    "StatusCode": "Complete" if complete else "PartialData",
                    "Messages": [],
                }
            )
            before += len(points)
        out: Params = {"MetricDataResults": answered, "Messages": []}
        if page_end < total:
            out["NextToken"] = _token(page_end)
        return out

    async def list_metrics(self, caller: Caller, params: Params) -> Params:
        since = None
        if params.get("RecentlyActive") == "PT3H":
            since = self.clock.time() - RECENTLY_ACTIVE_SECONDS
        offset = _offset(params.get("NextToken"), InvalidParameterValue)
        metrics = await self.store.run(self._metrics, since)
        wanted = [m for m in metrics if _listed(m, params)]
        page = wanted[offset : offset + LIST_PAGE]
        out: Params = {
            "Metrics": [
                {"Namespace": m.namespace, "MetricName": m.name, "Dimensions": m.dimensions} for m in page
            ]
        }
        if params.get("IncludeLinkedAccounts"):
            out["OwningAccounts"] = [caller.account] * len(page)
        if offset + LIST_PAGE < len(wanted):
            out["NextToken"] = _token(offset + LIST_PAGE)
        return out

    # --- on the store's threads ---

    def _periods(self, series: _Series, start: float, end: float) -> list[Aggregate]:
        if series.metric is None:
            return []
        info = metric_info(series.metric.namespace, series.metric.name)
        if info is None or (series.unit is not None and series.unit != info.unit):
            return []  # CloudWatch: no data for a unit the metric was not published in
        first = period_start(start, series.period)
        with self.store.session() as session:
            samples = samples_of(session, series.metric, first, end)
        return aggregate(samples, start, end, series.period)

    def _metrics(self, since: float | None) -> list[MetricId]:
        with self.store.session() as session:
            return metrics_since(session, since)


# --- checks ----------------------------------------------------------------------------------------------


def _statistics(params: Params) -> list[Statistic]:
    standard = params.get("Statistics") or []
    extended = params.get("ExtendedStatistics") or []
    if bool(standard) == bool(extended):
        raise InvalidParameterCombination(
            "Must specify either Statistics or ExtendedStatistics, but not both."
        )
    statistics = [Statistic(name) for name in dict.fromkeys(standard)]
    for name in dict.fromkeys(extended):
        parsed = parse_statistic(name)
        if parsed is None or parsed.percentile is None:
            raise InvalidParameterValue(
                f"The value {name} for parameter ExtendedStatistics is not supported by Moorage: give "
                "percentiles, p0.0 to p100 (p50, p90, p99.9)."
            )
        statistics.append(parsed)
    return statistics


def _check_period(period: int, where: str, error: type[AwsError]) -> None:
    if period in _HIGH_RESOLUTION_PERIODS or (0 < period <= MAX_PERIOD and period % 60 == 0):
        return
    raise error(
        f"The parameter {where} must be 1, 5, 10, 20, 30 or a multiple of 60 up to {MAX_PERIOD}, not "
        f"{period}."
    )


def _series(namespace: str, name: str, dimensions: list[Params], period: int, unit: str | None) -> _Series:
    named = {d["Name"]: d["Value"] for d in dimensions}
    variant = variant_of(named) if len(named) == len(dimensions) else None
    metric = MetricId(namespace, name, *variant) if variant is not None else None
    return _Series(metric, period, unit)


def _data_queries(queries: Sequence[Params]) -> list[tuple[Params, _Series, Statistic]]:
    if not queries:
        raise ValidationError("The parameter MetricDataQueries must contain at least one query.")
    if len(queries) > MAX_QUERIES:
        raise ValidationError(f"The parameter MetricDataQueries must contain at most {MAX_QUERIES} queries.")
    seen: set[str] = set()
    checked = []
    for n, query in enumerate(queries, start=1):
        where = f"MetricDataQueries.member.{n}"
        if not _QUERY_ID.fullmatch(query["Id"]):
            raise ValidationError(
                f"The value {query['Id']} for parameter {where}.Id is not valid: an Id starts with a "
                "lowercase letter and holds only letters, digits and underscores."
            )
        if query["Id"] in seen:
            raise ValidationError(f"The value {query['Id']} for parameter {where}.Id is not unique.")
        seen.add(query["Id"])
        if "Expression" in query:
            raise ValidationError(
                f"{where}.Expression: metric math is not supported by Moorage. Give each query a "
                "MetricStat (Metric, Period, Stat) instead, and do the arithmetic on the values returned."
            )
        stat = query.get("MetricStat")
        if stat is None:
            raise ValidationError(f"{where} must specify MetricStat (Moorage does not support Expression).")
        metric = stat["Metric"]
        for member in ("Namespace", "MetricName"):
            if not metric.get(member):
                raise ValidationError(f"The parameter {where}.MetricStat.Metric.{member} is required.")
        statistic = parse_statistic(stat["Stat"])
        if statistic is None:
            raise ValidationError(
                f"The value {stat['Stat']} for parameter {where}.MetricStat.Stat is not supported by "
                "Moorage: give SampleCount, Average, Sum, Minimum, Maximum or a percentile (p0.0 to p100)."
            )
        _check_period(stat["Period"], f"{where}.MetricStat.Period", ValidationError)
        series = _series(
            metric["Namespace"],
            metric["MetricName"],
            metric.get("Dimensions", []),
            stat["Period"],
            stat.get("Unit"),
        )
        checked.append((query, series, statistic))
    return checked


def _names(query: Params) -> tuple[str, str]:
    metric = query["MetricStat"]["Metric"]
    return metric["Namespace"], metric["MetricName"]


def _listed(metric: MetricId, params: Params) -> bool:
    if params.get("Namespace") not in (None, metric.namespace):
        return False
    if params.get("MetricName") not in (None, metric.name):
        return False
    own = {d["Name"]: d["Value"] for d in metric.dimensions}
    for wanted in params.get("Dimensions", []):
        if wanted["Name"] not in own or wanted.get("Value") not in (None, own[wanted["Name"]]):
            return False
    return True


# --- tokens and times --------------------------------------------------------------------------------------


def _token(offset: int) -> str:
    return tokens.token({"offset": offset})


def _offset(token: str | None, error: type[AwsError]) -> int:
    if token is None:
        return 0
    offset = tokens.whole((tokens.position(token) or {}).get("offset"))
    if offset is None:
        raise error("The NextToken is not valid: pass the NextToken of the previous answer unchanged.")
    return offset


def _epoch(at: Any) -> float:
    return as_datetime(at).timestamp()
