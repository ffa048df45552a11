"""One run of a transform job: start the model's instances, read each input object, send its requests,
assemble and write its output, then stop the instances.

The input is listed once, when the job first starts (JobBook.started); a run after a restart works on
that listing and skips the objects an earlier run finished. An object that fails writes no output and
is remembered with its reason; the others go on, and the job's FailureReason names the first failed
object (in input order) and its record.

Each object is read whole: one over MAX_OBJECT_BYTES is refused (split the data into smaller objects),
and the objects under way at once hold at most MEMORY_BUDGET_BYTES of input between them."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from moorage.artifacts.errors import ArtifactError
from moorage.compute.base import InstanceStartError
from moorage.control.transform_jobs import MAX_IN_FLIGHT_MB
from moorage.fleet.plan import DeploymentFailed, prepare_variant
from moorage.fleet.settings import FleetContext
from moorage.fleet.variant import VariantFleet
from moorage.jobs.budget import ByteBudget
from moorage.jobs.local_access import LocalAccess
from moorage.jobs.objects import ObjectError, object_size, read_object, write_object
from moorage.jobs.transform.book import DONE, FAILED, PENDING, JobBook, JobSnapshot, StoredObject
from moorage.jobs.transform.inputs import INPUT_FIELD, OUTPUT_FIELD, InputObject, input_objects
from moorage.jobs.transform.manifest import ManifestError
from moorage.jobs.transform.parameters import batch_environment, resolve
from moorage.jobs.transform.records import (
    RecordError,
    Request,
    TransformSettings,
    assemble,
    requests_for,
)
from moorage.jobs.transform.sender import ClientConfig, InvocationFailed, Sender, execution_parameters

log = logging.getLogger("moorage.transform")
P = ParamSpec("P")
T = TypeVar("T")
VARIANT = "AllTraffic"
PROGRESS_SECONDS = 1.0
STOP_GRACE_SECONDS = 5.0
# an object is read whole and held (with its records, requests, answers and output: a few times its size)
MAX_OBJECT_BYTES = 1 << 30
MEMORY_BUDGET_BYTES = 1 << 30  # input bytes of the objects under way at once


# An S3 store that is briefly away (the embedded one restarting with the server) is waited for: reads
# and writes are tried again after 1, 2 s; the input listing for up to half a minute. Only a transient
# ObjectError (the store unreachable or busy) is tried again; one that persists, or a refusal (no such
# bucket or key, access denied), fails the object (or the job) with its message.
OBJECT_TRIES = 3
LISTING_TRIES = 6


async def _patiently(tries: int, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`work` on a thread, tried again on a transient ObjectError with doubling pauses from 1 s."""
    pause = 1.0
    for _ in range(tries - 1):
        try:
            return await asyncio.to_thread(work, *args, **kwargs)
        except ObjectError as exc:
            if not exc.transient:
                raise
            log.info("%s; trying again in %g s", exc, pause)
        await asyncio.sleep(pause)
        pause *= 2
    return await asyncio.to_thread(work, *args, **kwargs)


class JobFailed(Exception):
    """The job cannot go on; str() is its FailureReason."""


def log_name(job: str) -> str:
    """The job's log (`moorage logs transform-job.<name>`); no endpoint name has a dot."""
    return f"transform-job.{job}"


@dataclass
class _Counts:
    records_done: int = 0
    records_total: int = 0
    written: tuple[int, int] = (-1, -1)  # what the row has


async def execute(
    job: JobSnapshot,
    ctx: FleetContext,
    book: JobBook,
    access: LocalAccess = LocalAccess(),
) -> str | None:
    """Run `job` to its end: the FailureReason, or None when every input object has its output."""
    objects = await book.objects(job.name)
    if not objects:  # the first start: list the input once, for this run and any resumed one
        try:
            listed = await _patiently(LISTING_TRIES, input_objects, job.spec, access)
        except (ObjectError, RecordError, ManifestError) as exc:
            raise JobFailed(str(exc)) from None
        objects = await book.started(job.name, listed)
    fleet = await _start_fleet(job, ctx)
    try:
        return await _transform(job, objects, fleet, book)
    finally:
        await fleet.close(drain=False, grace=STOP_GRACE_SECONDS)
        ctx.logs.write(log_name(job.name), "Instances stopped.")


async def _start_fleet(job: JobSnapshot, ctx: FleetContext) -> VariantFleet:
    spec, model = job.spec, job.model
    resources = spec["TransformResources"]
    snapshot = {"models": {model["ModelName"]: model}, "accepted_at": job.creation_time}
    variant = {
        "VariantName": VARIANT,
        "ModelName": model["ModelName"],
        "InstanceType": resources["InstanceType"],
        "InitialInstanceCount": resources["InstanceCount"],
    }
    name = log_name(job.name)
    ctx = dataclasses.replace(ctx, stats=None)  # a job is no endpoint: it has no invocation metrics
    try:
        plan = await prepare_variant(name, snapshot, variant, ctx)
        plan = dataclasses.replace(
            plan,
            environment={**plan.environment, **batch_environment(spec)},
            timeout=ClientConfig.of(spec).timeout,
        )
        fleet = VariantFleet(name, plan, ctx)
        try:
            await fleet.start()
        except BaseException:  # cancelled (Stop, shutdown) with some instances up: stop them
            await asyncio.shield(fleet.close(drain=False, grace=STOP_GRACE_SECONDS))
            raise
    except (DeploymentFailed, ArtifactError, InstanceStartError) as exc:
        raise JobFailed(f"The instances for model {model['ModelName']} did not start: {exc}") from None
    fleet.activate()  # failed instances are replaced while the job runs
    return fleet


async def _transform(
    job: JobSnapshot, objects: list[StoredObject], fleet: VariantFleet, book: JobBook
) -> str | None:
    spec = job.spec
    parameters = resolve(spec, await execution_parameters(fleet.route))
    concurrent, payload = parameters.max_concurrent_transforms, parameters.max_payload_mb
    if concurrent * payload > MAX_IN_FLIGHT_MB:
        raise JobFailed(
            f"MaxConcurrentTransforms ({concurrent}) multiplied by MaxPayloadInMB ({payload}), as set by "
            f"the job or the container's /execution-parameters, is {concurrent * payload}; it can be at "
            f"most {MAX_IN_FLIGHT_MB}. Set lower values in CreateTransformJob."
        )
    try:
        settings = TransformSettings.from_job(spec, payload, parameters.batch_strategy)
    except (RecordError, ValueError) as exc:
        raise JobFailed(str(exc)) from None
    in_flight = concurrent * int(spec["TransformResources"]["InstanceCount"])
    sender = Sender(
        fleet.route,
        spec["TransformInput"].get("ContentType"),
        spec["TransformOutput"].get("Accept"),
        ClientConfig.of(spec),
        concurrent,
    )
    pending = [o for o in objects if o.state == PENDING]
    fleet.ctx.logs.write(
        fleet.endpoint,
        f"Running with MaxConcurrentTransforms={concurrent}, MaxPayloadInMB={payload}, "
        f"BatchStrategy={parameters.batch_strategy} on {len(pending)} of {len(objects)} input object(s)",
    )
    # what earlier runs did: a failed object's records count in the total, never as done
    done = sum(o.records for o in objects if o.state == DONE)
    counts = _Counts(records_done=done, records_total=sum(o.records for o in objects if o.state != PENDING))
    run = _Run(
        job.name,
        settings,
        sender,
        counts,
        book,
        in_flight,
        budget=ByteBudget(MEMORY_BUDGET_BYTES),
        inside=spec["TransformOutput"]["S3OutputPath"],
    )
    reporter = asyncio.create_task(_report(job.name, counts, book))
    try:
        slots = asyncio.Semaphore(max(2, in_flight))

        async def one(item: StoredObject) -> None:
            async with slots:
                await run.object(InputObject(item.uri, item.output), item.position)

        begun = time.monotonic()
        await asyncio.gather(*(one(item) for item in pending))
        fleet.ctx.logs.write(
            fleet.endpoint,
            f"Transformed {len(pending)} input object(s) in {time.monotonic() - begun:.3f} s.",
        )
    finally:
        reporter.cancel()
    await _write_counts(job.name, counts, book)
    errors = {o.position: o.error for o in objects if o.state == FAILED} | run.errors
    failed = [errors[o.position] for o in objects if errors.get(o.position)]
    if not failed:
        return None
    first = failed[0]
    if len(failed) == 1:
        return first
    return f"{first} ({len(failed)} of {len(objects)} input objects failed; the others have their output)"


class _ObjectFailed(Exception):
    pass


class _Run:
    """The per-object work of one run."""

    def __init__(
        self,
        job: str,
        settings: TransformSettings,
        sender: Sender,
        counts: _Counts,
        book: JobBook,
        in_flight: int,
        budget: ByteBudget | None = None,
        inside: str | None = None,
    ) -> None:
        self.job = job
        self.settings = settings
        self.sender = sender
        self.counts = counts
        self.book = book
        self.in_flight = in_flight
        self.budget = budget or ByteBudget(MEMORY_BUDGET_BYTES)
        self.inside = inside  # S3OutputPath: a local output must resolve into it
        self.errors: dict[int, str | None] = {}  # by position in the input

    async def object(self, item: InputObject, position: int) -> None:
        records: list[bytes] = []
        sent = [0]  # records answered, taken back from the done count if the object fails
        try:
            size = await _patiently(OBJECT_TRIES, object_size, item.uri, INPUT_FIELD)
            if size > MAX_OBJECT_BYTES:
                raise _ObjectFailed(
                    f"the object is {size} bytes; this server reads an input object whole and takes "
                    f"objects of at most {MAX_OBJECT_BYTES} bytes. Split the data into smaller objects "
                    "(SplitType still splits each one into records)."
                )
            async with self.budget.hold(size):
                data = await _patiently(OBJECT_TRIES, read_object, item.uri, INPUT_FIELD)
                records, requests = await asyncio.to_thread(requests_for, data, self.settings)
                del data
                self.counts.records_total += len(records)
                responses = await self._send_all(requests, sent)
                body = await asyncio.to_thread(assemble, records, requests, responses, self.settings)
                del responses
                await _patiently(
                    OBJECT_TRIES,
                    write_object,
                    item.output,
                    body,
                    OUTPUT_FIELD,
                    self.settings.accept,
                    inside=self.inside,
                )
            error = None
        except (ObjectError, RecordError, _ObjectFailed) as exc:
            error = f"{item.uri}: {exc}"
            log.info("transform job %s: %s", self.job, error)
        except Exception as exc:  # a bug in the record handling costs this object, not the others
            log.exception("transform job %s: %s failed", self.job, item.uri)
            error = f"{item.uri}: the object could not be transformed (internal error: {exc!r})"
        if error:
            self.counts.records_done -= sent[0]
        self.errors[position] = error
        await self.book.object_finished(self.job, position, len(records), error)

    async def _send_all(self, requests: list[Request], sent: list[int]) -> list[bytes]:
        """Every request's answer in order; the first failure ends the object (no partial output)."""
        answers: list[bytes] = [b""] * len(requests)
        queue: Iterator[int] = iter(range(len(requests)))
        failure: list[_ObjectFailed] = []

        async def worker() -> None:
            for index in queue:
                if failure:
                    return
                request = requests[index]
                try:
                    answers[index] = await self.sender.send(request.body)
                except InvocationFailed as exc:
                    failure.append(_ObjectFailed(f"{_records(request)}: {exc}"))
                    return
                self.counts.records_done += request.count
                sent[0] += request.count

        await asyncio.gather(*(worker() for _ in range(min(self.in_flight, len(requests)))))
        if failure:
            raise failure[0]
        return answers


def _records(request: Request) -> str:
    """The records a request carried, numbered from 1 as a user counts lines."""
    if request.count <= 1:
        return f"record {request.first + 1}"
    return f"records {request.first + 1}-{request.first + request.count}"


async def _report(job: str, counts: _Counts, book: JobBook) -> None:
    while True:
        await asyncio.sleep(PROGRESS_SECONDS)
        await _write_counts(job, counts, book)


async def _write_counts(job: str, counts: _Counts, book: JobBook) -> None:
    now = (counts.records_done, counts.records_total)
    if now != counts.written:
        await book.progress(job, *now)
        counts.written = now
