"""The queue in the state store: accepted requests are rows of `async_requests` until their result is
written. Every function here blocks (run it with Store.run); the accepting side commits in groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select

from moorage.store import Store
from moorage.store.tables import AsyncRequestRow


@dataclass(frozen=True)
class Backlog:
    """An endpoint's queue now: requests not yet finished (running ones included, as on AWS), and when
    the oldest of them was accepted (None: the queue is empty)."""

    size: int
    oldest_accepted_at: float | None


def insert_requests(store: Store, rows: list[dict[str, Any]]) -> None:
    with store.session() as session:
        session.execute(insert(AsyncRequestRow), rows)


def finish_requests(store: Store, seqs: list[int]) -> None:
    """Forget requests whose output or failure object is written."""
    with store.session() as session:
        session.execute(delete(AsyncRequestRow).where(AsyncRequestRow.seq.in_(seqs)))


def next_requests(store: Store, endpoint: str, running: set[int], limit: int) -> list[AsyncRequestRow]:
    """Up to `limit` of the endpoint's oldest requests (by seq) that are not `running`.

    No high-water cursor: on PostgreSQL a seq is drawn at INSERT, not at commit, so with several front
    doors a lower seq may become visible after a higher one; the oldest rows are asked for each time."""
    return _oldest(store, endpoint, running, limit)


def expired_requests(
    store: Store, endpoint: str, now: float, running: set[int], limit: int
) -> list[AsyncRequestRow]:
    """Up to `limit` of the endpoint's requests whose RequestTTLSeconds has passed, oldest first, wherever
    they are in the queue (they fail without waiting for an instance)."""
    return _oldest(store, endpoint, running, limit, expired_by=now)


def _oldest(
    store: Store, endpoint: str, running: set[int], limit: int, expired_by: float | None = None
) -> list[AsyncRequestRow]:
    """Up to `limit` of the endpoint's requests not `running`, by seq; only those expired by
    `expired_by` when it is given."""
    conditions = [AsyncRequestRow.endpoint_name == endpoint, AsyncRequestRow.seq.not_in(running)]
    if expired_by is not None:
        conditions.append(AsyncRequestRow.expires_at <= expired_by)
    with store.session() as session:
        query = select(AsyncRequestRow).where(*conditions).order_by(AsyncRequestRow.seq).limit(limit)
        return list(session.scalars(query).all())


def last_seq(store: Store) -> int:
    """The newest request's seq (0: none queued)."""
    with store.session() as session:
        return int(session.scalar(select(func.max(AsyncRequestRow.seq))) or 0)


def backlogs(store: Store) -> dict[str, Backlog]:
    """Every endpoint that has requests queued, with its backlog."""
    with store.session() as session:
        rows = session.execute(
            select(
                AsyncRequestRow.endpoint_name, func.count(), func.min(AsyncRequestRow.accepted_at)
            ).group_by(AsyncRequestRow.endpoint_name)
        ).all()
    return {name: Backlog(int(count), oldest) for name, count, oldest in rows}


def drop_endpoint(store: Store, endpoint: str) -> int:
    """Requests of a deleted endpoint: they can never run (a new endpoint of the same name is another)."""
    with store.session() as session:
        result = session.execute(delete(AsyncRequestRow).where(AsyncRequestRow.endpoint_name == endpoint))
        return int(getattr(result, "rowcount", 0) or 0)
