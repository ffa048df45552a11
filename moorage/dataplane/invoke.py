"""The invocation path: pick a variant and a worker, forward the bytes, map failures to SageMaker errors.

Shared by every runtime entry point so limits, timeouts and error wording live in one place. One
`_Call` object follows a request through its callbacks; the common case (an idle pooled connection)
creates no task and no coroutine."""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from moorage.api.errors import AwsError, ModelError, ServiceUnavailable, ValidationError
from moorage.dataplane.connection import Connection, WorkerLost, WorkerResponse, WorkerUnavailable
from moorage.dataplane.policy import choose_variant
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.stats import LATENCY_BUCKETS_US, VariantStats

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
UNAVAILABLE_PATIENCE = 5.0
TIMEOUT_MESSAGE = (
    "Your invocation timed out while waiting for a response from container primary. Review the latency "
    "metrics for each container in Amazon CloudWatch, resolve the issue, and try again."
)
# true whichever way the instance went: a failed one is replaced, one stopped by DeleteEndpoint,
# UpdateEndpoint (past its drain) or a scale-in is not
LOST_MESSAGE = (
    "The instance stopped before it answered: it exited or was killed (a failed instance is replaced), "
    "or the endpoint was deleted, updated or scaled in meanwhile."
)


@dataclass(slots=True)
class Invocation:
    """One InvokeEndpoint request, headers kept as the raw bytes the client sent."""

    endpoint: str
    body: bytes
    content_type: bytes | None = None
    accept: bytes | None = None
    custom_attributes: bytes | None = None
    inference_id: bytes | None = None
    target_variant: str | None = None
    # TargetModel and TargetContainerHostname, when the request names either (one member, so the plain
    # path's construction and checks stay as they were)
    targets: Targets | None = None

    @property
    def target_model(self) -> bytes | None:
        """TargetModel (a multi-model endpoint's model path under its prefix), as sent."""
        return self.targets.model if self.targets is not None else None

    @property
    def target_container(self) -> str | None:
        """TargetContainerHostname (a Direct invocation's container)."""
        return self.targets.container if self.targets is not None else None

    @property
    def targeted(self) -> bool:
        return self.targets is not None


@dataclass(slots=True, frozen=True)
class Targets:
    model: bytes | None
    container: str | None


@dataclass(slots=True)
class InvocationResult:
    variant: str
    response: WorkerResponse


def _encode(inv: Invocation) -> bytes:
    parts = [b"POST /invocations HTTP/1.1\r\nhost: instance\r\ncontent-length: ", str(len(inv.body)).encode()]
    if inv.content_type is not None:
        parts += (b"\r\ncontent-type: ", inv.content_type)
    if inv.accept is not None:
        parts += (b"\r\naccept: ", inv.accept)
    if inv.custom_attributes is not None:
        parts += (b"\r\nx-amzn-sagemaker-custom-attributes: ", inv.custom_attributes)
    if inv.inference_id is not None:
        parts += (b"\r\nx-amzn-sagemaker-inference-id: ", inv.inference_id)
    if inv.targets is not None and inv.targets.model is not None:
        parts += (b"\r\nx-amzn-sagemaker-target-model: ", inv.targets.model)
    parts += (b"\r\n\r\n", inv.body)
    return b"".join(parts)


def not_found(endpoint: str, account: str) -> ValidationError:
    return ValidationError(f"Endpoint {endpoint} of account {account} not found.")


def model_error(
    route: EndpointRoute, status: int, original: str, detail: str | None = None, source: str = "primary"
) -> ModelError:
    """`source`: the container that answered (its ContainerHostname in a multi-container endpoint)."""
    kind = "client" if 400 <= status < 500 else "server"
    text = detail if detail is not None else f'with message "{original}"'
    return ModelError(
        f"Received {kind} error ({status}) from {source} {text}. "
        f'See the endpoint log ("moorage logs {route.name}") for more information.',
        original_status_code=status,
        original_message=original,
        log_stream_arn=route.log_stream_arn,
    )


def count_answer(stats: VariantStats, status: int, model_us: float, overhead_us: float) -> None:
    """One answered request in `stats`: Invocations, latencies, and its error counters. For the gates'
    calls; `_Call._record` writes the same out inline, as the plain path's per-request cost."""
    stats.invocations += 1
    for histogram, value in ((stats.model_latency, model_us), (stats.overhead_latency, overhead_us)):
        histogram.counts[bisect_left(LATENCY_BUCKETS_US, value)] += 1
        histogram.sum += value
        histogram.count += 1
    if not 200 <= status < 300:
        stats.model_errors += 1
        if 400 <= status < 500:
            stats.errors_4xx += 1
        elif status >= 500:
            stats.errors_5xx += 1


class _Call:
    """One request on its way to a worker: retries refused connections, enforces the time budget."""

    __slots__ = (
        "begun",
        "conn",
        "connecting",
        "deadline",
        "future",
        "pause",
        "raw",
        "route",
        "sent",
        "timer",
        "tried",
        "variant",
        "worker",
    )

    def __init__(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        raw: bytes,
        future: asyncio.Future[InvocationResult],
        begun: float,
    ) -> None:
        self.route = route
        self.variant = variant
        self.raw = raw
        self.future = future
        self.begun = begun  # perf_counter() when the request arrived (OverheadLatency)
        self.sent = 0.0  # perf_counter() when it went to the worker (ModelLatency)
        self.worker: WorkerRoute | None = None
        self.conn: Connection | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Future[None] | None = None
        self.tried: set[WorkerRoute] | None = None
        self.deadline = 0.0
        self.pause = 0.01

    # whether the class overrides _candidates (set for subclasses below): the plain path reads a class
    # attribute instead of making a call
    narrowed = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_candidates" in cls.__dict__:
            cls.narrowed = True

    def start(self) -> None:
        workers = self._candidates() if self.narrowed else self.variant.workers
        if self.tried:
            workers = [w for w in workers if w not in self.tried]
        worker = self.variant.pick(workers)
        if worker is None:
            self._wait_for_a_worker()
            return
        self.worker = worker
        worker.client.outstanding += 1
        conn = worker.client.take_idle()
        if conn is None:
            self.connecting = asyncio.ensure_future(self._connect(worker))
        else:
            self._send(conn)

    def _candidates(self) -> list[WorkerRoute]:
        """The workers this request may go to (a gate's call narrows them: one instance, one container)."""
        return self.variant.workers

    def _send(self, conn: Connection) -> None:
        self.conn = conn
        if self.variant.stats is not None:
            self.sent = perf_counter()
        conn.send(self.raw, self)
        self.timer = self.future.get_loop().call_later(self._budget(), self._on_timeout)

    def _budget(self) -> float:
        """Seconds the worker has to answer (a serverless call's hold for an instance uses some)."""
        return self.variant.timeout

    async def _connect(self, worker: WorkerRoute) -> None:
        try:
            conn = await worker.client.connect()
        except WorkerUnavailable:
            worker.client.outstanding -= 1
            if self.tried is None:
                self.tried = set()
            self.tried.add(worker)  # nothing was sent: another worker may take it
            self.start()
            return
        self._send(conn)

    def _wait_for_a_worker(self) -> None:
        """No worker accepts right now (one being re-forked, an instance being replaced): wait a little."""
        loop = self.future.get_loop()
        now = time.monotonic()
        if not self.deadline:
            self.deadline = now + min(UNAVAILABLE_PATIENCE, self.variant.timeout)
        if now >= self.deadline:
            if (stats := self.variant.stats) is not None:
                stats.invocations += 1
                stats.errors_5xx += 1
            starting = f" ({self.variant.starting} starting)" if self.variant.starting else ""
            self._fail(
                ServiceUnavailable(
                    f"No instance of variant {self.variant.name} of endpoint {self.route.name} is ready to "
                    f"serve{starting}. Failed instances are replaced automatically; retry shortly."
                )
            )
            return
        self.tried = None
        loop.call_later(self.pause, self.start)
        self.pause = min(self.pause * 2, 0.2)

    def _finish_exchange(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.worker is not None:
            self.worker.client.outstanding -= 1

    def on_response(self, response: WorkerResponse) -> None:
        self._finish_exchange()
        assert self.worker is not None and self.conn is not None
        self.worker.client.release(self.conn)
        if (stats := self.variant.stats) is not None:
            self._record(stats, response.status)
        if not 200 <= response.status < 300:
            self._fail(self._model_error(response.status, response.body.decode("utf-8", "replace")[:4096]))
        elif len(response.body) > MAX_PAYLOAD_BYTES:
            self._fail(
                self._model_error(response.status, "", detail="and could not load the entire response body")
            )
        elif not self.future.done():
            self.future.set_result(InvocationResult(self.variant.name, response))

    def _record(self, stats: VariantStats, status: int) -> None:
        """The request's share of its variant's metrics; histogram updates written out, as a call per
        observation costs more than the update itself."""
        now = perf_counter()
        model = (now - self.sent) * 1e6
        overhead = (now - self.begun) * 1e6 - model
        stats.invocations += 1
        histogram = stats.model_latency
        histogram.counts[bisect_left(LATENCY_BUCKETS_US, model)] += 1
        histogram.sum += model
        histogram.count += 1
        histogram = stats.overhead_latency
        histogram.counts[bisect_left(LATENCY_BUCKETS_US, overhead)] += 1
        histogram.sum += overhead
        histogram.count += 1
        if self.worker is not None:
            self.worker.served += 1
        if not 200 <= status < 300:
            stats.model_errors += 1
            if 400 <= status < 500:
                stats.errors_4xx += 1
            elif status >= 500:
                stats.errors_5xx += 1

    def _lost(self) -> None:
        """Sent, but no answer came (the worker died or timed out): a model error without a status."""
        if (stats := self.variant.stats) is not None:
            stats.invocations += 1
            stats.model_errors += 1

    def on_failure(self, exc: Exception) -> None:
        self._lost()
        self._finish_exchange()
        if self.worker is not None:
            self.worker.client.close()  # its other pooled connections died with it
        self._fail(self._model_error(0, LOST_MESSAGE if isinstance(exc, WorkerLost) else str(exc)))

    def _on_timeout(self) -> None:
        self._lost()
        self.timer = None
        self._finish_exchange()
        if self.conn is not None:
            self.conn.close()
        if self.worker is not None:
            self.worker.kill()  # a hung handler would hold this worker forever; its instance re-forks it
            self.worker.client.close()
        self._fail(self._model_error(0, TIMEOUT_MESSAGE))

    def _model_error(self, status: int, original: str, detail: str | None = None) -> ModelError:
        """The model's error for this request (a multi-container call's names its container)."""
        return model_error(self.route, status, original, detail)

    def _fail(self, err: AwsError) -> None:
        if not self.future.done():
            self.future.set_exception(err)


def invoke(
    table: RoutingTable, inv: Invocation, account: str, begun: float
) -> asyncio.Future[InvocationResult]:
    """Start an invocation (`begun`: perf_counter() at its arrival, when metrics are kept); errors found
    before anything is sent are raised at once."""
    route = table.get(inv.endpoint)
    if route is None:
        raise not_found(inv.endpoint, account)
    variant = choose_variant(route, inv.target_variant, table.rng)
    if variant is None:
        if inv.target_variant is not None:
            raise ValidationError(
                f"The variant {inv.target_variant} does not exist in endpoint {route.name}. "
                f"Valid variants: {', '.join(route.by_name)}."
            )
        raise ValidationError(f"Endpoint {route.name} has no variant with a weight above zero.")
    future: asyncio.Future[InvocationResult] = asyncio.get_running_loop().create_future()
    if variant.gate is None:
        if inv.targets is not None:
            raise untargetable(route, inv)
        _Call(route, variant, _encode(inv), future, begun).start()
    else:  # serverless admission, multi-model placement, pipeline hops: moorage/dataplane/gates.py
        variant.gate.invoke(route, variant, inv, future, begun, table)
    if variant.tap is not None:  # shadow copies, data capture: moorage/dataplane/taps.py
        variant.tap.observe(route, variant, inv, future, table)
    return future


def untargetable(route: EndpointRoute, inv: Invocation) -> ValidationError:
    """TargetModel or TargetContainerHostname sent to a variant that has no models or containers to pick."""
    if inv.target_model is not None:
        return ValidationError(
            f"Endpoint {route.name} is not a multi-model endpoint and does not support target model header. "
            "Remove TargetModel, or invoke a multi-model endpoint."
        )
    return ValidationError(
        f"Endpoint {route.name} is not a multi-container endpoint with Direct "
        "invocation (InferenceExecutionConfig Mode Direct), so TargetContainerHostname does not apply. "
        "Remove TargetContainerHostname."
    )
