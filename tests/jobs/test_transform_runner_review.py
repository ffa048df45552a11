"""Review of the batch transform runner, execution, sender and book: each test fails on a bug found in
review (see the test's docstring for the reason)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from moorage.control.transform_jobs import COMPLETED, IN_PROGRESS
from moorage.dataplane.connection import WorkerResponse
from moorage.dataplane.routes import VariantRoute, WorkerRoute
from moorage.jobs.budget import ByteBudget
from moorage.jobs.objects import ObjectError
from moorage.jobs.transform import execution, runner
from moorage.jobs.transform.book import JobBook, JobSnapshot
from moorage.jobs.transform.inputs import InputObject
from moorage.jobs.transform.sender import ClientConfig, Sender
from moorage.store.db import open_store
from moorage.store.tables import TransformJobRow
from tests.fleet.fakes import FakeInstance, FakeProvider, context, plan
from tests.support.clock import FakeClock

SPEC: dict[str, Any] = {
    "TransformJobName": "job",
    "ModelName": "m",
    "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "/in/"}}},
    "TransformOutput": {"S3OutputPath": "/out/"},
    "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 2},
}


def _job(**changes: Any) -> JobSnapshot:
    job = JobSnapshot(
        name="job",
        status=IN_PROGRESS,
        spec=SPEC,
        model={"ModelName": "m", "PrimaryContainer": {"Image": "img"}},
        creation_time=0.0,
        started=False,
    )
    return dataclasses.replace(job, **changes)


# ---- 1. a Stop (or a shutdown) while the job's instances start leaks the ones already up ------------


class _UnevenProvider(FakeProvider):
    """The first instance is up after 1 s, the second after 100 s."""

    async def start(self, spec: Any) -> FakeInstance:
        self.start_seconds = 1.0 if not self.started and not getattr(self, "_first", False) else 100.0
        self._first = True
        return await super().start(spec)


async def test_cancelling_the_fleet_start_stops_the_instances_already_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """StopTransformJob (or server shutdown) cancels the run; if that lands while `_start_fleet` awaits
    `VariantFleet.start()` with one instance up and one still starting, `start()` is cancelled inside its
    gather and never closes the fleet, and `execute` only closes a fleet it got back. The instance that
    was already up keeps running (its processes live until the server exits) though the job is
    Stopped."""
    provider = _UnevenProvider(FakeClock())
    ctx = context(provider, tmp_path)

    async def prepared(*_: Any, **__: Any) -> Any:
        return plan(instances=2)

    monkeypatch.setattr(execution, "prepare_variant", prepared)
    starting = asyncio.ensure_future(execution._start_fleet(_job(), ctx))
    await provider.clock.advance(2)  # the first instance is up, the second still starting
    assert len(provider.running()) == 1
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    await provider.clock.advance(5)
    assert provider.running() == [], "an instance of a stopped job is still running"


# ---- 2. MaxConcurrentTransforms is per instance, but the bound is applied over all workers ---------


class _HeldClient:
    """A worker client whose requests wait until released; it records which instance had what."""

    def __init__(self, instance: str, in_flight: dict[str, int], peak: dict[str, int]) -> None:
        self.instance = instance
        self.in_flight, self.peak = in_flight, peak
        self.outstanding = 0
        self.replacing = False
        self.release = asyncio.Event()

    async def request(self, raw: bytes, timeout: float) -> WorkerResponse:
        self.in_flight[self.instance] += 1
        self.peak[self.instance] = max(self.peak[self.instance], self.in_flight[self.instance])
        try:
            await self.release.wait()
        finally:
            self.in_flight[self.instance] -= 1
        return WorkerResponse(200, [], b"ok")

    def close(self) -> None:
        pass


async def test_max_concurrent_transforms_bounds_each_instance() -> None:
    """AWS: MaxConcurrentTransforms is 'the maximum number of parallel requests that can be sent to
    each instance'. With 2 instances of 2 workers and MaxConcurrentTransforms 1, the Sender bounds the
    total (1 x 2 = 2) but picks the least-outstanding *worker*: both requests go to the two workers of
    the first instance, which gets 2 at once (a container that asked for 1, e.g. for GPU memory, is
    overloaded) while the second instance idles."""
    in_flight = {"i-a": 0, "i-b": 0}
    peak = {"i-a": 0, "i-b": 0}
    clients = [_HeldClient(inst, in_flight, peak) for inst in ("i-a", "i-a", "i-b", "i-b")]
    route = VariantRoute("AllTraffic", 1.0, 600.0)
    route.add_workers(
        [WorkerRoute(c, c.instance, i % 2, lambda: None) for i, c in enumerate(clients)]  # type: ignore[arg-type]
    )
    sender = Sender(route, "text/csv", None, ClientConfig(600.0, 0), max_concurrent=1)
    sends = [asyncio.ensure_future(sender.send(b"1\n")) for _ in range(2)]
    for _ in range(20):
        await asyncio.sleep(0)
    for client in clients:
        client.release.set()
    await asyncio.gather(*sends)
    assert peak == {"i-a": 1, "i-b": 1}, f"requests at once per instance: {peak}"


class _QuickClient:
    """A worker client that answers after one turn of the loop and records the bodies in order."""

    def __init__(self, answered: list[bytes]) -> None:
        self.answered = answered
        self.outstanding = 0
        self.replacing = False

    async def request(self, raw: bytes, timeout: float) -> WorkerResponse:
        await asyncio.sleep(0)
        self.answered.append(raw.rsplit(b"\r\n\r\n", 1)[1])
        return WorkerResponse(200, [], b"ok")

    def close(self) -> None:
        pass


async def test_a_sender_that_asks_again_at_once_does_not_starve_one_already_waiting() -> None:
    """Two objects share a job's slots: one object's loop sends its next record as soon as the last
    answered. The other object's record, waiting since before that, goes first (StopTransformJob
    mid-run once found the quick object still waiting when the slow one had finished)."""
    answered: list[bytes] = []
    client = _QuickClient(answered)
    route = VariantRoute("AllTraffic", 1.0, 600.0)
    route.add_workers([WorkerRoute(client, "i-a", 0, lambda: None)])  # type: ignore[arg-type]
    sender = Sender(route, "text/csv", None, ClientConfig(600.0, 0), max_concurrent=1)

    async def busy() -> None:
        for _ in range(20):
            await sender.send(b"slow")

    loop = asyncio.ensure_future(busy())
    await asyncio.sleep(0)  # the busy loop holds the one slot
    await sender.send(b"quick")
    await loop
    assert answered.index(b"quick") <= 1, answered


# ---- 3. concurrent object_finished calls lose each other's entries --------------------------------


async def test_objects_finished_at_once_are_all_recorded(tmp_path: Path) -> None:
    """`_object_finished` reads the row's `finished` JSON, adds one URI and writes the whole dict back,
    on any of the store's 4 threads, with no lock or row lock (SQLite's driver begins the transaction
    only at the UPDATE; PostgreSQL READ COMMITTED lets both read the old value). Objects of a job
    finish concurrently (up to max(2, MaxConcurrentTransforms x InstanceCount) at once), so entries
    are lost: ObjectsDone ends below ObjectsTotal for a Completed job, and after a restart the lost
    objects are transformed again (and a lost failure is retried, changing the outcome)."""
    store = open_store(tmp_path / "state")
    now = time.time()
    with store.session() as session:
        session.add(
            TransformJobRow(
                name="job", arn="arn", status=IN_PROGRESS, spec=SPEC, model={}, tags=[],
                creation_time=now, last_modified_time=now, records_done=0, records_total=0,
                objects_done=0, objects_total=200, name_key="job",
            )
        )  # fmt: skip
    book = JobBook(store)
    listing = [InputObject(f"s3://b/in/{i}.csv", f"s3://b/out/{i}.csv.out") for i in range(200)]
    await book.started("job", listing)
    await asyncio.gather(*(book.object_finished("job", i, 1, None) for i in range(200)))
    recorded = sum(1 for o in await book.objects("job") if o.state == "Done")
    with store.session() as session:
        row = session.get(TransformJobRow, "job")
        assert row is not None
        done = row.objects_done
    store.close()
    assert (recorded, done) == (200, 200)


# ---- 4. a store error at the start of a run leaves the job InProgress for good ----------------------


class _FlakyBook:
    """The runner's view of the rows; the first status() fails as a database blip would."""

    def __init__(self) -> None:
        self.failures = 1
        self.ended: list[str] = []

    async def active(self) -> list[JobSnapshot]:
        return [] if self.ended else [_job()]

    async def status(self, name: str) -> str:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database connection was lost")
        return IN_PROGRESS

    async def finish(self, name: str, status: str, reason: str | None = None) -> str:
        self.ended.append(status)
        return status


async def test_a_store_error_before_the_run_does_not_strand_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`TransformRunner._run` calls `self.book.status(name)` (and logs) before its try/finally; when that
    raises (the store briefly unreachable, which `run()` itself expects), the task dies with the
    exception but its entry stays in `self.tasks`. `_look` then sees a task for the job forever: the
    job is never run again and stays InProgress until the server restarts; a StopTransformJob only
    cancels the dead task, so the job then stays Stopping."""

    async def executed(job: JobSnapshot, ctx: Any, book: Any, *_: Any) -> None:
        return None

    monkeypatch.setattr(runner, "execute", executed)
    transforms = runner.TransformRunner(None, context(FakeProvider(FakeClock()), tmp_path), 1.0)  # type: ignore[arg-type]
    book = _FlakyBook()
    transforms.book = book  # type: ignore[assignment]
    for _ in range(3):  # three polls
        await transforms._look()
        for _ in range(20):
            await asyncio.sleep(0)
    assert book.ended == [COMPLETED], "the job was never run again after one failed status read"


# ---- 5. errors that will not go away are retried as if the store were restarting -------------------


async def test_a_permanent_object_error_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """ObjectError now says whether it is `transient`, but `_patiently` retries every ObjectError: a
    missing bucket or key (NoSuchBucket, NoSuchKey, AccessDenied, a local ENOENT) costs 1+2+4+8+16 = 31
    s before the job fails for a bad S3Uri, and 3 s per object for a bad output path."""
    calls: list[int] = []
    slept: list[float] = []

    async def no_sleep(seconds: float) -> None:
        slept.append(seconds)

    def missing() -> bytes:
        calls.append(1)
        raise ObjectError("Could not list s3://nope/in/ (S3Uri): NoSuchBucket (the bucket does not exist).")

    monkeypatch.setattr(execution.asyncio, "sleep", no_sleep)
    with pytest.raises(ObjectError):
        await execution._patiently(execution.LISTING_TRIES, missing)
    assert (len(calls), sum(slept)) == (1, 0), f"{len(calls)} tries, {sum(slept):g} s of pauses"


# ---- 6. the same layout gets different output names on disk and in S3 ------------------------------


def test_output_names_agree_for_a_prefix_without_a_slash(tmp_path: Path) -> None:
    """docs/batch.md: the output name is the input's name 'after the prefix's last /'. For
    `s3://b/in` (no slash) with `in/a.csv`, `relative_name` gives `in/a.csv` (-> `in/a.csv.out`); for the
    same layout on disk, `<tmp>/in` with `<tmp>/in/a.csv`, the local branch uses the directory as the
    base and gives `a.csv`. The same job writes different names depending on where the data sits."""
    from moorage.jobs.objects import relative_name

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text("1\n")
    assert relative_name("s3://b/in", "s3://b/in/a.csv") == "in/a.csv"
    assert relative_name(str(tmp_path / "in"), str(tmp_path / "in" / "a.csv")) == "in/a.csv"


# ---- 7. `moorage jobs --watch` adds an event handler per redraw ------------------------------------


def test_watching_jobs_does_not_pile_up_response_handlers() -> None:
    """`jobs_command._jobs` registers a new `after-call.sagemaker.ListTransformJobs` closure on the same
    client at every redraw and never unregisters it: after N seconds of `--watch` every page of every
    ListTransformJobs answer is JSON-parsed N times (CPU grows linearly with the watch's age)."""
    import boto3
    from botocore.stub import Stubber

    from moorage import jobs_command

    sm = boto3.client("sagemaker", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    with Stubber(sm) as stub:
        for _ in range(3):
            stub.add_response("list_transform_jobs", {"TransformJobSummaries": []})
            jobs_command._jobs(sm, None)
    parsed: list[int] = []

    class _Response:
        status_code = 200
        headers: dict[str, str] = {}

        @property
        def content(self) -> bytes:
            parsed.append(1)
            return b"{}"

    sm.meta.events.emit(
        "after-call.sagemaker.ListTransformJobs",
        http_response=_Response(),
        parsed={"TransformJobSummaries": []},
        model=sm.meta.service_model.operation_model("ListTransformJobs"),
        context={},
    )
    assert len(parsed) <= 1, f"one answer was parsed {len(parsed)} times"


# ---- 8. an input object is read whole into the server's memory, whatever its size ------------------

_BIG_OBJECT = r"""
import asyncio, resource, sys
from moorage.jobs.transform.execution import _Counts, _Run
from moorage.jobs.transform.inputs import InputObject
from moorage.jobs.transform.records import TransformSettings

resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))  # this process may hold 1.5 GiB

class Book:
    async def object_finished(self, *args):
        pass

spec = {"TransformInput": {"SplitType": "Line", "ContentType": "text/csv"}, "TransformOutput": {}}
run = _Run("job", TransformSettings.from_job(spec, 6, "MultiRecord"), None, _Counts(), Book(), 1)
asyncio.run(run.object(InputObject(sys.argv[1], sys.argv[2]), 0))
print(run.errors[0])
"""


def test_a_large_input_object_is_not_read_whole(tmp_path: Path) -> None:
    """`_Run.object` reads the whole object (`read_object` -> bytes), then holds its records, the
    request bodies, every response and the assembled output at once, for up to max(2,
    MaxConcurrentTransforms x InstanceCount) objects: a 2 GiB CSV with SplitType Line (which AWS
    streams) needs several times its size in the front door's own process. Here, with the process
    limited to 1.5 GiB, the object ends as 'internal error: MemoryError()'; without a limit the
    kernel's OOM killer takes the server and every endpoint on it. The object should be streamed
    record by record (or refused up front by size, with a message saying so)."""
    import subprocess
    import sys

    big = tmp_path / "big.csv"
    with open(big, "wb") as out:  # sparse: no disk used
        out.truncate(2 << 30)
    result = subprocess.run(
        [sys.executable, "-c", _BIG_OBJECT, str(big), str(tmp_path / "big.csv.out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MemoryError" not in result.stdout, result.stdout


# ---- 9. a resumed job lists its input again: it is not the set of objects the job started with ------


def test_a_resumed_job_transforms_the_objects_it_started_with(tmp_path: Path) -> None:
    """`execute` lists the input afresh on every run and `finished` holds only URIs, so a job resumed
    after a restart works on whatever the prefix holds *then*: objects uploaded after
    CreateTransformJob are added, deleted ones fail the job, and with S3OutputPath below S3Uri (e.g.
    in `s3://b/data/` -> `s3://b/data/out/`) the first run's outputs are listed as inputs and
    transformed into `out/out/x.csv.out.out`. The listing (URI and output name per object) should be
    kept in the store at the first start and reused on resume."""
    from moorage.jobs.objects import write_object
    from moorage.jobs.transform.inputs import input_objects

    data = tmp_path / "data"
    data.mkdir()
    (data / "x.csv").write_text("1\n")
    spec = {
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": str(data)}}},
        "TransformOutput": {"S3OutputPath": str(data / "out")},
    }
    first = input_objects(spec)
    for item in first:  # the first run wrote its output, then the server restarted
        write_object(item.output, b"1\n", "TransformOutput.S3OutputPath")
    assert input_objects(spec) == first


# ---- the fixes' own edges ------------------------------------------------------------------------


def test_local_paths_are_refused_outside_the_root(tmp_path: Path) -> None:
    """With --credentials a job may name paths only below the local data root: a folder outside it, a
    symbolic link out of it and a manifest entry outside it are refused; below it is accepted."""
    import json

    from moorage.jobs.local_access import LocalAccess
    from moorage.jobs.transform.inputs import input_objects

    root, other = tmp_path / "root", tmp_path / "other"
    (root / "in").mkdir(parents=True)
    other.mkdir()
    (root / "in" / "a.csv").write_text("1\n")
    (other / "secret").write_text("x\n")
    (root / "escape").symlink_to(other)
    access = LocalAccess(restricted=True, root=str(root))
    access.check(str(root / "in" / "a.csv"), "S3Uri")
    access.check((root / "out").as_uri(), "S3OutputPath")  # need not exist yet
    for outside in (str(other), (other / "secret").as_uri(), str(root / "escape" / "secret")):
        with pytest.raises(ObjectError, match="not below"):
            access.check(outside, "S3Uri")
    with pytest.raises(ObjectError, match="only s3://"):
        LocalAccess(restricted=True).check(str(root / "in"), "S3Uri")
    LocalAccess().check(str(other), "S3Uri")  # no --credentials: the caller is the server's user

    manifest = root / "in.manifest"
    manifest.write_text(json.dumps([{"prefix": str(tmp_path) + "/"}, "other/secret"]))
    spec = {
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": str(manifest)}}
        },
        "TransformOutput": {"S3OutputPath": str(root / "out")},
    }
    with pytest.raises(ObjectError, match="not below"):
        input_objects(spec, access)
    spec["TransformInput"]["DataSource"]["S3DataSource"] = {
        "S3DataType": "S3Prefix",
        "S3Uri": str(root / "in"),
    }
    assert [o.uri for o in input_objects(spec, access)] == [str(root / "in" / "a.csv")]


class _Logs:
    def write(self, name: str, line: str) -> None:
        pass


def _fleet() -> Any:
    import types

    return types.SimpleNamespace(
        route=VariantRoute("AllTraffic", 1.0, 600.0), ctx=types.SimpleNamespace(logs=_Logs()), endpoint="e"
    )


async def test_the_resolved_concurrency_and_payload_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """MaxConcurrentTransforms x MaxPayloadInMB <= 100 holds for the values the job runs with, a
    container's /execution-parameters answer included (CreateTransformJob sees only the request's)."""

    async def answered(route: Any) -> dict[str, Any]:
        return {"MaxConcurrentTransforms": 40, "MaxPayloadInMB": 6}

    monkeypatch.setattr(execution, "execution_parameters", answered)
    with pytest.raises(execution.JobFailed, match=r"is 240; it can be at most 100"):
        await execution._transform(_job(), [], _fleet(), None)  # type: ignore[arg-type]


async def test_a_failed_objects_records_are_not_done_after_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resumed job counts the records of the objects done before; a failed object's records are in
    the total only, and its reason is still the job's FailureReason."""

    async def none(route: Any) -> dict[str, Any]:
        return {}

    monkeypatch.setattr(execution, "execution_parameters", none)
    store = open_store(tmp_path / "state")
    now = time.time()
    with store.session() as session:
        session.add(
            TransformJobRow(
                name="job", name_key="job", arn="arn", status=IN_PROGRESS, spec=SPEC, model={}, tags=[],
                creation_time=now, last_modified_time=now, records_done=0, records_total=0,
                objects_done=0, objects_total=0,
            )
        )  # fmt: skip
    book = JobBook(store)
    stored = await book.started(
        "job", [InputObject("/in/a", "/out/a.out"), InputObject("/in/b", "/out/b.out")]
    )
    await book.object_finished("job", 0, 5, None)
    await book.object_finished("job", 1, 3, "/in/b: record 2: the model answered 500")
    await book.object_finished("job", 1, 3, None)  # recorded once: a second end changes nothing
    stored = await book.objects("job")
    reason = await execution._transform(_job(started=True), stored, _fleet(), book)
    with store.session() as session:
        row = session.get(TransformJobRow, "job")
        assert row is not None
        counts = (row.records_done, row.records_total, row.objects_done, row.objects_total)
    store.close()
    assert reason == "/in/b: record 2: the model answered 500"
    assert counts == (5, 8, 2, 2)


async def test_requests_wait_while_every_instance_is_at_its_bound() -> None:
    """One instance of two workers with MaxConcurrentTransforms 1: the second request waits for the
    first to be answered instead of going to the idle worker."""
    in_flight, peak = {"i-a": 0}, {"i-a": 0}
    clients = [_HeldClient("i-a", in_flight, peak) for _ in range(2)]
    route = VariantRoute("AllTraffic", 1.0, 600.0)
    route.add_workers([WorkerRoute(c, c.instance, i, lambda: None) for i, c in enumerate(clients)])  # type: ignore[arg-type]
    sender = Sender(route, "text/csv", None, ClientConfig(600.0, 0), max_concurrent=1)
    sends = [asyncio.ensure_future(sender.send(b"1\n")) for _ in range(2)]
    for _ in range(20):
        await asyncio.sleep(0)
    assert peak == {"i-a": 1}
    for client in clients:
        client.release.set()
    assert await asyncio.gather(*sends) == [b"ok", b"ok"]
    assert peak == {"i-a": 1}


async def test_the_byte_budget_holds_objects_back() -> None:
    """Objects under way hold at most the budget's bytes; one larger than the budget runs alone."""
    budget = ByteBudget(100)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, size: int) -> None:
        async with budget.hold(size):
            order.append(name)
            await release.wait()

    tasks = [asyncio.ensure_future(hold(n, s)) for n, s in (("a", 60), ("b", 60), ("c", 30))]
    for _ in range(10):
        await asyncio.sleep(0)
    assert order == ["a", "c"] and budget.held == 90
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["a", "c", "b"] and budget.held == 0


def test_the_jobs_table_keeps_a_failure_reason_on_one_line() -> None:
    from moorage.jobs_command import job_rows

    rows = job_rows(
        [{"TransformJobName": "j", "TransformJobStatus": "Failed", "FailureReason": "bad\ninput\r\nhere"}], {}
    )
    assert rows[1][-1] == "bad input here"
