"""Which taps (moorage/dataplane/taps.py) a fleet's variants get from its endpoint config: a copy of
each request for the shadow variants (fleet/shadow.py), data capture (moorage/capture/)."""

from __future__ import annotations

from typing import Any

from moorage.capture.taps import capture_tap
from moorage.dataplane.taps import combine
from moorage.fleet.endpoint import EndpointFleet
from moorage.fleet.settings import FleetContext
from moorage.fleet.shadow import shadow_tap


def attach_taps(fleet: EndpointFleet, config: dict[str, Any], ctx: FleetContext) -> None:
    """Give every production variant (and shadow variant: capture only) of a new fleet its tap."""
    shadows = shadow_tap(fleet, config, ctx)  # one for all production variants: one bound per shadow
    for variant in fleet.route.variants:
        variant.tap = combine([shadows, capture_tap(fleet.name, variant, config, ctx)])
    for shadow in fleet.route.shadows:
        shadow.tap = capture_tap(fleet.name, shadow, config, ctx)
