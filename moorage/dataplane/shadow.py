"""Shadow variants' tap: a copy of production requests for each shadow variant, sent off the caller's path.

Per request and per shadow, one draw from the shadow's own random source decides whether it gets a copy:
its share is its weight over the production variants' total weight (an InitialVariantWeight of 0.5 next
to a production variant of 1.0 copies half the requests; a share above 1 copies them all). The copy is
sent with `loop.call_soon`, after the caller's request has gone to its worker, through the same `_Call`
(or the shadow's gate) as any request, so the shadow's VariantStats count it like any variant's. Its
answer, error or timeout only lands on a future nobody awaits: the caller's response never waits for it
and never changes.

A slow shadow cannot pile up work here: at most `COPIES_PER_WORKER` copies per shadow worker are in flight
at once; a copy beyond that (or while the shadow has no worker at all) is dropped and counted instead.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator, Sequence
from time import perf_counter
from typing import Any

from moorage.dataplane.invoke import Invocation, InvocationResult, _Call, _encode
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute
from moorage.dataplane.taps import TAP_KINDS, Tap, Taps

# copies in flight per worker of a shadow variant before further copies are dropped: one being answered
# and one waiting on its connection keeps every worker busy without queueing behind a slow one
COPIES_PER_WORKER = 2


class ShadowCopies:
    """One shadow variant as seen by the tap: its route, its draw and its bound on copies in flight."""

    __slots__ = ("copied", "draw", "dropped", "in_flight", "route")

    def __init__(self, route: VariantRoute, seed: int | None = None) -> None:
        self.route = route
        # its own random source: the production split (RoutingTable.rng) draws the same with or without it
        self.draw: Callable[[], float] = random.Random(
            None if seed is None else f"{seed}:{route.name}"
        ).random
        self.in_flight = 0
        self.copied = 0  # copies sent to the shadow
        self.dropped = 0  # copies not sent: the bound was reached, or the shadow had no worker

    def limit(self) -> int:
        return COPIES_PER_WORKER * len(self.route.workers)

    def finished(self, future: asyncio.Future[InvocationResult]) -> None:
        """A copy's outcome: nobody wants it (its metrics were counted by the call)."""
        self.in_flight -= 1
        if not future.cancelled():
            future.exception()  # retrieved, so an error is not reported as never retrieved


class ShadowTap:
    """The tap on each production variant of an endpoint with ShadowProductionVariants."""

    kind = "shadow"

    def __init__(self, shadows: Sequence[ShadowCopies], production_weight: Callable[[], float]) -> None:
        self.shadows = list(shadows)
        # the production variants' total weight, read per request: UpdateEndpointWeightsAndCapacities
        # changes it (and the shadows' own weights) in place
        self.production_weight = production_weight

    def observe(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        table: RoutingTable,
    ) -> None:
        total = self.production_weight()
        if total <= 0:
            return
        for shadow in self.shadows:
            if shadow.draw() * total < shadow.route.weight:
                future.get_loop().call_soon(self._send, shadow, route, inv, table)

    def _send(self, shadow: ShadowCopies, route: EndpointRoute, inv: Invocation, table: RoutingTable) -> None:
        """Send one copy (on the loop, after the caller's request went out)."""
        if shadow.in_flight >= shadow.limit():
            shadow.dropped += 1
            return
        variant = shadow.route
        copy: asyncio.Future[InvocationResult] = asyncio.get_running_loop().create_future()
        shadow.in_flight += 1
        shadow.copied += 1
        copy.add_done_callback(shadow.finished)
        begun = perf_counter()
        try:
            if variant.gate is None:
                _Call(route, variant, _encode(inv), copy, begun).start()
            else:
                variant.gate.invoke(route, variant, inv, copy, begun, table)
        except Exception as exc:  # a gate's refusal raised before anything was sent: the copy's outcome
            if not copy.done():
                copy.set_exception(exc)
            return
        if variant.tap is not None:  # data capture sees the shadow's requests like production ones
            variant.tap.observe(route, variant, inv, copy, table)

    def settings(self) -> dict[str, Any]:
        """Which shadows (by name) and the production weight now; a change of either changes the route
        that is published, so the other servers rebuild this tap with the new values."""
        return {
            "shadows": [shadow.route.name for shadow in self.shadows],
            "production_weight": self.production_weight(),
        }


def live_production_weight(production: Sequence[VariantRoute]) -> Callable[[], float]:
    """The production variants' total weight as it is at each call (the reconciling server's fleets)."""
    variants = list(production)
    if len(variants) == 1:  # what SageMaker allows next to a shadow: no sum needed
        only = variants[0]
        return lambda: only.weight
    return lambda: sum(v.weight for v in variants)


def _rebuild(settings: dict[str, Any], route: EndpointRoute) -> Tap:
    """The tap on another server: the shadows are the published route's (found by name), the production
    weight the one published with the tap."""
    by_name: dict[str, VariantRoute] = {}
    for shadow in route.shadows:  # a name in both fleets of a blend: the first (serving) one
        by_name.setdefault(shadow.name, shadow)
    found = [by_name[name] for name in settings["shadows"] if name in by_name]
    weight = float(settings["production_weight"])
    return ShadowTap([ShadowCopies(shadow) for shadow in found], lambda: weight)


TAP_KINDS[ShadowTap.kind] = _rebuild


def shadow_taps(tap: Tap | None) -> Iterator[ShadowTap]:
    """The shadow taps in a variant's tap (alone, or one of several)."""
    if isinstance(tap, ShadowTap):
        yield tap
    elif isinstance(tap, Taps):
        for part in tap.taps:
            yield from shadow_taps(part)
