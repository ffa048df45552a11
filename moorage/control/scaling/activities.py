"""Scaling activities: every capacity decision, in the store, worded as AWS words them.

Pending (decided) → InProgress (the fleet accepted the new desired count) → Successful (the variant
reached it) | Overridden (a newer activity changed it first) | Unfulfilled (the variant settled elsewhere
or went away). A refused change goes Pending → Failed with the reason, and is tried again at a later
evaluation. "Not scaled" activities (an alarm fired but the capacity could not move) are only listed
with IncludeNotScaledActivities. Cooldowns are computed from these rows, so they survive a restart.

Every function here opens store sessions: code on the event loop calls them through `Store.run`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from moorage.clock import Clock
from moorage.control.scaling.paging import page
from moorage.control.scaling.resources import TargetKey, described_rows
from moorage.control.scaling.tracking import PastActivity
from moorage.store import Store
from moorage.store.tables import ScalingActivityRow

Params = dict[str, Any]
Kind = Literal["scale-out", "scale-in", "bounds", "not-scaled"]
RETENTION_SECONDS = 6 * 7 * 24 * 3600  # DescribeScalingActivities covers the previous six weeks
MAX_PER_TARGET = 1000  # a variant refusing changes for days must not grow the table without end
_ACCEPTED = ("InProgress", "Successful", "Overridden", "Unfulfilled")
_DEFAULT_PAGE = 50


def alarm_cause(alarm: str, policy: str) -> str:
    return f"monitor alarm {alarm} in state ALARM triggered policy {policy}"


def bounds_cause(which: Literal["minimum", "maximum"], capacity: int) -> str:
    return f"{which} capacity was set to {capacity}"


def begin(
    store: Store,
    clock: Clock,
    key: TargetKey,
    *,
    kind: Kind,
    from_capacity: int,
    capacity: int,
    cause: str,
    policy_name: str | None = None,
) -> str:
    """Record a decision to set the desired instance count (Pending); returns the ActivityId."""
    activity_id = str(uuid.uuid4())
    now = clock.time()
    with store.session() as session:
        session.add(
            ScalingActivityRow(
                activity_id=activity_id,
                service_namespace=key.namespace,
                resource_id=key.resource_id,
                scalable_dimension=key.dimension,
                kind=kind,
                policy_name=policy_name,
                from_capacity=from_capacity,
                capacity=capacity,
                description=f"Setting desired instance count to {capacity}.",
                cause=cause,
                start_time=now,
                status_code="Pending",
            )
        )
        _prune(session, key.resource_id, now)
    return activity_id


def accepted(store: Store, clock: Clock, activity_id: str) -> None:
    """The fleet took the new desired count; an older change still on its way is overridden by it."""
    now = clock.time()
    with store.session() as session:
        row = _get(session, activity_id)
        row.status_code = "InProgress"
        row.status_message = (
            f"Successfully set desired instance count to {row.capacity}. "
            "Waiting for change to be fulfilled by sagemaker."
        )
        older = session.scalars(
            select(ScalingActivityRow).where(
                ScalingActivityRow.resource_id == row.resource_id,
                ScalingActivityRow.status_code == "InProgress",
                ScalingActivityRow.seq < row.seq,
            )
        ).all()
        for previous in older:
            previous.status_code = "Overridden"
            previous.end_time = now
            previous.status_message = (
                f"Successfully set desired instance count to {previous.capacity}. Change was overridden "
                f"by a newer scaling activity that set it to {row.capacity}."
            )


def refused(store: Store, clock: Clock, activity_id: str, reason: str) -> None:
    now = clock.time()
    with store.session() as session:
        _refuse(_get(session, activity_id), now, reason)


def _refuse(row: ScalingActivityRow, now: float, reason: str) -> None:
    row.status_code = "Failed"
    row.end_time = now
    row.status_message = f"Failed to set desired instance count to {row.capacity}. Reason: {reason}"


def conclude(store: Store, clock: Clock, outcomes: Sequence[tuple[str, str | None]]) -> None:
    """End InProgress activities in one transaction: each (ActivityId, None) was fulfilled, each
    (ActivityId, why) could not be."""
    now = clock.time()
    with store.session() as session:
        for activity_id, why in outcomes:
            row = _get(session, activity_id)
            row.end_time = now
            if why is None:
                row.status_code = "Successful"
                row.status_message = (
                    f"Successfully set desired instance count to {row.capacity}. "
                    "Change successfully fulfilled by sagemaker."
                )
            else:
                row.status_code = "Unfulfilled"
                row.status_message = (
                    f"Successfully set desired instance count to {row.capacity}. "
                    f"Change could not be fulfilled by sagemaker: {why}"
                )


def not_scaled(
    store: Store, clock: Clock, key: TargetKey, *, cause: str, policy_name: str, reason: dict[str, Any]
) -> bool:
    """Record that an alarm fired but the capacity could not move. An alarm stays in ALARM and fires every
    period, so the same reason is recorded once, not once a period; True when recorded."""
    now = clock.time()
    with store.session() as session:
        latest = session.scalars(
            select(ScalingActivityRow)
            .where(ScalingActivityRow.resource_id == key.resource_id)
            .order_by(ScalingActivityRow.seq.desc())
            .limit(1)
        ).first()
        if (
            latest is not None
            and latest.kind == "not-scaled"
            and latest.cause == cause
            and latest.not_scaled_reasons == [reason]
        ):
            return False
        session.add(
            ScalingActivityRow(
                activity_id=str(uuid.uuid4()),
                service_namespace=key.namespace,
                resource_id=key.resource_id,
                scalable_dimension=key.dimension,
                kind="not-scaled",
                policy_name=policy_name,
                capacity=None,
                description="Attempting to scale due to alarm triggered",
                cause=cause,
                start_time=now,
                end_time=now,
                status_code="Failed",
                not_scaled_reasons=[reason],
            )
        )
        _prune(session, key.resource_id, now)
    return True


def abandon_pending(store: Store, clock: Clock) -> int:
    """At start-up: a change the server was making when it stopped is not known to have happened."""
    now = clock.time()
    with store.session() as session:
        rows = session.scalars(
            select(ScalingActivityRow).where(ScalingActivityRow.status_code == "Pending")
        ).all()
        for row in rows:
            _refuse(row, now, "the server stopped before the change was made.")
        return len(rows)


def in_progress(store: Store) -> list[ScalingActivityRow]:
    """Accepted changes not yet fulfilled, of every target (a deregistered one's included)."""
    with store.session() as session:
        return list(
            session.scalars(
                select(ScalingActivityRow)
                .where(ScalingActivityRow.status_code == "InProgress")
                .order_by(ScalingActivityRow.seq)
            ).all()
        )


def past(store: Store, resource_id: str) -> tuple[PastActivity | None, PastActivity | None]:
    """The target's last policy scale-out, and its latest policy activity of either direction, among those
    the fleet accepted (a refused change changed nothing, so it starts no cooldown)."""
    with store.session() as session:
        rows = session.scalars(
            select(ScalingActivityRow)
            .where(
                ScalingActivityRow.resource_id == resource_id,
                ScalingActivityRow.kind.in_(("scale-out", "scale-in")),
                ScalingActivityRow.status_code.in_(_ACCEPTED),
            )
            .order_by(ScalingActivityRow.seq.desc())
        )
        latest: PastActivity | None = None
        for row in rows:
            view = PastActivity(
                direction="scale-out" if row.kind == "scale-out" else "scale-in",
                from_capacity=row.from_capacity or 0,
                capacity=row.capacity or 0,
                in_progress=row.status_code == "InProgress",
                ended_at=row.end_time,
            )
            latest = latest or view
            if view.direction == "scale-out":
                return view, latest
    return None, latest


def describe(store: Store, params: Params) -> Params:
    query = described_rows(ScalingActivityRow, params)
    include_not_scaled = bool(params.get("IncludeNotScaledActivities"))
    if not include_not_scaled:
        query = query.where(ScalingActivityRow.kind != "not-scaled")
    with store.session() as session:
        rows = session.scalars(query.order_by(ScalingActivityRow.seq.desc())).all()
    chosen, token = page(rows, lambda r: (-r.seq,), params, default_max=_DEFAULT_PAGE)
    return {
        "ScalingActivities": [_summary(r, include_not_scaled) for r in chosen],
        "NextToken": token,
    }


def _summary(row: ScalingActivityRow, include_not_scaled: bool) -> Params:
    summary: Params = {
        "ActivityId": row.activity_id,
        "ServiceNamespace": row.service_namespace,
        "ResourceId": row.resource_id,
        "ScalableDimension": row.scalable_dimension,
        "Description": row.description,
        "Cause": row.cause,
        "StartTime": row.start_time,
        "EndTime": row.end_time,
        "StatusCode": row.status_code,
        "StatusMessage": row.status_message,
    }
    if include_not_scaled and row.not_scaled_reasons:
        summary["NotScaledReasons"] = row.not_scaled_reasons
    return summary


def _get(session: Session, activity_id: str) -> ScalingActivityRow:
    row = session.scalars(
        select(ScalingActivityRow).where(ScalingActivityRow.activity_id == activity_id)
    ).one()
    return row


def _prune(session: Session, resource_id: str, now: float) -> None:
    """Forget what DescribeScalingActivities no longer shows: older than six weeks, or beyond the newest
    MAX_PER_TARGET of the target. Unfinished activities are kept whatever their age."""
    finished = ScalingActivityRow.status_code.not_in(("Pending", "InProgress"))
    session.execute(
        delete(ScalingActivityRow).where(finished, ScalingActivityRow.start_time < now - RETENTION_SECONDS)
    )
    count = session.scalar(
        select(func.count())
        .select_from(ScalingActivityRow)
        .where(ScalingActivityRow.resource_id == resource_id)
    )
    if count is not None and count > MAX_PER_TARGET:
        keep_from = session.scalar(
            select(ScalingActivityRow.seq)
            .where(ScalingActivityRow.resource_id == resource_id)
            .order_by(ScalingActivityRow.seq.desc())
            .offset(MAX_PER_TARGET - 1)
            .limit(1)
        )
        session.execute(
            delete(ScalingActivityRow).where(
                finished, ScalingActivityRow.resource_id == resource_id, ScalingActivityRow.seq < keep_from
            )
        )
