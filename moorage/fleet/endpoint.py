"""An endpoint's fleet: its variants and the route the data plane uses to reach them."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from moorage.dataplane.routes import EndpointRoute
from moorage.fleet.settings import FleetContext
from moorage.fleet.variant import VariantFleet


class EndpointFleet:
    def __init__(
        self,
        name: str,
        variants: list[VariantFleet],
        ctx: FleetContext,
        shadows: list[VariantFleet] | None = None,
    ) -> None:
        self.name = name
        self.variants = variants
        # ShadowProductionVariants: started, kept healthy, resized and retired like the production
        # variants; never chosen for a caller (production variants' taps send them copies: shadow.py)
        self.shadows = shadows or []
        log_group = f"arn:aws:logs:{ctx.region}:{ctx.account}:log-group:/aws/sagemaker/Endpoints/{name}"
        self.route = EndpointRoute(
            name, [v.route for v in variants], log_group, shadows=[s.route for s in self.shadows]
        )

    @property
    def every_variant(self) -> list[VariantFleet]:
        """Production and shadow variants: everything that runs instances."""
        return [*self.variants, *self.shadows]

    def variant(self, name: str) -> VariantFleet | None:
        """A production or shadow variant by name (names are unique across both)."""
        return next((v for v in self.every_variant if v.name == name), None)

    async def start(self) -> None:
        """Start every variant's instances at once; if any fails, none is left running."""
        results = await asyncio.gather(*(v.start() for v in self.every_variant), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self.retire(drain=False, grace=2.0)
            raise failure

    def activate(self) -> None:
        for variant in self.every_variant:
            variant.activate()

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """New variant weights for the traffic split, applied in one step."""
        self.route.set_weights(weights)
        for shadow in self.shadows:  # a shadow's weight is its share of the copies (shadow.py)
            shadow.route.weight = weights.get(shadow.name, shadow.route.weight)

    def abandon(self) -> None:
        """Leave the instances running for the next server to adopt (see VariantFleet.abandon)."""
        for variant in self.every_variant:
            variant.abandon()

    async def retire(self, drain: bool, grace: float | None = None) -> None:
        """Stop every instance, after its in-flight requests if `drain`."""
        await asyncio.gather(*(v.close(drain, grace) for v in self.every_variant))
