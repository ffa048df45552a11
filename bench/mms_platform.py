"""multi-model-server with the SageMaker inference toolkit in multi-model mode, and the part SageMaker's
platform plays in front of such a container, for bench/multimodel.py.

multi-model-server loads what it is told to (``POST /models``) and unloads what it is told to
(``DELETE /models/{name}``); on SageMaker the platform decides both. ``Platform`` does it here the way
the platform does: a request for a model that is not loaded first unpacks its archive (once; unpacked
models stay on disk), then loads it, unloading the least recently used idle models while the loaded
count would exceed ``capacity`` or the server answers 507; concurrent requests for a model being loaded
wait for that one load.

The server runs from a virtual environment at ``~/.cache/moorage-bench/mms`` (``pip install
multi-model-server sagemaker-inference numpy``, made on first use) with ``bench/mms/serve.py`` as the
container entrypoint and ``bench/mms/mme_handler_service.py`` as its handler service. It needs Java and
writes ``/etc/sagemaker-mms.properties`` (the toolkit's fixed path), restored when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from collections import Counter, OrderedDict
from pathlib import Path
from typing import IO

from procinfo import memory_kb
from rawclient import Connection

BENCH = Path(__file__).resolve().parent
VENV = Path.home() / ".cache" / "moorage-bench" / "mms"
PACKAGES = ("multi-model-server", "sagemaker-inference", "numpy")
PROPERTIES = Path("/etc/sagemaker-mms.properties")
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


def ensure_venv() -> Path:
    """The venv's python; creates the venv on first use."""
    python = VENV / "bin" / "python"
    if not (VENV / "bin" / "multi-model-server").exists():
        print(f"creating {VENV} ({' '.join(PACKAGES)})", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *PACKAGES], check=True, timeout=900, stdout=sys.stderr
        )
    if not shutil.which("java"):
        raise SystemExit("multi-model-server needs Java (>= 8) on PATH: apt-get install default-jre-headless")
    return python


def free_port() -> int:
    """A free loopback port under 32768: multi-model-server rejects higher ones ("Invalid port number")."""
    for port in random.Random().sample(range(20000, 32768), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32767")


def _stat(pid: int) -> tuple[int, int] | None:
    """(session id, start time) of a live process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return None if rest[0] == "Z" else (int(rest[3]), int(rest[19]))


class MmsServer:
    """``serve.py`` in its own session. The Java frontend it starts is orphaned by its launcher, so the
    server's processes are those of that session; each is remembered with its start time and stopped by pid.
    """

    def __init__(self, work: Path, port: int) -> None:
        self.port = port
        self.work = work
        self.tmp = work / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.seen: dict[int, int] = {}
        self._saved = PROPERTIES.read_bytes() if PROPERTIES.exists() else None
        python = ensure_venv()
        address = f"http://127.0.0.1:{port}"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "MMS_"))},
            "PATH": f"{VENV / 'bin'}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(BENCH / "mms"),
            "SAGEMAKER_MULTI_MODEL": "true",
            "SAGEMAKER_BIND_TO_PORT": str(port),
            "MMS_INFERENCE_ADDRESS": address,  # the toolkit writes 0.0.0.0; loopback only here
            "MMS_MANAGEMENT_ADDRESS": address,
            "OMP_NUM_THREADS": "1",
            "TMPDIR": str(self.tmp),  # the pid file, worker sockets and FIFOs
            "TEMP": str(self.tmp),
        }
        self.log: IO[bytes] = open(work / "mms.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [str(python), str(BENCH / "mms" / "serve.py")],
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def refresh(self) -> list[int]:
        live = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (st := _stat(int(entry))) and st[0] == self.proc.pid:
                self.seen.setdefault(int(entry), st[1])
                live.append(int(entry))
        return live

    def pss_kb(self) -> int:
        return sum(memory_kb(pid)[1] for pid in self.refresh())

    def _signal(self, sig: int) -> int:
        hit = 0
        for pid, start in self.seen.items():
            st = _stat(pid)
            if st is not None and st[1] == start:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                    hit += 1
        return hit

    def stop(self) -> None:
        self.refresh()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)  # serve.py passes it on to the frontend
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(
            (st := _stat(p)) is not None and st[1] == s for p, s in self.seen.items()
        ):
            time.sleep(0.2)
        if self._signal(signal.SIGTERM):  # workers the frontend left behind
            time.sleep(2)
            self._signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.log.close()
        if self._saved is None:
            PROPERTIES.unlink(missing_ok=True)
        else:
            PROPERTIES.write_bytes(self._saved)


class Platform:
    """What SageMaker does in front of a multi-model container: load on demand, evict LRU by count."""

    def __init__(self, archives: Path, unpacked: Path, capacity: int) -> None:
        self.archives, self.unpacked, self.capacity = archives, unpacked, capacity
        self.loaded: OrderedDict[str, None] = OrderedDict()  # least recently used first
        self.pinned: Counter[str] = Counter()  # requests between "loaded" and their answer
        self.loading: dict[str, asyncio.Future[None]] = {}
        self.unloading: dict[str, asyncio.Future[None]] = {}  # a model is loaded again only once gone
        self.busy_slots = 0  # loads and unloads under way
        self.loads = 0
        self.unloads = 0
        self.errors: list[str] = []

    def _unpack(self, name: str) -> Path:
        target = self.unpacked / name
        if not target.exists():
            part = self.unpacked / f".{name}.part"
            shutil.rmtree(part, ignore_errors=True)
            with tarfile.open(self.archives / f"{name}.tar.gz") as tar:
                tar.extractall(part, filter="data")
            part.rename(target)
        return target

    async def invoke(self, conn: Connection, name: str, body: bytes) -> tuple[int, bool]:
        try:
            hit = await self._acquire(conn, name)
        except RuntimeError as error:  # a load or unload the server refused
            self.errors.append(str(error))
            return 502, False
        try:
            response = await conn.request("POST", f"/models/{name}/invoke", body, JSON)
        finally:
            self.pinned[name] -= 1
        return response.status, hit

    async def _acquire(self, conn: Connection, name: str) -> bool:
        """Pins ``name`` loaded; True when it already was."""
        hit = True
        while name not in self.loaded:
            hit = False
            if name in self.loading or name in self.unloading:
                await asyncio.shield(self.loading.get(name) or self.unloading[name])
                continue
            future = asyncio.get_running_loop().create_future()
            self.loading[name] = future
            try:
                await self._load(conn, name)
            finally:
                del self.loading[name]
                future.set_result(None)
        self.loaded.move_to_end(name)
        self.pinned[name] += 1
        return hit

    async def _load(self, conn: Connection, name: str) -> None:
        directory = await asyncio.to_thread(self._unpack, name)
        for _ in range(self.capacity + 5):
            while len(self.loaded) + self.busy_slots >= self.capacity:
                if not await self._evict_one(conn):
                    await asyncio.sleep(0.005)  # everything loaded is in use
            self.busy_slots += 1
            try:
                answer = await conn.request(
                    "POST", "/models", json.dumps({"model_name": name, "url": str(directory)}).encode(), JSON
                )
            finally:
                self.busy_slots -= 1
            if answer.status == 200:
                self.loaded[name] = None
                self.loads += 1
                return
            if answer.status != 507 or not await self._evict_one(conn):
                raise RuntimeError(f"POST /models {name}: {answer.status} {answer.body[:300]!r}")
        raise RuntimeError(f"POST /models {name}: still 507 after unloading")

    async def _evict_one(self, conn: Connection) -> bool:
        victim = next((n for n in self.loaded if self.pinned[n] == 0), None)
        if victim is None:
            return False
        del self.loaded[victim]
        self.busy_slots += 1
        gone = self.unloading[victim] = asyncio.get_running_loop().create_future()
        try:
            answer = await conn.request("DELETE", f"/models/{victim}")
        finally:
            self.busy_slots -= 1
            del self.unloading[victim]
            gone.set_result(None)
        if answer.status != 200:
            raise RuntimeError(f"DELETE /models/{victim}: {answer.status} {answer.body[:300]!r}")
        self.unloads += 1
        return True
