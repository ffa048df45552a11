"""The server's end of its capture process (process.py): starts it, hands it frames without ever
blocking the event loop, and reads its answers on the loop.

Frames are written to the process's stdin, a non-blocking pipe (made PIPE_BYTES large where Linux
allows), on the loop: what the pipe does not take at once waits here and is written as the pipe drains
(the server bounds what waits, writer.py). No thread: a thread would need the interpreter lock, and
the loop would wait for it. The process is started from the event loop's thread, the one whose exit
PR_SET_PDEATHSIG watches (moorage/lifeline.py)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

import moorage
from moorage.capture.wire import AckReader

# the folder moorage is imported from, so the capture process imports the same code
_ROOT = str(Path(moorage.__file__).resolve().parent.parent)
PIPE_BYTES = 1 << 20  # Linux's default most for an unprivileged process
_F_SETPIPE_SZ = 1031


class Channel:
    def __init__(
        self,
        argument: str,
        on_ack: Callable[[int, int, int, int], None],
        on_exit: Callable[[int | None], None],
    ) -> None:
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": _ROOT + (os.pathsep + path if path else "")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moorage.capture.process", argument],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in = self.process.stdin
        self._stdin = self._in.fileno()
        self._out = self.process.stdout
        self._stdout = self._out.fileno()
        os.set_blocking(self._stdin, False)
        os.set_blocking(self._stdout, False)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._stdin, _F_SETPIPE_SZ, PIPE_BYTES)
        self._on_ack, self._on_exit = on_ack, on_exit
        self._acks = AckReader()
        self._waiting: deque[memoryview] = deque()  # what the pipe has not taken yet
        self._closing = False
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._stdout, self._readable)
        self.alive = True

    def send(self, head: bytes, body: bytes) -> None:
        """Write one frame, or as much of it as the pipe takes now (never blocks)."""
        if self._closing or not self.alive:
            return
        if self._waiting:
            self._waiting += (memoryview(head), memoryview(body))
            return
        try:
            written = os.writev(self._stdin, (head, body))
        except BlockingIOError:
            written = 0
        except OSError:  # the process is gone (its end is seen by the reader): this frame is lost
            return
        if written < len(head):
            self._waiting += (memoryview(head)[written:], memoryview(body))
        elif written < len(head) + len(body):
            self._waiting.append(memoryview(body)[written - len(head) :])
        if self._waiting:
            self._loop.add_writer(self._stdin, self._writable)

    def _writable(self) -> None:
        waiting = self._waiting
        try:
            while waiting:
                view = waiting[0]
                written = os.write(self._stdin, view)
                if written < len(view):
                    waiting[0] = view[written:]
                    return
                waiting.popleft()
        except BlockingIOError:
            return
        except OSError:  # the process is gone: what waits is lost
            waiting.clear()
        self._loop.remove_writer(self._stdin)
        if self._closing:
            self._close_stdin()

    def _close_stdin(self) -> None:
        with contextlib.suppress(OSError):
            self._in.close()

    async def close(self, timeout: float) -> bool:
        """No more frames: the process writes what it has and exits. False when it did not within
        `timeout` seconds (it is killed then)."""
        self._closing = True
        if not self._waiting:
            self._close_stdin()
        deadline = self._loop.time() + timeout
        while self.process.poll() is None or self.alive:
            if self._loop.time() > deadline:
                self.process.kill()
                await asyncio.to_thread(self.process.wait)
                self._stop_reading()
                if self._waiting:
                    self._loop.remove_writer(self._stdin)
                    self._waiting.clear()
                    self._close_stdin()
                return False
            await asyncio.sleep(0.01)
        return True

    def _readable(self) -> None:
        try:
            data = os.read(self._stdout, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the process has exited (or is about to): nothing more can reach it
            self._stop_reading()
            if self._waiting:
                self._loop.remove_writer(self._stdin)
                self._waiting.clear()
            self._close_stdin()
            self._on_exit(self.process.poll())
            return
        for ack in self._acks.feed(data):
            self._on_ack(*ack)

    def _stop_reading(self) -> None:
        if self.alive:
            self.alive = False
            self._loop.remove_reader(self._stdout)
            with contextlib.suppress(OSError):
                self._out.close()
