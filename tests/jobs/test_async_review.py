"""Review of asynchronous inference (docs/async.md): each test here fails on the code as reviewed, for the
reason its docstring gives. They drive the real Dispatcher on a real SQLite store with file:// outputs;
only the call to a worker is replaced where the test is not about it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from moorage.dataplane.connection import WorkerClient, WorkerResponse
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.jobs.asynchronous import dispatcher as dispatcher_module
from moorage.jobs.asynchronous.config import AsyncSettings
from moorage.jobs.asynchronous.dispatcher import Dispatcher
from moorage.jobs.asynchronous.invoke import Request
from moorage.jobs.asynchronous.queue import insert_requests
from moorage.jobs.notify import Notifier
from moorage.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = open_store(tmp_path / "state")
    yield opened
    opened.close()


def _settings(out: Path, max_concurrent: int | None = 1) -> AsyncSettings:
    return AsyncSettings(out.as_uri(), None, None, max_concurrent)


def _route(settings: AsyncSettings, socket: str = "/nonexistent/moorage-review.sock") -> EndpointRoute:
    worker = WorkerRoute(WorkerClient(socket), "i-1", 0, lambda: None)
    return EndpointRoute(
        "ep", [VariantRoute("v", 1.0, 60.0, workers=[worker])], "arn:log", asynchronous=settings
    )


def _row(out: Path, inference_id: str, seq: int | None = None, ttl: float = 600) -> dict[str, Any]:
    now = time.time()
    row: dict[str, Any] = {
        "endpoint_name": "ep",
        "inference_id": inference_id,
        "output_id": str(uuid.uuid4()),
        "input_location": None,
        "body": b'{"x": 1}',
        "content_type": "application/json",
        "accept": None,
        "custom_attributes": None,
        "output_location": (out / f"{inference_id}.out").as_uri(),
        "failure_location": (out / f"{inference_id}-error.out").as_uri(),
        "notification": None,
        "accepted_at": now,
        "expires_at": now + ttl,
        "invocation_timeout": 30.0,
    }
    if seq is not None:
        row["seq"] = seq
    return row


async def _echo(route: Any, variant: Any, worker: Any, request: Request) -> WorkerResponse:
    await asyncio.sleep(0.01)
    return WorkerResponse(200, [(b"content-type", b"application/json")], request.body)


async def _appears(path: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        await asyncio.sleep(0.05)
    return path.exists()


def test_a_request_committed_out_of_seq_order_still_runs(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a request's seq is drawn when its INSERT runs, not when it commits: front door A
    takes seq 5, front door B takes seq 10 and commits first. The dispatcher's high-water cursor
    (EndpointQueue.cursor, next_requests(after=cursor)) jumps to 10 and never looks below it again, so
    A's accepted request is never run (until the leader restarts). Simulated on SQLite by inserting the
    lower seq after the higher one was taken."""
    monkeypatch.setattr(dispatcher_module, "call", _echo)
    out = tmp_path / "out"
    settings = _settings(out, max_concurrent=4)
    table = RoutingTable(seed=1)
    table.install(_route(settings))

    async def scenario() -> tuple[bool, bool]:
        dispatcher = Dispatcher(store, table, Notifier({}), "us-east-1", poll_seconds=0.1)
        runner = asyncio.create_task(dispatcher.run())
        try:
            await store.run(insert_requests, store, [_row(out, "committed-first", seq=10)])
            first = await _appears(out / "committed-first.out", 10)
            await store.run(insert_requests, store, [_row(out, "committed-second", seq=5)])
            second = await _appears(out / "committed-second.out", 5)
            return first, second
        finally:
            runner.cancel()
            await dispatcher.close()

    first, second = asyncio.run(scenario())
    assert first
    assert second, "a request whose seq is below the cursor when its commit became visible never runs"


def test_deleting_an_endpoint_ends_its_running_requests(store: Store, tmp_path: Path) -> None:
    """A request that was started (taken from the store) loops in Dispatcher._outcome every 50 ms
    waiting for a worker of `self.table.get(name) or route`: once the endpoint is deleted the table has
    no route, so it retries the stopped workers of the old route forever (NoWorker -> sleep 0.05 ->
    again), ignoring its TTL, holding its input body; endpoint_deleted cancels only the queue's task,
    not the requests' tasks. Here the worker's socket does not exist, as after the fleet stopped."""
    out = tmp_path / "out"
    table = RoutingTable(seed=1)
    table.install(_route(_settings(out)))

    async def scenario() -> int:
        dispatcher = Dispatcher(store, table, Notifier({}), "us-east-1", poll_seconds=0.1)
        runner = asyncio.create_task(dispatcher.run())
        try:
            await store.run(insert_requests, store, [_row(out, "orphan")])
            await asyncio.sleep(1.0)  # taken, and waiting for a worker that refuses connections
            table.remove("ep")  # DeleteEndpoint: the reconciler removes the route, the API drops the rows
            await dispatcher.endpoint_deleted("ep")
            await asyncio.sleep(2.0)
            return len([t for t in dispatcher._tasks if not t.done()])
        finally:
            runner.cancel()
            await dispatcher.close()

    left = asyncio.run(scenario())
    assert left == 0, f"{left} request task(s) of a deleted endpoint still polling for a worker"


def test_one_request_whose_output_cannot_be_written_does_not_stop_the_others(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dispatcher._write retries an ObjectError forever (back-off up to 30 s) while the request stays in
    `queue.running`, and _start_more counts `running` against the instances' slots. A request whose
    output can never be written (a bucket that does not exist, an S3OutputPathExtension that runs into a
    file, a full disk) holds its slot forever: with MaxConcurrentInvocationsPerInstance 1 every later
    request waits behind it until it expires. Its failure object cannot be written either, so nothing
    ever tells the caller."""
    monkeypatch.setattr(dispatcher_module, "call", _echo)
    out = tmp_path / "out"
    out.mkdir()
    (out / "blocker").write_text("a file where a folder would be")
    table = RoutingTable(seed=1)
    table.install(_route(_settings(out, max_concurrent=1)))
    stuck = _row(out, "unwritable")
    stuck["output_location"] = (out / "blocker" / "sub" / "unwritable.out").as_uri()
    stuck["failure_location"] = (out / "blocker" / "sub" / "unwritable-error.out").as_uri()

    async def scenario() -> bool:
        dispatcher = Dispatcher(store, table, Notifier({}), "us-east-1", poll_seconds=0.1)
        runner = asyncio.create_task(dispatcher.run())
        try:
            await store.run(insert_requests, store, [stuck, _row(out, "innocent")])
            return await _appears(out / "innocent.out", 8)
        finally:
            runner.cancel()
            await dispatcher.close()

    assert asyncio.run(scenario()), "a request with an unwritable output blocks the endpoint's queue"


def test_an_input_over_1_gb_is_refused_without_reading_it(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/async.md: InputLocation 'up to 1 GB'. Dispatcher._outcome reads the whole object with
    read_object (Path.read_bytes / GetObject .read()) with no size check, then sends it on. Any size
    is read into the server's memory: file:///dev/zero (or a big S3 object) exhausts it and takes the
    front door down. The input here is a sparse file of 1 GiB + 1 byte (no disk used; reading it
    allocates 1 GiB for a moment): expected, a failure object and no model call."""
    calls: list[int] = []

    async def record(route: Any, variant: Any, worker: Any, request: Request) -> WorkerResponse:
        calls.append(len(request.body))
        return WorkerResponse(200, [], b"ok")

    monkeypatch.setattr(dispatcher_module, "call", record)
    out = tmp_path / "out"
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(2**30 + 1)
    table = RoutingTable(seed=1)
    table.install(_route(_settings(out)))
    row = _row(out, "too-big")
    row["body"], row["input_location"] = None, big.as_uri()

    async def scenario() -> bool:
        dispatcher = Dispatcher(store, table, Notifier({}), "us-east-1", poll_seconds=0.1)
        runner = asyncio.create_task(dispatcher.run())
        try:
            await store.run(insert_requests, store, [row])
            done = out / "too-big.out", out / "too-big-error.out"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(p.exists() for p in done):
                await asyncio.sleep(0.1)
            return (out / "too-big-error.out").exists()
        finally:
            runner.cancel()
            await dispatcher.close()

    failed = asyncio.run(scenario())
    assert calls == [], f"the model was sent an input of {calls} bytes (over 1 GB)"
    assert failed


class _Commits:
    """Stands in for the GroupCommit: keeps what would be written."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def submit(self, row: dict[str, Any]) -> asyncio.Future[None]:
        self.rows.append(row)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


@pytest.mark.parametrize(
    "headers",
    [
        {b"x-amzn-sagemaker-inference-id": b"../../escaped"},
        {b"x-amzn-sagemaker-s3outputpathextension": b"../../escaped"},
    ],
    ids=["InferenceId", "S3OutputPathExtension"],
)
def test_output_locations_stay_inside_the_output_folder(tmp_path: Path, headers: dict[bytes, bytes]) -> None:
    """Security: output_locations() joins S3OutputPathExtension and InferenceId onto S3OutputPath as
    text (jobs/objects.child). Both pass botocore's patterns with '..' in them (InferenceId is any
    printable text; the extension allows '.' and '/'), so with a file:// S3OutputPath a caller writes
    `<InferenceId>.out` / `-error.out` anywhere the server's user may write (e.g. InferenceId
    '../../../home/u/.bashrc' gives a name ending '.bashrc.out'; any folder). On s3:// the key holds
    '..' segments, which a store that normalises paths resolves into another prefix or bucket."""
    from moorage.api.runtime_async import AsyncRuntimeApi

    root = tmp_path / "srv" / "results"
    table = RoutingTable(seed=1)
    table.install(_route(_settings(root)))
    commits = _Commits()

    async def invoke() -> Any:
        api = AsyncRuntimeApi(table, "123456789012", commits, lambda _: None)  # type: ignore[arg-type]
        answer = api("ep", headers, b"{}", "rid")
        return await answer if isinstance(answer, asyncio.Future) else answer

    response = asyncio.run(invoke())
    if response.status != 202:  # refused: fine
        return
    row = commits.rows[0]
    for uri in (row["output_location"], row["failure_location"]):
        resolved = os.path.normpath(uri.removeprefix("file://"))
        assert resolved.startswith(str(root) + os.sep), f"{uri} resolves outside {root}: {resolved}"


def test_an_expired_request_behind_64_others_fails_at_its_ttl(store: Store, tmp_path: Path) -> None:
    """docs/async.md: 'Requests that expire while no instance is free (also at 0 instances) fail with the
    expiry message without waiting for one.' With no free slot _start_more looks at only the first 64
    rows after the cursor (`max(free, 0) or 64`), so a request with a short RequestTTLSeconds queued
    behind 64 with the default 6 h never expires until those are gone: at 0 instances with no scaling
    target, not for hours."""
    out = tmp_path / "out"
    table = RoutingTable(seed=1)
    route = _route(_settings(out))
    route.variants[0].workers = []  # 0 instances
    table.install(route)
    rows = [_row(out, f"long-{n}", ttl=21_600) for n in range(64)] + [_row(out, "short", ttl=-1)]

    async def scenario() -> bool:
        dispatcher = Dispatcher(store, table, Notifier({}), "us-east-1", poll_seconds=0.1)
        runner = asyncio.create_task(dispatcher.run())
        try:
            await store.run(insert_requests, store, rows)
            return await _appears(out / "short-error.out", 5)
        finally:
            runner.cancel()
            await dispatcher.close()

    assert asyncio.run(scenario()), "the expired request is never failed while 64 older ones wait"


def test_a_reused_inference_id_is_not_taken_for_a_finished_request_after_a_restart(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Objects are named after the InferenceId (AWS names the output by a UUID of its own). After a
    restart _finished_before() treats any existing `<InferenceId>.out` as 'this row was finished before
    the crash'. A client that reuses an InferenceId (it is a tracking id, e.g. one per batch) has its
    later, accepted request dropped without running: the 202 was sent, the row is deleted, the model
    never sees the payload, the output is the earlier request's."""
    seen: list[bytes] = []

    async def record(route: Any, variant: Any, worker: Any, request: Request) -> WorkerResponse:
        seen.append(request.body)
        return WorkerResponse(200, [], request.body)

    monkeypatch.setattr(dispatcher_module, "call", record)
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch-42.out").write_bytes(b"yesterday's result")  # an earlier request, finished, row gone
    second = _row(out, "batch-42")
    second["body"] = b"today's payload"
    table = RoutingTable(seed=1)
    table.install(_route(_settings(out)))

    async def scenario() -> None:
        await store.run(insert_requests, store, [second])  # accepted, then the server was restarted
        dispatcher = Dispatcher(store, table, Notifier({}), "us-east-1", poll_seconds=0.1)
        runner = asyncio.create_task(dispatcher.run())
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not seen:
                await asyncio.sleep(0.05)
        finally:
            runner.cancel()
            await dispatcher.close()

    asyncio.run(scenario())
    assert seen == [b"today's payload"], "an accepted request was skipped as 'finished before a restart'"
    assert (out / "batch-42.out").read_bytes() == b"today's payload"


def test_a_non_latin1_output_path_still_gets_its_202(tmp_path: Path) -> None:
    """CreateEndpointConfig accepts any S3OutputPath its pattern allows ('s3://bucket/(.*)', Unicode
    included, as S3 keys are). _accept builds the OutputLocation header with header_value(), which
    encodes latin-1: every InvokeEndpointAsync to such an endpoint raises UnicodeEncodeError out of
    AsyncRuntimeApi.__call__ (not an AwsError) instead of answering 202 (or the config being refused)."""
    from moorage.api.runtime_async import AsyncRuntimeApi

    table = RoutingTable(seed=1)
    table.install(_route(AsyncSettings("s3://bucket/出力", None, None, 1)))
    commits = _Commits()

    async def invoke() -> Any:
        api = AsyncRuntimeApi(table, "123456789012", commits, lambda _: None)  # type: ignore[arg-type]
        answer = api("ep", {}, b"{}", "rid")
        return await answer if isinstance(answer, asyncio.Future) else answer

    assert asyncio.run(invoke()).status == 202


def test_a_webhook_that_never_answers_does_not_hold_the_servers_threads() -> None:
    """Notifier._deliver posts with asyncio.to_thread(_post): urllib on the loop's default executor
    (min(32, CPUs + 4) threads: 6 on a 2-core machine), 15 s per attempt, up to 6 attempts, no bound on
    deliveries under way. A webhook that accepts connections and never answers fills that executor, and
    everything else on it waits: the dispatcher's read_object / write_object / object_exists (so
    inferences stall, against 'a webhook never delays an inference'), large control-API bodies
    (json_service), artifact downloads (fleet/plan.py), and the PostgreSQL leadership check
    (leadership.AdvisoryLock.lost: wait_for(to_thread(_check), 10 s)) whose time-out makes the leader
    stop itself (os._exit(75))."""
    import socket

    from moorage.jobs.notify import Notifier

    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(128)  # the kernel completes each handshake; nobody ever reads or answers
    url = f"http://127.0.0.1:{blackhole.getsockname()[1]}/sns"

    async def scenario() -> float:
        notifier = Notifier({"arn:aws:sns:us-east-1:123456789012:t": url})
        for n in range(40):  # more than the default executor's threads (at most 32)
            notifier.publish("arn:aws:sns:us-east-1:123456789012:t", json.dumps({"n": n}))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        with contextlib.suppress(TimeoutError):  # what the dispatcher does next
            await asyncio.wait_for(asyncio.to_thread(lambda: None), 5)
        waited = time.monotonic() - started
        await notifier.close()
        blackhole.close()  # resets the pending connections: the stuck threads end
        return waited

    waited = asyncio.run(scenario())
    assert waited < 1.0, f"a thread for the server's own work took {waited:.1f} s to get (webhooks hold them)"
