"""The built-in backend: each loaded model an ordinary single-model instance started by the local
provider, and the pooled connections to its workers.

Models whose Python is the same fork from one zygote per interpreter (moorage/compute/zygote.py), so a
model's start costs a fork and its model_fn, not an interpreter start and the runtime's imports; a model
with its own requirements.txt has its own environment's interpreter, and so its own zygote. A model's
cost is the PSS of its whole process group (memory.py): its main, its workers and whatever they started.

An invocation that times out stops only the worker that ran it (the model's own supervisor forks a
fresh one from the loaded model), so the model's other requests, on its other workers, go on.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from moorage.artifacts.multimodel import PreparedTarget
from moorage.compute.base import InstanceSpec, InstanceStartError
from moorage.compute.local import LocalInstance, LocalProvider
from moorage.dataplane.connection import WorkerClient, WorkerResponse, WorkerUnavailable
from moorage.serving.multimodel.backend import (
    STOP_GRACE_SECONDS,
    InvocationTimeout,
    LoadedModel,
    encode_request,
)
from moorage.serving.multimodel.errors import LOAD_FAILED, PlatformError
from moorage.serving.multimodel.memory import instance_pids, measured_bytes, process_groups, worker_pids

WORKERS_VARIABLE = "SAGEMAKER_MODEL_SERVER_WORKERS"
STARTUP_TIMEOUT = 600.0
_RECONNECT_SECONDS = 0.05  # a replaced worker listens again in a moment
_RECONNECT_FOR_SECONDS = 5.0


class ModelProcess(LoadedModel):
    """A model loaded as a single-model instance of its own."""

    def __init__(self, name: str, uri: str, instance: LocalInstance, target: PreparedTarget) -> None:
        super().__init__(name, uri, target)
        self.instance = instance
        self.clients = [WorkerClient(w.address) for w in instance.workers]

    def pids(self) -> list[int]:
        return instance_pids(self.instance.socket_dir, self.instance.process.pid)

    def measure(self, groups: Mapping[int, list[int]] | None = None) -> int:
        """PSS over the model's process group (the model instance is its group's leader), so processes
        its model_fn or handlers started count too. Blocking: reads /proc."""
        group = (process_groups() if groups is None else groups).get(self.instance.process.pid, [])
        self.memory_bytes = measured_bytes({*self.pids(), *group})
        return self.memory_bytes

    def describe(self) -> dict[str, object]:
        return {"workers": [w.address for w in self.instance.workers], "pids": self.pids()}

    async def request(self, headers: Mapping[bytes, bytes], body: bytes, timeout: float) -> WorkerResponse:
        """To the worker with the fewest requests under way (one being replaced only if all are). A
        worker that does not answer within `timeout` is killed and replaced (InvocationTimeout)."""
        raw = encode_request(b"/invocations", headers, body)
        deadline = time.monotonic() + timeout
        retry_until = time.monotonic() + _RECONNECT_FOR_SECONDS
        while True:
            ready = [c for c in self.clients if not c.replacing] or self.clients
            client = min(ready, key=lambda c: c.outstanding)
            client.outstanding += 1
            try:
                return await client.request(raw, max(0.001, deadline - time.monotonic()))
            except TimeoutError:
                raise InvocationTimeout(self._replace_worker(client)) from None
            except WorkerUnavailable:  # nothing was sent: a replaced worker may not listen yet
                now = time.monotonic()
                if self.stopping or now >= retry_until or now + _RECONNECT_SECONDS >= deadline:
                    raise
            finally:
                client.outstanding -= 1
            await asyncio.sleep(_RECONNECT_SECONDS)

    def _replace_worker(self, client: WorkerClient) -> bool:
        """Kill the worker behind `client` (its supervisor forks a new one); False if it cannot be told
        which process that is, or the model is going anyway. Its address takes no new connection until
        the old process is gone."""
        if client.replacing:  # another request on it timed out too: it is already going
            return True
        index = self.instance.workers[self.clients.index(client)].index
        if self.stopping or self.instance.process.returncode is not None:
            return False
        if index not in worker_pids(self.instance.socket_dir):
            return False
        client.replacing = True
        self.instance.kill_worker(index, client.replaced)
        return True

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
        model.measure()  # no await between the start and the cache taking it: a cancelled load leaks nothing
        return model

    def measure(self, models: Sequence[LoadedModel]) -> None:
        """Blocking (one pass over /proc): the cache calls it from a worker thread."""
        groups = process_groups()
        for model in models:
            if isinstance(model, ModelProcess) and not model.stopping:
                model.measure(groups)

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
