"""What a variant's requests go through when they cannot go straight to a worker.

A real-time variant has no gate: `invoke` sends to a worker at once. A gate takes the request instead:
serverless admission and cold starts (serverless.py), a multi-model endpoint's placement and loads
(multimodel.py), a pipeline's hops or a Direct invocation's container (containers.py). Each gate is a
`_Call` subclass away from the plain path, so the plain path pays one attribute check for all of them.

Several servers: the reconciling one publishes each variant's gate as `(kind, settings)`
(route_sync.py); the others rebuild it with `GATE_KINDS[kind](settings)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from moorage.dataplane.invoke import Invocation, InvocationResult
    from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute


class Gate(Protocol):
    # the name route_sync publishes it under (GATE_KINDS); "" for a gate that is not published this way
    kind: str

    def invoke(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        begun: float,
        table: RoutingTable | None,
    ) -> None:
        """Take the request: its answer or its SageMaker error is set on `future`."""
        ...

    def settings(self) -> dict[str, Any]:
        """What another server needs to build the same gate (JSON)."""
        ...


# kind -> a gate built from the reconciling server's published settings; each gate module adds its own
GATE_KINDS: dict[str, Callable[[dict[str, Any]], Gate]] = {}
