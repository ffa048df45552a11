"""Deploying a fleet: plan every variant from the snapshot, then start all of its instances."""

from __future__ import annotations

import asyncio
from typing import Any

from moorage.artifacts import ArtifactError
from moorage.compute.base import InstanceStartError
from moorage.fleet.endpoint import EndpointFleet
from moorage.fleet.plan import DeploymentFailed, check_supported, prepare_variant
from moorage.fleet.settings import FleetContext
from moorage.fleet.taps import attach_taps
from moorage.fleet.variant import VariantFleet
from moorage.jobs.asynchronous.config import AsyncSettings


async def deploy_fleet(endpoint: str, snapshot: dict[str, Any], ctx: FleetContext) -> EndpointFleet:
    """Prepare every variant and start all of its instances; nothing is left running if this fails."""
    config = snapshot["config"]
    check_supported(config)
    try:
        plans = [await prepare_variant(endpoint, snapshot, pv, ctx) for pv in config["ProductionVariants"]]
        # shadow variants: planned and started the same way; they get copies, never callers (shadow.py)
        shadows = [
            await prepare_variant(endpoint, snapshot, pv, ctx)
            for pv in config.get("ShadowProductionVariants") or []
        ]
        fleet = EndpointFleet(
            endpoint,
            [VariantFleet(endpoint, plan, ctx) for plan in plans],
            ctx,
            shadows=[VariantFleet(endpoint, plan, ctx) for plan in shadows],
        )
        attach_taps(fleet, config, ctx)  # shadow copies, data capture (moorage/fleet/taps.py)
        if config.get("AsyncInferenceConfig"):  # InvokeEndpointAsync only (moorage/jobs/asynchronous/)
            fleet.route.asynchronous = AsyncSettings.of(config["AsyncInferenceConfig"])
        await fleet.start()
    except (InstanceStartError, ArtifactError) as exc:
        raise DeploymentFailed(str(exc)) from exc
    except (DeploymentFailed, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise DeploymentFailed(f"Internal error while deploying: {exc!r}") from exc
    return fleet
