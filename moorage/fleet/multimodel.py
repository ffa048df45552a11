"""Multi-model variants (Mode MultiModel): the instance's settings and its gate (docs/multimodel.md)."""

from __future__ import annotations

from typing import Any

from moorage.fleet.plan import DeploymentFailed, VariantPlan
from moorage.fleet.settings import FleetContext


async def prepare_multimodel(
    endpoint: str, snapshot: dict[str, Any], pv: dict[str, Any], ctx: FleetContext
) -> VariantPlan:
    """Nothing to download before the first request: the instance loads models as they are asked for."""
    raise DeploymentFailed("multi-model endpoints: under construction")
