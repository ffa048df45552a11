"""The instance main after loading: forks the workers, replaces dead ones, and shuts down on SIGTERM.

Signal handlers do nothing but wake the loop through `signal.set_wakeup_fd`; the loop reads which
signals arrived and acts, as uvicorn's multiprocess supervisor does with its signal queue.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import select
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass

from moorage.serving.app import App
from moorage.serving.settings import Settings
from moorage.serving.statefiles import StateFiles
from moorage.serving.worker import SUPERVISED_SIGNALS, parse_message, run_worker

logger = logging.getLogger("moorage.serving")

STOP_SECONDS = 10.0
_STEADY_SECONDS = 10.0  # a worker that lived this long resets the restart back-off
_MAX_BACKOFF_SECONDS = 5.0
_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@dataclass
class _Slot:
    index: int
    pid: int = 0
    started: float = 0.0
    listening: bool = False
    quick_deaths: int = 0
    restart_at: float | None = None


class Supervisor:
    """Runs until SIGTERM/SIGINT; `run` returns the exit status (0, or 3 when workers cannot start)."""

    def __init__(self, settings: Settings, app: App, files: StateFiles, model_fn_seconds: float) -> None:
        self._settings = settings
        self._app = app
        self._files = files
        self._model_fn_seconds = model_fn_seconds
        self._slots = [_Slot(index) for index in range(settings.workers)]
        self._wake_r, self._wake_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()
        for fd in (self._wake_r, self._wake_w, self._ready_r):
            os.set_blocking(fd, False)
        self._buffer = b""
        self._published: list[tuple[int, int, str]] | None = None  # (index, pid, address) in instance.json
        # TCP: each worker's listening socket is bound here, once, and inherited by every worker forked
        # for its slot, so a replaced worker keeps its address and the connections waiting on it
        self._listeners = (
            {slot.index: socket.create_server((settings.tcp_host, 0), backlog=1024) for slot in self._slots}
            if settings.tcp_host is not None
            else {}
        )
        self._stopping = False

    def run(self) -> int:
        for signum in SUPERVISED_SIGNALS:
            signal.signal(signum, _wake_only)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        gc.freeze()  # keeps the collector from touching, and so copying, the model's pages in workers
        for slot in self._slots:
            self._spawn(slot)
        while not self._stopping:
            select.select([self._wake_r, self._ready_r], [], [], self._timeout())
            self._read_signals()
            failure = self._read_messages() or self._reap()
            if failure:
                logger.error("the instance cannot start: %s", failure)
                self._files.write_failure(failure)
                self._stop_workers()
                return 3
            self._restart_due()
            self._publish()
        self._stop_workers()
        return 0

    def _address(self, index: int) -> str:
        listener = self._listeners.get(index)
        if listener is None:
            return str(self._files.socket(index))
        host, port = listener.getsockname()[:2]
        return f"tcp://{host}:{port}"

    def _spawn(self, slot: _Slot) -> None:
        listen = self._listeners.get(slot.index) or self._files.socket(slot.index)
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISED_SIGNALS)
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                for fd in (self._wake_r, self._wake_w, self._ready_r):
                    os.close(fd)
                for index, listener in self._listeners.items():  # a worker holds its own socket only
                    if index != slot.index:
                        listener.close()
                status = run_worker(slot.index, listen, self._app, self._settings, self._ready_w, parent)
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        slot.pid, slot.started, slot.listening, slot.restart_at = pid, time.monotonic(), False, None

    def _timeout(self) -> float:
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else 1.0

    def _read_signals(self) -> None:
        try:
            data = os.read(self._wake_r, 512)
        except BlockingIOError:
            return
        if any(signum in _STOP_SIGNALS for signum in data):
            logger.info("stopping")
            self._stopping = True

    def _read_messages(self) -> str | None:
        """Marks workers listening; returns a failure reason when one could not listen at start-up."""
        try:
            self._buffer += os.read(self._ready_r, 65536)
        except BlockingIOError:
            return None
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            kind, index, pid, text = parse_message(line.decode())
            slot = self._slots[index]
            if slot.pid != pid:
                continue
            if kind == "R":
                slot.listening = True
            elif self._published is None:
                return text
            else:
                logger.error("%s", text)
        return None

    def _reap(self) -> str | None:
        """Notices dead workers and schedules their replacement; at start-up a death is a failure."""
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None:
                continue
            try:
                pid, status = os.waitpid(slot.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status = slot.pid, 0
            if pid == 0:
                continue
            how = _how_it_ended(status)
            if self._published is None:
                return f"worker {slot.index} {how} before listening on {self._address(slot.index)}"
            slot.quick_deaths = slot.quick_deaths + 1 if now - slot.started < _STEADY_SECONDS else 0
            delay = min(0.05 * 2**slot.quick_deaths, _MAX_BACKOFF_SECONDS) if slot.quick_deaths else 0.0
            logger.warning("worker %d (pid %d) %s; restarting it in %.2f s", slot.index, pid, how, delay)
            slot.listening = False
            slot.restart_at = now + delay
        return None

    def _restart_due(self) -> None:
        now = time.monotonic()
        for slot in self._slots:
            if slot.restart_at is not None and slot.restart_at <= now:
                self._spawn(slot)

    def _publish(self) -> None:
        """Rewrites instance.json when every worker listens and some pid changed since the last write."""
        if not all(slot.listening for slot in self._slots):
            return
        workers = [(slot.index, slot.pid, self._address(slot.index)) for slot in self._slots]
        if self._published == workers:
            return
        self._files.write_instance(os.getpid(), self._model_fn_seconds, workers)
        if self._published is None:
            where = self._settings.tcp_host or self._settings.socket_dir
            logger.info("ready: %d workers listening on %s", len(workers), where)
        self._published = workers

    def _stop_workers(self) -> None:
        """SIGTERM, up to STOP_SECONDS for the workers to drain, then SIGKILL; removes the sockets."""
        alive = {slot.pid for slot in self._slots if slot.restart_at is None}
        for pid in alive:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while alive and time.monotonic() < deadline:
            select.select([self._wake_r], [], [], 0.05)
            self._read_signals()
            alive = {pid for pid in alive if not _exited(pid)}
        for pid in alive:
            logger.warning("worker pid %d did not stop in %.0f s; killing it", pid, STOP_SECONDS)
            _kill(pid, signal.SIGKILL)
            _exited(pid, block=True)
        self._files.remove_instance(len(self._slots))


def _wake_only(signum: int, frame: object) -> None:
    """The wakeup fd already carries the signal number to the loop."""


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _exited(pid: int, block: bool = False) -> bool:
    try:
        return os.waitpid(pid, 0 if block else os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def _how_it_ended(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"
