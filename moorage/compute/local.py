"""The local provider: each instance is an OS process group on this machine (`python -m moorage.serving`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from moorage.compute.base import InstanceSpec, InstanceStartError, ResourceUsage, WorkerAddress
from moorage.compute.command import CommandInstance, start_command
from moorage.compute.probe import PING, WorkerPings, signal_group
from moorage.compute.procfs import process_usage
from moorage.compute.zygote import ForkedProcess, Zygotes
from moorage.dataplane.connection import WorkerClient, WorkerLost, WorkerUnavailable
from moorage.lifeline import PARENT_PID_VARIABLE

_POLL_SECONDS = 0.01
_EXIT_WAIT_SECONDS = 0.5  # how long a killed worker gets to exit where no pidfd can tell


class LocalInstance:
    """A running instance process; its worker sockets live in `socket_dir`."""

    def __init__(
        self, instance_id: str, process: asyncio.subprocess.Process | ForkedProcess, socket_dir: Path
    ) -> None:
        self.instance_id = instance_id
        self.process = process
        self.socket_dir = socket_dir
        self.workers: list[WorkerAddress] = []
        self.placement = "this machine"
        self._pings = WorkerPings()

    def _worker_pids(self) -> dict[int, int]:
        try:
            info = json.loads((self.socket_dir / "instance.json").read_text())
        except (OSError, ValueError):
            return {}
        return {int(w["index"]): int(w["pid"]) for w in info.get("workers", [])}

    async def wait(self) -> int:
        return await self.process.wait()

    def kill_worker(self, index: int, on_gone: Callable[[], None]) -> None:
        pid = self._worker_pids().get(index)
        if pid is None:
            on_gone()
            return
        loop = asyncio.get_running_loop()
        try:
            watch = os.pidfd_open(pid)  # readable once the process has exited (Linux 5.3+)
        except (AttributeError, OSError):
            watch = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if watch is None:
            loop.call_later(_EXIT_WAIT_SECONDS, on_gone)  # no pidfd: allow a moment for the exit
            return

        def gone() -> None:
            loop.remove_reader(watch)
            os.close(watch)
            on_gone()

        loop.add_reader(watch, gone)

    def usage(self) -> ResourceUsage | None:
        if self.process.returncode is not None:
            return None
        pids = [self.process.pid, *self._worker_pids().values(), *self._other_pids()]
        return process_usage(pids)

    def _other_pids(self) -> list[int]:
        """A multi-model instance's loaded models (processes.json; absent for other instances)."""
        try:
            info = json.loads((self.socket_dir / "processes.json").read_text())
        except (OSError, ValueError):
            return []
        return [int(pid) for pid in info.get("pids", [])]

    async def ping(self, index: int, timeout: float) -> bool:
        return await self._pings.ping(self.workers, index, timeout)

    def _signal_group(self, sig: int) -> None:
        signal_group(self.process.pid, sig)

    async def stop(self, grace: float) -> None:
        self._pings.close()
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)
        self._signal_group(signal.SIGKILL)  # workers left behind by a main that died abruptly
        if self.process.returncode is None:
            await self.process.wait()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


class LocalProvider:
    """Spawns instances as child processes; `run_dir` must be short (Unix socket paths are ≤ 107 bytes).
    With `tcp_host`, workers listen on TCP at that address instead (instances that another machine's
    front door reaches: the Ray provider runs this provider on each node)."""

    outlives_server = False
    starts_containers = False  # compute/containers.py starts each container here

    def __init__(self, run_dir: Path, tcp_host: str | None = None) -> None:
        self.run_dir = run_dir
        self.tcp_host = tcp_host
        self.zygotes = Zygotes(run_dir)  # serverless instances fork from one (moorage/compute/zygote.py)

    def prewarm(self, python: str) -> None:
        """Start the zygote that instances with `fork_from_zygote` and this Python fork from."""
        self.zygotes.prewarm(python)

    async def open(self) -> None:
        """Nothing to connect to."""

    async def adopt(self) -> None:
        """Local instances die with the server that started them: there is never anything to adopt."""

    async def release(self, wanted: set[tuple[str, str, str]], grace: float) -> None:
        """Nothing was adopted."""

    async def close(self) -> None:
        """Stop the zygotes (the instances stop with their fleets)."""
        await self.zygotes.close()

    async def start(self, spec: InstanceSpec) -> LocalInstance | CommandInstance:
        if spec.command is not None:  # the image runs its own server (moorage/compute/command.py)
            return await start_command(spec, self.tcp_host or "127.0.0.1")
        socket_dir = self.run_dir / spec.instance_id
        socket_dir.mkdir(parents=True, exist_ok=True)
        for stale in ("instance.json", "failure.json"):  # only this start's files may decide its outcome
            (socket_dir / stale).unlink(missing_ok=True)
        env = {
            **os.environ,
            **spec.environment,
            "MOORAGE_INSTANCE_ID": spec.instance_id,
            # the instance ties its life to this server's as it starts (moorage/lifeline.py)
            PARENT_PID_VARIABLE: str(os.getpid()),
        }
        argv = [
            "--model-dir",
            str(spec.model_dir),
            "--socket-dir",
            str(socket_dir),
            *(("--tcp-host", self.tcp_host) if self.tcp_host else ()),
        ]
        process: asyncio.subprocess.Process | ForkedProcess | None = None
        if spec.fork_from_zygote and self.zygotes.eligible(env):
            process = await self.zygotes.spawn(spec.python, argv, env, str(spec.model_dir), spec.log_path)
        if process is None:
            with open(spec.log_path, "ab") as log:
                process = await asyncio.create_subprocess_exec(
                    spec.python,
                    "-m",
                    "moorage.serving",
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                    cwd=str(spec.model_dir),
                    start_new_session=True,
                )
        instance = LocalInstance(spec.instance_id, process, socket_dir)
        try:
            instance.workers = await self._until_ready(instance, spec.startup_timeout)
        except BaseException:
            await instance.stop(grace=2)
            raise
        return instance

    async def _until_ready(self, instance: LocalInstance, timeout: float) -> list[WorkerAddress]:
        deadline = time.monotonic() + timeout
        ready_file = instance.socket_dir / "instance.json"
        failure_file = instance.socket_dir / "failure.json"
        while True:
            if failure_file.exists():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(instance.process.wait(), 5)
                raise InstanceStartError(_failure_reason(failure_file))
            if instance.process.returncode is not None:
                raise InstanceStartError(
                    f"The instance process exited with status {instance.process.returncode} before it "
                    "became healthy. See the endpoint log for its output."
                )
            if ready_file.exists():
                break
            if time.monotonic() > deadline:
                raise InstanceStartError(
                    f"ContainerStartupHealthCheckTimeoutInSeconds ({timeout:.0f} s) passed while the "
                    "instance was still loading the model (model_fn had not returned). Raise "
                    "ContainerStartupHealthCheckTimeoutInSeconds or make model loading faster."
                )
            await asyncio.sleep(_POLL_SECONDS)
        info = json.loads(ready_file.read_text())
        workers = [WorkerAddress(int(w["index"]), str(w["address"])) for w in info["workers"]]
        await asyncio.gather(*(_ping_until_healthy(w.address, deadline, timeout) for w in workers))
        return workers


async def _ping_until_healthy(socket: str, deadline: float, bound: float) -> None:
    client = WorkerClient(socket, max_idle=1)
    try:
        while True:
            try:
                response = await client.request(PING, timeout=2.0)
                if response.status == 200:
                    return
            except (WorkerUnavailable, WorkerLost, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise InstanceStartError(
                    f"ContainerStartupHealthCheckTimeoutInSeconds ({bound:.0f} s) passed while the instance "
                    f"worker at {socket} was not answering GET /ping with 200."
                )
            await asyncio.sleep(_POLL_SECONDS)
    finally:
        client.close()


def _failure_reason(path: Path) -> str:
    try:
        reason = str(json.loads(path.read_text())["reason"])
    except (OSError, ValueError, KeyError):
        reason = "The instance failed while loading the model. See the endpoint log for the traceback."
    return reason[:1000]
