"""What sees a variant's requests besides the worker that answers them: a copy sent to the endpoint's
shadow variants (shadow.py), data capture (moorage/capture/). Each runs off the caller's path: `observe`
is called once the request is on its way, and may only schedule work or add a callback to `future`, so
the caller's answer is never delayed or changed by a tap.

The plain path pays one attribute check (`VariantRoute.tap`) for all of them. Several servers: the
reconciling one publishes each variant's tap as `[kind, settings]` (route_sync.py); the others rebuild it
with `TAP_KINDS[kind](settings, route)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from moorage.dataplane.invoke import Invocation, InvocationResult
    from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute


class Tap(Protocol):
    # the name route_sync publishes it under (TAP_KINDS)
    kind: str

    def observe(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        table: RoutingTable,
    ) -> None:
        """See one request of `variant`, already sent; its outcome arrives on `future` (never set here)."""
        ...

    def settings(self) -> dict[str, Any]:
        """What another server needs to build the same tap (JSON)."""
        ...


class Taps:
    """Several taps on one variant, called in order."""

    kind = "taps"

    def __init__(self, taps: list[Tap]) -> None:
        self.taps = taps

    def observe(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        table: RoutingTable,
    ) -> None:
        for tap in self.taps:
            tap.observe(route, variant, inv, future, table)

    def settings(self) -> dict[str, Any]:
        return {"taps": [[tap.kind, tap.settings()] for tap in self.taps]}


def combine(taps: list[Tap | None]) -> Tap | None:
    """The tap a variant gets from its parts: None when there are none, the one when there is one."""
    present = [tap for tap in taps if tap is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else Taps(present)


# kind -> how another server builds it from (settings, the endpoint's route): filled in by the modules
# that define taps, as they are imported (route_sync imports them)
TAP_KINDS: dict[str, Callable[[dict[str, Any], EndpointRoute], Tap]] = {}


def _rebuild_taps(settings: dict[str, Any], route: EndpointRoute) -> Tap:
    return Taps([TAP_KINDS[kind](part, route) for kind, part in settings["taps"]])


TAP_KINDS["taps"] = _rebuild_taps
