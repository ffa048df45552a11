"""Carries out transform jobs on the server that reconciles (app.py starts it with the lead).

It reads the job rows when woken (CreateTransformJob, StopTransformJob) and every poll: an InProgress job
not under way here starts (or, after a restart, resumes: finished input objects are not redone); a job
asked to stop is cancelled, its instances stopped, and it ends Stopped. Whatever goes wrong, a job ends
Completed, Failed or Stopped with a reason; none is left InProgress once its run is over. A server that
shuts down leaves its jobs InProgress for the next server to resume."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from moorage.control.transform_jobs import COMPLETED, FAILED, IN_PROGRESS, STOPPED, STOPPING
from moorage.fleet.settings import FleetContext
from moorage.jobs.local_access import LocalAccess
from moorage.jobs.objects import ObjectError, delete_object
from moorage.jobs.transform.book import FAILED as FAILED_OBJECT
from moorage.jobs.transform.book import JobBook, JobSnapshot
from moorage.jobs.transform.execution import JobFailed, execute, log_name
from moorage.jobs.transform.inputs import OUTPUT_FIELD
from moorage.store import Store

log = logging.getLogger("moorage.transform")


class TransformRunner:
    def __init__(
        self,
        store: Store,
        ctx: FleetContext,
        poll_seconds: float,
        access: LocalAccess = LocalAccess(),
    ) -> None:
        self.book = JobBook(store)
        self.ctx = ctx
        self.access = access  # with --credentials: the disk paths jobs may use
        self.poll_seconds = poll_seconds
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._stop_requested: set[str] = set()
        self._wake = asyncio.Event()
        self._first_look = True
        self._closed = False  # shutting down: no run starts any more

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                await self._look()
            except Exception:  # the store may be briefly unreachable: looked at again next poll
                log.exception("reading the transform jobs failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def _look(self) -> None:
        if self._closed:
            return
        first, self._first_look = self._first_look, False
        jobs = await self.book.active()
        if self._closed:
            return
        for job in jobs:
            task = self.tasks.get(job.name)
            if task is not None and task.done():  # a run that ended (or died) without its cleanup
                self.tasks.pop(job.name, None)
                self._stop_requested.discard(job.name)
                task = None
            if job.status == STOPPING:
                if task is not None:
                    if job.name not in self._stop_requested:
                        self._stop_requested.add(job.name)
                        task.cancel()
                else:  # nothing runs it here: its instances are gone with the server that ran it
                    await self._discard_outputs(job.name)
                    await self.book.finish(job.name, STOPPED)
            elif task is None:
                if first and job.started:
                    self.ctx.logs.write(
                        log_name(job.name),
                        f"Resuming after a server restart; {job.objects_done} input object(s) were done.",
                    )
                self.tasks[job.name] = asyncio.create_task(self._run(job), name=f"transform:{job.name}")

    async def _run(self, job: JobSnapshot) -> None:
        name = job.name
        logs = self.ctx.logs
        status: str | None = None
        try:
            try:
                current = await self.book.status(name)
            except Exception:  # the store briefly unreachable: the next look starts the run again
                log.exception("reading transform job %s failed; trying again at the next poll", name)
                return
            if current != IN_PROGRESS:  # a run that ended while the rows were read
                return
            logs.write(log_name(name), f"Transform job {name} {'resumes' if job.started else 'starts'}.")
            reason = await execute(job, self.ctx, self.book, self.access)
            status = await self.book.finish(name, FAILED if reason else COMPLETED, reason)
        except asyncio.CancelledError:
            if name in self._stop_requested:
                await asyncio.shield(self._discard_outputs(name))
                logs.write(log_name(name), "Stopped (StopTransformJob).")
                await asyncio.shield(self.book.finish(name, STOPPED))
            raise
        except JobFailed as exc:
            status = await self.book.finish(name, FAILED, _resumed(job, str(exc)))
        except Exception as exc:  # a bug must not leave the job InProgress for good
            log.exception("transform job %s failed", name)
            reason = f"The job failed on an internal error: {exc!r}. See the server's log."
            status = await self.book.finish(name, FAILED, _resumed(job, reason))
        finally:
            if self.tasks.get(name) is asyncio.current_task():
                self.tasks.pop(name, None)
                self._stop_requested.discard(name)
        if status is not None:
            logs.write(log_name(name), f"Transform job {name} ended {status}.")

    async def _discard_outputs(self, name: str) -> None:
        """A stopped job leaves no output (as SageMaker stores none): the outputs of the objects it
        finished before the stop are deleted, and so is any an object under way wrote while its run was
        being cancelled. One that cannot be deleted is logged and left."""
        for stored in await self.book.objects(name):
            if stored.state == FAILED_OBJECT:  # wrote nothing
                continue
            try:
                await asyncio.to_thread(delete_object, stored.output, OUTPUT_FIELD)
            except ObjectError as exc:
                self.ctx.logs.write(log_name(name), f"Stopped, but its output stays: {exc}")

    async def shutdown(self) -> None:
        """Stop the runs (their instances stop); the jobs stay InProgress, to be resumed on restart."""
        self._closed = True
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _resumed(job: JobSnapshot, reason: str) -> str:
    """A resumed job that cannot go on says that it was resuming."""
    if not job.started:
        return reason
    return f"The job was interrupted by a server restart and could not be resumed: {reason}"
