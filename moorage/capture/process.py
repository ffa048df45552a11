"""The capture process: a child of the server that turns captured requests into JSON Lines objects, so
that work (escaping, base64, ids, S3 writes) takes no time from the server's event loop.

``python -m moorage.capture.process '<json options>'``: reads frames (wire.py) on stdin, writes what
waits every MOORAGE_CAPTURE_FLUSH_SECONDS (sooner once a quarter of MOORAGE_CAPTURE_MAX_BUFFER_BYTES waits,
or when the server asks), and answers each write on stdout. At end of input (the server closed the pipe
at shutdown) it writes everything and exits. It ignores SIGINT and SIGTERM, which a terminal or a
supervisor may send to the whole process group: the server decides when it stops, by closing the pipe;
and it dies with the server (moorage/lifeline.py) should the server be killed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import sys
import time
from pathlib import Path
from typing import Any

from moorage import lifeline
from moorage.artifacts.fetch import use_store
from moorage.capture.batches import Batches, Outcome
from moorage.capture.records import Target
from moorage.capture.settings import CaptureSettings
from moorage.capture.wire import ACK, FrameReader
from moorage.jobs.local_access import LocalAccess
from moorage.logs import EndpointLogs

log = logging.getLogger("moorage.capture")
READ_BYTES = 1 << 20
# the capture process's niceness: its work can wait (the memory bound caps how long), the requests it
# shares the machine's CPUs with cannot, so the scheduler gives them the CPU first
NICE = 10


def options(
    settings: CaptureSettings,
    log_dir: str | None,
    access: LocalAccess,
    store: tuple[str, bool] | None,
    log_level: int,
) -> str:
    """The command-line argument that hands the server's settings to the capture process."""
    return json.dumps(
        {
            "parent": os.getpid(),
            "flush_seconds": settings.flush_seconds,
            "max_buffer_bytes": settings.max_buffer_bytes,
            "log_dir": log_dir,
            "restricted": access.restricted,
            "local_data_root": access.root,
            "store": store,
            "log_level": log_level,
        }
    )


class CaptureProcess:
    def __init__(self, batches: Batches, stdin: int = 0, stdout: int = 1) -> None:
        self.batches = batches
        self.stdin, self.stdout = stdin, stdout
        self.frames = FrameReader()
        self.flushed = 0  # the last flush number the server asked for and that is done
        self.since: float | None = None  # when the oldest record still waiting came

    def run(self) -> None:
        settings = self.batches.settings
        while True:
            timeout = None if self.since is None else max(0.0, self.since + settings.flush_seconds - _now())
            ready, _, _ = select.select([self.stdin], [], [], timeout)
            if not ready:
                self.write()
                continue
            data = os.read(self.stdin, READ_BYTES)
            if not data:  # the server closed the pipe: the last records are all here
                self.write(final=True)
                return
            wanted = 0
            for weight, (targets, drops, records, flush) in self.frames.feed(data):
                self.take(weight, targets, drops, records)
                wanted = max(wanted, flush)
            if wanted or self.batches.weight >= settings.flush_bytes:
                self.flushed = max(self.flushed, wanted)
                self.write()

    def take(self, weight: int, targets: Any, drops: Any, records: Any) -> None:
        batches = self.batches
        for number, target in targets:
            batches.target(number, Target.from_wire(target))
        for endpoint, variant, count in drops:
            batches.drops(endpoint, variant, count)
        if records:
            batches.add(records, weight)
            if self.since is None:
                self.since = _now()
        elif weight:  # nothing but targets and drops: nothing to hold
            self._answer(Outcome(released=weight))

    def write(self, final: bool = False) -> None:
        outcome = self.batches.write(final)
        self.since = _now() if self.batches.weight else None  # what is tried again waits its turn
        self._answer(outcome)

    def _answer(self, outcome: Outcome) -> None:
        message = ACK.pack(outcome.released, outcome.written, outcome.dropped, self.flushed)
        with contextlib.suppress(BrokenPipeError):  # the server is gone; what is written is written
            os.write(self.stdout, message)  # 20 bytes: whole, or not at all


def _now() -> float:
    return time.monotonic()


def _yield_the_cpu() -> None:
    """Lower this process's priority: NICE, and Linux's SCHED_BATCH (its waking up preempts no one)."""
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICE)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main(argv: list[str]) -> None:
    given = json.loads(argv[0])
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lifeline.die_with_parent(int(given["parent"]), signal.SIGKILL)
    _yield_the_cpu()
    logging.basicConfig(
        level=int(given["log_level"]), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if given["store"] is not None:
        use_store(*given["store"])
    settings = CaptureSettings(float(given["flush_seconds"]), int(given["max_buffer_bytes"]))
    logs = EndpointLogs(Path(given["log_dir"])) if given["log_dir"] else None
    access = LocalAccess(bool(given["restricted"]), given["local_data_root"])
    CaptureProcess(Batches(settings, logs, access)).run()


if __name__ == "__main__":
    main(sys.argv[1:])
