"""The one way endpoint rows change: writes conditional on the row's version (optimistic concurrency).

Every write bumps `version`; each is applied only if the row still has the version its writer read, so
of two writers that read the same row (two front doors sharing one database, or an API call and a
reconciler task) exactly one wins. A write that matches no row lost the race: its caller re-reads the
row and decides again. With one writer (SQLite) the condition always holds."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.orm import Session

from moorage.store.tables import EndpointRow


def update_endpoint(session: Session, name: str, read_version: int, **values: Any) -> bool:
    """Set `values` on the endpoint row if it still has `read_version`; False when it lost the race."""
    statement = (
        update(EndpointRow)
        .where(EndpointRow.name == name, EndpointRow.version == read_version)
        .values(version=read_version + 1, **values)
        .execution_options(synchronize_session="fetch")
    )
    return cast(CursorResult[Any], session.execute(statement)).rowcount == 1


def delete_endpoint(session: Session, name: str, read_version: int) -> bool:
    """Remove the endpoint row if it still has `read_version`; False when it lost the race."""
    statement = (
        delete(EndpointRow)
        .where(EndpointRow.name == name, EndpointRow.version == read_version)
        .execution_options(synchronize_session="fetch")
    )
    return cast(CursorResult[Any], session.execute(statement)).rowcount == 1
