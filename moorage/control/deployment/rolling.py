"""A rolling deployment: the new fleet grows a batch (MaximumBatchSize) at a time; each batch takes its
share of traffic in proportion to capacity as soon as it is warm, bakes WaitIntervalInSeconds, and then
the same share of the old fleet's capacity drains and stops, so the endpoint never runs much more than
its size. A rollback grows the old fleet back (RollbackMaximumBatchSize at a time, all at once by default)
while the new one shrinks.

The old fleet's instances are stopped during the update, so its rollback has to start them again; if
they cannot start, the rollback failed too: the endpoint is UpdateRollbackFailed and serves from what
both fleets have (traffic in proportion to their capacity) until it is updated again or deleted."""

from __future__ import annotations

from typing import Any

from moorage.compute.base import InstanceStartError
from moorage.control.deployment.config import fleet_instances
from moorage.control.deployment.engine import Deployer, Expect, Run, baking_message, rollback_reason
from moorage.control.deployment.steps import capacity_share, rollback_batches, rolling_batches
from moorage.control.deployment.watch import RollbackNeeded
from moorage.fleet import DeploymentFailed, EndpointFleet, VariantFleet


async def run_rolling(deployer: Deployer, run: Run) -> None:
    assert run.blue is not None
    blue = run.blue.variants[0]
    full = blue.desired
    total = fleet_instances(run.snapshot)
    step = run.guardrails.step
    batches = rolling_batches(full, total, step.instances(total) if step is not None else total)
    green: EndpointFleet | None = None
    try:
        for number, batch in enumerate(batches, 1):
            have = green.variants[0].current if green is not None else 0
            run.deployment.green_is(
                "Creating",
                f"Batch {number} of {len(batches)}: starting {batch.green - have} instance(s) of endpoint "
                f"config {run.new_config}.",
            )
            if green is None:
                green = await _first_batch(deployer, run, batch.green)
                if green is None:
                    return
            else:
                await run.watch.guard(green.variants[0].resize(batch.green))
            await _bake_batch(deployer, run, green, blue, number, len(batches))
            blue.resize(batch.blue)  # the same share of the old capacity drains and stops
            deployer.shift(run, capacity_share(batch.green, batch.blue), green)
    except RollbackNeeded as cause:
        await _roll_back(deployer, run, full, str(cause))
        return
    except InstanceStartError as failure:
        await _roll_back(deployer, run, full, f"instances of the new fleet did not start: {failure}")
        return
    assert green is not None
    await deployer.finish(run, green)


async def _first_batch(deployer: Deployer, run: Run, instances: int) -> EndpointFleet | None:
    """The new fleet with its first batch of instances; None if it could not start (recorded)."""
    first = {**run.snapshot, "capacity": _capacity(run.snapshot, instances)}
    try:
        green = await run.watch.guard(deployer.start_green(run, first))
    except DeploymentFailed as failure:
        await deployer.failed_to_start(run, str(failure))
        return None
    green.activate()
    return green


async def _bake_batch(
    deployer: Deployer, run: Run, green: EndpointFleet, blue: VariantFleet, number: int, batches: int
) -> None:
    instances = green.variants[0].current
    share = capacity_share(instances, blue.current)
    deployer.shift(run, share, green)
    moved = (
        f"Batch {number} of {batches}: {instances} new instance(s) take {share:.0%} of traffic; "
        f"{blue.current} previous instance(s) the rest."
    )
    deployer.logs.write(run.name, f"Rolling deployment of {run.new_config}: {moved}")
    run.deployment.green_is("ActivatingTraffic", moved)
    bake = run.seconds(run.guardrails.wait)
    if bake > 0:
        run.deployment.then_green("Baking", baking_message(run))
    await run.watch.bake(bake)


async def _roll_back(deployer: Deployer, run: Run, full: int, cause: str) -> None:
    """Grow the old fleet back to `full` in RollbackMaximumBatchSize batches while the new one shrinks;
    UpdateRollbackFailed if the old instances cannot start again."""
    assert run.blue is not None
    blue = run.blue.variants[0]
    if blue.desired >= full:  # the old fleet is whole: traffic simply returns to it
        await deployer.roll_back(run, cause)
        return
    reason = rollback_reason(run, cause)
    still = await deployer.rolling_back(run, reason)
    green = run.deployment.green
    run.deployment.green_is("Deleting", "Rolling back: the new instances leave as the previous ones return.")
    size = run.guardrails.rollback_step
    have = green.variants[0].current if green is not None else 0
    for batch in rollback_batches(
        blue.current, full, have, size.instances(full) if size is not None else None
    ):
        run.deployment.blue_is(
            "Creating", f"Rolling back: starting previous instances, {batch.blue} of {full}."
        )
        try:
            await blue.resize(batch.blue)
        except InstanceStartError as failure:
            await _rollback_failed(deployer, run, cause, str(failure), still)
            return
        if green is not None:  # traffic follows capacity; then the new fleet gives up as much
            deployer.shift(run, capacity_share(green.variants[0].current, blue.current), green)
            green.variants[0].resize(batch.green)
            deployer.shift(run, capacity_share(batch.green, blue.current), green)
    run.deployment.blue_stage = []
    await deployer.end_rollback(run, reason, still)


async def _rollback_failed(
    deployer: Deployer, run: Run, cause: str, failure: str, still: Expect | None
) -> None:
    """The old fleet cannot grow back: both fleets keep serving what they have."""
    assert run.blue is not None
    blue = run.blue.variants[0]
    green = run.deployment.green
    new = green.variants[0].current if green is not None else 0
    reason = (
        f"Rolling update to endpoint config {run.new_config} failed ({cause}) and so did its rollback: the "
        f"previous instances could not be started again ({failure}). The endpoint serves from {blue.current} "
        f"instance(s) of {run.old_config} and {new} of {run.new_config}. Update the endpoint again, or "
        "delete it."
    )
    deployer.logs.write(run.name, reason)
    if green is not None:
        deployer.shift(run, capacity_share(new, blue.current), green)
    run.deployment.stranded = True
    run.deployment.blue_stage = []
    run.deployment.green_stage = []
    if still is not None:
        await deployer.save(run.name, still, status="UpdateRollbackFailed", failure_reason=reason[:1024])


def _capacity(snapshot: dict[str, Any], instances: int) -> dict[str, Any]:
    """The snapshot's capacity with its one variant at `instances` (a rolling update's first batch)."""
    variant = snapshot["config"]["ProductionVariants"][0]
    capacity = {name: dict(c) for name, c in (snapshot.get("capacity") or {}).items()}
    capacity.setdefault(variant["VariantName"], {})["instances"] = instances
    return capacity
