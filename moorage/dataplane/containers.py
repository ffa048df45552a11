"""The invocation path of a multi-container variant (docs/pipelines.md).

Serial (an inference pipeline): the caller's request goes to the first container; each container's
response body and Content-Type become the next one's request; the caller's Accept goes to the last, whose
answer is relayed. Every hop of a request stays on one instance, chosen as a whole before the first hop
(every container there takes requests; least busy counting all of its containers), and all hops share the
variant's one invocation budget; each container's time is kept too (CloudWatch's ContainerLatency).
Direct: TargetContainerHostname picks the one container that answers, within that container's own model
server timeout, and its metrics are kept per container as well (CloudWatch's ContainerName dimension).

Each hop is a `_Call` narrowed to one container's workers (`_candidates`), so pooling, retries of refused
connections, timeouts and lost workers behave as on the plain path."""

from __future__ import annotations

import asyncio
import random
import time
from time import perf_counter
from typing import Any, Self

from moorage.api.errors import AwsError, ModelError, ServiceUnavailable, ValidationError
from moorage.dataplane.connection import Connection, WorkerClient, WorkerResponse, WorkerUnavailable
from moorage.dataplane.gates import GATE_KINDS
from moorage.dataplane.invoke import (
    MAX_PAYLOAD_BYTES,
    TIMEOUT_MESSAGE,
    Invocation,
    InvocationResult,
    _Call,
    _encode,
    count_answer,
    model_error,
    untargetable,
)
from moorage.dataplane.policy import choose_worker
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.stats import Histogram, VariantStats

# what one container of a pipeline may hand the next (AWS: 5 MB between containers); the last one's
# answer has InvokeEndpoint's own limit (MAX_PAYLOAD_BYTES)
HOP_LIMIT_BYTES = 5 * 1024 * 1024
# how long a worker that refused a connection is left out of a pipeline's choice of instance before it is
# tried again (a killed worker is re-forked at the same address within about this time)
UNREACHABLE_SECONDS = 1.0
_ties = random.Random()


class _ContainerWorkers:
    """A variant's workers by container, rebuilt only when the variant's worker list is replaced
    (routes.py swaps whole lists: copy-on-write)."""

    def __init__(self, hostnames: list[str]) -> None:
        self.hostnames = hostnames
        self._seen: list[WorkerRoute] | None = None
        self._by_container: dict[str, list[WorkerRoute]] = {}
        self._by_instance: dict[str, dict[str, list[WorkerRoute]]] = {}

    def _refresh(self, variant: VariantRoute) -> None:
        if variant.workers is not self._seen:
            by_container: dict[str, list[WorkerRoute]] = {name: [] for name in self.hostnames}
            by_instance: dict[str, dict[str, list[WorkerRoute]]] = {}
            for worker in variant.workers:
                by_container.setdefault(worker.container, []).append(worker)
                by_instance.setdefault(worker.instance_id, {}).setdefault(worker.container, []).append(worker)
            self._by_container, self._by_instance, self._seen = by_container, by_instance, variant.workers

    def of(self, variant: VariantRoute, hostname: str) -> list[WorkerRoute]:
        self._refresh(variant)
        return self._by_container.get(hostname, [])

    def instances(self, variant: VariantRoute) -> dict[str, dict[str, list[WorkerRoute]]]:
        """instance id -> container -> its workers there."""
        self._refresh(variant)
        return self._by_instance


def _timeouts(settings: dict[str, Any]) -> dict[str, float]:
    return {str(name): float(seconds) for name, seconds in (settings.get("timeouts") or {}).items()}


class _ContainerGate:
    """What both multi-container gates keep: the containers, their workers, each one's own timeout."""

    def __init__(self, hostnames: list[str], timeouts: dict[str, float] | None) -> None:
        self.hostnames = hostnames
        self.workers = _ContainerWorkers(hostnames)
        self.timeouts = dict(timeouts or {})

    @classmethod
    def of(cls, settings: dict[str, Any]) -> Self:
        return cls([str(name) for name in settings["containers"]], timeouts=_timeouts(settings))

    def settings(self) -> dict[str, Any]:
        return {"containers": self.hostnames, "timeouts": self.timeouts}

    @staticmethod
    def _container_stats(stats: VariantStats, hostnames: list[str]) -> dict[str, VariantStats]:
        """Each container's stats, kept on the variant's stats so that totals carry on across updates."""
        if stats.containers is None:
            stats.containers = {}
        for name in hostnames:
            stats.containers.setdefault(name, VariantStats())
        return stats.containers


# ---- Serial ----------------------------------------------------------------------------------------


class SerialGate(_ContainerGate):
    """An inference pipeline's requests: hop by hop through the containers, in order, on one instance.
    A container's own model server timeout: a hop that runs this long is hung (its worker killed)."""

    kind = "serial"

    def __init__(
        self,
        hostnames: list[str],
        stats: VariantStats | None = None,
        timeouts: dict[str, float] | None = None,
    ) -> None:
        super().__init__(hostnames, timeouts)
        # ContainerLatency per container
        self.latency: dict[str, Histogram] | None = None
        if stats is not None:
            containers = self._container_stats(stats, hostnames)
            self.latency = {name: containers[name].model_latency for name in hostnames}
        # workers a connection reached (a request may start where every container has one) and workers
        # that refused one (left out until the time given)
        self.reached: set[WorkerClient] = set()
        self.refused: dict[WorkerClient, float] = {}
        self._pruned: list[WorkerRoute] | None = None

    def invoke(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        begun: float,
        table: RoutingTable | None,
    ) -> None:
        if inv.target_container is not None:
            future.set_exception(
                ValidationError(
                    f"Endpoint {route.name} runs its containers as a serial inference pipeline, so "
                    "TargetContainerHostname does not apply (it is for InferenceExecutionConfig Mode "
                    "Direct). Remove TargetContainerHostname."
                )
            )
            return
        if inv.targeted:
            future.set_exception(untargetable(route, inv))
            return
        _Pipeline(self, route, variant, inv, future, begun).start()

    def choose(self, variant: VariantRoute) -> tuple[str, list[WorkerRoute]] | None:
        """The instance a new request runs on, and the workers there no connection has reached yet (to be
        tried before any container works on the request). Only a whole instance is chosen: one where every
        container has a worker that takes requests; of those, the one with the fewest requests in flight
        at all of its containers (least outstanding requests), or the one the variant's strategy picks
        for the first container. None: no instance is whole."""
        instances = self.workers.instances(variant)
        if variant.workers is not self._pruned:  # forget the workers of instances that are gone
            current = {w.client for w in variant.workers}
            self.reached &= current
            self.refused = {c: until for c, until in self.refused.items() if c in current}
            self._pruned = variant.workers
        now = time.monotonic()
        whole: dict[str, list[list[WorkerRoute]]] = {}
        for instance, containers in instances.items():
            usable = []
            for hostname in self.hostnames:
                ready = [w for w in containers.get(hostname, ()) if self._usable(w.client, now)]
                if not ready:
                    break
                usable.append(ready)
            else:
                whole[instance] = usable
        if not whole:
            return None
        if variant.pick is choose_worker:
            instance = self._least_busy(instances, whole)
        else:
            first = variant.pick([w for usable in whole.values() for w in usable[0]])
            if first is None:
                return None
            instance = first.instance_id
        unproven = []
        for ready in whole[instance]:
            if not any(w.client in self.reached for w in ready):
                worker = choose_worker(ready)
                assert worker is not None
                unproven.append(worker)
        return instance, unproven

    def _usable(self, client: WorkerClient, now: float) -> bool:
        return not client.replacing and self.refused.get(client, 0.0) <= now

    @staticmethod
    def _least_busy(
        instances: dict[str, dict[str, list[WorkerRoute]]], whole: dict[str, list[list[WorkerRoute]]]
    ) -> str:
        best, best_load, ties = "", 1 << 30, 0
        for instance in whole:
            load = sum(w.client.outstanding for ws in instances[instance].values() for w in ws)
            if load < best_load:
                best, best_load, ties = instance, load, 1
            elif load == best_load:
                ties += 1
                if _ties.random() * ties < 1:
                    best = instance
        return best

    def refuse(self, client: WorkerClient) -> None:
        """A connection to this worker failed: leave its instance out of new requests for a moment."""
        self.reached.discard(client)
        self.refused[client] = time.monotonic() + UNREACHABLE_SECONDS


class _Pipeline:
    """One request's way through the containers: which hop, on which instance, time used so far."""

    __slots__ = (
        "begun",
        "deadline",
        "future",
        "gate",
        "hop",
        "instance",
        "inv",
        "model_us",
        "probing",
        "route",
        "variant",
    )

    def __init__(
        self,
        gate: SerialGate,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        begun: float,
    ) -> None:
        self.gate = gate
        self.route = route
        self.variant = variant
        self.inv = inv
        self.future = future
        self.begun = begun
        self.deadline = time.monotonic() + variant.timeout  # one budget for every hop
        self.hop = 0
        self.instance: str | None = None  # the instance every hop goes to
        self.model_us = 0.0  # the hops' answer times (ModelLatency is their sum)
        self.probing: asyncio.Future[None] | None = None

    def start(self) -> None:
        """Choose the instance; workers there no connection has reached are tried first, so that no
        container works on a request a later container of that instance could not take."""
        choice = self.gate.choose(self.variant)
        if choice is not None:
            self.instance, unproven = choice
            if unproven:
                self.probing = asyncio.ensure_future(self._probe(unproven))
                return
        # else no instance is whole: the first hop picks one, and a later hop waits for its container
        self._send(self.inv.body, self.inv.content_type)

    async def _probe(self, workers: list[WorkerRoute]) -> None:
        for worker in workers:
            try:
                conn = await worker.client.connect()
            except WorkerUnavailable:
                self.gate.refuse(worker.client)
                self.instance = None
                self.start()  # another instance, or another worker of that container
                return
            worker.client.release(conn)  # the hop to that container takes it from the pool
            self.gate.reached.add(worker.client)
        self._send(self.inv.body, self.inv.content_type)

    def _send(self, body: bytes, content_type: bytes | None) -> None:
        first, last = self.hop == 0, self.hop == len(self.gate.hostnames) - 1
        inv = self.inv
        hop = Invocation(
            endpoint=inv.endpoint,
            body=body,
            content_type=content_type,
            accept=inv.accept if last else None,
            custom_attributes=inv.custom_attributes if first else None,
            inference_id=inv.inference_id,
        )
        _HopCall(self, self.gate.hostnames[self.hop], _encode(hop)).start()

    def candidates(self, hostname: str) -> list[WorkerRoute]:
        workers = self.gate.workers.of(self.variant, hostname)
        if self.instance is None:
            return workers
        return [w for w in workers if w.instance_id == self.instance]

    def answered(self, call: _HopCall, response: WorkerResponse) -> None:
        """A container answered: on to the next one, or the last one's answer to the caller."""
        assert call.worker is not None
        took = (perf_counter() - call.sent) * 1e6
        self.model_us += took
        if (latency := self.gate.latency) is not None and call.hostname in latency:
            latency[call.hostname].observe(took)  # ContainerLatency
        self.instance = call.worker.instance_id
        last = self.hop == len(self.gate.hostnames) - 1
        limit = MAX_PAYLOAD_BYTES if last else HOP_LIMIT_BYTES
        error: ModelError | None = None
        if not 200 <= response.status < 300:
            original = response.body.decode("utf-8", "replace")[:4096]
            error = container_error(self.route, call.hostname, response.status, original)
        elif len(response.body) > limit:
            what = "InvokeEndpoint returns" if last else "one container of a pipeline may pass to the next"
            error = container_error(
                self.route,
                call.hostname,
                response.status,
                "",
                f"with a response of {len(response.body)} bytes, over the {limit} bytes {what}",
            )
        if error is not None or last:  # the request ends here (an oversized answer counts as a 5xx)
            ok = 200 <= response.status < 300
            self._record(500 if error is not None and ok else response.status)
            call.worker.served += 1  # InvocationsPerInstance: answered by this instance, error or not
        if error is not None:
            call._fail(error)
        elif last:
            if not self.future.done():
                self.future.set_result(InvocationResult(self.variant.name, response))
        else:
            self.hop += 1
            self._send(response.body, response.header(b"content-type"))

    def _record(self, status: int) -> None:
        """The request's share of its variant's metrics, once however many hops it took."""
        if (stats := self.variant.stats) is not None:
            count_answer(stats, status, self.model_us, (perf_counter() - self.begun) * 1e6 - self.model_us)


class _HopCall(_Call):
    """One hop: the pipeline's container `hostname`, on the pipeline's instance, in the time left."""

    __slots__ = ("hostname", "hung_at_timeout", "pipeline")

    def __init__(self, pipeline: _Pipeline, hostname: str, raw: bytes) -> None:
        super().__init__(pipeline.route, pipeline.variant, raw, pipeline.future, pipeline.begun)
        self.pipeline = pipeline
        self.hostname = hostname
        self.hung_at_timeout = True

    def start(self) -> None:
        if self.tried:  # connections to these were refused: the gate keeps new requests off them
            for worker in self.tried:
                self.pipeline.gate.refuse(worker.client)
        super().start()

    def _candidates(self) -> list[WorkerRoute]:
        return self.pipeline.candidates(self.hostname)

    def _budget(self) -> float:
        """The time the request has left, or the container's own timeout if that comes first; only in
        the second case is the worker hung when the timer fires."""
        left = max(0.0, self.pipeline.deadline - time.monotonic())
        own = self.pipeline.gate.timeouts.get(self.hostname, self.variant.timeout)
        self.hung_at_timeout = own <= left
        return min(own, left)

    def _send(self, conn: Connection) -> None:
        self.sent = perf_counter()  # every hop's answer time is measured (ModelLatency sums them)
        super()._send(conn)

    def _on_timeout(self) -> None:
        if self.hung_at_timeout:
            super()._on_timeout()  # the worker ran for its container's own timeout: hung, replaced
            return
        # the request's budget ran out (earlier containers used most of it); this worker is not hung
        self._lost()
        self.timer = None
        self._finish_exchange()
        if self.conn is not None:
            self.conn.close()
        self._fail(self._model_error(0, TIMEOUT_MESSAGE))

    def on_response(self, response: WorkerResponse) -> None:
        self._finish_exchange()
        assert self.worker is not None and self.conn is not None
        self.worker.client.release(self.conn)
        self.pipeline.answered(self, response)

    def _model_error(self, status: int, original: str, detail: str | None = None) -> ModelError:
        return container_error(self.route, self.hostname, status, original, detail)


# ---- Direct ----------------------------------------------------------------------------------------


class DirectGate(_ContainerGate):
    """Direct invocation: TargetContainerHostname picks the container; metrics per container too.
    A container's own model server timeout is its requests' budget."""

    kind = "direct"

    def __init__(
        self,
        hostnames: list[str],
        stats: VariantStats | None = None,
        timeouts: dict[str, float] | None = None,
    ) -> None:
        super().__init__(hostnames, timeouts)
        self.stats = None if stats is None else self._container_stats(stats, hostnames)

    def invoke(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        begun: float,
        table: RoutingTable | None,
    ) -> None:
        hostname = inv.target_container
        valid = ", ".join(self.hostnames)
        if inv.target_model is not None:
            future.set_exception(untargetable(route, inv))
        elif hostname is None:
            future.set_exception(
                ValidationError(
                    f"Endpoint {route.name} uses Direct invocation; set TargetContainerHostname to one of: "
                    f"{valid}."
                )
            )
        elif hostname not in self.hostnames:
            future.set_exception(
                ValidationError(
                    f"TargetContainerHostname {hostname} is not a container of endpoint {route.name}. "
                    f"Valid container hostnames: {valid}."
                )
            )
        else:
            own = self.stats.get(hostname) if self.stats is not None else None
            _DirectCall(self, hostname, own, route, variant, _encode(inv), future, begun).start()


class _DirectCall(_Call):
    """A `_Call` to one container's workers, counted for that container as well as the variant."""

    __slots__ = ("gate", "hostname", "own")

    def __init__(
        self,
        gate: DirectGate,
        hostname: str,
        own: VariantStats | None,
        route: EndpointRoute,
        variant: VariantRoute,
        raw: bytes,
        future: asyncio.Future[InvocationResult],
        begun: float,
    ) -> None:
        super().__init__(route, variant, raw, future, begun)
        self.gate = gate
        self.hostname = hostname
        self.own = own

    def _candidates(self) -> list[WorkerRoute]:
        return self.gate.workers.of(self.variant, self.hostname)

    def _budget(self) -> float:
        """The target container's own model server timeout, not another container's."""
        return self.gate.timeouts.get(self.hostname, self.variant.timeout)

    def _record(self, stats: VariantStats, status: int) -> None:
        super()._record(stats, status)
        if self.own is not None:
            now = perf_counter()
            model = (now - self.sent) * 1e6
            count_answer(self.own, status, model, (now - self.begun) * 1e6 - model)

    def _lost(self) -> None:
        super()._lost()
        if self.own is not None:
            self.own.invocations += 1
            self.own.model_errors += 1

    def _fail(self, err: AwsError) -> None:
        if self.own is not None and isinstance(err, ServiceUnavailable):  # no worker of it was ready
            self.own.invocations += 1
            self.own.errors_5xx += 1
        super()._fail(err)

    def _model_error(self, status: int, original: str, detail: str | None = None) -> ModelError:
        return container_error(self.route, self.hostname, status, original, detail)


def container_error(
    route: EndpointRoute, hostname: str, status: int, original: str, detail: str | None = None
) -> ModelError:
    """invoke.model_error naming the container (`hostname`) instead of "primary", timeouts included."""
    if original == TIMEOUT_MESSAGE:
        original = TIMEOUT_MESSAGE.replace("container primary", f"container {hostname}")
    return model_error(route, status, original, detail, source=hostname)


GATE_KINDS["serial"] = SerialGate.of
GATE_KINDS["direct"] = DirectGate.of
