"""Which server reconciles: exactly one at a time among those sharing a database.

On PostgreSQL the one that reconciles holds a session-level advisory lock on a connection of its own.
PostgreSQL frees the lock when that connection ends, because the server stopped or died or lost the
database, and another server takes it at its next try (every `retry_seconds`). A server that can no
longer reach the database through that connection has lost the lock and stops reconciling at once. On
SQLite one server owns its state dir, so it always reconciles."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from sqlalchemy import Connection, text

from moorage.store import Store

log = logging.getLogger("moorage.control")

# the advisory lock's key (one per database); the migration lock uses another
RECONCILER_LOCK = 0x6D6F6F6C  # "mool"
DEFAULT_RETRY_SECONDS = 2.0


class Leadership(Protocol):
    async def try_lead(self) -> bool:
        """True when this server now reconciles (and goes on doing so until `lost` returns)."""
        ...

    async def lost(self) -> None:
        """Returns once this server no longer holds the lead."""
        ...

    def close(self) -> None: ...


class SoleServer:
    """SQLite: this server is the only one."""

    async def try_lead(self) -> bool:
        return True

    async def lost(self) -> None:
        await asyncio.Event().wait()

    def close(self) -> None:
        pass


class AdvisoryLock:
    """PostgreSQL: the lead is a session advisory lock held on one connection."""

    def __init__(self, store: Store, check_seconds: float = 1.0) -> None:
        self.store = store
        self.check_seconds = check_seconds
        self._connection: Connection | None = None
        # the check runs on a thread of its own: neither busy store threads nor a full default executor
        # may make a held lead look lost
        self._checker = ThreadPoolExecutor(1, thread_name_prefix="lead-check")

    async def try_lead(self) -> bool:
        try:
            return await self.store.run(self._try)
        except Exception as exc:
            log.warning("could not ask the database for the lead: %s", exc)
            self.close()
            return False

    def _try(self) -> bool:
        if self._connection is None:
            self._connection = self.store.engine.connect()
        held = bool(
            self._connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": RECONCILER_LOCK}
            ).scalar()
        )
        self._connection.commit()  # no transaction left open; the lock belongs to the session
        return held

    async def lost(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                check = asyncio.get_running_loop().run_in_executor(self._checker, self._check)
                still = await asyncio.wait_for(check, self.check_seconds * 10)
            except Exception as exc:
                log.error("lost the database connection that holds the lead: %s", exc)
                return
            if not still:
                log.error("the database no longer counts this server as the one that reconciles")
                return

    def _check(self) -> bool:
        assert self._connection is not None
        held = self._connection.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                "AND objid = :key AND granted"
            ),
            {"key": RECONCILER_LOCK},
        ).scalar()
        self._connection.commit()
        return bool(held)

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:  # never back to the pool: a reset does not release a session's advisory lock
                connection.invalidate()
                connection.close()
            except Exception as exc:  # already broken: nothing to give back
                log.debug("closing the lead connection: %s", exc)
