"""A blue/green deployment: the new fleet starts at its full size and is warm before it takes any traffic;
then traffic moves to it in the steps of its TrafficRoutingConfiguration (everything at once, a canary and
then the rest, or linear steps), baking WaitIntervalInSeconds after each step; after the last bake the old
fleet stays TerminationWaitInSeconds more, ready to take the traffic back, and then drains and stops."""

from __future__ import annotations

from moorage.control.deployment.config import fleet_instances
from moorage.control.deployment.engine import Deployer, Run, baking_message
from moorage.control.deployment.steps import traffic_steps
from moorage.control.deployment.watch import RollbackNeeded
from moorage.fleet import DeploymentFailed, EndpointFleet


async def run_blue_green(deployer: Deployer, run: Run) -> None:
    deployment, watch = run.deployment, run.watch
    instances = fleet_instances(run.snapshot)
    deployment.green_is("Creating", f"Starting {instances} instance(s) of endpoint config {run.new_config}.")
    try:
        green = await watch.guard(deployer.start_green(run, run.snapshot))
    except DeploymentFailed as failure:
        await deployer.failed_to_start(run, str(failure))
        return
    except RollbackNeeded as cause:  # nothing took traffic yet; what started stops
        await deployer.roll_back(run, str(cause))
        return
    green.activate()  # kept whole and healthy from now on, as a serving fleet is
    try:
        await _shift_and_bake(deployer, run, green, instances)
    except RollbackNeeded as cause:
        await deployer.roll_back(run, str(cause))
        return
    await deployer.finish(run, green)


async def _shift_and_bake(deployer: Deployer, run: Run, green: EndpointFleet, instances: int) -> None:
    deployment, watch, guardrails = run.deployment, run.watch, run.guardrails
    if run.blue_route is None:  # nothing served: nothing to shift from
        return
    steps = traffic_steps(guardrails, instances)
    bake = run.seconds(guardrails.wait)
    for number, share in enumerate(steps, 1):
        deployer.shift(run, share, green)
        moved = f"{share:.0%} of traffic on the new instances (step {number} of {len(steps)})."
        deployer.logs.write(run.name, f"Deployment of {run.new_config}: {moved}")
        deployment.green_is("ActivatingTraffic", moved[0].upper() + moved[1:])
        if bake > 0:
            deployment.then_green("Baking", baking_message(run))
        await watch.bake(bake)
    wait = run.seconds(guardrails.termination_wait)
    if wait > 0:
        deployment.green_stage = deployment.green_stage[:1]  # all traffic moved; baking is over
        waiting = run.says(guardrails.termination_wait)
        deployment.blue_is(
            "Deleting",
            f"The previous instances stop once TerminationWaitInSeconds ({waiting}) has passed; until then "
            "they can take the traffic back.",
        )
        await watch.bake(wait)
