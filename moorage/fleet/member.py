"""One instance in a fleet: the provider's handle, its workers' routes, and what the fleet knows of it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from moorage.compute.base import Instance
from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.routes import WorkerRoute


@dataclass(eq=False)
class Member:
    instance: Instance
    workers: list[WorkerRoute]
    started: float  # clock.monotonic() when it became healthy
    stopping: bool = False  # leaving the fleet: its exit is expected, not a failure
    failed_pings: int = 0  # health checks failed in a row
    monitor: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, instance: Instance, started: float) -> Member:
        workers = []
        for address in instance.workers:
            client = WorkerClient(address.address)
            workers.append(
                WorkerRoute(
                    client,
                    instance.instance_id,
                    address.index,
                    _killer(instance, address.index, client),
                    container=address.container,
                )
            )
        return cls(instance, workers, started)

    @property
    def instance_id(self) -> str:
        return self.instance.instance_id

    @property
    def outstanding(self) -> int:
        return sum(worker.client.outstanding for worker in self.workers)

    def close_connections(self) -> None:
        for worker in self.workers:
            worker.client.close()


def _killer(instance: Instance, index: int, client: WorkerClient) -> Callable[[], None]:
    """Kill a hung worker; until its process is gone, its address takes no new connections (a
    request connecting in that moment would be lost with it)."""

    def kill() -> None:
        client.replacing = True
        instance.kill_worker(index, client.replaced)

    return kill
