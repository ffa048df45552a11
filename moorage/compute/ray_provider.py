"""The Ray provider: every instance is a Ray actor on some node of an existing Ray cluster.

Ray decides where (each actor reserves the vCPUs, memory and GPUs its InstanceType implies, and actors
are spread over the nodes); the actor (moorage/compute/ray_host.py) prepares the model and runs the
serving runtime on its node, on TCP at the node's address, and this front door connects to the workers
directly, as it does to local ones. Nothing of a request passes through Ray. An actor that cannot be
placed within `placement_timeout` fails the start with the resources that were missing; a node that dies
takes its actors with it, which the fleet sees (`wait` returns, pings fail) and replaces on the nodes
left. A multi-container instance is one actor too (one reservation, one node), which starts every
container on its node (moorage/compute/containers.py). See docs/cluster.md."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.compute.base import InstanceSpec, InstanceStartError, ResourceUsage, WorkerAddress
from moorage.compute.instance_types import (
    SERVERLESS_CPUS,
    InstanceResources,
    UnknownInstanceType,
    resources_for,
)
from moorage.compute.probe import WorkerPings
from moorage.compute.ray_host import HostStarted, InstanceHost

log = logging.getLogger("moorage.compute")

# Ray's own retries when the cluster address does not answer; without these, ray.init waits ~40 s
_BOUNDED_CONNECT = {
    "RAY_gcs_rpc_server_connect_timeout_s": "1",
    "RAY_py_gcs_connect_timeout_s": "3",
    "RAY_NUM_REDIS_GET_RETRIES": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}
_EXITED_WITH_ITS_NODE = 255  # the status `wait` gives when the actor (or its node) is gone


class RayUnavailable(Exception):
    """The cluster cannot be used (not installed, not reachable); str() says what to do."""


@dataclass(frozen=True)
class RaySettings:
    address: str  # "auto", "HOST:PORT" or "ray://HOST:PORT"
    node_address: str | None  # this server's own address on the cluster's network; None: Ray's guess
    cache_dir: Path  # where each node keeps models and environments
    placement_timeout: float  # how long an instance may wait for room on the cluster
    namespace: str  # this installation's (one per database): another's actors are never touched
    connect_timeout: float
    instance_types: Mapping[str, InstanceResources]


class RayInstance:
    def __init__(self, instance_id: str, actor: Any, started: HostStarted, memory_total: int) -> None:
        self.instance_id = instance_id
        self.actor = actor
        self.memory_total = memory_total
        self.workers: list[WorkerAddress] = list(started.workers)
        self.node_ip = started.node_ip
        self.node_id = started.node_id
        self.placement = f"Ray node {self.node_ip} ({self.node_id[:12]})"
        self._pings = WorkerPings()
        self._usage: ResourceUsage | None = None
        self._reading: asyncio.Future[Any] | None = None

    async def wait(self) -> int:
        try:
            return int(await self.actor.wait.remote())
        except Exception as exc:  # RayActorError and kin: the actor, its process or its node is gone
            log.warning("instance %s on %s is gone: %s", self.instance_id, self.placement, _first_line(exc))
            return _EXITED_WITH_ITS_NODE

    def kill_worker(self, index: int, on_gone: Callable[[], None]) -> None:
        async def kill() -> None:
            try:
                await _answer(self.actor.kill_worker.remote(index), 10)
            except Exception:  # the actor is gone or not answering: so is the worker, or it will be
                pass
            finally:
                on_gone()

        asyncio.get_running_loop().create_task(kill())

    def usage(self) -> ResourceUsage | None:
        """The last reading, stamped with when it arrived (asked of the node in the background, so this
        never waits on the cluster); MemoryUtilization is a share of the InstanceType's memory."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read_usage())
        return self._usage

    async def _read_usage(self) -> None:
        try:
            used = await self.actor.usage.remote()
        except Exception:
            return  # the last reading stands; a lost actor is noticed by `wait` and the health check
        if used is not None:
            self._usage = ResourceUsage(float(used[0]), int(used[1]), time.monotonic(), self.memory_total)

    async def ping(self, index: int, timeout: float) -> bool:
        return await self._pings.ping(self.workers, index, timeout)

    async def stop(self, grace: float) -> None:
        self._pings.close()
        with contextlib.suppress(Exception):
            await _answer(self.actor.stop.remote(grace), grace + 10)
        await _killed(self.actor)


class RayProvider:
    outlives_server = True  # the actors are detached: they belong to the cluster
    starts_containers = True  # a multi-container instance is one actor, its containers started on its node
    # a serverless instance's actor reserves this many CPUs (instance_types.resources_for), and its
    # worker count follows them, not the server's CPUs (moorage/fleet/serverless.py)
    serverless_cpus = max(1, math.ceil(SERVERLESS_CPUS))

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self._host: Any = None  # InstanceHost as a Ray actor class, made once connected
        self._connected = False
        # instances a server that reconciled before left running, by (endpoint, variant, deployment)
        self._orphans: dict[tuple[str, str, str], list[str]] = {}

    async def open(self) -> None:
        """Connect to the cluster, within `connect_timeout`: an unreachable address fails start-up."""
        settings = self.settings
        for name, value in _BOUNDED_CONNECT.items():
            os.environ.setdefault(name, value)
        try:
            import ray
        except ImportError:
            raise RayUnavailable(
                "--compute ray needs Ray on this server: pip install 'moorage[ray]' (and the same Ray "
                "version on the cluster)."
            ) from None
        options: dict[str, Any] = {
            "address": settings.address,
            "namespace": settings.namespace,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if settings.node_address:
            options["_node_ip_address"] = settings.node_address
        try:
            await asyncio.wait_for(asyncio.to_thread(ray.init, **options), settings.connect_timeout)
        except TimeoutError:
            raise RayUnavailable(
                f"The Ray cluster at {settings.address} did not answer within "
                f"{settings.connect_timeout:.0f} s. Check --ray-address (and that `ray status` works "
                "from this machine)."
            ) from None
        except Exception as exc:
            raise RayUnavailable(
                f"Cannot connect to the Ray cluster at {settings.address}: {_first_line(exc)}. Check "
                "--ray-address (and that `ray status` works from this machine)."
            ) from None
        self._connected = True
        self._host = ray.remote(max_restarts=0, max_task_retries=0)(InstanceHost)
        nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
        log.info("connected to the Ray cluster at %s: %d node(s)", settings.address, len(nodes))

    async def close(self) -> None:
        if not self._connected:
            return
        import ray

        self._connected = False
        await asyncio.to_thread(ray.shutdown)

    async def adopt(self) -> None:
        import ray

        names = await asyncio.to_thread(ray.util.list_named_actors, all_namespaces=True)
        for entry in names:
            if entry.get("namespace") != self.settings.namespace:
                continue  # another installation's
            parts = str(entry["name"]).split("/")
            if len(parts) == 4:
                self._orphans.setdefault((parts[0], parts[1], parts[2]), []).append(entry["name"])
        if self._orphans:
            count = sum(len(v) for v in self._orphans.values())
            log.info("%d instance(s) left running on the cluster by an earlier server: adopting", count)

    async def release(self, wanted: set[tuple[str, str, str]], grace: float) -> None:
        for key in [k for k in self._orphans if k not in wanted]:
            await self._stop_all(self._orphans.pop(key), "no endpoint needs it any more")
        if self._orphans:
            loop = asyncio.get_running_loop()
            loop.call_later(grace, lambda: _in_background(self._release_rest()))

    async def _release_rest(self) -> None:
        orphans, self._orphans = self._orphans, {}
        for names in orphans.values():
            await self._stop_all(names, "no fleet took it over")

    async def _stop_all(self, names: list[str], why: str) -> None:
        for name in names:
            log.info("stopping instance %s: %s", name, why)
            actor = await self._named(name)
            if actor is not None:
                await _killed(actor)

    async def _named(self, name: str) -> Any:
        import ray

        try:
            return await asyncio.to_thread(ray.get_actor, name, namespace=self.settings.namespace)
        except Exception:
            return None

    async def _adopted(self, spec: InstanceSpec, wants: InstanceResources) -> RayInstance | None:
        """A running instance of the same endpoint, variant and deployment, left by an earlier server."""
        names = self._orphans.get((spec.endpoint_name, spec.variant_name, spec.deployment), [])
        while names:
            name = names.pop()
            actor = await self._named(name)
            if actor is None:
                continue
            try:
                started: HostStarted = await _answer(actor.describe.remote(), 10)
            except Exception:
                started = HostStarted([], "", "", "the actor did not answer")
            if started.failure is None:
                instance = RayInstance(name.rsplit("/", 1)[1], actor, started, wants.memory_bytes)
                instance.placement += ", adopted"
                return instance
            await _killed(actor)
        return None

    async def start(self, spec: InstanceSpec) -> RayInstance:
        try:
            wants = resources_for(spec.instance_type, self.settings.instance_types)
        except UnknownInstanceType as exc:
            raise InstanceStartError(str(exc)) from None
        adopted = await self._adopted(spec, wants)
        if adopted is not None:
            log.info("instance %s on %s", adopted.instance_id, adopted.placement)
            return adopted
        spec = _for_node(spec, str(max(1, math.ceil(wants.cpus))))
        bound = spec.download_timeout + spec.startup_timeout + 30
        actor = None
        # asks the cluster, so off the loop; shielded, so a start cancelled meanwhile still learns of the
        # actor and kills it (it is detached: nothing else ever would)
        creating = asyncio.ensure_future(asyncio.to_thread(self._create_actor, spec, wants))
        try:
            try:
                actor = await asyncio.shield(creating)
            except asyncio.CancelledError:
                creating.add_done_callback(_kill_when_created)
                raise
            await self._placed(actor, spec, wants)
            started: HostStarted = await _answer(actor.start.remote(spec), bound)
        except BaseException as exc:
            if actor is not None:
                await _killed(actor)
            if isinstance(exc, InstanceStartError | asyncio.CancelledError):
                raise
            if isinstance(exc, TimeoutError):
                raise InstanceStartError(
                    f"The instance's Ray actor had not started the model within {bound:.0f} s "
                    "(ModelDataDownloadTimeoutInSeconds + ContainerStartupHealthCheckTimeoutInSeconds)."
                ) from None
            raise InstanceStartError(
                f"The instance's Ray actor failed while it started: {_first_line(exc)}"
            ) from None
        if started.failure is not None:
            await _killed(actor)
            raise InstanceStartError(started.failure)
        instance = RayInstance(spec.instance_id, actor, started, wants.memory_bytes)
        log.info("instance %s runs on %s", spec.instance_id, instance.placement)
        return instance

    def _create_actor(self, spec: InstanceSpec, wants: InstanceResources) -> Any:
        """Detached and named by endpoint, variant, deployment and instance: the instance belongs to the
        cluster, so the next server to reconcile can adopt it if this one dies."""
        return self._host.options(
            num_cpus=wants.cpus,
            memory=wants.memory_bytes,
            num_gpus=wants.gpus,
            scheduling_strategy="SPREAD",
            lifetime="detached",
            name=f"{spec.endpoint_name}/{spec.variant_name}/{spec.deployment}/{spec.instance_id}",
        ).remote(str(self.settings.cache_dir))

    async def _placed(self, actor: Any, spec: InstanceSpec, wants: InstanceResources) -> None:
        """Wait until Ray has placed the actor; a cluster without room fails within the bound."""
        bound = self.settings.placement_timeout
        try:
            await _answer(actor.ready.remote(), bound)
        except TimeoutError:
            import ray

            free = await asyncio.to_thread(ray.available_resources)
            raise InstanceStartError(
                f"No node of the Ray cluster had room for instance {spec.instance_id} "
                f"({spec.instance_type}: {wants.describe()}) within {bound:.0f} s; the cluster has "
                f"{_free(free)} free. Add nodes or free resources, use a smaller InstanceType, or change "
                "the type's size in MOORAGE_INSTANCE_TYPES."
            ) from None


def _for_node(spec: InstanceSpec, workers: str) -> InstanceSpec:
    """The spec as an actor runs it (each container's too): as many workers as the vCPUs it reserved,
    not every core of the node it landed on, unless the model says how many."""
    return dataclasses.replace(
        spec,
        environment={"SAGEMAKER_MODEL_SERVER_WORKERS": workers, **spec.environment},
        log_path=spec.log_path.absolute(),  # the node resolves paths in its own working directory
        fork_from_zygote=False,  # each actor is one instance: a zygote there would only add a start
        containers=tuple(_for_node(sub, workers) for sub in spec.containers),
    )


def _free(resources: Mapping[str, float]) -> str:
    cpus = resources.get("CPU", 0.0)
    memory = resources.get("memory", 0.0) / 1024**3
    gpus = resources.get("GPU", 0.0)
    return f"{cpus:g} CPU, {memory:.1f} GiB memory" + (f", {gpus:g} GPU" if gpus else "")


async def _answer(ref: Any, timeout: float) -> Any:
    """The result of a call to an actor (its ObjectRef), awaited on this loop within `timeout` seconds."""
    return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)


_BACKGROUND: set[asyncio.Future[None]] = set()  # kills under way, kept until done


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _kill_when_created(creating: asyncio.Future[Any]) -> None:
    if not creating.cancelled() and creating.exception() is None:
        _in_background(_killed(creating.result()))


async def _killed(actor: Any) -> None:
    """ray.kill, off the loop (it may wait on the cluster)."""
    import ray

    with contextlib.suppress(Exception):
        await asyncio.to_thread(ray.kill, actor, no_restart=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
