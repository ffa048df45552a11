"""Serverless demand shared through the database, for several servers (front doors) on one PostgreSQL.

Only the server that reconciles starts and stops a serverless variant's instance, but a request may
arrive at any server. So every other server writes, per serverless variant it routes, how many requests
it holds or serves now and when the latest arrived (`report`, at once when a request finds no instance,
else within one sync period of a change); the reconciling server reads what the others wrote (`follow`)
and hands it to its fleets: a request waiting elsewhere is a cold start, and a variant is idle only when
it is idle on every server.

The rows go in the `traffic` table (moorage/dataplane/traffic_sync.py) under a server id of their own
("serverless:<id>"), with no invocation totals: summing the others' totals ignores them. A server that
goes away leaves its row; its in-flight count stops counting once the row is older than `_STALE_SECONDS`
(a server with requests in flight rewrites its row every `_HEARTBEAT_SECONDS`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping

from sqlalchemy import delete, select

from moorage.dataplane.periodic import every
from moorage.dataplane.routes import RoutingTable
from moorage.dataplane.traffic_sync import put_totals
from moorage.store import Store
from moorage.store.tables import TrafficRow

SERVER_PREFIX = "serverless:"
DEFAULT_SYNC_SECONDS = 0.5
_HEARTBEAT_SECONDS = 5.0
_STALE_SECONDS = 15.0
_LAST_USED_STEP_SECONDS = 1.0  # a later arrival is written once it is this much later than the last
Key = tuple[str, str]  # (endpoint, variant)
# what the other servers report of a variant: requests held or in flight there, latest arrival (epoch)
Demand = dict[Key, tuple[int, float]]


class ServerlessDemand:
    def __init__(self, store: Store, table: RoutingTable, sync_seconds: float = DEFAULT_SYNC_SECONDS) -> None:
        self.store = store
        self.table = table
        self.sync_seconds = sync_seconds
        self.server_id = SERVER_PREFIX + uuid.uuid4().hex
        self._woken = asyncio.Event()
        self._written: dict[Key, tuple[int, float, float]] = {}  # admitted, last used, written at

    def wake(self) -> None:
        """A request found no instance here: report now, not at the next period."""
        self._woken.set()

    async def report(self) -> None:
        """Run by every server: writes the demand at the serverless gates it built while following
        routes (those of the reconciling server's own fleets are not remote, and are not written)."""
        await every(self.sync_seconds, self.report_once, "reporting serverless demand", self._woken)

    async def report_once(self) -> None:
        now, clock = time.time(), time.monotonic()
        current: dict[Key, tuple[int, float]] = {}
        for name, route in self.table.items():
            for variant in route.variants:
                gate = variant.serverless
                if gate is not None and gate.remote:
                    current[(name, variant.name)] = (gate.admitted, now - (clock - gate.last_used))
        changed = {key: value for key, value in current.items() if self._due(key, value, now)}
        gone = [key for key in self._written if key not in current]
        if changed or gone:
            await self.store.run(_write, self.store, self.server_id, changed, gone)
            for key in gone:
                del self._written[key]
            for key, (admitted, last_used) in changed.items():
                self._written[key] = (admitted, last_used, now)

    def _due(self, key: Key, value: tuple[int, float], now: float) -> bool:
        written = self._written.get(key)
        if written is None:
            return True
        admitted, last_used, at = written
        return (
            value[0] != admitted
            or value[1] - last_used >= _LAST_USED_STEP_SECONDS
            or (admitted > 0 and now - at >= _HEARTBEAT_SECONDS)
        )

    async def follow(self, apply: Callable[[Demand], None]) -> None:
        """Run by the reconciling server: hands the other servers' demand to its fleets every period."""

        async def once() -> None:
            apply(await self.store.run(_read_others, self.store, self.server_id))

        await every(self.sync_seconds, once, "reading serverless demand")


def _write(store: Store, server_id: str, changed: Mapping[Key, tuple[int, float]], gone: list[Key]) -> None:
    now = time.time()
    with store.session() as session:
        for endpoint, variant in gone:
            session.execute(
                delete(TrafficRow).where(
                    TrafficRow.server_id == server_id,
                    TrafficRow.endpoint_name == endpoint,
                    TrafficRow.variant_name == variant,
                )
            )
        for (endpoint, variant), (admitted, last_used) in changed.items():
            totals = {"serverless_admitted": float(admitted), "serverless_last_used": last_used}
            put_totals(session, server_id, endpoint, variant, totals, now)


def _read_others(store: Store, server_id: str) -> Demand:
    now = time.time()
    demand: Demand = {}
    with store.session() as session:
        rows = session.scalars(
            select(TrafficRow).where(
                TrafficRow.server_id.startswith(SERVER_PREFIX), TrafficRow.server_id != server_id
            )
        )
        for row in rows:
            key = (row.endpoint_name, row.variant_name)
            fresh = now - row.reported_at < _STALE_SECONDS  # else its server is gone: nothing in flight
            admitted = int(row.totals.get("serverless_admitted", 0)) if fresh else 0
            last_used = float(row.totals.get("serverless_last_used", 0.0))
            before = demand.get(key, (0, 0.0))
            demand[key] = (before[0] + admitted, max(before[1], last_used))
    return demand
