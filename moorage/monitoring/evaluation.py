"""Alarm evaluation, on the server that reconciles: every MOORAGE_ALARM_EVALUATION_SECONDS each alarm
of the `alarms` table gets its metric's datapoints for the evaluation range from the metric history, and
a state change verdict.py calls for is written through alarm_state.set_state.

A period counts once it has ended and the rows of its last interval are in: the recorders write an
interval right after it ends (history.py), so a period is evaluated SETTLE_SECONDS after the end of the
last interval it holds. An alarm with Period 1 therefore fires about 1 to 2 seconds (plus one evaluation
interval) after the requests that breach it."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from moorage.clock import Clock
from moorage.envvars import seconds
from moorage.monitoring.alarm_state import set_state
from moorage.monitoring.catalogue import metric_info
from moorage.monitoring.queries import MetricId, samples_of, variant_of
from moorage.monitoring.series import aggregate, value
from moorage.monitoring.verdict import Point, Rule, Verdict, decide
from moorage.store import Store
from moorage.store.tables import AlarmRow

log = logging.getLogger("moorage.monitoring")

DEFAULT_EVALUATION_SECONDS = 1.0
SETTLE_SECONDS = 0.5  # how long after an interval ends its rows are taken to be written


def evaluation_seconds(environ: Mapping[str, str]) -> float:
    """MOORAGE_ALARM_EVALUATION_SECONDS (unset or empty: the default)."""
    interval = seconds(environ, "MOORAGE_ALARM_EVALUATION_SECONDS", DEFAULT_EVALUATION_SECONDS)
    if not interval > 0:
        raise ValueError(
            f"MOORAGE_ALARM_EVALUATION_SECONDS must be a positive number of seconds, not {interval}"
        )
    return interval


class AlarmEvaluator:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        resolution_seconds: float,
        interval_seconds: float = DEFAULT_EVALUATION_SECONDS,
    ) -> None:
        self.store = store
        self.clock = clock
        self.resolution = resolution_seconds
        self.interval = interval_seconds
        self._failing: set[str] = set()  # alarms whose evaluation failed (logged once)

    async def run(self) -> None:
        while True:
            try:
                await self.store.run(self.evaluate_all, self.clock.time())
            except Exception:
                log.exception("evaluating alarms failed; trying again in %.1f s", self.interval)
            await self.clock.sleep(self.interval)

    def evaluate_all(self, now: float) -> int:
        """Evaluate every alarm once; the number whose state changed. An alarm that cannot be evaluated
        (a spec this server cannot read) is logged, once until it can be again, and the others are
        evaluated all the same; a failure of the store's ends the turn (`run` tries again)."""
        changed = 0
        with self.store.session() as session:
            for alarm in session.scalars(select(AlarmRow).order_by(AlarmRow.name)).all():
                try:
                    verdict = self.verdict(session, alarm, now)
                except SQLAlchemyError:
                    raise  # the store's: this whole turn is tried again (run)
                except Exception:
                    if alarm.name not in self._failing:
                        self._failing.add(alarm.name)
                        log.exception("alarm %s cannot be evaluated; its state stays as it is", alarm.name)
                    continue
                self._failing.discard(alarm.name)
                if verdict is not None and verdict.state != alarm.state:
                    set_state(session, alarm, verdict.state, verdict.reason, verdict.data, now)
                    changed += 1
        return changed

    def verdict(self, session: Session, alarm: AlarmRow, now: float) -> Verdict | None:
        """The state `alarm` should be in now (None: as it is, or an alarm this server does not evaluate)."""
        rule = Rule.of(alarm.spec)
        if rule is None:
            return None
        return decide(rule, self.points(session, rule, now), alarm.state, now)

    def last_complete_period(self, period: int, now: float) -> float:
        """The start of the newest period whose every interval has been written."""
        written_until = math.floor((now - SETTLE_SECONDS) / self.resolution) * self.resolution
        return math.floor(written_until / period) * period - period

    def points(self, session: Session, rule: Rule, now: float) -> list[Point]:
        """The evaluation range, oldest first: each period's datapoint, None where it has none."""
        last = self.last_complete_period(rule.period, now)
        first = last - (rule.range_periods - 1) * rule.period
        starts = [first + i * rule.period for i in range(rule.range_periods)]
        empty = [Point(at, None) for at in starts]
        info = metric_info(rule.namespace, rule.metric_name)
        variant = variant_of(rule.dimensions)
        if info is None or variant is None or (rule.unit is not None and rule.unit != info.unit):
            return empty
        metric = MetricId(rule.namespace, rule.metric_name, *variant)
        end = last + rule.period
        periods = {
            a.start: a for a in aggregate(samples_of(session, metric, first, end), first, end, rule.period)
        }
        return [
            Point(at, value(agg, rule.statistic, info.bounds), agg.count)
            if (agg := periods.get(at)) is not None
            else Point(at, None)
            for at in starts
        ]
