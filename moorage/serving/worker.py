"""One worker: a process forked from the instance main after the model is loaded, serving one socket.

Forking after model_fn means every worker shares the warm model copy-on-write and none loads it again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
from collections.abc import Callable
from pathlib import Path

from moorage.http.server import HttpServer
from moorage.lifeline import die_with_parent
from moorage.serving import logs
from moorage.serving.app import App
from moorage.serving.failure import one_line
from moorage.serving.settings import Settings

new_event_loop: Callable[[], asyncio.AbstractEventLoop]
try:
    from uvloop import new_event_loop
except ImportError:  # pragma: no cover - uvloop is a dependency everywhere but Windows
    new_event_loop = asyncio.new_event_loop

# Blocked around fork so a signal cannot run the main's handlers in a child that has not reset them.
SUPERVISED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
DRAIN_SECONDS = 8.0  # the main kills workers that are still running 10 s after SIGTERM


def run_worker(
    index: int, listen: Path | socket.socket, app: App, settings: Settings, ready_fd: int, parent: int
) -> int:
    """The body of the forked child; returns its exit status. Signals arrive blocked (see Supervisor)."""
    _reset_signals()
    die_with_parent(parent, signal.SIGKILL)  # a worker never outlives its instance's main process
    logs.configure(f"w{index}", settings.instance_id, settings.log_level)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    server = HttpServer(app, settings.max_body_bytes)
    return loop.run_until_complete(_serve(index, listen, server, ready_fd))


async def _serve(index: int, listen: Path | socket.socket, server: HttpServer, ready_fd: int) -> int:
    """`listen`: a Unix socket path to create, or a TCP socket the main process bound for this slot."""
    loop = asyncio.get_running_loop()
    try:
        if isinstance(listen, Path):
            _remove_stale_socket(listen)
            listener = await loop.create_unix_server(server, path=str(listen), backlog=1024)
        else:
            listener = await loop.create_server(server, sock=listen)
    except OSError as exc:
        _notify(ready_fd, f"E {index} {os.getpid()} worker {index} could not listen on {listen}: {exc}")
        return 1
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    _notify(ready_fd, f"R {index} {os.getpid()}")
    await stop.wait()
    listener.close()
    await server.drain(DRAIN_SECONDS)
    return 0


def parse_message(line: str) -> tuple[str, int, int, str]:
    """(kind, worker index, worker pid, text): kind "R" is listening, "E" could not listen."""
    kind, index, pid, *rest = line.split(" ", 3)
    return kind, int(index), int(pid), rest[0] if rest else ""


def _notify(fd: int, message: str) -> None:
    # One write below PIPE_BUF is atomic, so messages from several workers never interleave.
    os.write(fd, (one_line(message)[:1000] + "\n").encode())


def _reset_signals() -> None:
    """Undo the main's handlers: SIGTERM drains this worker, SIGINT (Ctrl-C on the group) is the main's."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SUPERVISED_SIGNALS)


def _remove_stale_socket(path: Path) -> None:
    try:
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()
    except FileNotFoundError:
        pass
