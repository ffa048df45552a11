"""Local instances forked from a zygote (moorage/serving/zygote.py): a pre-started process per Python
interpreter with the serving runtime and common libraries imported, asked over a Unix socket to fork an
instance. Used for serverless instances, whose start is a request's cold start; anything that goes
wrong with a zygote falls back to starting the instance as a fresh process, as for any other instance.

Set MOORAGE_ZYGOTE=0 to turn it off; MOORAGE_ZYGOTE_PRELOAD lists the libraries it imports."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from moorage.lifeline import PARENT_PID_VARIABLE
from moorage.serving.settings import THREAD_VARIABLES

log = logging.getLogger("moorage.compute")

ENABLE_VARIABLE = "MOORAGE_ZYGOTE"
_READY_TIMEOUT = 60.0
_ANSWER_TIMEOUT = 10.0
# read by the interpreter or the C library as the process starts (sys.path, the hash seed, the
# allocator, the dynamic loader): a fork keeps the zygote's, so an instance whose environment sets them
# differently starts afresh
_STARTUP_PREFIXES = ("PYTHON", "LD_", "MALLOC_")
# a zygote that failed is not started again before this long (doubling per failure in a row, up to
# the maximum); meanwhile instances start afresh at once
_RETRY_INITIAL_SECONDS = 60.0
_RETRY_MAX_SECONDS = 3600.0


class ForkedProcess:
    """What LocalInstance uses of an asyncio Process, for an instance the zygote forked: the zygote is its
    parent, so its exit status arrives over the connection that asked for it."""

    def __init__(self, pid: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._reader = reader
        self._writer = writer
        self._exited = asyncio.ensure_future(self._follow())

    async def _follow(self) -> int:
        try:
            code = int(json.loads(await self._reader.readline())["exit"])
        except (OSError, ValueError, KeyError, TypeError):  # the zygote went away: so does its child
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            code = -int(signal.SIGKILL)
        self.returncode = code
        self._writer.close()
        return code

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:  # once reaped, the pid may belong to someone else
            os.kill(self.pid, sig)


class _Zygote:
    def __init__(self, process: asyncio.subprocess.Process, socket_path: Path) -> None:
        self.process = process
        self.socket_path = socket_path


class Zygotes:
    """One zygote per Python interpreter, started on first use (or `prewarm`) and kept."""

    def __init__(self, run_dir: Path, environ: Mapping[str, str] = os.environ) -> None:
        self.run_dir = run_dir
        self.enabled = environ.get(ENABLE_VARIABLE, "1") not in ("0", "off", "false")
        self._zygotes: dict[str, asyncio.Task[_Zygote | None]] = {}
        # failures in a row per interpreter, and when a zygote may be started again
        self._failures: dict[str, tuple[int, float]] = {}

    def eligible(self, environment: Mapping[str, str]) -> bool:
        """Whether an instance with this environment may be forked: its thread settings are those the
        zygote's libraries were imported with, and what the interpreter and the C library read as a
        process starts (PYTHON*, LD_*, MALLOC_*) is what the zygote started with."""
        if not self.enabled:
            return False
        if any(
            environment.get(name, os.environ.get(name, "1")) != os.environ.get(name, "1")
            for name in THREAD_VARIABLES
        ):
            return False
        startup = {n for n in (*environment, *os.environ) if n.startswith(_STARTUP_PREFIXES)}
        return all(environment.get(name) == os.environ.get(name) for name in startup)

    def prewarm(self, python: str) -> None:
        """Start the zygote for `python` now, so the first instance does not wait for it."""
        if self.enabled and python not in self._zygotes and not self._backing_off(python):
            self._zygotes[python] = asyncio.ensure_future(self._start(python))

    def _backing_off(self, python: str) -> bool:
        failed = self._failures.get(python)
        return failed is not None and time.monotonic() < failed[1]

    def _failed(self, python: str) -> None:
        count = self._failures.get(python, (0, 0.0))[0]
        wait = min(_RETRY_INITIAL_SECONDS * 2**count, _RETRY_MAX_SECONDS)
        self._failures[python] = (count + 1, time.monotonic() + wait)
        log.warning("instances for %s start afresh; the zygote is tried again in %.0f s", python, wait)

    async def spawn(
        self, python: str, argv: Sequence[str], env: Mapping[str, str], cwd: str, log_path: Path
    ) -> ForkedProcess | None:
        """Fork an instance running ``python -m moorage.serving ARGV``; None if no zygote could do it."""
        self.prewarm(python)
        task = self._zygotes.get(python)
        if task is None:  # it failed not long ago
            return None
        zygote = await asyncio.shield(task)
        if zygote is None or zygote.process.returncode is not None:
            if self._zygotes.get(python) is task:
                del self._zygotes[python]  # started again next time, after the back-off
                if zygote is not None:  # it started, then died
                    self._failed(python)
            return None
        request = {
            "argv": list(argv),
            "env": {**env, PARENT_PID_VARIABLE: str(zygote.process.pid)},
            "cwd": cwd,
            "log": str(log_path.absolute()),
        }
        try:
            reader, writer = await asyncio.open_unix_connection(str(zygote.socket_path))
            writer.write(json.dumps(request).encode() + b"\n")
            answer = json.loads(await asyncio.wait_for(reader.readline(), _ANSWER_TIMEOUT))
            return ForkedProcess(int(answer["pid"]), reader, writer)
        except (OSError, ValueError, KeyError, TypeError, TimeoutError) as exc:
            log.warning("the zygote for %s did not fork an instance (%s); starting it afresh", python, exc)
            return None

    async def _start(self, python: str) -> _Zygote | None:
        zygote = await self._launch(python)
        if zygote is None:
            self._failed(python)
        else:
            self._failures.pop(python, None)
        return zygote

    async def _launch(self, python: str) -> _Zygote | None:
        digest = hashlib.sha256(python.encode()).hexdigest()[:10]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        socket_path = self.run_dir / f"zygote-{digest}.sock"
        socket_path.unlink(missing_ok=True)
        env = {**os.environ, PARENT_PID_VARIABLE: str(os.getpid())}
        try:
            with open(self.run_dir / f"zygote-{digest}.log", "ab") as errors:
                process = await asyncio.create_subprocess_exec(
                    python,
                    "-m",
                    "moorage.serving.zygote",
                    str(socket_path),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=errors,
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            log.warning("the zygote for %s could not start: %s", python, exc)
            return None
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), _READY_TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            log.warning("the zygote for %s did not start; see %s", python, self.run_dir)
            await _stop(process)
            return None
        return _Zygote(process, socket_path)

    async def close(self) -> None:
        tasks = list(self._zygotes.values())
        self._zygotes.clear()
        for task in tasks:
            zygote = await task if task.done() else None
            if not task.done():
                task.cancel()
            if zygote is not None:
                await _stop(zygote.process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
