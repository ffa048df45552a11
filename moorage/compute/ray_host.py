"""The node side of the Ray provider: one Ray actor per instance, on the node Ray placed it on.

The actor prepares the model on its node (the same download cache, safe unpacking and per-model
environments as a single server, in the node's own cache), then runs the serving runtime there with the
local provider, its workers listening on TCP at the node's address. The front door connects to those
workers itself: requests never pass through Ray. An image's own server listens on 127.0.0.1 of its node,
as the container contract tells it to (docs/images.md), where no other machine reaches it: the actor
relays a port on the node's address to it, byte for byte. A multi-container instance is one actor
too: it prepares every container's model and starts the containers here, together
(moorage/compute/containers.py), so they share the actor's one reservation and node. The actor only
answers the front door's questions about its instance (wait, kill a worker, usage, stop); the runtime
dies with the actor's process."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from moorage.artifacts.errors import ArtifactError
from moorage.artifacts.prepare import prepare_recipe
from moorage.auth.bind import is_loopback
from moorage.compute.base import Instance, InstanceSpec, InstanceStartError, WorkerAddress
from moorage.compute.command import CommandInstance
from moorage.compute.containers import start_instance
from moorage.compute.local import LocalInstance, LocalProvider
from moorage.dataplane.connection import TCP_PREFIX

# the directory a multi-model instance downloads its models to (moorage/serving/multimodel/settings.py):
# the server names its own; on a node it is the node's cache
_MME_CACHE = "MOORAGE_MME_CACHE_DIR"


@dataclass(frozen=True)
class HostStarted:
    """What `InstanceHost.start` answers: the workers' addresses, or why the instance did not start."""

    workers: list[WorkerAddress]
    node_ip: str
    node_id: str
    failure: str | None = None


class InstanceHost:
    """Made a Ray actor by the provider (`ray.remote(InstanceHost)`); its methods run on the actor's
    event loop on the node. `cache_dir` is where this node keeps models and environments."""

    def __init__(self, cache_dir: str) -> None:
        import ray  # only ever imported on a Ray node

        self.node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self.node_id: str = ray.get_runtime_context().get_node_id()
        self.cache_dir = Path(cache_dir)
        self.run_dir = Path(tempfile.mkdtemp(prefix="moorage-ray-"))
        self.instance: Instance | None = None
        self.workers: list[WorkerAddress] = []  # where the front door reaches the instance's workers
        self._relays: list[_Relay] = []
        self._exited: asyncio.Future[int] | None = None

    def describe(self) -> HostStarted:
        """The running instance, for a server adopting this actor; a failure when there is none."""
        if self.instance is None or self._exited is None or self._exited.done():
            return HostStarted([], self.node_ip, self.node_id, "the instance is not running")
        return HostStarted(self.workers, self.node_ip, self.node_id)

    def ready(self) -> str:
        """Answers once Ray has placed the actor (the provider bounds the wait for room)."""
        return self.node_ip

    async def start(self, spec: InstanceSpec) -> HostStarted:
        """Prepare the model here, start the instance and return once it is warm; a failure is returned
        (as a FailureReason), not raised, so it reaches the front door intact."""
        try:
            spec = await self._prepared(spec)
            instance = await start_instance(_NodeProvider(self.run_dir, self.node_ip), spec)
        except InstanceStartError as failure:
            return self._failed(str(failure))
        except ArtifactError as failure:
            return self._failed(str(failure) + _store_hint(spec))
        except TimeoutError:
            return self._failed(
                f"ModelDataDownloadTimeoutInSeconds ({spec.download_timeout:.0f} s) passed while node "
                f"{self.node_ip} was still downloading, unpacking or setting up the model. Raise "
                "ModelDataDownloadTimeoutInSeconds or use a smaller artifact."
            )
        self.instance = instance
        try:
            self.workers = await self._reachable(spec, instance.workers)
        except OSError as exc:
            await self.stop(grace=2.0)
            return self._failed(f"Cannot listen on node {self.node_ip} for the image's server: {exc}")
        self._exited = asyncio.ensure_future(instance.wait())
        return HostStarted(self.workers, self.node_ip, self.node_id)

    def _failed(self, reason: str) -> HostStarted:
        shutil.rmtree(self.run_dir, ignore_errors=True)  # the provider kills this actor next
        return HostStarted([], self.node_ip, self.node_id, reason)

    async def _reachable(self, spec: InstanceSpec, workers: list[WorkerAddress]) -> list[WorkerAddress]:
        """The workers' addresses for the front door: an image's own server (on 127.0.0.1) through a
        relay on the node's address; the built-in runtime's workers as they are."""
        own_server = {c.container for c in spec.containers or (spec,) if c.command is not None}
        reachable = []
        for worker in workers:
            if worker.container in own_server:
                relay = await _Relay.open(self.node_ip, worker.address)
                self._relays.append(relay)
                worker = WorkerAddress(worker.index, relay.address, container=worker.container)
            reachable.append(worker)
        return reachable

    async def _prepared(self, spec: InstanceSpec) -> InstanceSpec:
        """The spec with its model prepared on this node; a multi-container spec's every container's,
        at once (a failure names the container)."""
        if spec.containers:
            subs = await asyncio.gather(*(self._prepared_container(sub) for sub in spec.containers))
            return dataclasses.replace(spec, containers=tuple(subs))
        log_path = _log_path(spec.log_path, self.cache_dir, spec.endpoint_name)
        if spec.recipe is not None:
            log = _appender(log_path, f"[node {self.node_ip}] ")
            prepared, environment = await asyncio.wait_for(
                asyncio.to_thread(prepare_recipe, spec.recipe, self.cache_dir, log), spec.download_timeout
            )
            spec = dataclasses.replace(
                spec,
                model_dir=prepared.model_dir,
                python=prepared.python,
                # the node's paths for the model's own variables; what the server added on top (the
                # worker count the actor's CPUs allow, a serverless memory cap) stays
                environment={**spec.environment, **environment},
                command=prepared.command,
            )
        if _MME_CACHE in spec.environment:  # a multi-model instance keeps its models in this node's cache
            spec = dataclasses.replace(
                spec, environment={**spec.environment, _MME_CACHE: str(self.cache_dir / "multimodel")}
            )
        return dataclasses.replace(spec, log_path=log_path)

    async def _prepared_container(self, spec: InstanceSpec) -> InstanceSpec:
        try:
            return await self._prepared(spec)
        except ArtifactError as failure:
            raise ArtifactError(f"container {spec.container}: {failure}") from None

    async def wait(self) -> int:
        """The instance's exit status, once it exits."""
        if self._exited is None:
            return 0
        return await asyncio.shield(self._exited)

    async def kill_worker(self, index: int) -> None:
        """Kill one (hung) worker; returns once it is gone (the runtime replaces it on its address)."""
        if self.instance is None:
            return
        gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_gone() -> None:
            if not gone.done():
                gone.set_result(None)

        self.instance.kill_worker(index, on_gone)
        await gone

    def usage(self) -> tuple[float, int] | None:
        used = self.instance.usage() if self.instance is not None else None
        return None if used is None else (used.cpu_seconds, used.rss_bytes)

    async def stop(self, grace: float) -> None:
        if self.instance is not None:
            await self.instance.stop(grace)
        for relay in self._relays:
            relay.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


class _NodeProvider:
    """The local provider as the actor runs it: the built-in runtime's workers on TCP at the node's
    address, an image's own server on 127.0.0.1 (the container contract; reached through a relay)."""

    starts_containers = False  # compute/containers.py starts a multi-container spec's containers here

    def __init__(self, run_dir: Path, node_ip: str) -> None:
        self.on_tcp = LocalProvider(run_dir, tcp_host=node_ip)
        self.on_loopback = LocalProvider(run_dir)

    async def start(self, spec: InstanceSpec) -> LocalInstance | CommandInstance:
        if spec.command is not None:
            return await self.on_loopback.start(spec)
        return await self.on_tcp.start(spec)


class _Relay:
    """A port on the node's address whose connections are passed, byte for byte, to a server on this
    node's loopback (`target`, ``tcp://127.0.0.1:PORT``); each side's close closes the other."""

    def __init__(self, server: asyncio.Server, address: str) -> None:
        self.server = server
        self.address = address
        self.connections: set[asyncio.StreamWriter] = set()

    @classmethod
    async def open(cls, host: str, target: str) -> _Relay:
        target_host, target_port = target.removeprefix(TCP_PREFIX).rsplit(":", 1)
        relay: _Relay

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            relay.connections.add(writer)
            try:
                upstream_reader, upstream = await asyncio.open_connection(target_host, int(target_port))
            except OSError:
                relay.connections.discard(writer)
                writer.close()
                return
            relay.connections.add(upstream)
            try:
                await asyncio.gather(_pump(reader, upstream), _pump(upstream_reader, writer))
            finally:
                relay.connections.discard(writer)
                relay.connections.discard(upstream)

        server = await asyncio.start_server(connected, host, 0)
        port = server.sockets[0].getsockname()[1]
        relay = cls(server, f"{TCP_PREFIX}{host}:{port}")
        return relay

    def close(self) -> None:
        self.server.close()
        for writer in list(self.connections):
            writer.close()
        self.connections.clear()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(64 * 1024):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def _store_hint(spec: InstanceSpec) -> str:
    """A node that cannot reach the front door's own S3 store: say why, and what to do."""
    store = spec.recipe.store if spec.recipe is not None else None
    if store is None or not is_loopback(urlsplit(store[0]).hostname or ""):
        return ""
    return (
        f" The model data is in the S3 store at {store[0]}, which only the server's own machine reaches; "
        "on a cluster, start the server with --s3-endpoint URL for a store every node reaches."
    )


def _log_path(wanted: Path, cache_dir: Path, endpoint: str) -> Path:
    """The front door's endpoint log where this node can write it (one machine, a shared disk), else a
    log of the endpoint's own in this node's cache directory."""
    if wanted.parent.is_dir() and os.access(wanted.parent, os.W_OK):
        return wanted
    local = cache_dir / "logs" / f"{endpoint}.log"
    local.parent.mkdir(parents=True, exist_ok=True)
    return local


def _appender(path: Path, prefix: str) -> Callable[[str], None]:
    def write(line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        with path.open("a") as log:
            log.write(f"{stamp} {prefix}{line}\n")

    return write
