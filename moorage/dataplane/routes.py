"""The routing table: what the invocation path may use, pushed by the control plane.

Lists are replaced, never mutated in place, so a request always sees a consistent snapshot."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.policy import WorkerChoice, choose_worker
from moorage.dataplane.stats import VariantStats

if TYPE_CHECKING:  # serverless imports this module
    from moorage.dataplane.gates import Gate
    from moorage.dataplane.serverless import ServerlessGate
    from moorage.dataplane.taps import Tap
    from moorage.jobs.asynchronous.config import AsyncSettings


@dataclass(eq=False, slots=True)
class WorkerRoute:
    """One worker process of one instance, reachable on its own socket."""

    client: WorkerClient
    instance_id: str
    index: int
    kill: Callable[[], None]
    served: int = 0  # responses it gave (InvocationsPerInstance, summed per instance)
    # the ContainerHostname of the container this worker belongs to (a multi-container instance); "" else
    container: str = ""


@dataclass(eq=False)
class VariantRoute:
    name: str
    weight: float
    timeout: float
    # the RoutingStrategy: picks a worker among `workers` (moorage/dataplane/policy.py)
    pick: WorkerChoice = choose_worker
    workers: list[WorkerRoute] = field(default_factory=list)
    starting: int = 0
    stats: VariantStats | None = None  # None: metrics are off
    # a serverless variant's admission and cold-start wait (moorage/dataplane/serverless.py); None: real time
    serverless: ServerlessGate | None = None
    # what every request of the variant goes through instead of straight to a worker: serverless admission,
    # a multi-model endpoint's placement, a pipeline's hops (moorage/dataplane/gates.py); None: real time
    gate: Gate | None = None
    # what sees each of the variant's requests besides its worker, off the caller's path: a copy for the
    # endpoint's shadow variants, data capture (moorage/dataplane/taps.py); None: nothing does
    tap: Tap | None = None

    def add_workers(self, workers: list[WorkerRoute]) -> None:
        self.workers = [*self.workers, *workers]

    def remove_instance(self, instance_id: str) -> list[WorkerRoute]:
        gone = [w for w in self.workers if w.instance_id == instance_id]
        self.workers = [w for w in self.workers if w.instance_id != instance_id]
        return gone

    def instance_count(self) -> int:
        return len({w.instance_id for w in self.workers})


@dataclass(eq=False)
class EndpointRoute:
    name: str
    variants: list[VariantRoute]
    log_stream_arn: str
    # the endpoint config's AsyncInferenceConfig (set where the fleet's route is built): None for a
    # real-time endpoint; InvokeEndpoint refuses an asynchronous one and InvokeEndpointAsync the others
    asynchronous: AsyncSettings | None = None
    # ShadowProductionVariants: never chosen for a caller; production variants' taps send them copies
    shadows: list[VariantRoute] = field(default_factory=list)
    # each variant's share of traffic, in `variants` order; None: the variants' own weights. A route that
    # blends two fleets during a deployment has its own shares (`blend`)
    shares: list[float] | None = None
    by_name: dict[str, VariantRoute] = field(init=False)
    weights: list[float] = field(init=False)  # what choose_variant draws by
    total_weight: float = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {}
        for variant in self.variants:  # a name in both fleets of a blend: the serving (first) one
            self.by_name.setdefault(variant.name, variant)
        self._weigh()

    def _weigh(self) -> None:
        self.weights = list(self.shares) if self.shares is not None else [v.weight for v in self.variants]
        self.total_weight = sum(self.weights)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Change variant weights; nothing awaits in between, so a request sees old or new, never a mix."""
        for variant in self.variants:
            variant.weight = weights.get(variant.name, variant.weight)
        self._weigh()


def blend(blue: EndpointRoute, green: EndpointRoute, share: float) -> EndpointRoute:
    """One route over two fleets while a deployment shifts traffic: `share` (0 to 1) of requests go to
    `green`'s variants, the rest to `blue`'s, each fleet's part split by its own variant weights.

    TargetVariant naming a variant both fleets have reaches blue's. The variants keep their own gates and
    taps, so each request is served, mirrored and captured as its own fleet's config says."""
    shares = [*_scaled(blue, 1.0 - share), *_scaled(green, share)]
    return EndpointRoute(
        blue.name,
        [*blue.variants, *green.variants],
        green.log_stream_arn,
        asynchronous=green.asynchronous,
        shadows=[*blue.shadows, *green.shadows],
        shares=shares,
    )


def _scaled(route: EndpointRoute, share: float) -> list[float]:
    total = route.total_weight
    return [w * share / total if total > 0 else 0.0 for w in route.weights]


class RoutingTable:
    """Endpoint name (exact case, as InvokeEndpoint requires) to its current route.

    `rng` draws the weighted variant choice; seed it (MOORAGE_ROUTING_SEED) for a reproducible split."""

    def __init__(self, seed: int | None = None) -> None:
        self._routes: dict[str, EndpointRoute] = {}
        self.rng = random.Random(seed)

    def get(self, name: str) -> EndpointRoute | None:
        return self._routes.get(name)

    def install(self, route: EndpointRoute) -> None:
        self._routes[route.name] = route

    def remove(self, name: str) -> None:
        self._routes.pop(name, None)

    def items(self) -> list[tuple[str, EndpointRoute]]:
        return list(self._routes.items())
