"""Shadow variants (ShadowProductionVariants): placeholder until they are built."""

from __future__ import annotations

from typing import Any

from moorage.dataplane.taps import Tap
from moorage.fleet.endpoint import EndpointFleet
from moorage.fleet.settings import FleetContext


def shadow_tap(fleet: EndpointFleet, config: dict[str, Any], ctx: FleetContext) -> Tap | None:
    """The tap that sends production variants' requests to the fleet's shadow variants."""
    return None
