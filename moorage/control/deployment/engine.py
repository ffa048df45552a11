"""One UpdateEndpoint carried out: the new (green) fleet starts next to the old (blue) one, traffic moves
to it as the DeploymentConfig says (blue_green.py, rolling.py), and the deployment ends in one of three
ways, each written to the endpoint row only if the row is still in this deployment:

- finished: the row says InService on the new config, the route is the new fleet's alone, and the old
  fleet drains (its in-flight requests finish) and stops;
- rolled back (an alarm, the timeout, a batch that did not start): RollingBack while traffic returns to
  the old fleet at once and the new one drains and stops, then InService on the old config with a
  FailureReason that says why;
- a new fleet that never started: InService on the old config at once, with the FailureReason.

Traffic moves only by installing a route in the routing table, one assignment each time, so a request
sees the old split or the new one, never neither; instances leave a route before they stop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from moorage.control.deployment.config import Guardrails
from moorage.control.deployment.progress import Deployment
from moorage.control.deployment.watch import Watch
from moorage.dataplane.routes import EndpointRoute, RoutingTable, blend
from moorage.fleet import EndpointFleet, FleetContext, deploy_fleet
from moorage.fleet.plan import variant_capacity
from moorage.store import Store
from moorage.store.tables import EndpointRow

log = logging.getLogger("moorage.control")

Expect = Callable[[EndpointRow], bool]
# writes `changes` to the endpoint row if it is still as `Expect` says; False when the endpoint moved on
Save = Callable[..., Awaitable[bool]]


@dataclass
class Run:
    """One deployment of one endpoint, from the row that asked for it."""

    name: str
    snapshot: dict[str, Any]  # the new endpoint config and its models, as accepted
    old_config: str
    guardrails: Guardrails
    blue: EndpointFleet | None  # what serves now (None: nothing could be started after a restart)
    blue_route: EndpointRoute | None  # the route that serves now: traffic returns to it on rollback
    deployment: Deployment
    watch: Watch
    row: EndpointRow  # as read when the deployment started
    still: Expect  # the row is still Updating in this deployment
    scale: float  # MOORAGE_DEPLOYMENT_TIME_SCALE
    # a rolling update's remains whose rollback failed (UpdateRollbackFailed): they serve with `blue`
    earlier: Deployment | None = None

    @property
    def new_config(self) -> str:
        return str(self.snapshot["config"]["EndpointConfigName"])

    def seconds(self, configured: float) -> float:
        """A configured wait as this server runs it (the time scale applied)."""
        return configured * self.scale

    def says(self, configured: float) -> str:
        """A configured wait in a status message, with what it is at this server's time scale."""
        scaled = self.seconds(configured)
        return (
            f"{configured:g} s"
            if scaled == configured
            else f"{configured:g} s, {scaled:g} s at this server's time scale"
        )


class Deployer:
    """Runs UpdateEndpoint's deployments for the reconciler, on its fleets, routing table and row writes."""

    def __init__(
        self,
        store: Store,
        table: RoutingTable,
        ctx: FleetContext,
        fleets: dict[str, EndpointFleet],
        deployments: dict[str, Deployment],
        save: Save,
    ) -> None:
        self.store = store
        self.table = table
        self.ctx = ctx
        self.logs = ctx.logs
        self.clock = ctx.clock
        self.fleets = fleets
        self.deployments = deployments
        self.save = save
        # the server stops and its instances outlive it (the next server adopts them): a deployment
        # cancelled now leaves its new fleet running too (update.py)
        self.handing_over = False

    async def start_green(self, run: Run, snapshot: dict[str, Any]) -> EndpointFleet:
        """The new fleet, started from `snapshot` (under the caller's watch). It belongs to the
        deployment from the moment it runs, so a rollback or a cancellation that comes just as it
        finished starting still stops it."""
        green = await deploy_fleet(run.name, snapshot, self.ctx)
        run.deployment.green = green
        return green

    # ---- traffic ---------------------------------------------------------------------------------

    def shift(self, run: Run, share: float, green: EndpointFleet) -> None:
        """Route `share` of the traffic to the new fleet and the rest to what served: one assignment."""
        deployment = run.deployment
        if run.blue_route is None or share >= 1.0:
            route = green.route
        else:
            route = blend(run.blue_route, green.route, share)
        self.table.install(route)
        deployment.route, deployment.share = route, share

    # ---- outcomes --------------------------------------------------------------------------------

    async def finish(self, run: Run, green: EndpointFleet) -> None:
        """Record the new config as what the endpoint runs; its fleet alone takes the traffic; what
        served before drains and stops."""
        recorded = await self.save(
            run.name,
            run.still,
            status="InService",
            failure_reason=None,
            deployed=run.snapshot,
            pending=None,
            pending_start_time=None,
            config_name=run.new_config,
        )
        if not recorded:
            await self._moved_on(run)
            return
        self.fleets[run.name] = green
        self.table.install(green.route)
        run.deployment.route = None  # the endpoint's own route now, not the deployment's
        if self.deployments.get(run.name) is run.deployment:
            del self.deployments[run.name]
        self.logs.write(
            run.name, f"Endpoint config {run.new_config} serves all traffic; the endpoint is InService."
        )
        leaving = [f for f in (run.blue, run.earlier.green if run.earlier else None) if f is not None]
        if leaving:
            self.logs.write(run.name, "The previous instances are draining and stop.")
        await asyncio.gather(*(fleet.retire(drain=True) for fleet in leaving))

    async def failed_to_start(self, run: Run, failure: str) -> None:
        """The new fleet never took traffic: what served goes on serving, with the FailureReason."""
        reason = (
            f"Update to endpoint config {run.new_config} failed and was rolled back; the endpoint still "
            f"serves {run.old_config}. Cause: {failure}"
        )
        self.logs.write(run.name, reason)
        await self.save(run.name, run.still, failure_reason=reason[:1024], **self.settled(run))

    async def roll_back(self, run: Run, cause: str) -> None:
        """Traffic returns to what served, at once; the new fleet drains and stops (RollingBack), then the
        endpoint is back on its previous config with a FailureReason naming the cause."""
        reason = rollback_reason(run, cause)
        self.back_to_blue(run)
        self._regrow_blue(run)
        await self.end_rollback(run, reason, await self.rolling_back(run, reason))

    async def end_rollback(self, run: Run, reason: str, still: Expect | None) -> None:
        """Traffic is back on what served: the new fleet drains and stops, and the row says how the
        deployment ended (unless the endpoint moved on meanwhile: `still` None)."""
        self.back_to_blue(run)
        green = run.deployment.green
        if green is not None:
            run.deployment.green_is("Deleting", "Rolled back: the new instances are draining and stop.")
            await green.retire(drain=True)
        if still is not None:
            await self.save(run.name, still, failure_reason=reason[:1024], **self.settled(run))
            self.logs.write(run.name, "Rollback finished.")

    def back_to_blue(self, run: Run) -> None:
        """All traffic on what served before the deployment, in one assignment."""
        if run.blue_route is not None:
            self.table.install(run.blue_route)
        run.deployment.route, run.deployment.share = None, 0.0

    async def rolling_back(self, run: Run, reason: str) -> Expect | None:
        """Record RollingBack (with the reason); the expectation of the row from then on, or None if the
        endpoint moved on meanwhile (deleted)."""
        self.logs.write(run.name, f"Rolling back: {reason}")
        if not await self.save(run.name, run.still, status="RollingBack", failure_reason=reason[:1024]):
            return None
        return expect(run.row, "RollingBack")

    def settled(self, run: Run) -> dict[str, Any]:
        """The row's status once a deployment that did not finish is over: InService, or back in
        UpdateRollbackFailed when it started there (the earlier deployment's remains serve again)."""
        if run.blue is None:  # nothing serves (its instances could not be started again after a restart)
            return {"status": "Failed", "pending": None, "pending_start_time": None}
        if run.earlier is None:
            return {"status": "InService", "pending": None, "pending_start_time": None}
        self.deployments[run.name] = run.earlier
        return {
            "status": "UpdateRollbackFailed",
            "pending": run.earlier.snapshot,
            "pending_start_time": run.earlier.started,
        }

    def _regrow_blue(self, run: Run) -> None:
        """Variants of the old fleet that a rolling update shrank get their instances back (in the
        background; their remaining instances serve meanwhile)."""
        deployed = run.row.deployed or {}
        if run.blue is None or not deployed or run.earlier is not None:  # a mixed fleet stays as it was
            return
        for pv in deployed["config"]["ProductionVariants"]:
            variant = run.blue.variant(pv["VariantName"])
            instances = variant_capacity(deployed, pv)[0]
            if variant is not None and variant.serverless is None and variant.desired < instances:
                variant.resize(instances)

    async def _moved_on(self, run: Run) -> None:
        """The endpoint changed under the deployment (DeleteEndpoint): stop what the deployment started."""
        self.logs.write(run.name, "The endpoint changed while it was being deployed; the new instances stop.")
        self.back_to_blue(run)
        if run.deployment.green is not None:
            await run.deployment.green.retire(drain=False, grace=5.0)


def baking_message(run: Run) -> str:
    """The StatusMessage of a baking period."""
    alarms = run.guardrails.alarms
    watching = f"; rolling back if any of {', '.join(alarms)} goes into ALARM" if alarms else ""
    return f"Baking for {run.says(run.guardrails.wait)}{watching}."


def rollback_reason(run: Run, cause: str) -> str:
    return (
        f"Update to endpoint config {run.new_config} was rolled back; the endpoint serves {run.old_config} "
        f"again. Cause: {cause}"
    )


def expect(row: EndpointRow, status: str | None = None) -> Expect:
    """Whether a row is still in the transition `row` was read in: the same endpoint (not one deleted and
    created again under its name) and deployment (generation), with `status` (default: the row's own; a
    deployment's own writes move it on)."""
    key = (row.creation_time, row.generation, status if status is not None else row.status)
    return lambda current: (current.creation_time, current.generation, current.status) == key
