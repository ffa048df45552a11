"""What DescribeEndpoint shows of the fleets while a deployment runs: each variant's live instance count,
its real share of traffic (CurrentWeight) and the stage it is in (VariantStatus), for the old variants
(ProductionVariants) and the new ones (PendingDeploymentSummary).

The reconciling server builds these from its fleets; the other servers get them as JSON with the
endpoint's published route (route_sync's "state"), where the new fleet's variants are keyed
`PENDING + name` next to the old ones (a VariantName never contains "/")."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moorage.clock import Clock
from moorage.dataplane.routes import EndpointRoute
from moorage.fleet import EndpointFleet, VariantFleet
from moorage.fleet.variant import VariantActivity

PENDING = "pending/"
MAX_STATUSES = 5  # ProductionVariantStatusList holds at most five


@dataclass(frozen=True)
class VariantState:
    """What a variant's fleet is doing right now, for DescribeEndpoint."""

    instances: int
    weight: float
    status: list[dict[str, Any]]  # VariantStatus entries
    placements: tuple[tuple[str, str], ...] = ()  # (instance id, where it runs) of each instance

    def as_json(self) -> dict[str, Any]:
        return {
            "instances": self.instances,
            "weight": self.weight,
            "status": self.status,
            "placements": [list(p) for p in self.placements],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VariantState:
        placements = tuple((str(i), str(p)) for i, p in data.get("placements", []))
        return cls(int(data["instances"]), float(data["weight"]), list(data["status"]), placements)


@dataclass(eq=False)
class Deployment:
    """A deployment under way: the new (green) fleet once it runs, the share of traffic it takes, and the
    stage each fleet is in. It outlives its deployment only when a rolling update's rollback failed: the
    endpoint then serves from both fleets (UpdateRollbackFailed) until the next update or deletion."""

    clock: Clock
    config_name: str  # the new endpoint config
    snapshot: dict[str, Any]  # the new endpoint config and its models, as accepted
    started: float  # epoch seconds
    green: EndpointFleet | None = None
    share: float = 0.0  # of traffic on the new fleet
    route: EndpointRoute | None = None  # the blended route installed last; None: the old fleet's own
    green_stage: list[VariantActivity] = field(default_factory=list)
    blue_stage: list[VariantActivity] = field(default_factory=list)
    # the rollback failed: the endpoint serves from both fleets, and this stays until the next update
    stranded: bool = False

    def green_is(self, status: str, message: str, *more: tuple[str, str]) -> None:
        """The new fleet's stage: one or more (Status, StatusMessage) entries, starting now."""
        now = self.clock.time()
        self.green_stage = [VariantActivity(s, m, now) for s, m in ((status, message), *more)]

    def blue_is(self, status: str, message: str) -> None:
        self.blue_stage = [VariantActivity(status, message, self.clock.time())]

    def then_green(self, status: str, message: str) -> None:
        """One more stage entry for the new fleet (baking after its traffic moved)."""
        self.green_stage = [*self.green_stage, VariantActivity(status, message, self.clock.time())]


def live_states(blue: EndpointFleet | None, deployment: Deployment | None) -> dict[str, VariantState]:
    """Every variant's state by name; a deployment's new variants under `PENDING + name`."""
    share = deployment.share if deployment is not None else 0.0
    states: dict[str, VariantState] = {}
    if blue is not None:
        stage = deployment.blue_stage if deployment is not None else []
        for variant in blue.every_variant:
            states[variant.name] = _state(variant, blue, 1.0 - share, stage)
    if deployment is not None and deployment.green is not None:
        for variant in deployment.green.every_variant:
            states[PENDING + variant.name] = _state(variant, deployment.green, share, deployment.green_stage)
    return states


def _state(
    variant: VariantFleet, fleet: EndpointFleet, share: float, stage: list[VariantActivity]
) -> VariantState:
    # a production variant's CurrentWeight is its weight times its fleet's share of traffic; a shadow's
    # weight is its share of the copies, which a deployment does not change
    weight = variant.route.weight * (share if variant in fleet.variants else 1.0)
    entries = [a.entry() for a in [*stage, *variant.activities()]][:MAX_STATUSES]
    placements = tuple((m.instance_id, m.instance.placement) for m in variant.members)
    return VariantState(variant.current, weight, entries, placements)


def split_live(live: dict[str, VariantState]) -> tuple[dict[str, VariantState], dict[str, VariantState]]:
    """(the serving fleet's variants, a deployment's new variants), each by variant name."""
    current = {name: state for name, state in live.items() if not name.startswith(PENDING)}
    pending = {name.removeprefix(PENDING): state for name, state in live.items() if name.startswith(PENDING)}
    return current, pending
