"""Shadow variants (ShadowProductionVariants): the tap that copies production requests to them.

The shadow variants themselves are planned and started like production variants (deploy.py) and held
in `EndpointFleet.shadows`; this module only connects them to the production variants' requests
(moorage/dataplane/shadow.py does the copying). docs/shadow.md describes the behaviour."""

from __future__ import annotations

from typing import Any

from moorage.dataplane.shadow import ShadowCopies, ShadowTap, live_production_weight
from moorage.dataplane.taps import Tap
from moorage.fleet.endpoint import EndpointFleet
from moorage.fleet.settings import FleetContext


def shadow_tap(fleet: EndpointFleet, config: dict[str, Any], ctx: FleetContext) -> Tap | None:
    """The tap that sends production variants' requests to the fleet's shadow variants (one tap for all
    of them, so each shadow's bound on copies in flight holds whichever variant served the request)."""
    if not fleet.shadows:
        return None
    copies = [ShadowCopies(shadow.route) for shadow in fleet.shadows]
    return ShadowTap(copies, live_production_weight(fleet.route.variants))
