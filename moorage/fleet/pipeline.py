"""Multi-container variants: an inference pipeline (Serial) or Direct invocation (docs/pipelines.md)."""

from __future__ import annotations

from typing import Any

from moorage.fleet.plan import DeploymentFailed, VariantPlan
from moorage.fleet.settings import FleetContext


async def prepare_pipeline(
    endpoint: str, snapshot: dict[str, Any], pv: dict[str, Any], ctx: FleetContext
) -> VariantPlan:
    """Every container prepared (concurrently, within the variant's download bound)."""
    raise DeploymentFailed("multi-container endpoints: under construction")
