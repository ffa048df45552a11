"""The built-in backend: each loaded model an ordinary single-model instance started by the local
provider, and the pooled connections to its workers.

Models whose Python is the same fork from one zygote per interpreter (moorage/compute/zygote.py), so a
model's start costs a fork and its model_fn, not an interpreter start and the runtime's imports; a model
with its own requirements.txt has its own environment's interpreter, and so its own zygote. A model's
cost is the PSS of its own processes (memory.py).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path

from moorage.artifacts.multimodel import PreparedTarget
from moorage.compute.base import InstanceSpec, InstanceStartError
from moorage.compute.local import LocalInstance, LocalProvider
from moorage.dataplane.connection import WorkerClient, WorkerResponse
from moorage.serving.multimodel.backend import STOP_GRACE_SECONDS, LoadedModel, encode_request
from moorage.serving.multimodel.errors import LOAD_FAILED, PlatformError
from moorage.serving.multimodel.memory import instance_pids, measured_bytes

WORKERS_VARIABLE = "SAGEMAKER_MODEL_SERVER_WORKERS"
STARTUP_TIMEOUT = 600.0


class ModelProcess(LoadedModel):
    """A model loaded as a single-model instance of its own."""

    def __init__(self, name: str, uri: str, instance: LocalInstance, target: PreparedTarget) -> None:
        super().__init__(name, uri, target)
        self.instance = instance
        self.clients = [WorkerClient(w.address) for w in instance.workers]

    def pids(self) -> list[int]:
        return instance_pids(self.instance.socket_dir, self.instance.process.pid)

    def measure(self) -> int:
        self.memory_bytes = measured_bytes(self.pids())
        return self.memory_bytes

    def describe(self) -> dict[str, object]:
        return {"workers": [w.address for w in self.instance.workers], "pids": self.pids()}

    async def request(self, headers: Mapping[bytes, bytes], body: bytes, timeout: float) -> WorkerResponse:
        """To the worker with the fewest requests under way."""
        raw = encode_request(b"/invocations", headers, body)
        client = min(self.clients, key=lambda c: c.outstanding)
        client.outstanding += 1
        try:
            return await client.request(raw, timeout)
        finally:
            client.outstanding -= 1

    async def wait(self) -> int | None:
        return await self.instance.wait()

    async def stop(self, grace: float) -> None:
        self.stopping = True
        for client in self.clients:
            client.close()
        try:
            await self.instance.stop(grace)
        finally:
            self.target.lease.release()


class ProcessBackend:
    """Loads each model as a single-model instance (the built-in runtime) of its own."""

    def __init__(self, provider: LocalProvider, workers: int, log_path: Path) -> None:
        self.provider = provider
        self.workers = workers
        self.log_path = log_path
        self._ids = itertools.count(1)

    async def load(self, name: str, uri: str, target: PreparedTarget) -> LoadedModel:
        if target.prepared.command is not None:
            raise PlatformError(
                LOAD_FAILED,
                f"Failed to load model {name!r} ({uri}): the container's image runs its own model "
                "server, and this instance was started without it. Update the endpoint so that its "
                "instances start the image's server, or use an image served by the built-in runtime.",
            )
        try:
            instance = await start_model(
                self.provider, f"m{next(self._ids)}", target, self.workers, self.log_path
            )
        except InstanceStartError as exc:
            raise PlatformError(LOAD_FAILED, f"Failed to load model {name!r} ({uri}): {exc}") from None
        model = ModelProcess(name, uri, instance, target)
        model.measure()
        return model

    def measure(self, models: Sequence[LoadedModel]) -> None:
        for model in models:
            if isinstance(model, ModelProcess) and not model.stopping:
                model.measure()

    async def close(self, models: Sequence[LoadedModel]) -> None:
        await asyncio.gather(*(m.stop(STOP_GRACE_SECONDS) for m in models), return_exceptions=True)
        await self.provider.close()


async def start_model(
    provider: LocalProvider,
    instance_id: str,
    target: PreparedTarget,
    workers: int,
    log_path: Path,
) -> LocalInstance:
    """Returns once model_fn has run and every worker answers /ping; raises InstanceStartError."""
    prepared = target.prepared
    spec = InstanceSpec(
        instance_id=instance_id,
        endpoint_name="",
        variant_name="",
        model_dir=prepared.model_dir,
        python=prepared.python,
        environment={**target.environment, WORKERS_VARIABLE: str(workers)},
        log_path=log_path,
        startup_timeout=STARTUP_TIMEOUT,
        fork_from_zygote=True,
    )
    instance = await provider.start(spec)
    assert isinstance(instance, LocalInstance)
    return instance
