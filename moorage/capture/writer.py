"""This server's capture writer: captured requests wait in memory and are written in batches, one object
per endpoint, variant and hour, on a thread of its own (never on the event loop).

A batch is written every MOORAGE_CAPTURE_FLUSH_SECONDS, or sooner once a quarter of
MOORAGE_CAPTURE_MAX_BUFFER_BYTES waits (moorage/capture/settings.py). The bytes held, waiting or being
written, never exceed that limit: a record that does not fit is dropped and counted, and the endpoint log
says how many. A write the store could not take for now (unreachable, busy) is tried again with the next
batch, three attempts in all; one it refuses (no such bucket, access denied) is dropped and logged.
`close` writes what is left: the server calls it on shutdown before its S3 store stops, so a SIGTERM loses
nothing that was captured (it waits at most CLOSE_SECONDS for a store that does not answer).

Taps on this server reach it through `current_writer` (one writer per server process: `start` installs
it, `close` removes it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from moorage.capture.config import DESTINATION_FIELD
from moorage.capture.records import Captured, object_uri, record_line
from moorage.capture.settings import MIB, CaptureSettings
from moorage.jobs.local_access import LocalAccess
from moorage.jobs.objects import ObjectError, write_object
from moorage.logs import EndpointLogs

log = logging.getLogger("moorage.capture")
# writes of one record that may fail for a passing reason before it is dropped
MAX_ATTEMPTS = 3
CONTENT_TYPE = "application/jsonlines"
# the longest shutdown waits for the last batches to be written
CLOSE_SECONDS = 30.0

_current: CaptureWriter | None = None


def current_writer() -> CaptureWriter | None:
    """The writer of this server (None before start-up, or where nothing started one)."""
    return _current


@dataclass(frozen=True)
class _Group:
    """One object's worth: the records of one endpoint and variant in one hour, to one destination."""

    destination: str
    endpoint: str
    variant: str
    records: list[Captured]


class CaptureWriter:
    def __init__(
        self, settings: CaptureSettings, logs: EndpointLogs | None = None, access: LocalAccess = LocalAccess()
    ) -> None:
        self.settings = settings
        self.logs = logs
        self.access = access  # with --credentials, local destinations only below --local-data-root
        self.written = 0  # records written, for tests and the log
        self.dropped = 0  # records never written: no room, refused by the store, or after close
        self._queue: list[Captured] = []
        self._held = 0  # bytes of the records waiting or being written
        self._unreported: dict[tuple[str, str], int] = defaultdict(int)  # drops not yet in the endpoint log
        self._late: set[tuple[str, str]] = set()  # variants whose records came after close (logged)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="moorage-capture")

    @property
    def waiting(self) -> int:
        """Records captured and waiting for the next write."""
        return len(self._queue)

    def start(self) -> None:
        """Write batches from now on (on the running loop), and be the writer this server's taps use."""
        global _current
        _current = self
        self._task = asyncio.get_running_loop().create_task(self._run(), name="data-capture")

    def submit(self, captured: Captured) -> None:
        """Queue one record (on the event loop; a list append and two additions)."""
        size = captured.size
        if self._closed:  # answered after shutdown wrote the last batch (rare: past the drain)
            self.dropped += 1
            late = (captured.endpoint, captured.variant)
            if late not in self._late:  # said once per variant: a log write is file I/O on the loop
                self._late.add(late)
                self._tell(captured.endpoint, _after_close(captured.variant))
            return
        if self._held + size > self.settings.max_buffer_bytes:
            self.dropped += 1
            self._unreported[(captured.endpoint, captured.variant)] += 1
            return
        self._queue.append(captured)
        self._held += size
        if self._held >= self.settings.flush_bytes:
            self._wake.set()

    async def close(self) -> None:
        """Write everything captured so far, then stop; records arriving later are dropped (counted)."""
        global _current
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self._write_the_rest(), CLOSE_SECONDS)
        except TimeoutError:  # a store that does not answer must not hold the server's shutdown forever
            left = len(self._queue) + sum(self._unreported.values())
            log.error(
                "data capture: the last writes did not finish within %g s; at least %d record(s) lost",
                CLOSE_SECONDS,
                left,
            )
            self.dropped += left
        self._closed = True
        self._executor.shutdown(wait=False)
        if _current is self:
            _current = None
        if self.written or self.dropped:
            log.info("data capture: %d record(s) written, %d dropped", self.written, self.dropped)

    async def _write_the_rest(self) -> None:
        while self._queue or self._unreported:
            await self.flush(final=True)

    async def flush(self, final: bool = False) -> None:
        """Write what waits now, one object per endpoint, variant and hour; `final`: no later try."""
        batch, self._queue = self._queue, []
        drops, self._unreported = dict(self._unreported), defaultdict(int)
        if not batch and not drops:
            return
        loop = asyncio.get_running_loop()
        try:
            again, written, dropped = await loop.run_in_executor(
                self._executor, self._write, _groups(batch), drops, final
            )
        except Exception:  # a fault of this server's, not the store's: the batch is lost, never the server
            log.exception("data capture: a batch of %d record(s) could not be written", len(batch))
            again, written, dropped = [], 0, len(batch)
        self.written += written
        self.dropped += dropped
        kept = {id(record) for record in again}
        self._held -= sum(record.size for record in batch if id(record) not in kept)
        self._queue[:0] = again

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.flush_seconds)
            self._wake.clear()
            await self.flush()

    def _write(
        self, groups: list[_Group], drops: dict[tuple[str, str], int], final: bool
    ) -> tuple[list[Captured], int, int]:
        """On the writer's thread: build the lines, write each object. Returns the records to try again,
        and how many were written and dropped."""
        again: list[Captured] = []
        written = dropped = 0
        for group in groups:
            try:
                body = b"".join(record_line(record, str(uuid.uuid4())) for record in group.records)
                uri = object_uri(group.destination, group.endpoint, group.variant, group.records[0].at)
                self.access.check(group.destination, DESTINATION_FIELD)
                write_object(uri, body, DESTINATION_FIELD, CONTENT_TYPE)
            except ObjectError as exc:
                for record in group.records:
                    record.attempts += 1
                retry = exc.transient and not final and group.records[0].attempts < MAX_ATTEMPTS
                if retry:
                    again.extend(group.records)
                else:
                    dropped += len(group.records)
                self._tell(group.endpoint, _write_failed(group, exc, retry, self.settings.flush_seconds))
                continue
            except Exception:  # a fault of this server's: these records are lost, the others still written
                log.exception(
                    "data capture: %d record(s) of endpoint %s failed", len(group.records), group.endpoint
                )
                dropped += len(group.records)
                continue
            written += len(group.records)
        for (endpoint, variant), count in drops.items():
            self._tell(endpoint, _no_room(variant, count, self.settings.max_buffer_bytes))
        return again, written, dropped

    def _tell(self, endpoint: str, message: str) -> None:
        log.warning("endpoint %s: %s", endpoint, message)
        if self.logs is not None:
            try:
                self.logs.write(endpoint, message)
            except OSError:
                log.exception("could not write to the log of endpoint %s", endpoint)


def _groups(batch: list[Captured]) -> list[_Group]:
    """The records of a batch by destination, endpoint, variant and hour, in the order they came."""
    out: dict[tuple[str, str, str, int], list[Captured]] = defaultdict(list)
    for record in batch:
        out[(record.spec.destination, record.endpoint, record.variant, record.hour)].append(record)
    return [
        _Group(where, endpoint, variant, records) for (where, endpoint, variant, _), records in out.items()
    ]


def _write_failed(group: _Group, exc: ObjectError, retry: bool, flush_seconds: float) -> str:
    outcome = (
        f"they are tried again within {flush_seconds:g} s"
        if retry
        else "they are dropped; fix the destination (or the S3 store) and later requests are captured"
    )
    return (
        f"data capture: {len(group.records)} record(s) of variant {group.variant} could not be written: "
        f"{exc} ({outcome})."
    )


def _after_close(variant: str) -> str:
    return (
        f"data capture: records of variant {variant} answered after the server stopped writing captured "
        "data (it was shutting down) are dropped."
    )


def _no_room(variant: str, count: int, limit: int) -> str:
    return (
        f"data capture: {count} record(s) of variant {variant} were dropped: captured data waiting to be "
        f"written had reached the limit of {limit / MIB:g} MiB (MOORAGE_CAPTURE_MAX_BUFFER_BYTES; a "
        "request and response larger than that are never captured). The destination may be slow or "
        "unreachable, or the sampling percentage too high for this traffic."
    )
