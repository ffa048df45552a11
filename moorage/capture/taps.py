"""Data capture's tap: placeholder until it is built."""

from __future__ import annotations

from typing import Any

from moorage.dataplane.routes import VariantRoute
from moorage.dataplane.taps import Tap
from moorage.fleet.settings import FleetContext


def capture_tap(
    endpoint: str, variant: VariantRoute, config: dict[str, Any], ctx: FleetContext
) -> Tap | None:
    """The tap that captures `variant`'s requests and responses, if the config asks for it."""
    return None
