"""Running the queue: on the server that reconciles, one task per asynchronous endpoint takes its queued
requests in arrival order, as many at once as its instances may run (MaxConcurrentInvocationsPerInstance
each), and for each one reads the input, invokes the model, writes the output or failure object, sends
the notification and only then deletes the row.

Only requests waiting for or holding a worker count against the instances' slots: one whose result is
still being written (an S3 store that is down, a folder that cannot be written) does not hold back the
next. Expired requests fail wherever they are in the queue, also with no instance free.

At most one result per request: before running a request that may have been finished before a restart
the task looks for the objects named by the request's own output id (a UUID drawn at acceptance, so a
reused InferenceId names other objects), so a request finished just before a crash (object written, row
not yet deleted) is not run again. Objects are written whole or not at all (moorage/jobs/objects.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from moorage.capture.taps import capture_answer
from moorage.dataplane.routes import EndpointRoute, RoutingTable
from moorage.jobs.asynchronous.commits import GroupCommit
from moorage.jobs.asynchronous.config import SUCCESS_TOPIC, AsyncSettings
from moorage.jobs.asynchronous.invoke import InvocationFailed, NoWorker, Request, Slots, call
from moorage.jobs.asynchronous.notices import failure_message, success_message
from moorage.jobs.asynchronous.queue import (
    Backlog,
    backlogs,
    drop_endpoint,
    expired_requests,
    finish_requests,
    last_seq,
    next_requests,
)
from moorage.jobs.budget import ByteBudget
from moorage.jobs.notify import Notifier
from moorage.jobs.objects import ObjectError, object_exists, object_size, read_object, write_object
from moorage.logs import EndpointLogs
from moorage.store import Store
from moorage.store.tables import AsyncRequestRow

log = logging.getLogger("moorage.async")
T = TypeVar("T")
POLL_SECONDS = 1.0
WRITE_RETRY_MAX_SECONDS = 30.0
WRITE_ATTEMPTS = 3  # tries of a write the store refuses (not an outage) before the request fails
EXPIRED_PER_LOOK = 256  # expired requests failed per endpoint per poll
MAX_INPUT_BYTES = 2**30  # 1 GB, SageMaker's limit for an InputLocation
INPUT_BYTES_IN_FLIGHT = 2 * MAX_INPUT_BYTES  # inputs held in memory at once, all endpoints together
IO_THREADS = 8  # reads and writes of objects at once (a thread pool of the dispatcher's own)


@dataclass
class _Outcome:
    ok: bool
    content_type: str | None = None
    body: bytes = b""
    reason: str = ""


class _Abandoned(Exception):
    """The endpoint was deleted, or is no longer asynchronous: the request stops (its row stays unless
    DeleteEndpoint dropped it)."""


@dataclass
class EndpointQueue:
    """One asynchronous endpoint's requests on their way: those taken from the store, those of them that
    wait for or hold a worker slot, and the slots its instances have."""

    name: str
    slots: Slots
    running: set[int] = field(default_factory=set)  # taken from the store, row not yet deleted
    holding: set[int] = field(default_factory=set)  # counted against the instances' slots
    retried: set[int] = field(default_factory=set)  # failed inside the server once: may have an object
    expiry_checked_at: float = 0.0  # when the queue was last scanned for expired requests
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    requests: set[asyncio.Task[None]] = field(default_factory=set)


class Dispatcher:
    def __init__(
        self,
        store: Store,
        table: RoutingTable,
        notifier: Notifier,
        region: str,
        poll_seconds: float = POLL_SECONDS,
        logs: EndpointLogs | None = None,
        input_bytes_in_flight: int = INPUT_BYTES_IN_FLIGHT,
    ) -> None:
        self.store = store
        self.table = table
        self.notifier = notifier
        self.region = region
        self.poll_seconds = poll_seconds
        self.logs = logs
        self.queues: dict[str, EndpointQueue] = {}
        # every endpoint's backlog as last counted (refreshed each poll and after each change)
        self.backlog: dict[str, Backlog] = {}
        self._finished = GroupCommit[int](store, finish_requests)
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # object reads and writes: threads of their own, so neither they nor other work on the loop's
        # default executor (webhooks, control-API bodies) can starve the other
        self._executor = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="async-objects")
        self._inputs = ByteBudget(input_bytes_in_flight)
        # requests accepted before this server ran the queue (up to this seq) may have been finished
        # by an earlier run: only those, and retried ones, are looked for before running
        self._inherited_upto: int | None = None

    # --- what the rest of the server tells it ----------------------------------------------------------

    def accepted(self, endpoint: str) -> None:
        """A request for `endpoint` was committed (by this server): start it without waiting for a poll."""
        queue = self.queues.get(endpoint)
        if queue is not None:
            queue.wake.set()
        else:
            self._wake.set()
        current = self.backlog.get(endpoint)
        self.backlog[endpoint] = Backlog(
            (current.size if current else 0) + 1,
            current.oldest_accepted_at if current and current.oldest_accepted_at else time.time(),
        )

    async def endpoint_deleted(self, endpoint: str) -> None:
        """DeleteEndpoint discards the endpoint's queued requests, as on AWS, and stops those running."""
        queue = self.queues.pop(endpoint, None)
        if queue is not None:
            for task in [queue.task, *queue.requests]:
                if task is not None:
                    task.cancel()
        dropped = await self.store.run(drop_endpoint, self.store, endpoint)
        self.backlog.pop(endpoint, None)
        if dropped:
            log.info("endpoint %s deleted: %d queued asynchronous request(s) discarded", endpoint, dropped)

    def backlog_of(self, endpoint: str) -> Backlog:
        return self.backlog.get(endpoint, Backlog(0, None))

    # --- the loop --------------------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                await self._look()
            except Exception:
                log.exception("asynchronous dispatch failed; trying again at the next poll")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)

    async def _look(self) -> None:
        if self._inherited_upto is None:
            self._inherited_upto = await self.store.run(last_seq, self.store)
        routes = {name: r for name, r in self.table.items() if r.asynchronous is not None}
        if routes or self.queues:  # a server without asynchronous endpoints leaves the store alone
            self.backlog = await self.store.run(backlogs, self.store)
        else:
            self.backlog = {}
        for name, route in routes.items():
            queue = self.queues.get(name)
            assert route.asynchronous is not None
            if queue is None:
                queue = self.queues[name] = EndpointQueue(name, Slots(route.asynchronous.max_concurrent))
            queue.slots.limit = route.asynchronous.max_concurrent
            if queue.task is None or queue.task.done():
                queue.task = asyncio.create_task(self._serve(queue), name=f"async-{name}")
            queue.wake.set()
        for name in [n for n in self.queues if n not in routes]:  # deleted, or not asynchronous anymore
            gone = self.queues.pop(name)
            if gone.task is not None:
                gone.task.cancel()  # its requests stop at their next look at the route (_route_of)

    async def _serve(self, queue: EndpointQueue) -> None:
        """Start queued requests while the endpoint's instances have free slots; expired ones fail even
        when there are none (at 0 instances too)."""
        while self.queues.get(queue.name) is queue:
            queue.wake.clear()
            route = self.table.get(queue.name)
            if route is not None and route.asynchronous is not None:
                await self._start_more(queue, route)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(queue.wake.wait(), self.poll_seconds)

    async def _start_more(self, queue: EndpointQueue, route: EndpointRoute) -> None:
        now = time.time()
        if now - queue.expiry_checked_at >= self.poll_seconds:  # once a poll, not on every arrival
            queue.expiry_checked_at = now
            expired = await self.store.run(
                expired_requests, self.store, queue.name, now, set(queue.running), EXPIRED_PER_LOOK
            )
            for row in expired:
                self._start(queue, route, row, holds=False)
        free = queue.slots.capacity(route) - len(queue.holding)
        if free <= 0:
            return
        rows = await self.store.run(next_requests, self.store, queue.name, set(queue.running), free)
        for row in rows:
            self._start(queue, route, row, holds=row.expires_at > time.time())

    def _start(self, queue: EndpointQueue, route: EndpointRoute, row: AsyncRequestRow, holds: bool) -> None:
        if row.seq in queue.running or self.queues.get(queue.name) is not queue:
            return
        queue.running.add(row.seq)
        if holds:
            queue.holding.add(row.seq)
        task = asyncio.create_task(self._run(queue, route, row), name=f"async-request-{row.seq}")
        self._tasks.add(task)
        queue.requests.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(queue.requests.discard)

    # --- one request -----------------------------------------------------------------------------------

    async def _run(self, queue: EndpointQueue, route: EndpointRoute, row: AsyncRequestRow) -> None:
        try:
            inherited = self._inherited_upto is None or row.seq <= self._inherited_upto
            if (inherited or row.seq in queue.retried) and await self._io(_finished_before, row):
                log.info(
                    "request %s of %s was finished before a restart; not run again",
                    row.inference_id,
                    row.endpoint_name,
                )
            else:
                outcome = await self._outcome(queue, route, row)
                queue.holding.discard(row.seq)  # the worker is done with it: the slot is free
                await self._finish(route, row, outcome)
            await self._finished.submit(row.seq)
            queue.retried.discard(row.seq)
        except _Abandoned:
            log.info(
                "asynchronous request %s of %s stopped: the endpoint was deleted or is no longer "
                "asynchronous",
                row.inference_id,
                row.endpoint_name,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "asynchronous request %s of %s failed inside the server; it will be retried",
                row.inference_id,
                row.endpoint_name,
            )
            queue.retried.add(row.seq)
            await asyncio.sleep(self.poll_seconds)  # a store or S3 outage is not retried in a tight loop
        finally:
            queue.running.discard(row.seq)
            queue.holding.discard(row.seq)
            queue.wake.set()

    def _route_of(self, queue: EndpointQueue) -> EndpointRoute:
        """The endpoint's route now; _Abandoned once it is deleted or no longer asynchronous."""
        route = self.table.get(queue.name)
        if self.queues.get(queue.name) is not queue or route is None or route.asynchronous is None:
            raise _Abandoned()
        return route

    async def _outcome(self, queue: EndpointQueue, route: EndpointRoute, row: AsyncRequestRow) -> _Outcome:
        if row.expires_at <= time.time():
            return _expired(row)
        if row.body is not None:
            return await self._invoke(queue, row, row.body)
        assert row.input_location is not None
        try:
            size = await self._io(object_size, row.input_location, "InputLocation")
        except ObjectError as exc:
            return _Outcome(False, reason=f"The input could not be read: {exc}")
        if size > MAX_INPUT_BYTES:
            return _Outcome(
                False,
                reason=f"The input {row.input_location} is {size} bytes; an InputLocation may hold at most "
                f"{MAX_INPUT_BYTES} bytes (1 GB). Split the payload into smaller requests.",
            )
        async with self._inputs.hold(size):
            try:
                body = await self._io(read_object, row.input_location, "InputLocation")
            except ObjectError as exc:
                return _Outcome(False, reason=f"The input could not be read: {exc}")
            return await self._invoke(queue, row, body)

    async def _invoke(self, queue: EndpointQueue, row: AsyncRequestRow, body: bytes) -> _Outcome:
        request = Request(
            body,
            row.content_type,
            row.accept,
            row.custom_attributes,
            row.inference_id,
            row.invocation_timeout,
        )
        while True:
            current = self._route_of(queue)
            if row.expires_at <= time.time():  # waited for a worker past its TTL
                return _expired(row)
            taken = queue.slots.take(current, self.table.rng)
            if taken is None:
                await asyncio.sleep(0.05)  # an instance went away since the request was started
                continue
            variant, worker = taken
            try:
                response = await call(current, variant, worker, request)
            except NoWorker:
                await asyncio.sleep(0.05)
                continue
            except InvocationFailed as exc:
                return _Outcome(False, reason=str(exc))
            finally:
                queue.slots.give_back(worker)
            capture_answer(variant, body, row.content_type, response, row.inference_id, row.custom_attributes)
            content_type = response.header(b"content-type")
            return _Outcome(True, content_type.decode("latin-1") if content_type else None, response.body)

    async def _finish(self, route: EndpointRoute, row: AsyncRequestRow, outcome: _Outcome) -> None:
        """Write the result and notify. An output that cannot be written turns into a failure; a failure
        that cannot be written either is logged (server and endpoint log) and the request is dropped."""
        settings = route.asynchronous
        assert settings is not None  # _serve starts requests only on an asynchronous route
        problem = await self._write(row, outcome, settings)
        if problem is not None and outcome.ok:
            outcome = _Outcome(False, reason=f"The result could not be written: {problem}")
            problem = await self._write(row, outcome, settings)
        if problem is not None:
            message = (
                f"asynchronous request {row.inference_id} dropped: neither its result nor its failure "
                f"object could be written ({problem}); fix S3OutputPath / S3FailurePath or their "
                "permissions. Reason it failed: " + outcome.reason
            )
            log.error("%s: %s", row.endpoint_name, message)
            if self.logs is not None:
                with contextlib.suppress(OSError):
                    await self._io(self.logs.write, row.endpoint_name, message)
            await self.store.run(finish_requests, self.store, [row.seq])
        self._notify(row, outcome)

    async def _write(self, row: AsyncRequestRow, outcome: _Outcome, settings: AsyncSettings) -> str | None:
        """Write the output or failure object: None once written, else why it could not be. An outage of
        the store (it cannot be reached, or is busy) is retried until it ends, the row stays; a refusal
        (no such bucket, a path that runs into a file, no permission) is tried WRITE_ATTEMPTS times."""
        if outcome.ok:
            where, body, kind, field_ = (
                row.output_location,
                outcome.body,
                outcome.content_type,
                "S3OutputPath",
            )
            root = settings.output_path
        else:
            where, body, kind, field_ = (
                row.failure_location,
                outcome.reason.encode(),
                "text/plain",
                "S3FailurePath",
            )
            root = settings.failure_root
        inside = root if root and where.startswith(root.rstrip("/") + "/") else None
        delay, refused = 1.0, 0
        while True:
            try:
                await self._io(write_object, where, body, field_, kind, inside)
                return None
            except ObjectError as exc:
                if not exc.transient:
                    refused += 1
                    if refused >= WRITE_ATTEMPTS:
                        log.error("could not write %s after %d tries: %s", where, refused, exc)
                        return str(exc)
                log.warning("could not write %s (retrying in %g s): %s", where, delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, WRITE_RETRY_MAX_SECONDS)

    def _notify(self, row: AsyncRequestRow, outcome: _Outcome) -> None:
        config = row.notification or {}
        include = config.get("IncludeInferenceResponseIn") or []
        if outcome.ok and config.get("SuccessTopic"):
            body = outcome.body if SUCCESS_TOPIC in include else None
            self.notifier.publish(
                config["SuccessTopic"], success_message(row, self.region, outcome.content_type, body)
            )
        elif not outcome.ok and config.get("ErrorTopic"):
            self.notifier.publish(config["ErrorTopic"], failure_message(row, self.region, outcome.reason))

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on the dispatcher's own threads."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        for queue in self.queues.values():
            if queue.task is not None:
                queue.task.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)


def _expired(row: AsyncRequestRow) -> _Outcome:
    ttl = row.expires_at - row.accepted_at
    return _Outcome(
        False,
        reason=f"The request expired: it waited in the queue longer than its RequestTTLSeconds "
        f"({ttl:g} s) without an instance free to run it. Raise RequestTTLSeconds or add instances.",
    )


def _finished_before(row: AsyncRequestRow) -> bool:
    """Whether an object of this very request exists: only names drawn for it (its output id) count; a
    Filename the caller chose may be an earlier request's, so such a request is run again."""
    if object_exists(row.failure_location, "S3FailurePath"):
        return True
    own = row.output_location.rsplit("/", 1)[-1] == f"{row.output_id}.out"
    return own and object_exists(row.output_location, "S3OutputPath")
