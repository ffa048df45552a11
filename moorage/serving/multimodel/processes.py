"""One loaded model: an ordinary single-model instance started by the local provider, and the pooled
connections to its workers.

Models whose Python is the same fork from one zygote per interpreter (moorage/compute/zygote.py), so a
model's start costs a fork and its model_fn, not an interpreter start and the runtime's imports; a model
with its own requirements.txt has its own environment's interpreter, and so its own zygote.
"""

from __future__ import annotations

import time
from pathlib import Path

from moorage.artifacts.multimodel import PreparedTarget
from moorage.compute.base import InstanceSpec
from moorage.compute.local import LocalInstance, LocalProvider
from moorage.dataplane.connection import WorkerClient, WorkerResponse
from moorage.serving.multimodel.memory import instance_pids, measured_bytes

WORKERS_VARIABLE = "SAGEMAKER_MODEL_SERVER_WORKERS"
STARTUP_TIMEOUT = 600.0


class ModelProcess:
    """A loaded model. `in_flight` requests keep it from being evicted; `last_used` orders the LRU."""

    def __init__(self, name: str, uri: str, instance: LocalInstance, target: PreparedTarget) -> None:
        self.name = name
        self.uri = uri
        self.instance = instance
        self.target = target
        self.clients = [WorkerClient(w.address) for w in instance.workers]
        self.memory_bytes = 0
        self.in_flight = 0
        self.last_used = time.monotonic()
        self.stopping = False

    @property
    def model_dir(self) -> Path:
        return self.target.prepared.model_dir

    def pids(self) -> list[int]:
        return instance_pids(self.instance.socket_dir, self.instance.process.pid)

    def measure(self) -> int:
        self.memory_bytes = measured_bytes(self.pids())
        return self.memory_bytes

    async def request(self, raw: bytes, timeout: float) -> WorkerResponse:
        """To the worker with the fewest requests under way."""
        client = min(self.clients, key=lambda c: c.outstanding)
        client.outstanding += 1
        try:
            return await client.request(raw, timeout)
        finally:
            client.outstanding -= 1

    async def stop(self, grace: float) -> None:
        self.stopping = True
        for client in self.clients:
            client.close()
        try:
            await self.instance.stop(grace)
        finally:
            self.target.lease.release()


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
