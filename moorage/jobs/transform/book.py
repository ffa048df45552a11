"""What the runner writes about a transform job: start, progress, each finished input object, the end.

Every write runs on the store's threads (Store.run). The job's input objects are listed once, when it
first starts, into transform_job_objects (one row per object, in input order); a resumed job works on
exactly those. An object is marked Done or Failed only after its output was written (or it failed),
with one row update of its own and an increment of the job's objects_done, so objects that finish at
once never lose each other's ends, and a job resumed after a restart skips exactly what is done."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from moorage.control.transform_jobs import ACTIVE, STOPPED, STOPPING
from moorage.jobs.transform.inputs import InputObject
from moorage.store import Store
from moorage.store.tables import TransformJobObjectRow, TransformJobRow

MAX_FAILURE_REASON = 1024  # DescribeTransformJob's FailureReason has at most this many characters
PENDING, DONE, FAILED = "Pending", "Done", "Failed"  # an input object's state


@dataclass(frozen=True)
class JobSnapshot:
    """A job as the runner reads it: what was asked, and how far earlier runs got."""

    name: str
    status: str
    spec: dict[str, Any]
    model: dict[str, Any]
    creation_time: float
    started: bool  # an earlier run began it (this run resumes)
    objects_done: int = 0  # input objects that earlier runs finished (Done or Failed)


@dataclass(frozen=True)
class StoredObject:
    """One input object as the job's listing holds it."""

    position: int
    uri: str
    output: str
    state: str  # PENDING | DONE | FAILED
    records: int
    error: str | None


def _snapshot(row: TransformJobRow) -> JobSnapshot:
    return JobSnapshot(
        name=row.name,
        status=row.status,
        spec=dict(row.spec),
        model=dict(row.model),
        creation_time=row.creation_time,
        started=row.start_time is not None,
        objects_done=row.objects_done,
    )


def _stored(row: TransformJobObjectRow) -> StoredObject:
    return StoredObject(row.position, row.uri, row.output, row.state, row.records, row.error)


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

    async def objects(self, name: str) -> list[StoredObject]:
        """The job's input objects as listed when it first started ([] before that)."""
        return await self.store.run(self._objects, name)

    def _objects(self, name: str) -> list[StoredObject]:
        with self.store.session() as session:
            rows = session.scalars(
                select(TransformJobObjectRow)
                .where(TransformJobObjectRow.job == name)
                .order_by(TransformJobObjectRow.position)
            ).all()
            return [_stored(row) for row in rows]

    async def started(self, name: str, objects: list[InputObject]) -> list[StoredObject]:
        """Record the start and the job's listing; a listing already there (an earlier run's) is kept
        and returned instead."""
        return await self.store.run(self._started, name, objects)

    def _started(self, name: str, objects: list[InputObject]) -> list[StoredObject]:
        with self.store.session() as session:
            row = session.get(TransformJobRow, name)
            if row is None:
                return []
            have = session.scalar(
                select(func.count())
                .select_from(TransformJobObjectRow)
                .where(TransformJobObjectRow.job == name)
            )
            if not have:
                session.add_all(
                    TransformJobObjectRow(
                        job=name, position=i, uri=o.uri, output=o.output, state=PENDING, records=0, error=None
                    )
                    for i, o in enumerate(objects)
                )
            now = time.time()
            row.start_time = row.start_time or now
            row.objects_total = have or len(objects)
            row.last_modified_time = now
        return self._objects(name)

    async def progress(self, name: str, records_done: int, records_total: int) -> None:
        await self.store.run(self._progress, name, records_done, records_total)

    def _progress(self, name: str, records_done: int, records_total: int) -> None:
        with self.store.session() as session:
            session.execute(
                update(TransformJobRow)
                .where(TransformJobRow.name == name)
                .values(records_done=records_done, records_total=records_total)
            )

    async def object_finished(self, name: str, position: int, records: int, error: str | None) -> None:
        await self.store.run(self._object_finished, name, position, records, error)

    def _object_finished(self, name: str, position: int, records: int, error: str | None) -> None:
        with self.store.session() as session:
            changed = session.execute(
                update(TransformJobObjectRow)
                .where(
                    TransformJobObjectRow.job == name,
                    TransformJobObjectRow.position == position,
                    TransformJobObjectRow.state == PENDING,
                )
                .values(state=FAILED if error else DONE, records=records, error=error)
            )
            if getattr(changed, "rowcount", 0) != 1:
                return  # not this job's object, or already recorded
            session.execute(
                update(TransformJobRow)
                .where(TransformJobRow.name == name)
                .values(objects_done=TransformJobRow.objects_done + 1, last_modified_time=time.time())
            )

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
