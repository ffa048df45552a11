"""The reconciler turns the endpoint rows in the store into running fleets and writes their statuses.

Every transition is written to the store first; instances are cattle rebuilt from the store on restart.
Deployments are blue/green: a new fleet is started and warmed while the old one serves, the routing table
switches in one assignment, then the old fleet drains and stops. Starting, resizing and stopping
instances is the fleet's job (moorage/fleet); this module decides when, and records what happened."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from moorage.dataplane.routes import RoutingTable
from moorage.fleet import DeploymentFailed, EndpointFleet, FleetContext, deploy_fleet
from moorage.store import Store
from moorage.store.tables import EndpointRow


@dataclass(frozen=True)
class VariantState:
    """What a variant's fleet is doing right now, for DescribeEndpoint."""

    instances: int
    weight: float
    status: list[dict[str, Any]]  # VariantStatus entries


class Reconciler:
    def __init__(self, store: Store, table: RoutingTable, ctx: FleetContext) -> None:
        self.store = store
        self.table = table
        self.ctx = ctx
        self.logs = ctx.logs
        self.clock = ctx.clock
        self.fleets: dict[str, EndpointFleet] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # ---- what the control plane calls (all return at once; work goes on in tasks) ----------------

    def create(self, name: str) -> None:
        self._run(name, self._create(name))

    def update(self, name: str) -> None:
        self._run(name, self._update(name))

    def delete(self, name: str) -> None:
        previous = self._tasks.pop(name, None)
        self._run(name, self._delete(name, previous))

    def change_capacity(self, name: str, counts: dict[str, int], weights: dict[str, float]) -> None:
        """Resize variants (starting now) and then apply new weights; the endpoint is Updating meanwhile."""
        fleet = self.fleets.get(name)
        if fleet is None:
            return
        resizes = {v.name: v.resize(n) for v, n in ((fleet.variant(v), n) for v, n in counts.items()) if v}
        self._run(name, self._change_capacity(fleet, resizes, weights))

    def variant_states(self, name: str) -> dict[str, VariantState]:
        fleet = self.fleets.get(name)
        if fleet is None:
            return {}
        return {
            v.name: VariantState(v.current, v.route.weight, [a.entry() for a in v.activities()])
            for v in fleet.variants
        }

    async def restore(self) -> None:
        """Rebuild what the store says should run; InService endpoints are warm before this returns."""
        with self.store.session() as session:
            rows = list(session.query(EndpointRow).all())
        resumed = []
        for row in rows:
            if row.status == "Deleting":
                self.delete(row.name)
            elif row.status == "Creating":
                self.create(row.name)
            elif row.status in ("InService", "Updating"):
                resumed.append(self._resume(row.name, row.status, row.deployed or {}))
        await asyncio.gather(*resumed)

    async def shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await asyncio.gather(*(fleet.retire(drain=False, grace=5.0) for fleet in self.fleets.values()))
        self.fleets.clear()

    # ---- transitions ---------------------------------------------------------------------------

    def _run(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"endpoint:{name}")
        self._tasks[name] = task
        task.add_done_callback(lambda t: self._forget(name, t))

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.logs.write(name, f"Internal error while reconciling: {exc!r}")

    def _save(self, name: str, **changes: Any) -> bool:
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            if row is None:
                return False
            for key, value in changes.items():
                setattr(row, key, value)
            row.last_modified_time = self.clock.time()
        return True

    async def _create(self, name: str) -> None:
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            snapshot = row.pending if row else None
        if not snapshot:
            return
        try:
            fleet = await deploy_fleet(name, snapshot, self.ctx)
        except DeploymentFailed as failure:
            self.logs.write(name, f"Endpoint creation failed: {failure}")
            self._save(name, status="Failed", failure_reason=str(failure)[:1024], pending=None)
            return
        self._promote(fleet, snapshot)
        self.logs.write(name, "Endpoint is InService.")

    async def _update(self, name: str) -> None:
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            snapshot = row.pending if row else None
            old_config = row.config_name if row else ""
        if not snapshot:  # a capacity change cut short by a restart: the fleet was rebuilt at its target
            self._save(name, status="InService")
            return
        new_config = snapshot["config"]["EndpointConfigName"]
        try:
            fleet = await deploy_fleet(name, snapshot, self.ctx)
        except DeploymentFailed as failure:
            reason = (
                f"Update to endpoint config {new_config} failed and was rolled back; the endpoint still "
                f"serves {old_config}. Cause: {failure}"
            )
            self.logs.write(name, reason)
            self._save(
                name, status="InService", failure_reason=reason[:1024], pending=None, pending_start_time=None
            )
            return
        old = self.fleets.get(name)
        self._promote(fleet, snapshot)
        self.logs.write(name, f"Traffic switched to {new_config}; the previous instances are draining.")
        if old is not None:
            await old.retire(drain=True)

    async def _delete(self, name: str, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            previous.cancel()
            with contextlib.suppress(BaseException):
                await previous
        self.table.remove(name)
        fleet = self.fleets.pop(name, None)
        if fleet is not None:
            await fleet.retire(drain=False, grace=5.0)
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            if row is not None:
                session.delete(row)
        if self.ctx.stats is not None:
            self.ctx.stats.forget(name)
        self.logs.write(name, "Endpoint deleted.")

    async def _change_capacity(
        self, fleet: EndpointFleet, resizes: dict[str, asyncio.Future[None]], weights: dict[str, float]
    ) -> None:
        name = fleet.name
        results = await asyncio.gather(*resizes.values(), return_exceptions=True)
        failed = {
            variant: result
            for variant, result in zip(resizes, results, strict=True)
            if isinstance(result, BaseException)
        }
        # weights move only to variants whose instances are there to take the traffic
        fleet.set_weights({v: w for v, w in weights.items() if v not in failed})
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            if row is None or row.deployed is None:
                return
            capacity = {v: dict(c) for v, c in (row.deployed.get("capacity") or {}).items()}
            for variant_name in failed:
                variant = fleet.variant(variant_name)
                assert variant is not None
                capacity[variant_name]["instances"] = variant.current
                capacity[variant_name]["weight"] = variant.route.weight
            row.deployed = {**row.deployed, "capacity": capacity}
            row.status = "InService"
            row.failure_reason = (
                "; ".join(
                    f"Variant {v} could not reach its new instance count: {e}" for v, e in failed.items()
                )[:1024]
                or None
            )
            row.last_modified_time = self.clock.time()
        for variant_name, error in failed.items():
            self.logs.write(name, f"Variant {variant_name}: capacity change failed: {error}")
        self.logs.write(name, "Capacity change finished; the endpoint is InService.")

    async def _resume(self, name: str, status: str, deployed: dict[str, Any]) -> None:
        self.logs.write(name, f"Server restarted: starting the instances of this {status} endpoint again.")
        try:
            fleet = await deploy_fleet(name, deployed, self.ctx)
        except DeploymentFailed as failure:
            reason = f"The endpoint could not be started again after a server restart: {failure}"
            self.logs.write(name, reason)
            self._save(name, status="Failed", failure_reason=reason[:1024], pending=None)
            return
        self._activate(fleet)
        if status == "Updating":
            self.update(name)

    def _promote(self, fleet: EndpointFleet, snapshot: dict[str, Any]) -> None:
        """Route traffic to a freshly deployed fleet and record its snapshot as what the endpoint runs."""
        self._activate(fleet)
        self._save(
            fleet.name,
            status="InService",
            failure_reason=None,
            deployed=snapshot,
            pending=None,
            pending_start_time=None,
            config_name=snapshot["config"]["EndpointConfigName"],
        )

    def _activate(self, fleet: EndpointFleet) -> None:
        self.fleets[fleet.name] = fleet
        self.table.install(fleet.route)
        fleet.activate()
