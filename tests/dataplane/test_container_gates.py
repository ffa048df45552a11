"""The multi-container gates against stand-in workers: a pipeline's hops stay on one instance and chain
content types; Direct invocation counts each container's requests on their own."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from time import perf_counter

from moorage.api.errors import AwsError, ModelError
from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.containers import DirectGate, SerialGate
from moorage.dataplane.invoke import Invocation, InvocationResult, Targets, invoke
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.dataplane.stats import VariantStats

from .servers import Answer, Handler, Request, TinyServer, response

INSTANCES = ("i-a", "i-b")
CONTAINERS = ("pre", "post")


def _tagging(instance: str, container: str, status: int = 200) -> Handler:
    """Appends `instance/container` to the body it got, and answers in a content type of its own."""

    async def handle(request: Request) -> Answer:
        await asyncio.sleep(0.01)  # so concurrent requests spread over the instances
        body = request.body + f"|{instance}/{container}".encode()
        return response(status, body, ((b"content-type", f"application/x-{container}".encode()),))

    return handle


async def _scenario(
    root: Path, gate: SerialGate | DirectGate, invocations: list[Invocation], failing: str = ""
) -> tuple[list[InvocationResult | AwsError], dict[str, TinyServer], VariantStats]:
    stats = VariantStats()
    if isinstance(gate, DirectGate):
        gate = DirectGate(gate.hostnames, stats)
    async with contextlib.AsyncExitStack() as stack:
        servers: dict[str, TinyServer] = {}
        workers: list[WorkerRoute] = []
        for instance in INSTANCES:
            for container in CONTAINERS:
                name = f"{instance}-{container}"
                path = str(root / f"{name}.sock")
                status = 500 if container == failing else 200
                servers[name] = await stack.enter_async_context(
                    TinyServer(path, _tagging(instance, container, status))
                )
                client = WorkerClient(path)
                stack.callback(client.close)
                workers.append(WorkerRoute(client, instance, len(workers), lambda: None, container=container))
        variant = VariantRoute("AllTraffic", 1.0, 5.0, workers=workers, stats=stats)
        variant.gate = gate
        table = RoutingTable()
        table.install(EndpointRoute("ep", [variant], log_stream_arn="arn"))

        async def one(inv: Invocation) -> InvocationResult | AwsError:
            try:
                return await invoke(table, inv, "123456789012", perf_counter())
            except AwsError as exc:
                return exc

        outcomes = await asyncio.gather(*(one(inv) for inv in invocations))
    return list(outcomes), servers, stats


def test_hops_stay_on_one_instance_and_chain_content_types(tmp_path: Path) -> None:
    invocations = [
        Invocation(
            "ep", f"r{i}".encode(), content_type=b"text/csv", accept=b"text/plain", custom_attributes=b"c"
        )
        for i in range(8)
    ]
    outcomes, servers, stats = asyncio.run(_scenario(tmp_path, SerialGate(list(CONTAINERS)), invocations))
    used = set()
    for i, outcome in enumerate(outcomes):
        assert isinstance(outcome, InvocationResult)
        first, second = outcome.response.body.decode().split("|")[1:]
        instance = first.split("/")[0]
        assert (first, second) == (f"{instance}/pre", f"{instance}/post"), outcome.response.body
        assert outcome.response.body.startswith(f"r{i}|".encode())
        assert outcome.response.header(b"content-type") == b"application/x-post"
        used.add(instance)
    assert used == set(INSTANCES)  # the first hop spreads requests; the rest follow it
    for instance in INSTANCES:
        for request in servers[f"{instance}-pre"].requests:
            assert request.header(b"content-type") == b"text/csv"
            assert request.header(b"accept") is None
            assert request.header(b"x-amzn-sagemaker-custom-attributes") == b"c"
        for request in servers[f"{instance}-post"].requests:
            assert request.header(b"content-type") == b"application/x-pre"
            assert request.header(b"accept") == b"text/plain"
            assert request.header(b"x-amzn-sagemaker-custom-attributes") is None
    assert stats.invocations == 8 and stats.model_latency.count == 8 and stats.model_errors == 0


def test_a_failing_hop_stops_the_pipeline_and_is_counted_once(tmp_path: Path) -> None:
    invocations = [Invocation("ep", b"x", content_type=b"text/csv")]
    outcomes, servers, stats = asyncio.run(
        _scenario(tmp_path, SerialGate(list(CONTAINERS)), invocations, failing="pre")
    )
    [outcome] = outcomes
    assert isinstance(outcome, ModelError)
    assert outcome.message.startswith("Received server error (500) from pre with message")
    assert sum(len(servers[f"{i}-post"].requests) for i in INSTANCES) == 0
    assert (stats.invocations, stats.model_errors, stats.errors_5xx) == (1, 1, 1)


def test_direct_calls_reach_one_container_and_are_counted_for_it(tmp_path: Path) -> None:
    targets = ["post", "post", "pre"]
    invocations = [Invocation("ep", b"x", targets=Targets(None, t)) for t in targets]
    outcomes, _, stats = asyncio.run(_scenario(tmp_path, DirectGate(list(CONTAINERS)), invocations))
    for target, outcome in zip(targets, outcomes, strict=True):
        assert isinstance(outcome, InvocationResult)
        assert outcome.response.body.decode().endswith(f"/{target}")
    assert stats.invocations == 3
    assert stats.containers is not None
    assert {name: own.invocations for name, own in stats.containers.items()} == {"pre": 1, "post": 2}
    assert stats.containers["post"].model_latency.count == 2


async def _hanging_second_hop(
    root: Path, budget: float, timeouts: dict[str, float]
) -> tuple[InvocationResult | AwsError, list[str], VariantStats]:
    """One instance: `pre` answers at once, `post` never does. Returns the outcome and which containers'
    workers were killed (as hung)."""
    stats = VariantStats()
    killed: list[str] = []
    never = asyncio.Event()

    async def answer(request: Request) -> Answer:
        return response(200, request.body, ((b"content-type", b"application/x-pre"),))

    async def hang(request: Request) -> Answer:
        await never.wait()
        raise AssertionError("unreachable")

    async with contextlib.AsyncExitStack() as stack:
        workers: list[WorkerRoute] = []
        for container, handler in (("pre", answer), ("post", hang)):
            path = str(root / f"{container}.sock")
            await stack.enter_async_context(TinyServer(path, handler))
            client = WorkerClient(path)
            stack.callback(client.close)
            workers.append(
                WorkerRoute(
                    client, "i-a", len(workers), lambda c=container: killed.append(c), container=container
                )
            )
        variant = VariantRoute("AllTraffic", 1.0, budget, workers=workers, stats=stats)
        variant.gate = SerialGate(list(CONTAINERS), stats, timeouts)
        table = RoutingTable()
        table.install(EndpointRoute("ep", [variant], log_stream_arn="arn"))
        try:
            outcome: InvocationResult | AwsError = await invoke(
                table, Invocation("ep", b"x", content_type=b"x"), "123456789012", perf_counter()
            )
        except AwsError as exc:
            outcome = exc
        never.set()
    return outcome, killed, stats


def test_a_pipeline_budget_spent_before_a_hop_fails_the_request_without_killing_its_worker(
    tmp_path: Path,
) -> None:
    """`post` has had the request for less than its own timeout when the request's budget runs out: the
    request fails naming `post`, whose worker is not hung and is left alone."""
    outcome, killed, stats = asyncio.run(_hanging_second_hop(tmp_path, 1.0, {"pre": 1.0, "post": 60.0}))
    assert isinstance(outcome, ModelError)
    assert "waiting for a response from container post" in outcome.fields["OriginalMessage"]
    assert killed == []
    assert (stats.invocations, stats.model_errors) == (1, 1)
    assert (
        stats.containers is not None and stats.containers["pre"].model_latency.count == 1
    )  # ContainerLatency


def test_a_hop_that_runs_for_its_containers_own_timeout_is_hung(tmp_path: Path) -> None:
    outcome, killed, _ = asyncio.run(_hanging_second_hop(tmp_path, 30.0, {"pre": 30.0, "post": 0.2}))
    assert isinstance(outcome, ModelError)
    assert "waiting for a response from container post" in outcome.fields["OriginalMessage"]
    assert killed == ["post"]


def test_gate_settings_carry_each_containers_timeout() -> None:
    """Another server rebuilds the gates from their settings: the per-container timeouts come along."""
    timeouts = {"pre": 2.0, "post": 60.0}
    for gate in (
        SerialGate(list(CONTAINERS), timeouts=timeouts),
        DirectGate(list(CONTAINERS), timeouts=timeouts),
    ):
        rebuilt = type(gate).of(json.loads(json.dumps(gate.settings())))
        assert (rebuilt.hostnames, rebuilt.timeouts) == (list(CONTAINERS), timeouts)
