"""The provider contract: `start()` returns only once the instance is warm and answers /ping."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from moorage.artifacts.prepare import ModelRecipe


@dataclass(frozen=True)
class InstanceSpec:
    instance_id: str
    endpoint_name: str
    variant_name: str
    model_dir: Path
    python: str
    environment: Mapping[str, str]
    log_path: Path
    startup_timeout: float
    # the image's own HTTP server (SageMaker container contract); None: the built-in serving runtime
    command: tuple[str, ...] | None = None
    # how the model above was prepared, for a provider that prepares it again where the instance runs
    recipe: ModelRecipe | None = None
    instance_type: str = ""  # the resources a cluster reserves for the instance (compute/instance_types.py)
    download_timeout: float = 3600.0  # ModelDataDownloadTimeoutInSeconds, for preparing it there
    # the accepted deployment the instance serves: a provider whose instances outlive the server may hand
    # over one already running for the same endpoint, variant and deployment instead of starting one
    deployment: str = ""
    # a serverless instance: its start is a request's cold start, so a provider that can start it faster
    # (the local provider's zygote, moorage/compute/zygote.py) does
    fork_from_zygote: bool = False
    # a multi-container instance (moorage/compute/containers.py): each container is started as an instance
    # of its own from these specs, on one machine, and together they are this one; `container` is one's
    # ContainerHostname
    containers: tuple[InstanceSpec, ...] = ()
    container: str = ""


@dataclass(frozen=True)
class WorkerAddress:
    """Where the data plane reaches one worker of an instance: a Unix socket path (a local instance's
    workers) or ``tcp://host:port`` (an image's own server; later, an instance on another machine).
    The front door's keep-alive client connects to either; nothing else about it is provider-specific."""

    index: int
    address: str
    container: str = ""  # the ContainerHostname of the container it serves (a multi-container instance)


@dataclass(frozen=True)
class ResourceUsage:
    """What an instance's processes have used: CPU time so far, and resident memory now."""

    cpu_seconds: float
    rss_bytes: int
    # a reading taken earlier than the call (another machine's): when (time.monotonic()), and the memory
    # that MemoryUtilization is a share of (the InstanceType's); None: now, and this machine's memory
    taken_at: float | None = None
    memory_total: int | None = None


class InstanceStartError(Exception):
    """The instance never became healthy; str() is a FailureReason a user can act on."""


class Instance(Protocol):
    instance_id: str
    workers: list[WorkerAddress]
    placement: str  # where it runs, in words ("this machine", "Ray node 10.0.0.7 (…)")

    async def wait(self) -> int:
        """Wait until the instance exits; returns its exit status."""
        ...

    def kill_worker(self, index: int, on_gone: Callable[[], None]) -> None:
        """Kill one (hung) worker; the instance replaces it on the same address. `on_gone` runs on
        the event loop once the process has exited (its socket no longer accepts connections)."""
        ...

    def usage(self) -> ResourceUsage | None:
        """CPU and memory of the instance's processes (main and workers); None when unknown."""
        ...

    async def ping(self, index: int, timeout: float) -> bool:
        """GET /ping on one worker: True for a 200 within `timeout` seconds (the health check)."""
        ...

    async def stop(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        ...


class InstanceProvider(Protocol):
    # whether instances go on running when the server stops (on a cluster), to be adopted by the next
    outlives_server: bool
    # whether `start` takes a multi-container spec whole and starts its containers together on one of
    # its machines (a cluster's node); otherwise moorage/compute/containers.py starts each container itself
    starts_containers: bool

    async def open(self) -> None:
        """Before the first start (connect to a cluster); raises with a message for the user."""
        ...

    async def adopt(self) -> None:
        """This server now reconciles: instances still running from a server that did before become
        available to `start` (taken over, not restarted)."""
        ...

    async def release(self, wanted: set[tuple[str, str, str]], grace: float) -> None:
        """After restoring: adopted instances of no (endpoint, variant, deployment) in `wanted` stop now;
        the others still not taken over stop after `grace` seconds."""
        ...

    async def start(self, spec: InstanceSpec) -> Instance: ...

    async def close(self) -> None:
        """After the last instance stopped."""
        ...
