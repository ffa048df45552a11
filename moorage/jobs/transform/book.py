"""What the runner writes about a transform job: start, progress, each finished input object, the end.

Every write runs on the store's threads (Store.run). An object is recorded as finished only after its
output was written (or it failed), so a job resumed after a restart skips exactly what is done."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from moorage.control.transform_jobs import ACTIVE, STOPPED, STOPPING
from moorage.store import Store
from moorage.store.tables import TransformJobRow

MAX_FAILURE_REASON = 1024  # DescribeTransformJob's FailureReason has at most this many characters


@dataclass(frozen=True)
class JobSnapshot:
    """A job as the runner reads it: what was asked, and what earlier runs finished."""

    name: str
    status: str
    spec: dict[str, Any]
    model: dict[str, Any]
    creation_time: float
    started: bool  # an earlier run began it (this run resumes)
    finished: dict[str, dict[str, Any]]  # input URI -> {"records": n, "error": reason or None}


def _snapshot(row: TransformJobRow) -> JobSnapshot:
    return JobSnapshot(
        name=row.name,
        status=row.status,
        spec=dict(row.spec),
        model=dict(row.model),
        creation_time=row.creation_time,
        started=row.start_time is not None,
        finished=dict(row.finished or {}),
    )


class JobBook:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def active(self) -> list[JobSnapshot]:
        """Jobs InProgress or Stopping, oldest first."""
        return await self.store.run(self._active)

    def _active(self) -> list[JobSnapshot]:
        with self.store.session() as session:
            rows = session.scalars(
                select(TransformJobRow)
                .where(TransformJobRow.status.in_(ACTIVE))
                .order_by(TransformJobRow.creation_time)
            ).all()
            return [_snapshot(row) for row in rows]

    async def started(self, name: str, objects_total: int) -> None:
        await self.store.run(self._started, name, objects_total)

    def _started(self, name: str, objects_total: int) -> None:
        with self.store.session() as session:
            row = session.get(TransformJobRow, name)
            if row is not None:
                now = time.time()
                row.start_time = row.start_time or now
                row.objects_total = objects_total
                row.last_modified_time = now

    async def progress(self, name: str, records_done: int, records_total: int) -> None:
        await self.store.run(self._progress, name, records_done, records_total)

    def _progress(self, name: str, records_done: int, records_total: int) -> None:
        with self.store.session() as session:
            row = session.get(TransformJobRow, name)
            if row is not None:
                row.records_done, row.records_total = records_done, records_total

    async def object_finished(self, name: str, uri: str, records: int, error: str | None) -> None:
        await self.store.run(self._object_finished, name, uri, records, error)

    def _object_finished(self, name: str, uri: str, records: int, error: str | None) -> None:
        with self.store.session() as session:
            row = session.get(TransformJobRow, name)
            if row is None:
                return
            finished = {**(row.finished or {}), uri: {"records": records, "error": error}}
            row.finished = finished
            row.objects_done = len(finished)
            row.last_modified_time = time.time()

    async def finish(self, name: str, status: str, reason: str | None = None) -> str:
        """Record the end; a job asked to stop meanwhile ends Stopped whatever else happened. Returns
        the status written."""
        result: str = await self.store.run(self._finish, name, status, reason)
        return result

    def _finish(self, name: str, status: str, reason: str | None) -> str:
        with self.store.session() as session:
            row = session.get(TransformJobRow, name)
            if row is None or row.status not in ACTIVE:
                return row.status if row is not None else status
            if row.status == STOPPING:
                status, reason = STOPPED, None
            now = time.time()
            row.status = status
            row.failure_reason = reason[:MAX_FAILURE_REASON] if reason else None
            row.end_time = now
            row.last_modified_time = now
            return status

    async def status(self, name: str) -> str | None:
        return await self.store.run(self._status, name)

    def _status(self, name: str) -> str | None:
        with self.store.session() as session:
            row = session.get(TransformJobRow, name)
            return row.status if row is not None else None
