"""The reconciler turns the endpoint rows in the store into running fleets and writes their statuses.

Every transition is written to the store first; instances are cattle rebuilt from the store on restart.
Deployments are blue/green or rolling, as the endpoint's DeploymentConfig says (moorage/control/
deployment): a new fleet is started and warmed while the old one serves, traffic moves to it by routing
table assignments, then the old fleet drains and stops. Starting, resizing and stopping instances is the
fleet's job (moorage/fleet); this module decides when, and records what happened.

A transition records its outcome only if the row is still in the state the transition started from
(same endpoint, status and deployment); every write is conditional on the row's version, and one that
another writer overtook is decided again on the row as it now is. An endpoint deleted meanwhile is
never written back: what the transition started is stopped instead.

Reads and writes run on the store's threads (`Store.run`), so a slow database holds up a transition, never
the event loop; whatever touches the live fleets and the routing table runs on the loop, between them.

The control plane never tells the reconciler what to do: it writes the row and wakes it (`wake`), and
`follow` reads every endpoint's row and starts whatever transition a row asks for that is not already
under way. So a change accepted by any server sharing the store is carried out by the one that
reconciles, within `poll_seconds` of being written, and a woken reconciler acts at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select

from moorage.control.deployment import Deployer, Deployment, deploy_update, live_states
from moorage.control.deployment import VariantState as VariantState
from moorage.control.deployment.engine import Expect, expect
from moorage.dataplane.routes import RoutingTable
from moorage.fleet import DeploymentFailed, EndpointFleet, FleetContext, deploy_fleet
from moorage.fleet.plan import deployment_key, variant_capacity
from moorage.fleet.serverless import serverless_config
from moorage.store import Store, delete_endpoint, update_endpoint
from moorage.store.tables import EndpointRow


@dataclass(frozen=True)
class _Intent:
    """What one endpoint row asks for: its status, whether a deployment is pending, and what is deployed
    (with the variants' desired capacity)."""

    name: str
    status: str
    pending: bool
    deployed: dict[str, Any]


log = logging.getLogger("moorage.control")

_Kind = Literal["create", "update", "delete", "capacity"]
DEFAULT_POLL_SECONDS = 1.0


class Reconciler:
    def __init__(
        self, store: Store, table: RoutingTable, ctx: FleetContext, poll_seconds: float = DEFAULT_POLL_SECONDS
    ) -> None:
        self.store = store
        self.table = table
        self.ctx = ctx
        self.logs = ctx.logs
        self.clock = ctx.clock
        self.poll_seconds = poll_seconds
        self.fleets: dict[str, EndpointFleet] = {}
        # deployments under way, and the remains of a rolling update whose rollback failed
        self.deployments: dict[str, Deployment] = {}
        self.deployer = Deployer(store, table, ctx, self.fleets, self.deployments, self._save)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._kinds: dict[str, _Kind] = {}
        self._woken = asyncio.Event()

    # ---- what the control plane calls ----------------------------------------------------------

    def wake(self) -> None:
        """A row changed: look at the rows now rather than at the next poll."""
        self._woken.set()

    async def follow(self) -> None:
        """Carry out what the rows ask for, forever (run as a task by the server that reconciles)."""
        while True:
            self._woken.clear()
            try:
                intents = await self.store.run(self._intents)
            except Exception:  # a store hiccup: logged, and looked at again at the next poll
                log.exception("reading the endpoints failed; trying again in %.1f s", self.poll_seconds)
            else:
                for intent in intents:
                    self._dispatch(intent)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), self.poll_seconds)

    def _dispatch(self, intent: _Intent) -> None:
        name, doing = intent.name, self._kinds.get(intent.name)
        if intent.status == "Deleting":
            if doing != "delete":
                self.delete(name)
        elif doing is not None:
            return  # a transition is under way; it decides again on the row when it records its outcome
        elif intent.status == "Creating":
            self.create(name)
        elif intent.status == "Updating" and intent.pending:
            self.update(name)
        elif intent.status == "Updating":
            self._capacity_from(intent)

    def _capacity_from(self, intent: _Intent) -> None:
        """An accepted capacity change: resize the variants whose desired count the row changed, and
        move the weights it changed."""
        fleet = self.fleets.get(intent.name)
        if fleet is None or not intent.deployed:
            self.update(intent.name)  # nothing to resize here: `_update` records the row's outcome
            return
        counts, weights = {}, {}
        for pv in _variants(intent.deployed["config"]):
            variant = fleet.variant(pv["VariantName"])
            if variant is None:
                continue
            instances, weight = variant_capacity(intent.deployed, pv)
            if variant.serverless is not None:  # no count to resize; a new ServerlessConfig applies now
                config = serverless_config(intent.deployed, pv)
                variant.serverless.configure(config or variant.serverless.config)
            elif instances != variant.desired:
                counts[variant.name] = instances
            if weight != variant.route.weight:
                weights[variant.name] = weight
        self.change_capacity(intent.name, counts, weights)

    def _intents(self) -> list[_Intent]:
        with self.store.session() as session:
            rows = session.execute(
                select(EndpointRow.name, EndpointRow.status, EndpointRow.pending, EndpointRow.deployed)
            ).all()
        return [
            _Intent(name, status, bool(pending), deployed or {})
            for name, status, pending, deployed in rows
            if status in ("Creating", "Updating", "Deleting")
        ]

    async def needed_deployments(self) -> set[tuple[str, str, str]]:
        """(endpoint, variant, deployment) of every deployment the rows still need, deployed or pending:
        the instances an earlier server left running that a fleet may take over."""
        return await self.store.run(self._needed)

    def _needed(self) -> set[tuple[str, str, str]]:
        with self.store.session() as session:
            rows = session.execute(select(EndpointRow.name, EndpointRow.deployed, EndpointRow.pending)).all()
        return {
            (name, pv["VariantName"], deployment_key(snapshot))
            for name, deployed, pending in rows
            for snapshot in (deployed, pending)
            if snapshot
            for pv in _variants(snapshot["config"])
        }

    # ---- transitions, started by `_dispatch` (all return at once; work goes on in tasks) ---------

    def create(self, name: str) -> None:
        self._run(name, self._create(name), "create")

    def update(self, name: str) -> None:
        self._run(name, self._update(name), "update")

    def delete(self, name: str) -> None:
        previous = self._tasks.pop(name, None)
        self._run(name, self._delete(name, previous), "delete")

    def change_capacity(self, name: str, counts: dict[str, int], weights: dict[str, float]) -> None:
        """Resize variants (starting now) and then apply new weights; the endpoint is Updating meanwhile."""
        fleet = self.fleets.get(name)
        if fleet is None:
            return
        resizes = {v.name: v.resize(n) for v, n in ((fleet.variant(v), n) for v, n in counts.items()) if v}
        self._run(name, self._change_capacity(fleet, resizes, weights), "capacity")

    def variant_states(self, name: str) -> dict[str, VariantState]:
        """Every variant's live state; a deployment's new variants keyed `PENDING + name`."""
        return live_states(self.fleets.get(name), self.deployments.get(name))

    def every_fleet(self) -> list[EndpointFleet]:
        """Every fleet running instances: each endpoint's serving one first, then the one a deployment
        brings in (or a failed rollback left serving beside it), whose variants share the serving
        one's names and statistics."""
        arriving = [
            deployment.green
            for name, deployment in self.deployments.items()
            if deployment.green is not None and deployment.green is not self.fleets.get(name)
        ]
        return [*self.fleets.values(), *arriving]

    def published_states(self, name: str) -> dict[str, Any]:
        """`variant_states` as JSON, published with the endpoint's route for the other servers."""
        return {variant: state.as_json() for variant, state in self.variant_states(name).items()}

    async def restore(self) -> None:
        """Rebuild what the store says should run; InService endpoints are warm before this returns."""
        rows = await self.store.run(self._all)
        resumed = []
        for row in rows:
            if row.status == "Deleting":
                self.delete(row.name)
            elif row.status == "Creating":
                self.create(row.name)
            elif row.status in ("InService", "Updating", "RollingBack", "UpdateRollbackFailed"):
                resumed.append(self._resume(row))
        await asyncio.gather(*resumed)

    async def shutdown(self, stop_instances: bool = True) -> None:
        """Stop reconciling; the fleets' instances stop too, unless they outlive this server (a cluster's),
        in which case they go on serving and the next server to reconcile adopts them."""
        self.deployer.handing_over = not stop_instances  # a deployment's new fleet included
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        fleets = [*self.fleets.values(), *(d.green for d in self.deployments.values() if d.green)]
        if stop_instances:
            await asyncio.gather(*(fleet.retire(drain=False, grace=5.0) for fleet in fleets))
        else:
            for fleet in fleets:
                fleet.abandon()
        self.fleets.clear()
        self.deployments.clear()

    # ---- transitions ---------------------------------------------------------------------------

    def _run(self, name: str, work: Coroutine[Any, Any, None], kind: _Kind) -> None:
        task = asyncio.create_task(work, name=f"endpoint:{name}")
        self._tasks[name] = task
        self._kinds[name] = kind
        task.add_done_callback(lambda t: self._forget(name, t))

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
            del self._kinds[name]
            self.wake()  # the row may ask for more (a change accepted while this one ran)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.logs.write(name, f"Internal error while reconciling: {exc!r}")

    def _all(self) -> list[EndpointRow]:
        with self.store.session() as session:
            return list(session.query(EndpointRow).all())

    def _read(self, name: str) -> EndpointRow | None:
        with self.store.session() as session:
            return session.get(EndpointRow, name)

    def _record(self, name: str, still: Expect, changes: Callable[[EndpointRow], dict[str, Any]]) -> bool:
        """Write a transition's outcome if the row is still as `still` expects; False when the endpoint
        moved on (deleted, or changed by another transition), so the caller undoes what it started."""
        while True:
            with self.store.session() as session:
                row = session.get(EndpointRow, name)
                if row is None or not still(row):
                    return False
                values = {**changes(row), "last_modified_time": self.clock.time()}
                if update_endpoint(session, name, row.version, **values):
                    return True
            # overtaken by another writer (a tag, a DeleteEndpoint): decide again on the row as it is now

    async def _save(self, name: str, still: Expect, **changes: Any) -> bool:
        return await self.store.run(self._record, name, still, lambda _row: changes)

    async def _create(self, name: str) -> None:
        row = await self.store.run(self._read, name)
        if row is None or row.status != "Creating" or not row.pending:
            return
        snapshot, still = row.pending, expect(row)
        try:
            fleet = await deploy_fleet(name, snapshot, self.ctx)
        except DeploymentFailed as failure:
            self.logs.write(name, f"Endpoint creation failed: {failure}")
            await self._save(name, still, status="Failed", failure_reason=str(failure)[:1024], pending=None)
            return
        if await self._promote(fleet, snapshot, still):
            self.logs.write(name, "Endpoint is InService.")

    async def _update(self, name: str) -> None:
        row = await self.store.run(self._read, name)
        if row is None or row.status != "Updating":
            return
        if not row.pending:  # a capacity change cut short by a restart: the fleet was rebuilt at its target
            still = expect(row)
            if name in self.fleets:
                await self._save(name, still, status="InService")
            else:  # ... unless it could not be rebuilt: nothing runs, so it is not InService
                reason = "The endpoint's instances could not be started again; delete and create it again."
                await self._save(name, still, status="Failed", failure_reason=reason)
            return
        await deploy_update(self.deployer, row)  # blue/green or rolling, as its DeploymentConfig says

    async def _delete(self, name: str, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            previous.cancel()
            with contextlib.suppress(BaseException):
                await previous
        self.table.remove(name)
        remains = self.deployments.pop(name, None)
        fleets = [self.fleets.pop(name, None), remains.green if remains is not None else None]
        await asyncio.gather(*(f.retire(drain=False, grace=5.0) for f in fleets if f is not None))
        await self.store.run(self._remove, name)
        if self.ctx.stats is not None:
            self.ctx.stats.forget(name)
        self.logs.write(name, "Endpoint deleted.")

    async def _change_capacity(
        self, fleet: EndpointFleet, resizes: dict[str, asyncio.Future[None]], weights: dict[str, float]
    ) -> None:
        name = fleet.name
        row = await self.store.run(self._read, name)
        still = expect(row) if row is not None and row.status == "Updating" else _never
        results = await asyncio.gather(*resizes.values(), return_exceptions=True)
        failed = {
            variant: result
            for variant, result in zip(resizes, results, strict=True)
            if isinstance(result, BaseException)
        }
        # weights move only to variants whose instances are there to take the traffic
        fleet.set_weights({v: w for v, w in weights.items() if v not in failed})
        # what the variants that failed to resize serve now, read here on the loop (outcome runs on a
        # store thread)
        reached = {
            name: {"instances": variant.current, "weight": variant.route.weight}
            for name, variant in ((v, fleet.variant(v)) for v in failed)
            if variant is not None
        }

        def outcome(row: EndpointRow) -> dict[str, Any]:
            deployed = row.deployed or {}
            capacity = {v: dict(c) for v, c in (deployed.get("capacity") or {}).items()}
            for variant_name, now in reached.items():
                capacity[variant_name].update(now)
            reasons = "; ".join(
                f"Variant {v} could not reach its new instance count: {e}" for v, e in failed.items()
            )
            return {
                "deployed": {**deployed, "capacity": capacity},
                "status": "InService",
                "failure_reason": reasons[:1024] or None,
            }

        if not await self.store.run(
            self._record, name, lambda r: still(r) and r.deployed is not None, outcome
        ):
            return
        for variant_name, error in failed.items():
            self.logs.write(name, f"Variant {variant_name}: capacity change failed: {error}")
        self.logs.write(name, "Capacity change finished; the endpoint is InService.")

    async def _resume(self, row: EndpointRow) -> None:
        name, status, still = row.name, row.status, expect(row)
        self.logs.write(name, f"Server restarted: starting the instances of this {status} endpoint again.")
        try:
            fleet = await deploy_fleet(name, row.deployed or {}, self.ctx)
        except DeploymentFailed as failure:
            reason = f"The endpoint could not be started again after a server restart: {failure}"
            self.logs.write(name, reason)
            await self._save(name, still, status="Failed", failure_reason=reason[:1024], pending=None)
            return
        self._activate(fleet)
        if status == "Updating":  # the update starts again from the beginning
            self.update(name)
        elif status in ("RollingBack", "UpdateRollbackFailed"):  # back on the deployed config: done
            self.logs.write(name, f"The endpoint was {status}; it serves its deployed config again.")
            await self._save(name, still, status="InService", pending=None, pending_start_time=None)

    async def _promote(self, fleet: EndpointFleet, snapshot: dict[str, Any], still: Expect) -> bool:
        """Record a freshly deployed fleet's snapshot as what the endpoint runs, then route traffic to
        it; if the endpoint moved on meanwhile (deleted, say), the fleet is stopped instead. Cancelled
        while the write is under way (a DeleteEndpoint, shutdown), the fleet is stopped too: nothing
        else knows about it yet.

        A new endpoint (nothing routed yet) is routable before its row says InService, so a client
        that sees InService can invoke it at once; an updated one switches after the write, the old
        fleet serving meanwhile."""
        first = fleet.name not in self.fleets
        if first:
            self._activate(fleet)
        try:
            recorded = await self._save(
                fleet.name,
                still,
                status="InService",
                failure_reason=None,
                deployed=snapshot,
                pending=None,
                pending_start_time=None,
                config_name=snapshot["config"]["EndpointConfigName"],
            )
        except asyncio.CancelledError:
            self._deactivate(fleet)
            await asyncio.shield(fleet.retire(drain=False, grace=5.0))
            raise
        if not recorded:
            self.logs.write(
                fleet.name, "The endpoint changed while it was being deployed; the new instances stop."
            )
            self._deactivate(fleet)
            await fleet.retire(drain=False, grace=5.0)
            return False
        if not first:
            self._activate(fleet)
        return True

    def _remove(self, name: str) -> None:
        """Delete the row of a Deleting endpoint, whoever else writes to it meanwhile."""
        while True:
            with self.store.session() as session:
                row = session.get(EndpointRow, name)
                if row is None or row.status != "Deleting" or delete_endpoint(session, name, row.version):
                    return

    def _activate(self, fleet: EndpointFleet) -> None:
        self.fleets[fleet.name] = fleet
        self.table.install(fleet.route)
        fleet.activate()

    def _deactivate(self, fleet: EndpointFleet) -> None:
        """Undo `_activate` of a fleet that is not to serve after all (if it is still the one routed)."""
        if self.fleets.get(fleet.name) is fleet:
            del self.fleets[fleet.name]
            self.table.remove(fleet.name)


def _variants(config: dict[str, Any]) -> list[dict[str, Any]]:
    """An endpoint config's production and shadow variants: each runs instances of its own."""
    return [*config["ProductionVariants"], *(config.get("ShadowProductionVariants") or [])]


def _never(_row: EndpointRow) -> bool:
    return False
