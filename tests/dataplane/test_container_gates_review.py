"""The serial gate's choice of instance, against stand-in workers on real Unix sockets.

A pipeline's hops all run on the instance its first hop went to, so that first choice decides where the
whole request runs: it has to weigh the instance as a whole (every container's requests in flight, and
whether every container there takes requests), not only the first container's workers."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from time import perf_counter

from moorage.api.errors import AwsError, ModelError, ServiceUnavailable
from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.containers import DirectGate, SerialGate
from moorage.dataplane.invoke import Invocation, InvocationResult, Targets, invoke
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.stats import VariantStats

from .servers import Answer, Handler, Request, TinyServer, response

INSTANCES = ("i-a", "i-b")
CONTAINERS = ("pre", "post")


def _instance_of(result: InvocationResult | AwsError) -> str:
    assert isinstance(result, InvocationResult), result
    return result.response.body.decode().split("|")[1].split("/")[0]


def test_least_outstanding_counts_requests_at_any_container_of_an_instance(tmp_path: Path) -> None:
    """Request A is held at the last container of its instance. Every later request finds both first
    containers idle; least-outstanding routing must still send them to the other instance, whose
    containers have nothing in flight, instead of queueing them behind A (SageMaker counts a pipeline's
    requests per instance: its containers share the instance)."""

    async def scenario() -> tuple[str, list[str]]:
        release = asyncio.Event()
        arrived = asyncio.Event()

        def tagging(instance: str, container: str) -> Handler:
            async def handle(request: Request) -> Answer:
                if container == "post" and request.body.startswith(b"A|"):
                    arrived.set()
                    await release.wait()
                body = request.body + f"|{instance}/{container}".encode()
                return response(200, body, ((b"content-type", b"application/octet-stream"),))

            return handle

        async with contextlib.AsyncExitStack() as stack:
            workers: list[WorkerRoute] = []
            for instance in INSTANCES:
                for container in CONTAINERS:
                    path = str(tmp_path / f"{instance}-{container}.sock")
                    await stack.enter_async_context(TinyServer(path, tagging(instance, container)))
                    client = WorkerClient(path)
                    stack.callback(client.close)
                    workers.append(
                        WorkerRoute(client, instance, len(workers), lambda: None, container=container)
                    )
            variant = VariantRoute("AllTraffic", 1.0, 30.0, workers=workers, stats=VariantStats())
            variant.gate = SerialGate(list(CONTAINERS))
            table = RoutingTable()
            table.install(EndpointRoute("ep", [variant], log_stream_arn="arn"))

            held = invoke(table, Invocation("ep", b"A", content_type=b"x"), "123456789012", perf_counter())
            await asyncio.wait_for(arrived.wait(), 10)
            busy = next(w.instance_id for w in workers if w.container == "post" and w.client.outstanding)
            later = []
            for i in range(8):  # one at a time: A is the only request in flight when each is routed
                inv = Invocation("ep", f"B{i}".encode(), content_type=b"x")
                later.append(_instance_of(await invoke(table, inv, "123456789012", perf_counter())))
            release.set()
            await asyncio.wait_for(held, 10)
        return busy, later

    busy, later = asyncio.run(scenario())
    assert busy not in later, f"requests queued behind the busy instance {busy}: {later}"


def test_a_pipeline_is_not_started_on_an_instance_whose_later_container_takes_no_requests(
    tmp_path: Path,
) -> None:
    """Instance i-a's second container accepts no connections (its worker is being replaced, or gone);
    i-b is whole. Requests must be served by i-b, not run through i-a's first container and then
    answered ServiceUnavailable after the first container already did the work."""

    async def scenario() -> tuple[list[InvocationResult | AwsError], int]:
        async with contextlib.AsyncExitStack() as stack:
            workers: list[WorkerRoute] = []
            servers: dict[str, TinyServer] = {}
            for instance in INSTANCES:
                for container in CONTAINERS:
                    path = str(tmp_path / f"{instance}-{container}.sock")
                    if (instance, container) != ("i-a", "post"):  # nothing listens there

                        async def handle(request: Request, tag: str = f"{instance}/{container}") -> Answer:
                            await asyncio.sleep(0.01)
                            body = request.body + f"|{tag}".encode()
                            return response(200, body, ((b"content-type", b"application/octet-stream"),))

                        servers[f"{instance}-{container}"] = await stack.enter_async_context(
                            TinyServer(path, handle)
                        )
                    client = WorkerClient(path)
                    stack.callback(client.close)
                    workers.append(
                        WorkerRoute(client, instance, len(workers), lambda: None, container=container)
                    )
            # a short timeout: the wait for a worker that never comes is bounded by it
            variant = VariantRoute("AllTraffic", 1.0, 1.0, workers=workers, stats=VariantStats())
            variant.gate = SerialGate(list(CONTAINERS))
            table = RoutingTable()
            table.install(EndpointRoute("ep", [variant], log_stream_arn="arn"))

            async def one(i: int) -> InvocationResult | AwsError:
                inv = Invocation("ep", f"r{i}".encode(), content_type=b"x")
                try:
                    return await invoke(table, inv, "123456789012", perf_counter())
                except AwsError as exc:
                    return exc

            outcomes = await asyncio.gather(*(one(i) for i in range(4)))
            return list(outcomes), len(servers["i-a-pre"].requests)

    outcomes, ran_on_half_an_instance = asyncio.run(scenario())
    failed = [o for o in outcomes if not isinstance(o, InvocationResult)]
    assert not failed, (
        f"{len(failed)} of 4 requests failed ({failed[0]!r}) after {ran_on_half_an_instance} of them ran "
        "in i-a's first container, whose second container takes no requests, while i-b was whole"
    )


async def _two_containers(
    root: Path, gate: SerialGate | DirectGate, inv: Invocation, status: dict[str, int], timeout: float = 5.0
) -> tuple[InvocationResult | AwsError, list[WorkerRoute], VariantStats]:
    """One instance with `pre` and `post`; a container missing from `status` has nothing listening."""
    stats = VariantStats()
    if isinstance(gate, DirectGate):
        gate = DirectGate(gate.hostnames, stats)
    async with contextlib.AsyncExitStack() as stack:
        workers: list[WorkerRoute] = []
        for container in CONTAINERS:
            path = str(root / f"{container}.sock")
            if container in status:
                code = status[container]

                async def handle(request: Request, code: int = code) -> Answer:
                    return response(code, request.body, ((b"content-type", b"application/octet-stream"),))

                await stack.enter_async_context(TinyServer(path, handle))
            client = WorkerClient(path)
            stack.callback(client.close)
            workers.append(WorkerRoute(client, "i-a", len(workers), lambda: None, container=container))
        variant = VariantRoute("AllTraffic", 1.0, timeout, workers=workers, stats=stats)
        variant.gate = gate
        table = RoutingTable()
        table.install(EndpointRoute("ep", [variant], log_stream_arn="arn"))
        try:
            outcome: InvocationResult | AwsError = await invoke(table, inv, "123456789012", perf_counter())
        except AwsError as exc:
            outcome = exc
    return outcome, workers, stats


def test_a_pipeline_request_that_fails_at_its_first_container_counts_for_its_instance(tmp_path: Path) -> None:
    """InvocationsPerInstance counts every request an instance answered, errors included (as the plain
    path's `_record` does); a pipeline that stops at its first container's 500 is one such request."""
    inv = Invocation("ep", b"x", content_type=b"text/csv")
    outcome, workers, stats = asyncio.run(
        _two_containers(tmp_path, SerialGate(list(CONTAINERS)), inv, {"pre": 500, "post": 200})
    )
    assert isinstance(outcome, ModelError)
    assert stats.invocations == 1
    assert sum(w.served for w in workers) == 1, "the instance's InvocationsPerInstance missed the request"


def test_direct_no_worker_ready_is_counted_for_the_container_too(tmp_path: Path) -> None:
    """A Direct request whose container has no worker ready answers 503 and counts as the variant's
    Invocation5XXErrors; the per-container families (ContainerName dimension) must count it as well, or
    a container that is down shows no errors at all."""
    inv = Invocation("ep", b"x", targets=Targets(None, "post"))
    outcome, _, stats = asyncio.run(
        _two_containers(tmp_path, DirectGate(list(CONTAINERS)), inv, {"pre": 200}, timeout=0.3)
    )
    assert isinstance(outcome, ServiceUnavailable)
    assert (stats.invocations, stats.errors_5xx) == (1, 1)
    assert stats.containers is not None
    post = stats.containers["post"]
    assert (post.invocations, post.errors_5xx) == (1, 1), "the container's own metrics missed the 503"
