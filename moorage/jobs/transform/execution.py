"""One run of a transform job: start the model's instances, read each input object, send its requests,
assemble and write its output, then stop the instances.

Inputs that an earlier run finished (before a restart) are skipped. An object that fails writes no
output and is remembered with its reason; the others go on, and the job's FailureReason names the
first failed object (in input order) and its record."""

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
from moorage.fleet.plan import DeploymentFailed, prepare_variant
from moorage.fleet.settings import FleetContext
from moorage.fleet.variant import VariantFleet
from moorage.jobs.objects import ObjectError, read_object, write_object
from moorage.jobs.transform.book import JobBook, JobSnapshot
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


# An S3 store that is briefly away (the embedded one restarting with the server) is waited for: reads
# and writes are tried again after 1, 2 s; the input listing, the first thing a resumed job does, for
# up to half a minute. An error that persists fails the object (or the job) with its message.
OBJECT_TRIES = 3
LISTING_TRIES = 6


async def _patiently(tries: int, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`work` on a thread, tried again on ObjectError with doubling pauses from 1 s."""
    pause = 1.0
    for _ in range(tries - 1):
        try:
            return await asyncio.to_thread(work, *args, **kwargs)
        except ObjectError as exc:
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


async def execute(job: JobSnapshot, ctx: FleetContext, book: JobBook) -> str | None:
    """Run `job` to its end: the FailureReason, or None when every input object has its output."""
    try:
        objects = await _patiently(LISTING_TRIES, input_objects, job.spec)
    except (ObjectError, RecordError, ManifestError) as exc:
        raise JobFailed(str(exc)) from None
    await book.started(job.name, len(objects))
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
        await fleet.start()
    except (DeploymentFailed, ArtifactError, InstanceStartError) as exc:
        raise JobFailed(f"The instances for model {model['ModelName']} did not start: {exc}") from None
    fleet.activate()  # failed instances are replaced while the job runs
    return fleet


async def _transform(
    job: JobSnapshot, objects: list[InputObject], fleet: VariantFleet, book: JobBook
) -> str | None:
    spec = job.spec
    parameters = resolve(spec, await execution_parameters(fleet.route))
    try:
        settings = TransformSettings.from_job(spec, parameters.max_payload_mb, parameters.batch_strategy)
    except (RecordError, ValueError) as exc:
        raise JobFailed(str(exc)) from None
    in_flight = parameters.max_concurrent_transforms * int(spec["TransformResources"]["InstanceCount"])
    sender = Sender(
        fleet.route,
        spec["TransformInput"].get("ContentType"),
        spec["TransformOutput"].get("Accept"),
        ClientConfig.of(spec),
        in_flight,
    )
    fleet.ctx.logs.write(
        fleet.endpoint,
        f"Running with MaxConcurrentTransforms={parameters.max_concurrent_transforms}, "
        f"MaxPayloadInMB={parameters.max_payload_mb}, BatchStrategy={parameters.batch_strategy} "
        f"on {len(objects)} input object(s)",
    )
    done = sum(int(f.get("records", 0)) for f in job.finished.values())
    counts = _Counts(records_done=done, records_total=done)
    run = _Run(job.name, settings, sender, counts, book, in_flight)
    reporter = asyncio.create_task(_report(job.name, counts, book))
    try:
        pending = [o for o in objects if o.uri not in job.finished]
        slots = asyncio.Semaphore(max(2, in_flight))

        async def one(item: InputObject) -> None:
            async with slots:
                await run.object(item)

        begun = time.monotonic()
        await asyncio.gather(*(one(item) for item in pending))
        fleet.ctx.logs.write(
            fleet.endpoint,
            f"Transformed {len(pending)} input object(s) in {time.monotonic() - begun:.3f} s.",
        )
    finally:
        reporter.cancel()
    await _write_counts(job.name, counts, book)
    errors = {uri: f.get("error") for uri, f in job.finished.items()} | run.errors
    failed = [(o.uri, errors[o.uri]) for o in objects if errors.get(o.uri)]
    if not failed:
        return None
    first = failed[0][1]
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
    ) -> None:
        self.job = job
        self.settings = settings
        self.sender = sender
        self.counts = counts
        self.book = book
        self.in_flight = in_flight
        self.errors: dict[str, str | None] = {}

    async def object(self, item: InputObject) -> None:
        records: list[bytes] = []
        try:
            data = await _patiently(OBJECT_TRIES, read_object, item.uri, INPUT_FIELD)
            records, requests = await asyncio.to_thread(requests_for, data, self.settings)
            self.counts.records_total += len(records)
            responses = await self._send_all(requests)
            body = await asyncio.to_thread(assemble, records, requests, responses, self.settings)
            await _patiently(
                OBJECT_TRIES, write_object, item.output, body, OUTPUT_FIELD, self.settings.accept
            )
            error = None
        except (ObjectError, RecordError, _ObjectFailed) as exc:
            error = f"{item.uri}: {exc}"
            log.info("transform job %s: %s", self.job, error)
        except Exception as exc:  # a bug in the record handling costs this object, not the others
            log.exception("transform job %s: %s failed", self.job, item.uri)
            error = f"{item.uri}: the object could not be transformed (internal error: {exc!r})"
        self.errors[item.uri] = error
        await self.book.object_finished(self.job, item.uri, len(records), error)

    async def _send_all(self, requests: list[Request]) -> list[bytes]:
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
