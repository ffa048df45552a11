"""The zygote: a pre-started process with the serving runtime and common libraries already imported,
which forks a new instance on request instead of the server starting a fresh interpreter. A local-only
optimisation for serverless cold starts (docs/serverless.md): a fork skips the interpreter start and the
imports (numpy alone takes ~0.1-0.2 s), so an instance is warm in the time its model takes to load.

Launch: ``python -m moorage.serving.zygote SOCKET``. Protocol, one Unix connection per instance: the
server sends one JSON line ``{"argv", "env", "cwd", "log"}``; the zygote forks, answers ``{"pid": N}``,
and when that child exits, ``{"exit": CODE}`` (a negative signal number when killed), then closes.

The child becomes what ``python -m moorage.serving ARGV`` would be: its own session (process group),
stdout and stderr to the log, the given directory and environment, the parent-death signal tied to the
zygote (which is tied to the server). Thread settings (OMP_NUM_THREADS and the like) are read once by
the libraries the zygote imports, so the server forks only instances whose environment leaves them at
the runtime's default of one thread (moorage/compute/zygote.py)."""

from __future__ import annotations

import contextlib
import errno
import importlib
import importlib.util
import json
import os
import selectors
import signal
import socket
import sys
import time
from typing import Any

PRELOAD_VARIABLE = "MOORAGE_ZYGOTE_PRELOAD"
DEFAULT_PRELOAD = "numpy,pydantic"


def preload(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    """Import the serving runtime and the listed libraries that this Python has; returns those imported."""
    from moorage.serving.settings import limit_threads

    limit_threads(environ)  # before numpy: the instances run one BLAS thread per worker
    importlib.import_module("moorage.serving.instance")
    loaded = []
    for name in filter(None, (n.strip() for n in environ.get(PRELOAD_VARIABLE, DEFAULT_PRELOAD).split(","))):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
            loaded.append(name)
    return loaded


def _child(request: dict[str, Any], closing: list[socket.socket]) -> int:
    """In the forked child: become the instance and run it."""
    for sock in closing:
        sock.close()
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.close(null)
    # the zygote's own descriptors (copies of what the server spawned it with: its log, its stdout
    # pipe) are not the instance's; it needs only 0-2
    os.closerange(3, _max_fd())
    _reseed()
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]  # `python -m` puts the working directory first; the instance's is this
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["moorage.serving", *request["argv"]]
    from moorage.serving.__main__ import run

    return run()  # as `python -m moorage.serving` does


def _max_fd() -> int:
    try:
        return max(3, os.sysconf("SC_OPEN_MAX"))
    except (ValueError, OSError):
        return 65536


def _reseed() -> None:
    """Each instance draws its own random numbers: numpy's global state was seeded once, in the zygote
    (Python's `random` is reseeded at fork already; again here costs nothing)."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        with contextlib.suppress(Exception):
            numpy_random.seed()
    stdlib_random = sys.modules.get("random")
    if stdlib_random is not None:
        stdlib_random.seed()


class Zygote:
    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(64)
        self.children: dict[int, socket.socket] = {}
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        # held to be given up when out of descriptors: the connection waiting is then accepted and
        # closed at once, so the server starts that instance afresh instead of waiting for an answer
        self._reserve: int | None = os.open(os.devnull, os.O_RDONLY)

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self._wake_w)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self._wake_r, selectors.EVENT_READ, "child")
        while True:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self._accept()
                else:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_r, 512):
                            pass
            self._reap()

    def _accept(self) -> None:
        """Fork the instance one connection asks for. Nothing that goes wrong here (out of descriptors,
        of memory, of processes) ends the zygote: the instances it forked live as long as it does. The
        connection is closed instead, and the server starts that instance afresh."""
        try:
            conn, _ = self.listener.accept()
        except OSError as exc:
            self._refuse_one(exc)
            return
        try:
            with conn.makefile("rb") as reader:
                request = json.loads(reader.readline())
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
        except (OSError, ValueError) as exc:
            print(f"zygote: could not fork an instance: {exc}", file=sys.stderr, flush=True)
            conn.close()
            return
        if pid == 0:
            code = 1
            try:
                self.selector.close()
                os.close(self._wake_r)
                os.close(self._wake_w)
                if self._reserve is not None:
                    os.close(self._reserve)
                code = _child(request, [self.listener, conn, *self.children.values()])
            finally:
                os._exit(code)
        self.children[pid] = conn
        self._send(conn, {"pid": pid})

    def _refuse_one(self, exc: OSError) -> None:
        """accept() failed: with descriptors to spare it is transient (the peer went away); out of them,
        the reserve one makes room to take the waiting connection and close it, so it is not retried
        (the listener stays readable) in a busy loop."""
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            return
        print(f"zygote: could not accept a connection: {exc}", file=sys.stderr, flush=True)
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None
        try:
            conn, _ = self.listener.accept()
            conn.close()
        except OSError:
            time.sleep(0.1)  # no room even so: do not spin; the server times the request out
        with contextlib.suppress(OSError):
            self._reserve = os.open(os.devnull, os.O_RDONLY)

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                self._send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                conn.close()

    @staticmethod
    def _send(conn: socket.socket, message: dict[str, int]) -> None:
        with contextlib.suppress(OSError):  # the server gave up on this instance already
            conn.sendall(json.dumps(message).encode() + b"\n")


def main(argv: list[str]) -> int:
    from moorage.lifeline import start_model_process

    start_model_process(os.environ)  # dies with the server; its children die with it
    zygote = Zygote(argv[0])
    preload(os.environ)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    zygote.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
