"""Invocation totals shared through the database, for several servers (front doors) on one PostgreSQL.

Each server carries some of an endpoint's invocations, but only the one that reconciles runs
autoscaling. So every server writes its running totals per variant to the `traffic` table when they
change (`TrafficReporter`), and the reconciling one adds the other servers' totals to its own when it
reads a variant (`others`). Totals only grow, and a restarted server reports under a new id while its old
row stays as it was, so the sum the engine differences never goes down."""

from __future__ import annotations

import logging
import time
import uuid

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from moorage.dataplane.periodic import every
from moorage.dataplane.stats import StatsBook, VariantStats
from moorage.store import Store
from moorage.store.tables import TrafficRow

log = logging.getLogger("moorage.dataplane")

DEFAULT_REPORT_SECONDS = 2.0
_FORGET_AFTER_SECONDS = 7 * 24 * 3600.0  # rows of servers long gone
Totals = dict[str, float]
FIELDS = (
    "invocations",
    "errors_4xx",
    "errors_5xx",
    "model_errors",
    "model_latency_us_sum",
    "overhead_latency_us_sum",
    "latency_count",
)


def totals_of(stats: VariantStats) -> Totals:
    return {
        "invocations": stats.invocations,
        "errors_4xx": stats.errors_4xx,
        "errors_5xx": stats.errors_5xx,
        "model_errors": stats.model_errors,
        "model_latency_us_sum": stats.model_latency.sum,
        "overhead_latency_us_sum": stats.overhead_latency.sum,
        "latency_count": stats.model_latency.count,
    }


class TrafficReporter:
    def __init__(self, store: Store, stats: StatsBook, seconds: float = DEFAULT_REPORT_SECONDS) -> None:
        self.store = store
        self.stats = stats
        self.seconds = seconds
        self.server_id = uuid.uuid4().hex  # this process: a restart reports afresh
        self._reported: dict[tuple[str, str], Totals] = {}

    async def run(self) -> None:
        try:
            await self.store.run(_forget_old, self.store)
        except Exception:
            log.exception("forgetting old invocation totals failed; they stay")
        await every(self.seconds, self.report, "reporting invocation totals")

    async def report(self) -> None:
        now = {key: totals_of(stats) for key, stats in self.stats.items()}
        changed = {key: totals for key, totals in now.items() if self._reported.get(key) != totals}
        if changed:
            await self.store.run(_write, self.store, self.server_id, changed)
            self._reported.update(changed)

    async def others(self, endpoint: str, variant: str) -> Totals:
        """The other servers' totals for one variant, summed."""
        return await self.store.run(_others, self.store, self.server_id, endpoint, variant)


def _write(store: Store, server_id: str, changed: dict[tuple[str, str], Totals]) -> None:
    now = time.time()
    with store.session() as session:
        for (endpoint, variant), totals in changed.items():
            put_totals(session, server_id, endpoint, variant, totals, now)


def put_totals(
    session: Session, server_id: str, endpoint: str, variant: str, totals: Totals, now: float
) -> None:
    """Insert or replace one server's row for a variant (serverless_sync.py writes its rows this way too)."""
    row = session.get(TrafficRow, (server_id, endpoint, variant))
    if row is None:
        session.add(
            TrafficRow(
                server_id=server_id,
                endpoint_name=endpoint,
                variant_name=variant,
                totals=totals,
                reported_at=now,
            )
        )
    else:
        row.totals, row.reported_at = totals, now


def _others(store: Store, server_id: str, endpoint: str, variant: str) -> Totals:
    summed = dict.fromkeys(FIELDS, 0.0)
    with store.session() as session:
        rows = session.scalars(
            select(TrafficRow).where(
                TrafficRow.endpoint_name == endpoint,
                TrafficRow.variant_name == variant,
                TrafficRow.server_id != server_id,
            )
        )
        for row in rows:
            for field in FIELDS:
                summed[field] += float(row.totals.get(field, 0.0))
    return summed


def _forget_old(store: Store) -> None:
    with store.session() as session:
        session.execute(
            delete(TrafficRow).where(TrafficRow.reported_at < time.time() - _FORGET_AFTER_SECONDS)
        )
