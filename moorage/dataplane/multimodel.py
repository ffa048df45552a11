"""A multi-model variant's requests (Mode MultiModel, docs/multimodel.md): TargetModel checked, the
instance chosen for the model, the instance's model-cache answers turned into SageMaker's errors and
metrics.

Placement is rendezvous (highest-random-weight) hashing of TargetModel over the variant's instance ids:
every front door, and every concurrent first request, ranks the instances the same way, so a model is
loaded once and then found where it was loaded (affinity by construction), while different models spread
over the instances. A model's first requests all go to its first-ranked instance, which loads it once;
once it has answered from there, a request that finds `spill_at` requests *for that model* in flight per
worker on that instance goes to the next-ranked one, so a hot model ends up loaded on more instances while
a quiet one stays where it is loaded however busy other models keep its instance. An instance joining or
leaving moves only the models it ranks first for.

The instance (moorage/serving/multimodel/) marks its own failures with `x-moorage-error: <kind>` and a
plain-text body that is the message; a non-2xx answer without that header is the model's own."""

from __future__ import annotations

import asyncio
import contextlib
from hashlib import blake2b
from time import perf_counter
from typing import Any

from moorage.api.errors import AwsError, ModelNotReadyException, ValidationError
from moorage.dataplane.connection import WorkerResponse
from moorage.dataplane.gates import GATE_KINDS
from moorage.dataplane.invoke import (
    LOST_MESSAGE,
    TIMEOUT_MESSAGE,
    Invocation,
    InvocationResult,
    _Call,
    _encode,
    count_answer,
    model_error,
)
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.stats import MultiModelStats, VariantStats

KIND = "multimodel"
# the front door waits this much longer than the instance's own limits (the wait for a load, then the
# invocation timeout): the instance enforces them itself and answers ModelNotReady or ModelTimeout, which
# say more than the front door's own timeout could
TIMEOUT_SLACK_SECONDS = 5.0
MAX_TARGET_MODEL_BYTES = 1024  # the API's own limit (the runtime's slow path has checked it already)
MAX_REMEMBERED = 65_536  # models whose answering instance the gate remembers

_ERROR = b"x-moorage-error"
_CACHE = b"x-moorage-model-cache"
_TIMINGS = b"x-moorage-model-timings"
_LOADED = b"x-moorage-loaded-models"
_UNLOADED = b"x-moorage-model-unloaded"
# marked refusals that are the request's (or a wait's), not the model's: no InvocationModelErrors
_NOT_MODEL = frozenset({"InvalidTargetModel", "ModelNotFound", "ModelNotReady"})


class MultiModelGate:
    """What the data plane needs of a multi-model variant. `spill_at`: the model's own requests in flight
    on its preferred instance before another request for it (loaded there) goes to the next-ranked one.
    `ready_wait`: how long the instance lets a request wait for its model's load before it answers
    ModelNotReady; the invocation timeout starts after that wait, so the front door allows both.
    `answered`: the instances each model has answered from (bounded), so a model's first requests all
    wait for one load on its preferred instance instead of spilling. `in_flight`: requests under way per
    (model, instance); an entry goes when its count drops to zero, so it is bounded by the requests."""

    kind = KIND

    def __init__(self, spill_at: int = 2, ready_wait: float = 0.0) -> None:
        self.spill_at = spill_at
        self.ready_wait = ready_wait
        self.answered: dict[str, set[str]] = {}
        self.in_flight: dict[tuple[str, str], int] = {}

    def settings(self) -> dict[str, Any]:
        return {"spill_at": self.spill_at, "ready_wait": self.ready_wait}

    @classmethod
    def of(cls, settings: dict[str, Any]) -> MultiModelGate:
        return cls(
            spill_at=max(1, int(settings.get("spill_at", 2))),
            ready_wait=max(0.0, float(settings.get("ready_wait", 0.0))),
        )

    def began(self, target: str, instance: str) -> None:
        """A request for `target` went to `instance`."""
        key = (target, instance)
        self.in_flight[key] = self.in_flight.get(key, 0) + 1

    def ended(self, target: str, instance: str) -> None:
        """That request has its answer (or none is coming)."""
        key = (target, instance)
        left = self.in_flight.get(key, 0) - 1
        if left > 0:
            self.in_flight[key] = left
        else:
            self.in_flight.pop(key, None)

    def loaded(self, target: str, instance: str) -> None:
        """`instance` answered a request for `target`: the model is loaded there."""
        answered = self.answered
        instances = answered.get(target)
        if instances is None:
            if len(answered) >= MAX_REMEMBERED:
                del answered[next(iter(answered))]  # the oldest: that model starts unspilled again
            instances = answered[target] = set()
        instances.add(instance)

    def invoke(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        inv: Invocation,
        future: asyncio.Future[InvocationResult],
        begun: float,
        table: RoutingTable | None,
    ) -> None:
        """Check TargetModel, then send the request to the instance the model ranks first (or spills to)."""
        try:
            target = check_target(route, inv)
        except ValidationError as err:
            future.set_exception(err)
            return
        _MultiModelCall(route, variant, _encode(inv), future, begun, self, target).start()


def check_target(route: EndpointRoute, inv: Invocation) -> str:
    """TargetModel as text, or the ValidationError that says what is wrong with the request."""
    if inv.target_container is not None:
        raise ValidationError(
            f"Endpoint {route.name} is a multi-model endpoint, not a multi-container endpoint with Direct "
            "invocation (InferenceExecutionConfig Mode Direct), so TargetContainerHostname does not apply. "
            "Remove TargetContainerHostname and name the model with TargetModel."
        )
    raw = inv.target_model
    if raw is None or not raw.strip():
        raise ValidationError(
            f"Request to multi-model endpoint {route.name} is missing a target model header. Add "
            "TargetModel (the model's path under the endpoint's ModelDataUrl prefix)."
        )
    target = raw.decode("utf-8", "replace")
    if len(raw) > MAX_TARGET_MODEL_BYTES or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        problem = (
            "is longer than 1024 bytes" if len(raw) > MAX_TARGET_MODEL_BYTES else "has control characters"
        )
        raise ValidationError(f"TargetModel {target[:100]!r} {problem}. {_TARGET_RULE}")
    if target.startswith("/"):
        raise ValidationError(f"TargetModel {target!r} starts with '/'. {_TARGET_RULE}")
    segments = target.split("/")
    if ".." in segments:
        raise ValidationError(f"TargetModel {target!r} has a '..' segment. {_TARGET_RULE}")
    if all(s in ("", ".") for s in segments):
        raise ValidationError(
            f"TargetModel {target!r} names the ModelDataUrl prefix itself, not a model under it. "
            f"{_TARGET_RULE}"
        )
    return target


_TARGET_RULE = (
    "TargetModel is a path relative to the endpoint's ModelDataUrl prefix, such as model-a.tar.gz or "
    "team/model-b.tar.gz."
)


def rank(target: str, instances: list[str]) -> list[str]:
    """Instance ids, the one `target` prefers first: highest random weight, the same on every server."""
    key = target.encode()
    return sorted(
        instances, key=lambda i: blake2b(key + b"\0" + i.encode(), digest_size=8).digest(), reverse=True
    )


def place(
    target: str,
    workers: list[WorkerRoute],
    spill_at: int,
    loaded_on: set[str] | None,
    in_flight: dict[tuple[str, str], int],
) -> list[WorkerRoute]:
    """The workers of the instance a request for `target` goes to: its first-ranked instance; once the
    model has answered from there (`loaded_on`), the first-ranked one with fewer than `spill_at` requests
    for this model in flight per worker (`in_flight`, per (model, instance): other models' requests do
    not make a model spill), or, when all have that many, the one with the fewest (the model is hot
    everywhere)."""
    by_instance: dict[str, list[WorkerRoute]] = {}
    for worker in workers:
        by_instance.setdefault(worker.instance_id, []).append(worker)
    if len(by_instance) <= 1:
        return workers
    ranked = rank(target, list(by_instance))
    if (
        loaded_on is None or ranked[0] not in loaded_on
    ):  # not loaded on its instance yet: its first requests share one load there
        return by_instance[ranked[0]]
    least: list[WorkerRoute] = []
    least_outstanding = -1
    for instance in ranked:
        members = by_instance[instance]
        outstanding = in_flight.get((target, instance), 0)
        if outstanding < spill_at * len(members):
            return members
        if least_outstanding < 0 or outstanding < least_outstanding:
            least, least_outstanding = members, outstanding
    return least


class _MultiModelCall(_Call):
    """A `_Call` narrowed to the model's instance, reading the instance's model-cache headers.
    `counted`: the instance this request is counted in flight on (the gate's per-model counts);
    `wait_us`: the cache miss's wait for its load, which ModelLatency leaves out."""

    __slots__ = ("counted", "gate", "target", "wait_us")

    def __init__(
        self,
        route: EndpointRoute,
        variant: VariantRoute,
        raw: bytes,
        future: asyncio.Future[InvocationResult],
        begun: float,
        gate: MultiModelGate,
        target: str,
    ) -> None:
        super().__init__(route, variant, raw, future, begun)
        self.gate = gate
        self.target = target
        self.counted: str | None = None
        self.wait_us = 0.0

    def start(self) -> None:
        """As `_Call.start` (again after a refused connection), counting the request on its instance."""
        self._uncount()
        self.worker = None
        super().start()
        if self.worker is not None:
            self.counted = self.worker.instance_id
            self.gate.began(self.target, self.counted)

    def _uncount(self) -> None:
        if self.counted is not None:
            self.gate.ended(self.target, self.counted)
            self.counted = None

    def _finish_exchange(self) -> None:
        super()._finish_exchange()
        self._uncount()

    def _candidates(self) -> list[WorkerRoute]:
        workers = self.variant.workers
        if self.tried:  # an instance that refused the connection: the next-ranked one takes the model
            workers = [w for w in workers if w not in self.tried]
        gate = self.gate
        return place(self.target, workers, gate.spill_at, gate.answered.get(self.target), gate.in_flight)

    def _budget(self) -> float:
        """The instance's wait for the model's load, then the invocation timeout, then the slack."""
        return self.gate.ready_wait + self.variant.timeout + TIMEOUT_SLACK_SECONDS

    def _record(self, stats: VariantStats, status: int) -> None:
        """As `_Call._record`, less a cache miss's wait for its load (ModelLoadingWaitTime) in ModelLatency
        and OverheadLatency: the model's answer time is what comes after its load."""
        now = perf_counter()
        total = (now - self.sent) * 1e6
        overhead = max(0.0, (now - self.begun) * 1e6 - total)
        count_answer(stats, status, max(0.0, total - self.wait_us), overhead)
        if self.worker is not None:
            self.worker.served += 1

    def on_response(self, response: WorkerResponse) -> None:
        marker = response.header(_ERROR)
        if (stats := self.variant.stats) is not None:
            self.wait_us = _record_cache(stats, response, self.worker)
        if marker is None:
            if self.worker is not None and 200 <= response.status < 300:
                self.gate.loaded(self.target, self.worker.instance_id)
            super().on_response(response)
            return
        self._finish_exchange()
        assert self.worker is not None and self.conn is not None
        self.worker.client.release(self.conn)
        kind = marker.decode("latin-1").strip()
        if (stats := self.variant.stats) is not None:
            if kind in _NOT_MODEL:  # the request's fault or a wait: no model answered, so no ModelLatency
                stats.invocations += 1
                stats.errors_4xx += 1
                self.worker.served += 1
            else:
                self._record(stats, response.status)
        self._fail(self._error(kind, response))

    def _error(self, kind: str, response: WorkerResponse) -> AwsError:
        """The SageMaker error for a failure the instance marked."""
        text = response.body.decode("utf-8", "replace")[:4096].strip()
        model = self.target
        if kind == "ModelNotReady":
            return ModelNotReadyException(
                text
                or f"Model {model} is still being loaded on endpoint {self.route.name}. Retry shortly: it "
                "keeps loading."
            )
        if kind in ("ModelNotFound", "InvalidTargetModel"):
            return ValidationError(text or f"TargetModel {model} could not be found. {_TARGET_RULE}")
        if kind == "ModelTimeout":
            return model_error(self.route, 0, TIMEOUT_MESSAGE)
        if kind == "ModelLost":
            return model_error(self.route, 0, text or f"Model {model}: {LOST_MESSAGE}")
        if kind == "ModelLoadFailed":
            reason = text if model in text else f"Model {model} failed to load: {text}"
            return model_error(self.route, 500, reason)
        if kind == "InsufficientMemory":
            return model_error(
                self.route, 507, text or f"Model {model} does not fit in the instance's memory."
            )
        return model_error(self.route, response.status, text)  # a marker this server does not know yet

    def _on_timeout(self) -> None:
        """No answer even after the instance's own timeout: drop this connection, but leave the instance
        alone (one process serves every model; it stops the slow invocation itself)."""
        self._lost()
        self.timer = None
        self._finish_exchange()
        if self.conn is not None:
            self.conn.close()
        self._fail(model_error(self.route, 0, TIMEOUT_MESSAGE))


def _record_cache(stats: VariantStats, response: WorkerResponse, worker: WorkerRoute | None) -> float:
    """The instance's cache report on this answer into the variant's multi-model metrics; returns the
    request's wait for its model's load in microseconds (0 for a hit)."""
    cache = response.header(_CACHE)
    loaded = response.header(_LOADED)
    unloaded = response.header(_UNLOADED)
    if cache is None and loaded is None and unloaded is None:
        return 0.0
    mm = stats.multi_model
    if mm is None:
        mm = stats.multi_model = MultiModelStats()
    wait = 0.0
    if cache is not None:
        mm.cache_lookups += 1
        if cache == b"hit":
            mm.cache_hits += 1
        elif (timings := response.header(_TIMINGS)) is not None:
            wait = _record_timings(mm, timings)
    if unloaded is not None:  # every unload on the instance since its previous answer, each once
        for part in unloaded.split(b","):
            with contextlib.suppress(ValueError):
                if 0 <= (value := float(part)) < float("inf"):
                    mm.unloading.observe(value)
    if loaded is not None and worker is not None:
        with contextlib.suppress(ValueError):
            mm.loaded[worker.instance_id] = int(loaded)
    return wait


def _record_timings(mm: MultiModelStats, timings: bytes) -> float:
    """`wait=<us>;download=<us>;load=<us>`, any part possibly missing (other parts, such as the unloads
    the load made room with, are informational: unloads are counted from `x-moorage-model-unloaded`).
    Returns the wait."""
    parts: dict[str, float] = {}
    for part in timings.split(b";"):
        name, _, value = part.partition(b"=")
        try:
            parts[name.strip().decode("latin-1")] = float(value)
        except ValueError:
            continue
    if "wait" in parts:
        mm.waiting.observe(parts["wait"])
    if "download" in parts:
        mm.downloading.observe(parts["download"])
    if "load" in parts:
        mm.loading.observe(parts["load"])
    return max(0.0, parts.get("wait", 0.0))


GATE_KINDS[KIND] = MultiModelGate.of
