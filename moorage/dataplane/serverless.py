"""The invocation path of a serverless variant: admission (MaxConcurrency), the 4 MB payload limit, and
holding a request that finds no instance while one starts (a cold start).

Real-time variants never come here: `invoke` branches once on `VariantRoute.serverless`. A serverless
request is a `_Call` like any other once it has a worker; only admission, the wait for a worker and the
response size differ."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moorage.api.errors import (
    ModelError,
    ModelNotReadyException,
    PayloadTooLarge,
    ServiceUnavailable,
    ThrottlingException,
    ValidationError,
)
from moorage.dataplane.connection import WorkerResponse
from moorage.dataplane.invoke import Invocation, InvocationResult, _Call, _encode, model_error, untargetable
from moorage.dataplane.policy import choose_variant
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute

MAX_PAYLOAD_BYTES = 4 * 1024 * 1024  # serverless request and response limit (real-time: 6 MiB)
TOO_LARGE = f"HTTP content length exceeded {MAX_PAYLOAD_BYTES} bytes."  # AWS's words, at this limit
# a held request looks for a worker again when the fleet says an instance joined or failed (`release`),
# and also this often (a worker being re-forked gives no such word)
_POLL_SECONDS = 0.05


@dataclass(eq=False)
class ServerlessGate:
    """What the data plane needs of a serverless variant; its fleet sets `wake` and `failure`."""

    max_concurrency: int
    # asks the fleet for an instance now (a cold start); called by a request that finds none
    wake: Callable[[], None] = lambda: None
    admitted: int = 0  # requests accepted and not yet answered (held or at a worker)
    last_used: float = field(default_factory=time.monotonic)  # when the latest request arrived
    # (monotonic time, reason) of the latest instance start that failed; held requests fail with it
    failure: tuple[float, str] | None = None
    held: list[_ServerlessCall] = field(default_factory=list)  # requests waiting for an instance
    # the variant is gone (DeleteEndpoint, UpdateEndpoint): held requests look the endpoint up again
    closed: bool = False
    # built by a server that does not reconcile (moorage/dataplane/route_sync.py): its demand is reported
    # to the one that does (moorage/dataplane/serverless_sync.py), which starts and stops the instance
    remote: bool = False

    def close(self) -> None:
        """The variant no longer serves: requests held here go to what the routing table has now."""
        self.closed = True
        self.release()

    def release(self) -> None:
        """An instance joined the route, or failed to start: every held request looks again now."""
        held, self.held = self.held, []
        for call in held:
            call.retry()

    kind = ""  # published by route_sync as the variant's "serverless" member, not as a gate kind

    def settings(self) -> dict[str, Any]:
        return {"max_concurrency": self.max_concurrency}

    def invoke(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        begun: float,
        table: RoutingTable | None = None,
    ) -> None:
        """Admit the request or refuse it (throttled, too large); errors are set on `future`. `table`:
        where a request held while this variant goes away finds the endpoint's new route."""
        if inv.targeted:
            future.set_exception(untargetable(route, inv))
            return
        if len(inv.body) > MAX_PAYLOAD_BYTES:
            self.last_used = time.monotonic()
            future.set_exception(PayloadTooLarge(TOO_LARGE))
            return
        self.admit(route, variant, _encode(inv), future, begun, time.monotonic(), table)

    def admit(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        raw: bytes,
        future: asyncio.Future[InvocationResult],
        begun: float,
        arrived: float,
        table: RoutingTable | None,
    ) -> None:
        """Take the request within MaxConcurrency, or refuse it with ThrottlingException."""
        self.last_used = time.monotonic()
        if self.admitted >= self.max_concurrency:
            if (stats := variant.stats) is not None:
                stats.invocations += 1
                stats.errors_4xx += 1
            future.set_exception(
                ThrottlingException(
                    f"Endpoint {route.name} variant {variant.name} is already serving its MaxConcurrency "
                    f"of {self.max_concurrency} concurrent requests. Retry with back-off, or raise "
                    "MaxConcurrency (UpdateEndpointWeightsAndCapacities with ServerlessUpdateConfig)."
                )
            )
            return
        self.admitted += 1
        future.add_done_callback(self._left)
        _ServerlessCall(route, variant, raw, future, begun, self, arrived, table).start()

    def _left(self, _: object) -> None:
        self.admitted -= 1
        self.last_used = time.monotonic()


class _ServerlessCall(_Call):
    """A `_Call` that waits for an instance to start instead of giving up after a few seconds."""

    __slots__ = ("arrived", "gate", "poll", "table")

    def __init__(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        raw: bytes,
        future: asyncio.Future[InvocationResult],
        begun: float,
        gate: ServerlessGate,
        arrived: float,
        table: RoutingTable | None = None,
    ) -> None:
        super().__init__(route, variant, raw, future, begun)
        self.gate = gate
        self.arrived = arrived
        self.table = table
        self.poll: asyncio.TimerHandle | None = None

    def _budget(self) -> float:
        """The time left for the worker: what the wait for an instance left of the invocation timeout
        (the hold and the worker's answer share one budget)."""
        return max(0.0, self.arrived + self.variant.timeout - time.monotonic())

    def _wait_for_a_worker(self) -> None:
        if self.future.done():
            return
        gate = self.gate
        if gate.closed or (self.table is not None and self.table.get(self.route.name) is not self.route):
            self._reroute()
            return
        now = time.monotonic()
        if not self.deadline:
            self.deadline = self.arrived + self.variant.timeout
            gate.wake()
        failure = gate.failure
        if failure is not None and failure[0] >= self.arrived:
            self._fail_start(failure[1])
            return
        if now >= self.deadline:
            self._fail(
                ModelNotReadyException(
                    f"The serverless variant {self.variant.name} of endpoint {self.route.name} is still "
                    f"starting an instance after {self.variant.timeout:g} s. Retry shortly; see the endpoint "
                    f'log ("moorage logs {self.route.name}") if this goes on.'
                )
            )
            return
        gate.held.append(self)
        self.poll = self.future.get_loop().call_later(_POLL_SECONDS, self.retry)

    def retry(self) -> None:
        """Look for a worker again (once per hold: by `release` or by the poll, whichever comes first)."""
        if self.poll is None:
            return
        self.poll.cancel()
        self.poll = None
        if self in self.gate.held:
            self.gate.held.remove(self)
        self.tried = None
        if self.gate.closed:
            self._reroute()
        else:
            self.start()

    def _reroute(self) -> None:
        """The variant this request waited on went away or its route was rebuilt: carry on with the
        endpoint's route as it is now, or fail at once if there is none."""
        table = self.table
        current = table.get(self.route.name) if table is not None else None
        if table is None or current is None:
            self._fail(
                ValidationError(
                    f"Endpoint {self.route.name} was deleted while this request waited for its serverless "
                    "instance to start."
                )
            )
            return
        variant = current.by_name.get(self.variant.name) or choose_variant(current, None, table.rng)
        if variant is None or (variant.serverless is self.gate and self.gate.closed):
            self._fail(
                ServiceUnavailable(
                    f"Endpoint {self.route.name} changed while this request waited for its serverless "
                    "instance to start, and has no variant to take it now. Retry shortly."
                )
            )
            return
        if variant.serverless is self.gate:  # the same variant on a rebuilt route (a follower's)
            self.route, self.variant = current, variant
            self.tried = None
            self.start()
        elif variant.serverless is None:  # UpdateEndpoint to an instance-based config
            _Call(current, variant, self.raw, self.future, self.begun).start()
        else:  # UpdateEndpoint to another serverless config: admitted by its gate, same arrival time
            gate = variant.serverless
            gate.admit(current, variant, self.raw, self.future, self.begun, self.arrived, table)

    def _fail_start(self, reason: str) -> None:
        if (stats := self.variant.stats) is not None:
            stats.invocations += 1
            stats.model_errors += 1
            stats.errors_5xx += 1
        self._fail(
            ModelError(
                f"The serverless variant {self.variant.name} of endpoint {self.route.name} could not "
                f"start an instance for this request: {reason} See the endpoint log "
                f'("moorage logs {self.route.name}").',
                original_status_code=0,
                original_message=reason,
                log_stream_arn=self.route.log_stream_arn,
            )
        )

    def on_response(self, response: WorkerResponse) -> None:
        if len(response.body) > MAX_PAYLOAD_BYTES and 200 <= response.status < 300:
            self._finish_exchange()
            assert self.worker is not None and self.conn is not None
            self.worker.client.release(self.conn)
            self._fail(
                model_error(
                    self.route,
                    response.status,
                    "",
                    detail=f"and the response body is over the serverless limit of {MAX_PAYLOAD_BYTES} bytes",
                )
            )
            return
        super().on_response(response)
