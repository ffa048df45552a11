"""The invocation path: worker answers become results or SageMaker errors with AWS's fields and wording."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import pytest

from moorage.api.errors import AwsError, ModelError, ServiceUnavailable, ValidationError
from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.invoke import MAX_PAYLOAD_BYTES, TIMEOUT_MESSAGE, Invocation, InvocationResult, invoke
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute

from .servers import Answer, Handler, Request, TinyServer, answering, dropping, hanging, response

ACCOUNT = "123456789012"
LOG_STREAM = "arn:aws:logs:us-west-2:123456789012:log-group:/aws/sagemaker/Endpoints/ep"


def _invoke(table: RoutingTable, inv: Invocation) -> asyncio.Future[InvocationResult]:
    return invoke(table, inv, ACCOUNT, perf_counter())


@dataclass
class Kills:
    """Records which workers the invocation path asked to kill."""

    calls: list[str] = field(default_factory=list)

    def of(self, name: str) -> Callable[[], None]:
        return lambda: self.calls.append(name)


@dataclass
class Fleet:
    """Tiny servers standing in for workers, and the routes that point at them."""

    root: Path
    stack: contextlib.AsyncExitStack
    kills: Kills = field(default_factory=Kills)
    servers: dict[str, TinyServer] = field(default_factory=dict)

    async def worker(self, name: str, handler: Handler | None) -> WorkerRoute:
        """A worker on socket `name`; with no handler nothing listens there."""
        path = str(self.root / f"{name}.sock")
        if handler is not None:
            self.servers[name] = await self.stack.enter_async_context(TinyServer(path, handler))
        client = WorkerClient(path)
        self.stack.callback(client.close)
        return WorkerRoute(client, f"i-{name}", 0, kill=self.kills.of(name))


@contextlib.asynccontextmanager
async def fleet(root: Path) -> AsyncIterator[Fleet]:
    async with contextlib.AsyncExitStack() as stack:
        yield Fleet(root, stack)


def _table(*variants: VariantRoute, name: str = "ep") -> RoutingTable:
    table = RoutingTable()
    table.install(EndpointRoute(name, list(variants), log_stream_arn=LOG_STREAM))
    return table


def _invoke_ep(table: RoutingTable) -> InvocationResult:
    """Invoke endpoint "ep" on a table that may not hold it."""

    async def call() -> InvocationResult:
        return await _invoke(table, Invocation("ep", b"{}"))

    return asyncio.run(call())


def _run_with(
    tmp_path: Path,
    handlers: dict[str, Handler | None],
    inv: Invocation | None = None,
    timeout: float = 5.0,
) -> tuple[InvocationResult | AwsError, Fleet]:
    """Invoke once against one variant made of the given workers; returns the result or the error."""
    holder: list[Fleet] = []

    async def scenario() -> InvocationResult | AwsError:
        async with fleet(tmp_path) as f:
            holder.append(f)
            workers = [await f.worker(name, handler) for name, handler in handlers.items()]
            table = _table(VariantRoute("AllTraffic", 1.0, timeout, workers=workers))
            try:
                return await _invoke(table, inv or Invocation("ep", b"{}"))
            except AwsError as exc:
                return exc

    outcome = asyncio.run(scenario())
    return outcome, holder[0]


def test_success_forwards_the_request(tmp_path: Path) -> None:
    """A 2xx answer is the result; body and SageMaker headers reach the worker as POST /invocations."""
    outcome, f = _run_with(
        tmp_path,
        {"ok": answering(200)},
        Invocation(
            "ep",
            b'{"x": 1}',
            content_type=b"application/json",
            accept=b"text/csv",
            custom_attributes=b"trace=1",
            inference_id=b"abc",
        ),
    )
    assert isinstance(outcome, InvocationResult)
    assert (outcome.variant, outcome.response.status, outcome.response.body) == (
        "AllTraffic",
        200,
        b'{"x": 1}',
    )
    [request] = f.servers["ok"].requests
    assert request.line == b"POST /invocations HTTP/1.1"
    assert request.body == b'{"x": 1}'
    assert request.header(b"content-type") == b"application/json"
    assert request.header(b"accept") == b"text/csv"
    assert request.header(b"x-amzn-sagemaker-custom-attributes") == b"trace=1"
    assert request.header(b"x-amzn-sagemaker-inference-id") == b"abc"
    assert f.kills.calls == []


def test_absent_headers_are_not_sent(tmp_path: Path) -> None:
    """Headers the client did not send are not invented for the worker."""
    outcome, f = _run_with(tmp_path, {"ok": answering(200)})
    assert isinstance(outcome, InvocationResult)
    [request] = f.servers["ok"].requests
    for name in (b"content-type", b"accept", b"x-amzn-sagemaker-custom-attributes"):
        assert request.header(name) is None


@pytest.mark.parametrize(
    ("status", "body", "kind", "error_code"),
    [
        (500, b"boom", "server", "SERVER_ERROR_FROM_MODEL"),
        (503, b"overloaded", "server", "SERVER_ERROR_FROM_MODEL"),
        (400, b"bad input", "client", "CLIENT_ERROR_FROM_MODEL"),
        (415, b"unsupported content type text/plain", "client", "CLIENT_ERROR_FROM_MODEL"),
    ],
)
def test_non_2xx_is_model_error(tmp_path: Path, status: int, body: bytes, kind: str, error_code: str) -> None:
    """Any non-2xx answer becomes a 424 ModelError carrying the model's status and message."""
    outcome, f = _run_with(tmp_path, {"bad": answering(status, body)})
    assert isinstance(outcome, ModelError)
    assert (outcome.code, outcome.status) == ("ModelError", 424)
    assert outcome.fields == {
        "OriginalStatusCode": status,
        "OriginalMessage": body.decode(),
        "LogStreamArn": LOG_STREAM,
        "ErrorCode": error_code,
    }
    assert outcome.message.startswith(
        f'Received {kind} error ({status}) from primary with message "{body.decode()}".'
    )
    assert '"moorage logs ep"' in outcome.message
    assert f.kills.calls == []


def test_original_message_is_capped(tmp_path: Path) -> None:
    """A huge error body is cut to 4096 characters in OriginalMessage; undecodable bytes do not fail."""
    outcome, _ = _run_with(tmp_path, {"bad": answering(500, b"\xff" + b"e" * 10_000)})
    assert isinstance(outcome, ModelError)
    assert outcome.fields["OriginalMessage"] == "\ufffd" + "e" * 4095


def test_timeout_is_model_error_zero_and_kills_the_worker(tmp_path: Path) -> None:
    """No answer within the variant's budget: ModelError 0 with AWS's wording, and that worker is killed."""
    outcome, f = _run_with(tmp_path, {"hung": hanging}, timeout=0.2)
    assert isinstance(outcome, ModelError)
    assert outcome.fields["OriginalStatusCode"] == 0
    assert outcome.fields["OriginalMessage"] == TIMEOUT_MESSAGE
    assert outcome.message.startswith("Received server error (0) from primary")
    assert f.kills.calls == ["hung"]


def test_lost_worker_is_model_error_zero(tmp_path: Path) -> None:
    """A worker that dies holding the request gives ModelError 0 saying the instance stopped; no retry."""
    outcome, f = _run_with(tmp_path, {"dying": dropping}, timeout=2.0)
    assert isinstance(outcome, ModelError)
    assert outcome.fields["OriginalStatusCode"] == 0
    assert "instance stopped" in outcome.fields["OriginalMessage"]
    assert len(f.servers["dying"].requests) == 1  # not sent again: the model may have acted on it
    assert f.kills.calls == []


def test_refused_worker_falls_over_to_a_healthy_one(tmp_path: Path) -> None:
    """A worker whose socket refuses got nothing, so the request moves on to another worker."""

    async def scenario() -> tuple[list[InvocationResult], Fleet]:
        async with fleet(tmp_path) as f:
            missing = await f.worker("missing", None)
            healthy = await f.worker("healthy", answering(200))
            healthy.client.outstanding = 1  # so the idle-looking missing worker is always tried first
            table = _table(VariantRoute("AllTraffic", 1.0, 5.0, workers=[missing, healthy]))
            results = [await _invoke(table, Invocation("ep", b"%d" % i)) for i in range(5)]
            assert (missing.client.outstanding, healthy.client.outstanding) == (0, 1)
            return results, f

    results, f = asyncio.run(scenario())
    assert [r.response.body for r in results] == [b"0", b"1", b"2", b"3", b"4"]
    assert len(f.servers["healthy"].requests) == 5
    assert f.kills.calls == []


def test_waits_for_a_worker_that_comes_back(tmp_path: Path) -> None:
    """While no worker accepts (one is being re-forked) the request waits and is served once it listens."""

    async def scenario() -> InvocationResult:
        async with fleet(tmp_path) as f:
            worker = await f.worker("late", None)
            table = _table(VariantRoute("AllTraffic", 1.0, 5.0, workers=[worker]))
            pending = asyncio.ensure_future(_invoke(table, Invocation("ep", b"hi")))
            await asyncio.sleep(0.15)
            assert not pending.done()
            async with TinyServer(worker.client.address, answering(200)):
                return await pending

    assert asyncio.run(scenario()).response.body == b"hi"


def test_no_worker_accepts_is_service_unavailable(tmp_path: Path) -> None:
    """When no worker accepts within the patience window the answer is a retryable 503."""
    outcome, _ = _run_with(tmp_path, {"a": None, "b": None}, timeout=0.2)
    assert isinstance(outcome, ServiceUnavailable)
    assert outcome.status == 503
    assert "AllTraffic" in outcome.message and "ep" in outcome.message


def test_variant_without_workers_is_service_unavailable(tmp_path: Path) -> None:
    """A variant whose instances are all gone answers 503 rather than hanging."""
    outcome, _ = _run_with(tmp_path, {}, timeout=0.2)
    assert isinstance(outcome, ServiceUnavailable)


@pytest.mark.parametrize(
    ("size", "ok"), [(MAX_PAYLOAD_BYTES, True), (MAX_PAYLOAD_BYTES + 1, False)], ids=["6MiB", "6MiB+1"]
)
def test_response_size_limit(tmp_path: Path, size: int, ok: bool) -> None:
    """Responses up to 6 MiB pass; a larger one is a ModelError instead of being returned."""
    outcome, _ = _run_with(tmp_path, {"big": answering(200, b"x" * size)})
    if ok:
        assert isinstance(outcome, InvocationResult)
        assert len(outcome.response.body) == size
    else:
        assert isinstance(outcome, ModelError)
        assert "could not load the entire response body" in outcome.message


def test_outstanding_counts_return_to_zero(tmp_path: Path) -> None:
    """In-flight counters are released after success, model errors and timeouts alike."""

    async def scenario() -> list[int]:
        async with fleet(tmp_path) as f:
            workers = [
                await f.worker("ok", answering(200)),
                await f.worker("bad", answering(500, b"no")),
                await f.worker("hung", hanging),
            ]
            for worker in workers:
                table = _table(VariantRoute("AllTraffic", 1.0, 0.2, workers=[worker]))
                with contextlib.suppress(ModelError):
                    await _invoke(table, Invocation("ep", b"{}"))
            return [w.client.outstanding for w in workers]

    assert asyncio.run(scenario()) == [0, 0, 0]


def test_unknown_endpoint() -> None:
    """An endpoint missing from the table answers ValidationError with AWS's wording."""
    with pytest.raises(ValidationError) as caught:
        _invoke_ep(_table(name="other"))
    assert caught.value.message == f"Endpoint ep of account {ACCOUNT} not found."
    assert caught.value.status == 400


def test_endpoint_names_are_exact_case() -> None:
    """InvokeEndpoint must use the stored spelling of the name."""
    with pytest.raises(ValidationError, match="Endpoint ep of account"):
        _invoke_ep(_table(name="EP"))


def test_unknown_target_variant(tmp_path: Path) -> None:
    """A TargetVariant the endpoint does not have is a ValidationError naming it."""
    outcome, f = _run_with(tmp_path, {"ok": answering(200)}, Invocation("ep", b"{}", target_variant="Shadow"))
    assert isinstance(outcome, ValidationError)
    assert "Shadow" in outcome.message
    assert f.servers["ok"].requests == []


def test_all_weights_zero_is_validation_error(tmp_path: Path) -> None:
    """With every weight zero and no TargetVariant there is nowhere to send the request."""

    async def scenario() -> None:
        async with fleet(tmp_path) as f:
            table = _table(VariantRoute("A", 0.0, 5.0, workers=[await f.worker("a", answering(200))]))
            with pytest.raises(ValidationError):
                await _invoke(table, Invocation("ep", b"{}"))

    asyncio.run(scenario())


def test_target_variant_routes_to_that_variant(tmp_path: Path) -> None:
    """TargetVariant picks its variant even when the weights would never send traffic there."""

    async def scenario() -> tuple[list[str], Fleet]:
        async with fleet(tmp_path) as f:
            table = _table(
                VariantRoute("A", 1.0, 5.0, workers=[await f.worker("a", answering(200))]),
                VariantRoute("B", 0.0, 5.0, workers=[await f.worker("b", answering(200))]),
            )
            picked = [(await _invoke(table, Invocation("ep", b"{}"))).variant for _ in range(3)]
            targeted = [
                (await _invoke(table, Invocation("ep", b"{}", target_variant="B"))).variant for _ in range(3)
            ]
            return picked + targeted, f

    variants, f = asyncio.run(scenario())
    assert variants == ["A", "A", "A", "B", "B", "B"]
    assert (len(f.servers["a"].requests), len(f.servers["b"].requests)) == (3, 3)


def test_caller_giving_up_releases_the_worker(tmp_path: Path) -> None:
    """A caller that stops waiting (client disconnected) leaves no in-flight count and kills nothing."""

    async def slow(request: Request) -> Answer:
        await asyncio.sleep(0.1)
        return response(200, b"late")

    async def scenario() -> tuple[int, Fleet]:
        async with fleet(tmp_path) as f:
            worker = await f.worker("slow", slow)
            table = _table(VariantRoute("AllTraffic", 1.0, 5.0, workers=[worker]))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(_invoke(table, Invocation("ep", b"{}")), 0.02)
            await asyncio.sleep(0.3)
            return worker.client.outstanding, f

    outstanding, f = asyncio.run(scenario())
    assert outstanding == 0
    assert f.kills.calls == []
