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
    by_name: dict[str, VariantRoute] = field(init=False)
    total_weight: float = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {v.name: v for v in self.variants}
        self.total_weight = sum(v.weight for v in self.variants)

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Change variant weights; nothing awaits in between, so a request sees old or new, never a mix."""
        for variant in self.variants:
            variant.weight = weights.get(variant.name, variant.weight)
        self.total_weight = sum(v.weight for v in self.variants)


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
