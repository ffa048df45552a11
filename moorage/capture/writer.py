"""This server's capture writer: collects the captured requests on the event loop and hands them, in
batches, to the capture process (process.py), which makes the JSON lines and writes the objects.

A sampled request costs the request path one list append (taps.py). Every HARVEST_SECONDS the writer
takes the answered ones from that list (a request still running stays for the next time; one that ended
in an error is left out), makes each a tuple of plain values and sends them all as one marshal'd frame
(wire.py); the process writes them within MOORAGE_CAPTURE_FLUSH_SECONDS (settings.py).

Memory: the bytes handed to the process and not yet written (each frame's size, plus a fixed cost per
record: RECORD_OVERHEAD_BYTES) never exceed MOORAGE_CAPTURE_MAX_BUFFER_BYTES; the process says what it
has written or dropped, which makes room again. A record that does not fit is dropped and counted, and
the endpoint log says how many.

`close` (the server's shutdown, before its S3 store stops) waits up to FINAL_WAIT_SECONDS for the
captured requests still running, sends what is left, closes the pipe, and waits up to CLOSE_SECONDS for
the process to write everything and exit: a SIGTERM loses nothing that was captured. A capture process
that dies is logged and started again with the next batch (what it held is counted as lost).

Taps on this server reach it through `current_writer` (one writer per server process: `start` installs
it, `close` removes it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import marshal
from collections import defaultdict
from time import time
from typing import TYPE_CHECKING, Any

from moorage.artifacts.fetch import current_store
from moorage.capture.channel import Channel
from moorage.capture.process import options
from moorage.capture.records import Record, Target
from moorage.capture.settings import CaptureSettings
from moorage.capture.wire import MAX_FRAME, frame, head
from moorage.jobs.local_access import LocalAccess
from moorage.logs import EndpointLogs

if TYPE_CHECKING:
    from moorage.capture.taps import CaptureTap
    from moorage.dataplane.invoke import Invocation, InvocationResult

log = logging.getLogger("moorage.capture")
# how often the answered requests are collected and handed to the capture process
HARVEST_SECONDS = 0.05
# what a record costs the capture process besides its bytes (its tuple and place in a batch: about 200
# bytes measured, rounded up)
RECORD_OVERHEAD_BYTES = 256
# the longest shutdown waits for captured requests still running
FINAL_WAIT_SECONDS = 5.0
# the longest shutdown waits for the last batches to be written
CLOSE_SECONDS = 30.0

Pending = tuple["CaptureTap", "Invocation", "asyncio.Future[InvocationResult]"]

_current: CaptureWriter | None = None


def current_writer() -> CaptureWriter | None:
    """The writer of this server (None before start-up, or where nothing started one)."""
    return _current


class _Late(list[Pending]):
    """What `pending` becomes once the writer is closed: answers still coming are dropped, counted, and
    logged once per variant."""

    def __init__(self, writer: CaptureWriter) -> None:
        super().__init__()
        self.writer = writer

    def append(self, entry: Pending) -> None:
        self.writer.late(entry[0].endpoint, entry[0].variant)


class CaptureWriter:
    def __init__(
        self, settings: CaptureSettings, logs: EndpointLogs | None = None, access: LocalAccess = LocalAccess()
    ) -> None:
        self.settings = settings
        self.logs = logs
        self.access = access  # with --credentials, local destinations only below --local-data-root
        self.written = 0  # records written, for tests and the log
        self.dropped = 0  # records never written: no room, refused by the store, or after close
        # sampled requests, in order: (tap, invocation, its future); the taps append here
        self.pending: list[Pending] = []
        self._ready: list[Record] = []  # answered outside the real-time path (asynchronous inference)
        self._targets: dict[int, Target] = {}  # every tap's, to tell a new capture process
        self._numbers: dict[Target, int] = {}
        self._new_targets: list[tuple[int, Any]] = []  # not yet told to the capture process
        self._unreported: dict[tuple[str, str], int] = defaultdict(int)  # drops not yet in the endpoint log
        self._late: set[tuple[str, str]] = set()  # variants whose records came after close (logged)
        self._held = 0  # weight handed to the capture process and not yet written or dropped
        self._sent = 0  # records handed to the current capture process
        self._done = 0  # of those, written or dropped
        self._flushes = 0  # flush numbers asked for
        self._flushed = 0  # the last one done
        self._flush_done = asyncio.Event()
        self._channel: Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False

    @property
    def held(self) -> int:
        """Bytes counted as held: handed to the capture process and not yet written or dropped."""
        return self._held

    def start(self) -> None:
        """Collect and hand over captured requests from now on (on the running loop), and be the writer
        this server's taps use."""
        global _current
        _current = self
        self._channel = self._open()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="data-capture")

    def register(self, target: Target) -> int:
        """A tap's number, its records' first field; the capture process learns its target once. Taps
        with the same target share it (a tap is rebuilt with each route change on a server that does not
        reconcile)."""
        number = self._numbers.get(target)
        if number is not None:
            return number
        number = self._numbers[target] = len(self._targets) + 1
        self._targets[number] = target
        self._new_targets.append((number, target.to_wire()))
        return number

    def answered(self, tap: CaptureTap, record: Record) -> None:
        """A record made outside the real-time path (asynchronous inference), sent with the next batch."""
        if self._closed:
            self.late(tap.endpoint, tap.variant)
        else:
            self._ready.append(record)

    def late(self, endpoint: str, variant: str) -> None:
        """An answer that arrived after shutdown wrote the last batch (rare: past the drain)."""
        self.dropped += 1
        if (endpoint, variant) not in self._late:  # said once per variant: a log write is file I/O
            self._late.add((endpoint, variant))
            self._tell(endpoint, _after_close(variant))

    async def _run(self) -> None:
        while not self._closing:
            await asyncio.sleep(HARVEST_SECONDS)
            if not self._closing:
                self.harvest()

    def harvest(self, flush: int = 0) -> None:
        """Hand the answered requests to the capture process (on the loop; a few hundred nanoseconds a
        record, and one marshal call). `flush`: a number the process answers once it has written them."""
        pending = self.pending
        if self._closed or not (pending or self._ready or self._new_targets or self._unreported or flush):
            return
        self.pending = keep = []
        records, self._ready = self._ready, []
        add = records.append
        at = time()  # when the answers were seen: within HARVEST_SECONDS of their arrival
        for entry in pending:
            tap, inv, future = entry
            if not future.done():
                keep.append(entry)
                continue
            try:
                response = future.result().response
            except BaseException:  # an error, a timeout, a cancelled copy: not captured
                continue
            output = tap.capture_output
            add(
                (
                    tap.number,
                    at,
                    inv.body if tap.capture_input else None,
                    inv.content_type,
                    response.body if output else None,
                    response.headers if output else None,
                    inv.inference_id,
                    inv.custom_attributes,
                )
            )
        if records or self._new_targets or self._unreported or flush:
            self._send(records, flush)

    async def flush(self) -> None:
        """Have everything answered so far written now (for tests and shutdown)."""
        self._flushes += 1
        number = self._flushes
        self.harvest(number)
        while self._flushed < number and self._channel is not None and self._channel.alive:
            self._flush_done.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_done.wait(), 1.0)

    def _send(self, records: list[Record], flush: int) -> None:
        if self._channel is None or not self._channel.alive:
            self._channel = self._open()  # started again after it died (logged there)
        targets, self._new_targets = self._new_targets, []
        drops = [(endpoint, variant, count) for (endpoint, variant), count in self._unreported.items()]
        self._unreported = defaultdict(int)
        body = frame((targets, drops, records, flush))
        weight = len(body) + RECORD_OVERHEAD_BYTES * len(records) if records else 0
        if records and (self._held + weight > self.settings.max_buffer_bytes or len(body) > MAX_FRAME):
            records = self._fitting(records, len(frame((targets, drops, [], flush))))
            body = frame((targets, drops, records, flush))
            weight = len(body) + RECORD_OVERHEAD_BYTES * len(records) if records else 0
        self._held += weight
        self._sent += len(records)
        self._channel.send(head(body, weight), body)

    def _fitting(self, records: list[Record], base: int) -> list[Record]:
        """The records that fit in the room left, in order; the others are dropped and counted."""
        room = min(self.settings.max_buffer_bytes - self._held, MAX_FRAME) - base
        kept = []
        for record in records:
            size = len(marshal.dumps(record)) + RECORD_OVERHEAD_BYTES
            if size <= room:
                kept.append(record)
                room -= size
            else:
                target = self._targets[record[0]]
                self.dropped += 1
                self._unreported[(target.endpoint, target.variant)] += 1
        return kept

    def _acknowledged(self, released: int, written: int, dropped: int, flushed: int) -> None:
        self._held -= released
        self._done += written + dropped
        self.written += written
        self.dropped += dropped
        if flushed > self._flushed:
            self._flushed = flushed
            self._flush_done.set()

    def _exited(self, code: int | None) -> None:
        lost = self._sent - self._done
        if not self._closing:
            log.error(
                "data capture: the capture process exited (status %s); %d record(s) it held are lost. "
                "It is started again with the next batch.",
                code,
                lost,
            )
        self.dropped += lost
        self._held = self._sent = self._done = 0
        self._new_targets = [(number, target.to_wire()) for number, target in self._targets.items()]
        self._flush_done.set()

    def _open(self) -> Channel:
        argument = options(
            self.settings,
            str(self.logs.log_dir) if self.logs is not None else None,
            self.access,
            current_store(),
            logging.getLogger().getEffectiveLevel(),
        )
        self._held = self._sent = self._done = 0
        return Channel(argument, self._acknowledged, self._exited)

    async def close(self) -> None:
        """Write everything captured so far, then stop; answers arriving later are dropped (counted)."""
        global _current
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FINAL_WAIT_SECONDS
        while any(not entry[2].done() for entry in self.pending) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        self.harvest()
        still_running, self.pending = self.pending, _Late(self)
        self._closed = True
        for tap, *_ in still_running:
            self.late(tap.endpoint, tap.variant)
        if self._unreported:  # drops counted by the last harvest, for the endpoint log
            self._send([], 0)
        channel = self._channel
        if channel is not None and channel.alive and not await channel.close(CLOSE_SECONDS):
            lost = self._sent - self._done
            log.error(
                "data capture: the last writes did not finish within %g s; at least %d record(s) lost",
                CLOSE_SECONDS,
                lost,
            )
            self.dropped += lost
        if _current is self:
            _current = None
        if self.written or self.dropped:
            log.info("data capture: %d record(s) written, %d dropped", self.written, self.dropped)

    def _tell(self, endpoint: str, message: str) -> None:
        log.warning("endpoint %s: %s", endpoint, message)
        if self.logs is not None:
            try:
                self.logs.write(endpoint, message)
            except OSError:
                log.exception("could not write to the log of endpoint %s", endpoint)


def _after_close(variant: str) -> str:
    return (
        f"data capture: records of variant {variant} answered after the server stopped writing captured "
        "data (it was shutting down) are dropped."
    )
