"""Instances that run an image's own HTTP server under the SageMaker container contract.

SageMaker runs ``docker run IMAGE serve`` and talks to port 8080 (or ``SAGEMAKER_BIND_TO_PORT``): healthy
once ``GET /ping`` answers 200, requests to ``POST /invocations``, SIGTERM to stop. Here the command
(``serve`` already appended) runs as a process group with ``SAGEMAKER_BIND_TO_PORT`` set to a free port
on 127.0.0.1, the model directory in ``SM_MODEL_DIR`` (there is no /opt/ml/model) and the model's
Environment. The whole server is the instance's one worker, reached over TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Callable

from moorage.compute.base import InstanceSpec, InstanceStartError, ResourceUsage, WorkerAddress
from moorage.compute.probe import answers_ping, signal_group
from moorage.compute.procfs import process_usage
from moorage.dataplane.connection import TCP_PREFIX, WorkerClient
from moorage.lifeline import lifeline_argv

_POLL_SECONDS = 0.05
_PYTHON = re.compile(r"python(\d(\.\d+)?)?$")


class CommandInstance:
    """A running image server; it is its own single worker (index 0)."""

    def __init__(self, instance_id: str, process: asyncio.subprocess.Process, address: str) -> None:
        self.instance_id = instance_id
        self.process = process
        self.workers = [WorkerAddress(0, address)]
        self.placement = "this machine"
        self._health = WorkerClient(address, max_idle=1)

    async def wait(self) -> int:
        return await self.process.wait()

    def kill_worker(self, index: int, on_gone: Callable[[], None]) -> None:
        """The server cannot be re-forked in place: it is killed and its fleet replaces the instance."""
        self._signal_group(signal.SIGKILL)

        async def after_exit() -> None:
            await self.process.wait()
            on_gone()

        asyncio.get_running_loop().create_task(after_exit())

    def usage(self) -> ResourceUsage | None:
        if self.process.returncode is not None:
            return None
        return process_usage([self.process.pid])

    async def ping(self, index: int, timeout: float) -> bool:
        return await answers_ping(self._health, timeout)

    def _signal_group(self, sig: int) -> None:
        signal_group(self.process.pid, sig)

    async def stop(self, grace: float) -> None:
        self._health.close()
        if self.process.returncode is None:
            self._signal_group(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), grace)
        self._signal_group(signal.SIGKILL)
        if self.process.returncode is None:
            await self.process.wait()


async def start_command(spec: InstanceSpec, host: str = "127.0.0.1") -> CommandInstance:
    """Start ``spec.command`` and return once it answers GET /ping with 200 on `host` (this machine's
    address the front door reaches it at)."""
    assert spec.command is not None
    port = _free_port(host)
    command = list(spec.command)
    if _PYTHON.match(os.path.basename(command[0])):
        command[0] = spec.python  # the image's environment, not whatever `python` is on PATH
    env = {
        **os.environ,
        **spec.environment,
        "SAGEMAKER_BIND_TO_PORT": str(port),
        "SM_MODEL_DIR": str(spec.model_dir),
        "MOORAGE_INSTANCE_ID": spec.instance_id,
    }
    with open(spec.log_path, "ab") as log:
        try:
            process = await asyncio.create_subprocess_exec(
                *lifeline_argv(command, oom_first=True),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                cwd=str(spec.model_dir),
                start_new_session=True,
            )
        except OSError as exc:
            raise InstanceStartError(f"Cannot start the image's command {' '.join(command)}: {exc}") from None
    instance = CommandInstance(spec.instance_id, process, f"{TCP_PREFIX}{host}:{port}")
    try:
        await _until_healthy(instance, command, spec.startup_timeout)
    except BaseException:
        await instance.stop(grace=2)
        raise
    return instance


async def _until_healthy(instance: CommandInstance, command: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if instance.process.returncode is not None:
            raise InstanceStartError(
                f"The image's command `{' '.join(command)}` exited with status "
                f"{instance.process.returncode} before it answered GET /ping. See the endpoint log."
            )
        if await instance.ping(0, timeout=2.0):
            return
        if time.monotonic() > deadline:
            raise InstanceStartError(
                f"ContainerStartupHealthCheckTimeoutInSeconds ({timeout:.0f} s) passed while the image's "
                f"server `{' '.join(command)}` was not answering GET /ping with 200 on "
                "SAGEMAKER_BIND_TO_PORT. Make it listen on that port, or raise the timeout."
            )
        await asyncio.sleep(_POLL_SECONDS)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
