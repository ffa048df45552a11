"""UpdateEndpoint's entry point: from the endpoint row to a running deployment of the kind its
DeploymentConfig asks for (blue/green or rolling), watched from its first moment, and cleaned up if it is
cancelled (DeleteEndpoint, shutdown): nothing it started keeps running, and what served before is routed
again."""

from __future__ import annotations

import asyncio
import logging

from moorage.control.deployment.blue_green import run_blue_green
from moorage.control.deployment.config import guardrails_of
from moorage.control.deployment.engine import Deployer, Run, expect
from moorage.control.deployment.progress import Deployment
from moorage.control.deployment.rolling import run_rolling
from moorage.control.deployment.watch import Watch
from moorage.store.tables import EndpointRow

log = logging.getLogger("moorage.control")


async def deploy_update(deployer: Deployer, row: EndpointRow) -> None:
    """Deploy the row's pending snapshot over what serves; returns once the deployment has ended."""
    run = _run(deployer, row)
    deployer.deployments[run.name] = run.deployment
    guardrails = run.guardrails
    if guardrails.fallback:
        deployer.logs.write(
            run.name, f"Deployment guardrails do not apply ({guardrails.fallback}): deploying all at once."
        )
    try:
        if guardrails.policy == "rolling" and _can_roll(run):
            await run_rolling(deployer, run)
        else:
            await run_blue_green(deployer, run)
    except asyncio.CancelledError:
        await asyncio.shield(_abandon(deployer, run))
        raise
    except Exception as exc:  # a fault here must not leave the endpoint Updating with two fleets
        log.exception("deployment of endpoint %s failed", run.name)
        await deployer.roll_back(run, f"an internal error while deploying: {exc!r}")
    finally:
        if deployer.deployments.get(run.name) is run.deployment and not run.deployment.stranded:
            del deployer.deployments[run.name]


def _run(deployer: Deployer, row: EndpointRow) -> Run:
    snapshot = row.pending
    assert snapshot is not None
    clock = deployer.clock
    guardrails = guardrails_of(row.deployment_config, snapshot)
    scale = deployer.ctx.settings.deployment_time_scale
    deadline, timeout = None, ""
    if guardrails.timeout is not None:
        deadline = clock.monotonic() + guardrails.timeout * scale
        timeout = f"MaximumExecutionTimeoutInSeconds ({guardrails.timeout:g} s" + (
            f"; {guardrails.timeout * scale:g} s at MOORAGE_DEPLOYMENT_TIME_SCALE={scale:g})"
            if scale != 1.0
            else ")"
        )
    blue = deployer.fleets.get(row.name)
    return Run(
        name=row.name,
        snapshot=snapshot,
        old_config=row.config_name,
        guardrails=guardrails,
        blue=blue,
        blue_route=deployer.table.get(row.name) or (blue.route if blue is not None else None),
        deployment=Deployment(
            clock, snapshot["config"]["EndpointConfigName"], snapshot=snapshot, started=clock.time()
        ),
        watch=Watch(deployer.store, clock, guardrails.alarms, deadline, timeout),
        row=row,
        still=expect(row, "Updating"),
        scale=scale,
        earlier=deployer.deployments.get(row.name),
    )


async def _abandon(deployer: Deployer, run: Run) -> None:
    """A cancelled deployment: what served is routed again and the new fleet stops (not drained: the
    endpoint is being deleted, or the server stops).

    A server that hands its instances over to the next one (a cluster's, on a shared database) leaves
    the new fleet running instead, as it leaves the old one: the other servers go on routing to both
    until the next server to reconcile adopts them and runs the update again."""
    deployment = run.deployment
    if deployer.handing_over:
        if deployment.green is not None:
            deployment.green.abandon()
        return
    if deployment.route is not None and deployer.table.get(run.name) is deployment.route:
        deployer.back_to_blue(run)
    if deployment.green is not None and deployer.fleets.get(run.name) is not deployment.green:
        await deployment.green.retire(drain=False, grace=5.0)


def _can_roll(run: Run) -> bool:
    """A rolling update replaces the one variant of one fleet; from a mixed fleet (a rollback that failed)
    or with no fleet serving, the deployment is blue/green."""
    return run.blue is not None and run.earlier is None and len(run.blue.variants) == 1
