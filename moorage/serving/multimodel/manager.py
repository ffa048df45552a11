"""The multi-model instance main: one asyncio process that serves HTTP on the instance's one worker
address and runs each loaded model as a single-model instance of its own (a child process group), or,
with MOORAGE_MME_COMMAND, starts the image's own multi-model server and loads the models into it.

Same command line and state files as a single-model instance: SOCKDIR/instance.json lists one worker
(this process) once it listens; SOCKDIR/failure.json and exit status 3 when it cannot start. SIGTERM
stops the model processes (or the server), then this one. An image server that exits on its own takes
this process with it (status 1): the instance is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from moorage.artifacts.fetch import use_store
from moorage.compute.base import InstanceStartError
from moorage.compute.local import LocalProvider
from moorage.http.server import HttpServer
from moorage.serving import logs
from moorage.serving.errors import StartupFailure
from moorage.serving.failure import one_line
from moorage.serving.multimodel.app import MultiModelApp
from moorage.serving.multimodel.backend import ModelBackend
from moorage.serving.multimodel.cache import ModelCache
from moorage.serving.multimodel.container import ContainerBackend, ModelServer
from moorage.serving.multimodel.processes import STARTUP_TIMEOUT, ProcessBackend
from moorage.serving.multimodel.settings import MultiModelSettings, take_settings
from moorage.serving.settings import DEFAULT_MAX_BODY_BYTES, Arguments, parse_arguments
from moorage.serving.statefiles import StateFiles

logger = logging.getLogger("moorage.serving.multimodel")

FAILED = 3
SERVER_EXITED = 1
DRAIN_SECONDS = 5.0
_RUN_DIR_PREFIX = "moorage-mme-"
_MAX_RUN_DIR_CHARS = 78  # + "/m/" + "zygote-<10 hex>.sock" (or "m<n>/w<i>.sock") stays under 107


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    logs.configure("mme", os.environ.get("MOORAGE_INSTANCE_ID") or None, logging.INFO)
    args.socket_dir.mkdir(parents=True, exist_ok=True)
    files = StateFiles(args.socket_dir)
    files.clear()
    try:
        settings = take_settings(os.environ)
    except StartupFailure as failure:
        logger.error("the instance cannot start: %s", failure.reason)
        files.write_failure(failure.reason)
        return FAILED
    if settings.s3_store is not None:
        use_store(*settings.s3_store)
    return asyncio.run(_serve(args, settings, files))


async def _serve(args: Arguments, settings: MultiModelSettings, files: StateFiles) -> int:
    run_dir = _run_dir(args.socket_dir)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log_path = _model_log(args.socket_dir)
    backend: ModelBackend
    image_server: ModelServer | None = None
    if settings.command is None:
        provider = LocalProvider(run_dir)
        provider.prewarm(sys.executable)  # models without their own environment fork from it
        backend = ProcessBackend(provider, settings.model_workers, log_path)
    else:
        try:
            image_server = await ModelServer.start(
                settings.command, settings.python, args.model_dir, log_path, STARTUP_TIMEOUT
            )
        except InstanceStartError as exc:
            files.write_failure(one_line(f"the multi-model instance's model server did not start: {exc}"))
            shutil.rmtree(run_dir, ignore_errors=True)
            return FAILED
        backend = ContainerBackend(image_server)
    cache = ModelCache(settings, backend, publish=files.write_processes)
    server = HttpServer(MultiModelApp(cache), DEFAULT_MAX_BODY_BYTES)
    try:
        listener, address = await _listen(loop, server, files, args.tcp_host)
    except OSError as exc:
        reason = one_line(f"the multi-model instance cannot listen: {exc}")
        files.write_failure(reason)
        await backend.close([])
        shutil.rmtree(run_dir, ignore_errors=True)
        return FAILED
    cache.start()
    files.write_instance(os.getpid(), 0.0, [(0, os.getpid(), address)])
    logger.info("multi-model instance ready on %s (models from %s)", address, settings.source)
    status = await _until_stopped(stop, image_server)
    logger.info("stopping: unloading %d models", len(cache.loaded))
    listener.close()
    await server.drain(0.0 if status else DRAIN_SECONDS)
    await cache.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    files.remove_instance(1)
    return status


async def _until_stopped(stop: asyncio.Event, image_server: ModelServer | None) -> int:
    """0 after SIGTERM; SERVER_EXITED once the image's model server exits on its own."""
    stopped = asyncio.ensure_future(stop.wait())
    if image_server is None:
        await stopped
        return 0
    exited = asyncio.ensure_future(image_server.wait())
    await asyncio.wait((stopped, exited), return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        exited.cancel()
        return 0
    stopped.cancel()
    logger.error(
        "the model server `%s` exited with status %s; stopping this instance so that it is replaced",
        image_server.command,
        exited.result(),
    )
    return SERVER_EXITED


async def _listen(
    loop: asyncio.AbstractEventLoop, server: HttpServer, files: StateFiles, tcp_host: str | None
) -> tuple[asyncio.Server, str]:
    if tcp_host is None:
        path = files.socket(0)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
        return await loop.create_unix_server(server, path=str(path), backlog=1024), str(path)
    family = socket.AF_INET6 if ":" in tcp_host else socket.AF_INET
    listener = await loop.create_server(server, host=tcp_host, port=0, family=family, backlog=1024)
    host, port = listener.sockets[0].getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return listener, f"tcp://{shown}:{port}"


def _run_dir(socket_dir: Path) -> Path:
    """Where the models' sockets go: inside the socket directory (removed with it, even after a crash)
    unless that would make a Unix socket path longer than the 107 bytes allowed. Then a temporary
    directory named after this process, so that one an instance killed outright left behind is removed
    by the next that starts."""
    if len(str(socket_dir)) <= _MAX_RUN_DIR_CHARS:
        run_dir = socket_dir / "m"
        run_dir.mkdir(exist_ok=True)
        return run_dir
    _remove_stale_run_dirs(Path(tempfile.gettempdir()))
    return Path(tempfile.mkdtemp(prefix=f"{_RUN_DIR_PREFIX}{os.getpid()}-"))


def _remove_stale_run_dirs(parent: Path) -> None:
    for path in parent.glob(f"{_RUN_DIR_PREFIX}*-*"):
        pid = path.name[len(_RUN_DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's
        return True
    return True


def _model_log(socket_dir: Path) -> Path:
    """The model processes write where this process does (the endpoint log) when that is a file."""
    with contextlib.suppress(OSError):
        target = Path(os.readlink("/proc/self/fd/1"))
        if target.is_file():
            return target
    return socket_dir / "models.log"
