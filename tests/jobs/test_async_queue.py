"""The asynchronous queue's parts on a real SQLite store: group commits, the queue's order and backlog,
per-instance slots, webhook settings and the notification JSON."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.jobs.asynchronous.commits import GroupCommit, QueueFull
from moorage.jobs.asynchronous.dispatcher import Dispatcher
from moorage.jobs.asynchronous.invoke import Slots
from moorage.jobs.asynchronous.notices import failure_message, success_message
from moorage.jobs.asynchronous.queue import (
    backlogs,
    drop_endpoint,
    finish_requests,
    insert_requests,
    next_requests,
)
from moorage.jobs.local_access import LocalAccess
from moorage.jobs.notify import Notifier, WebhookConfigError, parse_webhooks
from moorage.store import Store, open_store
from moorage.store.tables import AsyncRequestRow


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = open_store(tmp_path)
    yield opened
    opened.close()


def _row(endpoint: str, n: int, accepted_at: float = 1000.0) -> dict[str, Any]:
    return {
        "endpoint_name": endpoint,
        "inference_id": f"id-{n}",
        "output_id": str(uuid.uuid4()),
        "input_location": f"s3://b/in/{n}",
        "body": None,
        "content_type": "application/json",
        "accept": None,
        "custom_attributes": None,
        "output_location": f"s3://b/out/id-{n}.out",
        "failure_location": f"s3://b/out/id-{n}-error.out",
        "notification": None,
        "accepted_at": accepted_at + n,
        "expires_at": accepted_at + n + 60,
        "invocation_timeout": 900.0,
    }


def test_many_requests_share_few_commits(store: Store) -> None:
    flushes: list[int] = []

    def flush(target: Store, rows: list[dict[str, Any]]) -> None:
        flushes.append(len(rows))
        insert_requests(target, rows)

    async def accept_all() -> None:
        queue = GroupCommit(store, flush)
        await asyncio.gather(*(queue.submit(_row("ep", n)) for n in range(500)))

    asyncio.run(accept_all())
    assert sum(flushes) == 500
    assert len(flushes) < 10, "concurrent requests should share transactions"
    assert backlogs(store)["ep"].size == 500


def test_a_failed_commit_fails_every_request_in_it(store: Store) -> None:
    def flush(_: Store, rows: list[dict[str, Any]]) -> None:
        raise RuntimeError("disk full")

    async def accept() -> list[BaseException | None]:
        queue = GroupCommit(store, flush)
        results = await asyncio.gather(
            *(queue.submit(_row("ep", n)) for n in range(3)), return_exceptions=True
        )
        return [r if isinstance(r, BaseException) else None for r in results]

    assert all(isinstance(r, RuntimeError) for r in asyncio.run(accept()))
    assert backlogs(store) == {}


def test_a_full_commit_queue_refuses_more(store: Store) -> None:
    """Past `max_waiting` items waiting for a commit, submit refuses (ServiceUnavailable at the API)
    instead of holding every request in memory while the store is slow."""

    async def accept() -> int:
        queue = GroupCommit(store, insert_requests, max_waiting=5)
        futures = [queue.submit(_row("ep", n)) for n in range(5)]
        with pytest.raises(QueueFull):
            queue.submit(_row("ep", 5))
        await asyncio.gather(*futures)
        await queue.submit(_row("ep", 6))  # room again once committed
        return backlogs(store)["ep"].size

    assert asyncio.run(accept()) == 6


def test_queue_order_backlog_and_sequence_never_reused(store: Store) -> None:
    insert_requests(store, [_row("a", n) for n in range(3)] + [_row("b", 9)])
    taken = next_requests(store, "a", set(), 10)
    assert [r.inference_id for r in next_requests(store, "a", {taken[0].seq}, 1)] == ["id-1"]
    assert [r.inference_id for r in taken] == ["id-0", "id-1", "id-2"]
    assert backlogs(store)["a"].size == 3 and backlogs(store)["a"].oldest_accepted_at == 1000.0
    finish_requests(store, [r.seq for r in taken])
    insert_requests(store, [_row("a", 5)])
    later = next_requests(store, "a", set(), 10)
    assert [r.inference_id for r in later] == ["id-5"]
    assert later[0].seq > max(r.seq for r in taken), "a new request gets a seq after every earlier one"
    assert drop_endpoint(store, "b") == 1
    assert set(backlogs(store)) == {"a"}


def _route(instances: dict[str, int]) -> EndpointRoute:
    workers = [
        WorkerRoute(WorkerClient(f"/tmp/{instance}-{i}.sock"), instance, i, lambda: None)
        for instance, count in instances.items()
        for i in range(count)
    ]
    return EndpointRoute("ep", [VariantRoute("v", 1.0, 60.0, workers=workers)], "arn:log")


def test_slots_hold_each_instance_to_its_limit() -> None:
    route = _route({"i-1": 2, "i-2": 1})
    rng = random.Random(0)
    default = Slots(None)  # one per worker
    assert default.capacity(route) == 3
    taken = [default.take(route, rng) for _ in range(3)]
    assert all(t is not None for t in taken)
    assert default.take(route, rng) is None
    assert sorted(default.busy.items()) == [("i-1", 2), ("i-2", 1)]
    first = taken[0]
    assert first is not None
    default.give_back(first[1])
    assert default.take(route, rng) is not None

    limited = Slots(4)
    assert limited.capacity(route) == 8
    assert Slots(1).capacity(_route({})) == 0


def test_webhook_settings() -> None:
    arn = "arn:aws:sns:us-east-1:123456789012:done"
    other = "arn:aws:sns:us-east-1:123456789012:failed"
    assert parse_webhooks([f"{arn}=http://127.0.0.1:9/a, {other}=https://h/b", ""]) == {
        arn: "http://127.0.0.1:9/a",
        other: "https://h/b",
    }
    with pytest.raises(WebhookConfigError, match="not TOPIC_ARN=URL"):
        parse_webhooks(["http://127.0.0.1:9/a"])
    with pytest.raises(WebhookConfigError, match="http:// or https://"):
        parse_webhooks([f"{arn}=ftp://h/a"])


def test_notification_messages_have_sagemakers_shape() -> None:
    row = AsyncRequestRow(**_row("ep", 1))
    done = json.loads(success_message(row, "us-east-1", "application/json", b'{"a": 1}'))
    assert done["invocationStatus"] == "Completed" and done["eventSource"] == "aws:sagemaker"
    assert done["requestParameters"] == {
        "endpointName": "ep",
        "contentType": "application/json",
        "inputLocation": "s3://b/in/1",
    }
    assert done["responseParameters"]["outputLocation"] == "s3://b/out/id-1.out"
    assert done["responseParameters"]["responseBody"] == {"content": '{"a": 1}', "encoding": "UTF-8"}
    assert done["receivedTime"] == "1970-01-01T00:16:41.000Z"
    binary = json.loads(success_message(row, "us-east-1", None, b"\xff\x00"))
    assert binary["responseParameters"]["responseBody"]["encoding"] == "BASE64"
    failed = json.loads(failure_message(row, "us-east-1", "model said no"))
    assert failed["invocationStatus"] == "Failed" and failed["failureReason"] == "model said no"
    assert failed["responseParameters"]["failureLocation"] == "s3://b/out/id-1-error.out"


class _Accepted:
    """Stands in for the GroupCommit: keeps what would be written."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def submit(self, row: dict[str, Any]) -> asyncio.Future[None]:
        self.rows.append(row)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def _invoke_async(api: Any, headers: dict[bytes, bytes], body: bytes = b"") -> Any:
    async def call() -> Any:
        answer = api("ep", headers, body, "rid")
        return await answer if isinstance(answer, asyncio.Future) else answer

    return asyncio.run(call())


def test_signed_servers_read_local_inputs_only_below_the_input_root(tmp_path: Path) -> None:
    """With --credentials a caller may not have the server read any file it can: a local InputLocation
    must be below --local-data-root (symbolic links followed); s3:// is always accepted."""
    from moorage.api.runtime_async import AsyncRuntimeApi
    from moorage.dataplane.routes import RoutingTable
    from moorage.jobs.asynchronous.config import AsyncSettings

    root = tmp_path / "inputs"
    root.mkdir()
    (root / "ok.json").write_text("{}")
    (root / "link").symlink_to("/etc")
    table = RoutingTable(seed=1)
    route = _route({"i-1": 1})
    route.asynchronous = AsyncSettings((tmp_path / "out").as_uri(), None, None, 1)
    table.install(route)
    header = b"x-amzn-sagemaker-inputlocation"

    def status(api: Any, where: str) -> tuple[int, str]:
        response = _invoke_async(api, {header: where.encode()})
        return response.status, response.body.decode()

    open_api = AsyncRuntimeApi(table, "123456789012", _Accepted(), lambda _: None)  # type: ignore[arg-type]
    assert status(open_api, "/etc/hostname")[0] == 202  # no signatures: the server's user is the caller
    closed = AsyncRuntimeApi(table, "123456789012", _Accepted(), lambda _: None, LocalAccess(True))  # type: ignore[arg-type]
    code, text = status(closed, "/etc/hostname")
    assert code == 400 and "--local-data-root" in text and "s3://" in text
    assert status(closed, "s3://bucket/in.json")[0] == 202
    rooted = AsyncRuntimeApi(
        table,
        "123456789012",
        _Accepted(),  # type: ignore[arg-type]
        lambda _: None,
        LocalAccess(True, str(root)),
    )
    assert status(rooted, (root / "ok.json").as_uri())[0] == 202
    for outside in ("/etc/hostname", str(root / ".." / "x.json"), str(root / "link" / "hostname")):
        code, text = status(rooted, outside)
        assert code == 400 and "not below" in text, outside


def test_output_path_extension_segments_are_checked(tmp_path: Path) -> None:
    from moorage.api.runtime_async import AsyncRuntimeApi
    from moorage.dataplane.routes import RoutingTable
    from moorage.jobs.asynchronous.config import AsyncSettings

    table = RoutingTable(seed=1)
    route = _route({"i-1": 1})
    route.asynchronous = AsyncSettings("s3://b/out", None, None, 1)
    table.install(route)
    accepted = _Accepted()
    api = AsyncRuntimeApi(table, "123456789012", accepted, lambda _: None)  # type: ignore[arg-type]
    header = b"x-amzn-sagemaker-s3outputpathextension"
    for bad in (b"a/../b", b"./a", b"a//b"):
        response = _invoke_async(api, {header: bad}, b"{}")
        assert response.status == 400 and b"none of them empty" in response.body, bad
    assert _invoke_async(api, {header: b"/batch/7/"}, b"{}").status == 202
    row = accepted.rows[-1]
    assert row["output_location"] == f"s3://b/out/batch/7/{row['output_id']}.out"
    assert row["inference_id"] == row["output_id"]  # not given: one UUID for both, as AWS shows


def test_output_paths_must_be_printable_ascii() -> None:
    from moorage.api.errors import ValidationException
    from moorage.jobs.asynchronous.config import check_async_config

    for member in ("S3OutputPath", "S3FailurePath"):
        output = {"S3OutputPath": "s3://b/out", member: "s3://b/出力"}
        with pytest.raises(ValidationException, match=member):
            check_async_config({"AsyncInferenceConfig": {"OutputConfig": output}})


def test_the_notifier_keeps_a_bounded_number_of_deliveries() -> None:
    """Past max_pending deliveries (webhooks slow or down) the oldest is dropped, not memory grown."""
    import socket

    from moorage.jobs.notify import Notifier

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts, never answers
    topic = "arn:aws:sns:us-east-1:123456789012:t"

    async def publish() -> tuple[int, int]:
        notifier = Notifier({topic: f"http://127.0.0.1:{silent.getsockname()[1]}/"}, threads=1, max_pending=3)
        for n in range(10):
            notifier.publish(topic, json.dumps({"n": n}))
        await asyncio.sleep(0)
        pending = notifier.pending()
        kept = sorted(json.loads(d.message)["n"] for d in notifier._tasks.values())
        await notifier.close()
        return pending, kept[0]

    try:
        pending, oldest_kept = asyncio.run(publish())
    finally:
        silent.close()
    assert pending == 3 and oldest_kept == 7


def test_a_result_that_cannot_be_written_fails_the_request_or_drops_it_with_a_log_line(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write the store refuses is tried a few times: then the failure object says so; when that cannot
    be written either, the row is dropped and the endpoint log says why (the queue is not blocked)."""
    import time

    from moorage.dataplane.connection import WorkerResponse
    from moorage.dataplane.routes import RoutingTable
    from moorage.jobs.asynchronous import dispatcher as dispatcher_module
    from moorage.jobs.asynchronous.config import AsyncSettings
    from moorage.jobs.asynchronous.dispatcher import Dispatcher
    from moorage.jobs.notify import Notifier
    from moorage.logs import EndpointLogs

    async def answer(*_: Any) -> WorkerResponse:
        return WorkerResponse(200, [], b"result")

    monkeypatch.setattr(dispatcher_module, "call", answer)
    monkeypatch.setattr(dispatcher_module, "WRITE_ATTEMPTS", 1)
    out, failed = tmp_path / "out", tmp_path / "failed"
    out.mkdir()
    (out / "blocker").write_text("a file where a folder would be")
    table = RoutingTable(seed=1)
    route = _route({"i-1": 1})
    route.name = "ep"
    route.asynchronous = AsyncSettings(out.as_uri(), failed.as_uri(), None, 1)
    table.install(route)
    now = time.time()

    def row(name: str, failure: Path) -> dict[str, Any]:
        return {
            **_row("ep", 0, accepted_at=now),
            "inference_id": name,
            "output_id": name,
            "body": b"{}",
            "input_location": None,
            "output_location": (out / "blocker" / f"{name}.out").as_uri(),
            "failure_location": failure.as_uri(),
        }

    logs = EndpointLogs(tmp_path / "logs")

    async def scenario() -> None:
        dispatcher = Dispatcher(store, table, Notifier({}), "us-east-1", poll_seconds=0.1, logs=logs)
        runner = asyncio.create_task(dispatcher.run())
        try:
            insert_requests(store, [row("fails", failed / "fails-error.out")])
            insert_requests(store, [row("dropped", out / "blocker" / "dropped-error.out")])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and backlogs(store):
                await asyncio.sleep(0.05)
        finally:
            runner.cancel()
            await dispatcher.close()

    asyncio.run(scenario())
    assert backlogs(store) == {}
    assert "The result could not be written" in (failed / "fails-error.out").read_text()
    log_text = logs.path("ep").read_text()
    assert "dropped: neither its result nor its failure object could be written" in log_text


def test_a_server_without_asynchronous_endpoints_does_not_poll_the_store(tmp_path: Path) -> None:
    """The dispatcher looks at the store every poll only while an asynchronous endpoint exists: a server
    serving real-time endpoints alone pays nothing for the queue between requests."""
    store = open_store(tmp_path / "state")
    calls: list[str] = []
    real_run = store.run

    async def counting_run(fn: Any, *args: Any) -> Any:
        calls.append(fn.__name__)
        return await real_run(fn, *args)

    store.run = counting_run  # type: ignore[method-assign]

    async def scenario() -> None:
        dispatcher = Dispatcher(store, RoutingTable(seed=1), Notifier({}), "us-east-1", poll_seconds=0.05)
        runner = asyncio.create_task(dispatcher.run())
        await asyncio.sleep(0.5)  # ten polls
        runner.cancel()
        await dispatcher.close()

    try:
        asyncio.run(scenario())
    finally:
        store.close()
    assert calls == ["last_seq"]  # once at start-up, then nothing
