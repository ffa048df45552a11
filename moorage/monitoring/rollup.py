"""Keeping the metric history small: rows older than an hour rolled up into one row per minute (as
CloudWatch keeps only minute data for older periods), rows past the retention deleted. Any server may
run this at any time: a roll-up applies only if every row it read is still there."""

from __future__ import annotations

import math
from typing import Any, cast

from sqlalchemy import CursorResult, delete, insert, select

from moorage.store import Store
from moorage.store.tables import MetricSampleRow

ROLL_UP_AFTER_SECONDS = 3600.0  # rows older than this become one row per minute
ROLLED_UP_SECONDS = 60.0
_ROLL_UP_BATCH = 5_000  # rows read per roll-up transaction (their ids are one IN list)


class _RolledUpElsewhere(Exception):
    """Another server rolled up some of the same rows meanwhile: this transaction is dropped."""


def maintain(store: Store, now: float, retention: float) -> None:
    """Delete rows past the retention, then roll rows older than an hour up into one per minute."""
    with store.session() as session:
        session.execute(delete(MetricSampleRow).where(MetricSampleRow.start < now - retention))
    cutoff = math.floor((now - ROLL_UP_AFTER_SECONDS) / ROLLED_UP_SECONDS) * ROLLED_UP_SECONDS
    while True:
        try:
            done = roll_up(store, cutoff)
        except _RolledUpElsewhere:
            return
        if done < _ROLL_UP_BATCH:
            return


def roll_up(store: Store, before: float) -> int:
    """One batch of rows starting before `before` merged into minute rows; the number of rows read.
    Rows are deleted by id and the transaction dropped unless every one of them was still there, so
    servers rolling up at once never count a row twice."""
    with store.session() as session:
        rows = session.scalars(
            select(MetricSampleRow)
            .where(MetricSampleRow.seconds < ROLLED_UP_SECONDS, MetricSampleRow.start < before)
            .order_by(MetricSampleRow.start)
            .limit(_ROLL_UP_BATCH)
        ).all()
        if not rows:
            return 0
        merged: dict[tuple[str, str, str, str, str, float], dict[str, Any]] = {}
        for row in rows:
            minute = math.floor(row.start / ROLLED_UP_SECONDS) * ROLLED_UP_SECONDS
            key = (row.server_id, row.namespace, row.metric_name, row.endpoint_name, row.variant_name, minute)
            into = merged.get(key)
            if into is None:
                merged[key] = {
                    "server_id": row.server_id,
                    "namespace": row.namespace,
                    "metric_name": row.metric_name,
                    "endpoint_name": row.endpoint_name,
                    "variant_name": row.variant_name,
                    "start": minute,
                    "seconds": ROLLED_UP_SECONDS,
                    "count": row.count,
                    "total": row.total,
                    "minimum": row.minimum,
                    "maximum": row.maximum,
                    "buckets": list(row.buckets) if row.buckets is not None else None,
                }
                continue
            into["count"] += row.count
            into["total"] += row.total
            into["minimum"] = min(into["minimum"], row.minimum)
            into["maximum"] = max(into["maximum"], row.maximum)
            if into["buckets"] is not None and row.buckets is not None:
                into["buckets"] = [a + b for a, b in zip(into["buckets"], row.buckets, strict=True)]
        ids = [row.id for row in rows]
        deleted = session.execute(delete(MetricSampleRow).where(MetricSampleRow.id.in_(ids)))
        gone = cast(CursorResult[Any], deleted).rowcount
        if gone != len(ids):
            raise _RolledUpElsewhere
        session.execute(insert(MetricSampleRow), list(merged.values()))
        return len(rows)
