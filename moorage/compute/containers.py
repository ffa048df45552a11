"""Multi-container instances: every container of an instance started as an instance of its own, on one
machine, and presented to the fleet as one instance whose workers say which container they serve.

SageMaker starts a pipeline's containers together on one instance and fails the start listing every
container that did not pass /ping; here each container is `provider.start(sub_spec)` (a process group
on this machine), all started at once and all waited for, so the failure lists them all. A provider
whose instances run elsewhere (`starts_containers`: the Ray provider) is handed the whole spec, so that
the instance is one reservation on one node, and runs this same split there with its node's local
provider (moorage/compute/ray_host.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Protocol

from moorage.compute.base import (
    Instance,
    InstanceSpec,
    InstanceStartError,
    ResourceUsage,
    WorkerAddress,
)

# SAGEMAKER_SAFE_PORT_RANGE: each container gets a block of its own for a second port. Below Linux's
# ephemeral range (32768+), where SAGEMAKER_BIND_TO_PORT's free ports come from; handed out in turn, so
# blocks are reused only after every one of them was given out.
SAFE_PORT_FIRST = 20000
SAFE_PORT_BLOCK = 100
_SAFE_PORT_BLOCKS = (32700 - SAFE_PORT_FIRST) // SAFE_PORT_BLOCK
_next_block = itertools.count()
_STOP_GRACE = 2.0


def safe_port_range() -> str:
    """The next "first-last" block of ports (inclusive) for one container."""
    first = SAFE_PORT_FIRST + (next(_next_block) % _SAFE_PORT_BLOCKS) * SAFE_PORT_BLOCK
    return f"{first}-{first + SAFE_PORT_BLOCK - 1}"


class ContainerStarter(Protocol):
    """What starting a multi-container instance needs of a provider (an InstanceProvider, or the one a
    Ray node runs)."""

    starts_containers: bool

    async def start(self, spec: InstanceSpec) -> Instance: ...


async def start_instance(provider: ContainerStarter, spec: InstanceSpec) -> Instance:
    """`provider.start(spec)`, or for a multi-container spec each container's start, as one instance."""
    if not spec.containers:
        return await provider.start(spec)
    # blocks handed out by the server, also for containers that start on a node (which keeps them there)
    subs = [_with_port_range(sub) for sub in spec.containers]
    if provider.starts_containers:
        return await provider.start(dataclasses.replace(spec, containers=tuple(subs)))
    tasks = [asyncio.ensure_future(provider.start(sub)) for sub in subs]
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
        await _stop_started(tasks)
        raise
    failures = [(sub.container, task.exception()) for sub, task in zip(subs, tasks, strict=True)]
    failed = [(name, exc) for name, exc in failures if exc is not None]
    if failed:
        await _stop_started(tasks)
        raise InstanceStartError(start_failure(spec.instance_id, len(subs), failed))
    parts = [(sub.container, task.result()) for sub, task in zip(subs, tasks, strict=True)]
    return MultiContainerInstance(spec.instance_id, parts)


def _with_port_range(sub: InstanceSpec) -> InstanceSpec:
    if "SAGEMAKER_SAFE_PORT_RANGE" in sub.environment:  # the model's Environment chose one
        return sub
    return dataclasses.replace(
        sub, environment={**sub.environment, "SAGEMAKER_SAFE_PORT_RANGE": safe_port_range()}
    )


async def _stop_started(tasks: Sequence[asyncio.Future[Instance]]) -> None:
    started = [t.result() for t in tasks if not t.cancelled() and t.exception() is None]
    await asyncio.gather(*(instance.stop(_STOP_GRACE) for instance in started), return_exceptions=True)


def start_failure(instance_id: str, total: int, failed: list[tuple[str, BaseException]]) -> str:
    """The FailureReason: every container that did not start, each with its own reason."""
    reasons = "; ".join(f"container {name}: {_reason(exc)}" for name, exc in failed)
    names = ", ".join(name for name, _ in failed)
    return (
        f"{len(failed)} of the {total} containers of instance {instance_id} did not start and answer "
        f"GET /ping ({names}). {reasons}"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InstanceStartError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class MultiContainerInstance:
    """The containers of one instance: their workers together (each labelled with its container and
    given an index unique in the instance), alive while every container is."""

    def __init__(self, instance_id: str, parts: list[tuple[str, Instance]]) -> None:
        self.instance_id = instance_id
        self.parts = parts
        self.workers: list[WorkerAddress] = []
        self._owners: dict[int, tuple[Instance, int]] = {}  # our index -> (container's instance, its index)
        for container, part in parts:
            for worker in part.workers:
                index = len(self.workers)
                self.workers.append(WorkerAddress(index, worker.address, container=container))
                self._owners[index] = (part, worker.index)
        places = {part.placement for _, part in parts}
        self.placement = (
            places.pop()
            if len(places) == 1
            else ", ".join(f"{container} on {part.placement}" for container, part in parts)
        )

    async def wait(self) -> int:
        """Returns when the first container exits (the instance is then lost and replaced whole)."""
        waits = [asyncio.ensure_future(part.wait()) for _, part in self.parts]
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        return next(iter(done)).result()

    def kill_worker(self, index: int, on_gone: Callable[[], None]) -> None:
        part, own = self._owners[index]
        part.kill_worker(own, on_gone)

    def usage(self) -> ResourceUsage | None:
        readings = [u for _, part in self.parts if (u := part.usage()) is not None]
        if not readings:
            return None
        taken = [u.taken_at for u in readings if u.taken_at is not None]
        totals = [u.memory_total for u in readings if u.memory_total is not None]
        return ResourceUsage(
            cpu_seconds=sum(u.cpu_seconds for u in readings),
            rss_bytes=sum(u.rss_bytes for u in readings),
            taken_at=min(taken) if taken else None,
            memory_total=totals[0] if totals else None,
        )

    async def ping(self, index: int, timeout: float) -> bool:
        part, own = self._owners[index]
        return await part.ping(own, timeout)

    async def stop(self, grace: float) -> None:
        await asyncio.gather(*(part.stop(grace) for _, part in self.parts))
