"""Sending one queued request to a worker of its endpoint, through the data plane's pooled connections.

The real-time path (moorage/dataplane/invoke.py) is tuned for 6 MiB bodies and a 60 s budget; here a
body may be 1 GB and the budget is the request's InvocationTimeoutSeconds (up to an hour), so the request
goes as one coroutine per call (a few per second, not thousands) over the same WorkerClient pools, and
the worker is chosen by the endpoint's per-instance concurrency limit, not by the real-time policy."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from moorage.dataplane.connection import WorkerLost, WorkerResponse, WorkerUnavailable
from moorage.dataplane.invoke import LOST_MESSAGE, model_error
from moorage.dataplane.routes import EndpointRoute, VariantRoute, WorkerRoute
from moorage.dataplane.stats import VariantStats


class InvocationFailed(Exception):
    """The model answered with an error, or not in time, or its worker died: str() says which, for the
    failure object."""


class NoWorker(Exception):
    """No worker accepted the connection (nothing was sent): the request waits for capacity again."""


@dataclass(frozen=True)
class Request:
    body: bytes
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    inference_id: str
    timeout: float


@dataclass
class Slots:
    """Requests in flight per instance, against the endpoint's MaxConcurrentInvocationsPerInstance
    (None: one per worker of the instance, the most the instance serves at once)."""

    limit: int | None
    busy: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def capacity(self, route: EndpointRoute) -> int:
        return sum(self._limit(len(workers)) for _, workers in _instances(route))

    def take(self, route: EndpointRoute, rng: random.Random) -> tuple[VariantRoute, WorkerRoute] | None:
        """A worker of an instance below its limit: variants by weight, then the least busy instance,
        then its least busy worker; the slot is held until `give_back`."""
        variants = [v for v in route.variants if v.weight > 0 and v.workers] or [
            v for v in route.variants if v.workers
        ]
        while variants:
            variant = rng.choices(variants, weights=[max(v.weight, 1e-9) for v in variants])[0]
            free = [
                (self.busy[instance], instance, workers)
                for instance, workers in _by_instance(variant.workers).items()
                if self.busy[instance] < self._limit(len(workers))
            ]
            if free:
                _, instance, workers = min(free, key=lambda item: item[0])
                worker = min(workers, key=lambda w: w.client.outstanding)
                self.busy[instance] += 1
                return variant, worker
            variants.remove(variant)
        return None

    def give_back(self, worker: WorkerRoute) -> None:
        self.busy[worker.instance_id] -= 1
        if self.busy[worker.instance_id] <= 0:
            del self.busy[worker.instance_id]

    def _limit(self, workers: int) -> int:
        return self.limit if self.limit is not None else workers


def _by_instance(workers: list[WorkerRoute]) -> dict[str, list[WorkerRoute]]:
    out: dict[str, list[WorkerRoute]] = defaultdict(list)
    for worker in workers:
        out[worker.instance_id].append(worker)
    return out


def _instances(route: EndpointRoute) -> list[tuple[str, list[WorkerRoute]]]:
    return [item for variant in route.variants for item in _by_instance(variant.workers).items()]


def encode(request: Request) -> bytes:
    """The /invocations request as the instance's server reads it (the container contract's headers)."""
    head = [b"POST /invocations HTTP/1.1\r\nhost: instance\r\ncontent-length: %d" % len(request.body)]
    for name, value in (
        (b"content-type", request.content_type),
        (b"accept", request.accept),
        (b"x-amzn-sagemaker-custom-attributes", request.custom_attributes),
        (b"x-amzn-sagemaker-inference-id", request.inference_id),
    ):
        if value is not None:
            head.append(b"\r\n%s: %s" % (name, value.encode("latin-1")))
    head.append(b"\r\n\r\n")
    return b"".join([*head, request.body])


async def call(
    route: EndpointRoute, variant: VariantRoute, worker: WorkerRoute, request: Request
) -> WorkerResponse:
    """Send `request` to `worker`; the worker is killed (its instance re-forks it) when it overruns the
    request's InvocationTimeoutSeconds, as a hung handler would otherwise hold it forever."""
    stats = variant.stats
    worker.client.outstanding += 1
    try:
        response = await worker.client.request(encode(request), request.timeout)
    except WorkerUnavailable as exc:
        raise NoWorker(str(exc)) from None
    except TimeoutError:
        worker.kill()
        worker.client.close()
        _count(stats, error=True)
        raise InvocationFailed(
            f"The model did not answer within InvocationTimeoutSeconds ({request.timeout:g} s); the worker "
            f'was stopped and is being replaced. See the endpoint log ("moorage logs {route.name}").'
        ) from None
    except WorkerLost:
        worker.client.close()
        _count(stats, error=True)
        raise InvocationFailed(model_error(route, 0, LOST_MESSAGE).message) from None
    finally:
        worker.client.outstanding -= 1
    worker.served += 1
    ok = 200 <= response.status < 300
    _count(stats, error=not ok, status=response.status)
    if not ok:
        original = response.body.decode("utf-8", "replace")[:4096]
        raise InvocationFailed(model_error(route, response.status, original).message)
    return response


def _count(stats: VariantStats | None, error: bool, status: int = 0) -> None:
    """The request's share of its variant's invocation counters (Invocations, errors)."""
    if stats is None:
        return
    stats.invocations += 1
    if error:
        stats.model_errors += 1
        if 400 <= status < 500:
            stats.errors_4xx += 1
        elif status >= 500 or status == 0:
            stats.errors_5xx += 1
