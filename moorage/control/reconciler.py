"""The reconciler turns the endpoint rows in the store into running instances and routes.

Every transition is written to the store first; instances are cattle rebuilt from the store on restart.
Deployments are blue/green: a new fleet is started and warmed while the old one serves, the routing table
switches in one assignment, then the old fleet drains and stops."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from moorage.artifacts import ArtifactError, PreparedModel, UnpackLimits, prepare_model
from moorage.compute.base import Instance, InstanceProvider, InstanceSpec, InstanceStartError
from moorage.config import Settings
from moorage.dataplane.connection import WorkerClient
from moorage.dataplane.routes import EndpointRoute, RoutingTable, VariantRoute, WorkerRoute
from moorage.logs import EndpointLogs
from moorage.store import Store
from moorage.store.tables import EndpointRow

INVOCATION_TIMEOUT = 60.0
DEFAULT_STARTUP_TIMEOUT = 600.0
DEFAULT_DOWNLOAD_TIMEOUT = 3600.0
DRAIN_TIMEOUT = INVOCATION_TIMEOUT + 5


class DeploymentFailed(Exception):
    """str() is the endpoint's FailureReason."""


@dataclass(eq=False)
class RunningInstance:
    instance: Instance
    workers: list[WorkerRoute]
    stopping: bool = False
    monitor: asyncio.Task[None] | None = None


@dataclass(eq=False)
class VariantFleet:
    name: str
    route: VariantRoute
    prepared: PreparedModel
    environment: dict[str, str]
    startup_timeout: float
    desired: int
    instances: list[RunningInstance] = field(default_factory=list)
    closed: bool = False


@dataclass(eq=False)
class Fleet:
    route: EndpointRoute
    variants: list[VariantFleet]


def invocation_timeout(environment: dict[str, str]) -> float:
    """InvokeEndpoint allows 60 s; the model server timeout may only shorten it (read as seconds)."""
    for key in ("SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS", "SAGEMAKER_MODEL_SERVER_TIMEOUT"):
        value = environment.get(key)
        if value:
            with contextlib.suppress(ValueError):
                return max(0.001, min(INVOCATION_TIMEOUT, float(value)))
    return INVOCATION_TIMEOUT


# Endpoint-config features that change what the endpoint does; running without them would look like
# success while doing something else, so the endpoint fails instead and says what to remove.
_UNSERVED_CONFIG = {
    "AsyncInferenceConfig": "asynchronous inference (InvokeEndpointAsync)",
    "ShadowProductionVariants": "shadow variants",
    "ExplainerConfig": "online explainability",
}


def check_supported(config: dict[str, Any]) -> None:
    """Refuse endpoint configs that ask for a mode this server does not run yet."""
    for member, feature in _UNSERVED_CONFIG.items():
        if config.get(member):
            raise DeploymentFailed(
                f"Endpoint config {config['EndpointConfigName']} sets {member}: {feature} is not supported "
                f"by this server yet. Remove {member} to serve the model in real time."
            )


def primary_container(model: dict[str, Any]) -> dict[str, Any]:
    if "PrimaryContainer" in model:
        container: dict[str, Any] = model["PrimaryContainer"]
    else:
        containers = model.get("Containers") or []
        if len(containers) != 1:
            raise DeploymentFailed(
                f"Model {model['ModelName']} has {len(containers)} containers; inference pipelines and "
                "multi-container endpoints are not supported by this server yet. Use one PrimaryContainer."
            )
        container = containers[0]
    if container.get("Mode") == "MultiModel":
        raise DeploymentFailed(
            f"Model {model['ModelName']} uses Mode=MultiModel, which this server does not support yet. "
            "Deploy each model as its own endpoint or variant."
        )
    return container


class Reconciler:
    def __init__(
        self,
        store: Store,
        provider: InstanceProvider,
        table: RoutingTable,
        logs: EndpointLogs,
        settings: Settings,
        region: str,
    ) -> None:
        self.store = store
        self.provider = provider
        self.table = table
        self.logs = logs
        self.settings = settings
        self.region = region
        self.fleets: dict[str, Fleet] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # ---- what the control plane calls (all return at once; work goes on in tasks) ----------------

    def create(self, name: str) -> None:
        self._run(name, self._create(name))

    def update(self, name: str) -> None:
        self._run(name, self._update(name))

    def delete(self, name: str) -> None:
        previous = self._tasks.pop(name, None)
        self._run(name, self._delete(name, previous))

    def current_instance_counts(self, name: str) -> dict[str, int]:
        fleet = self.fleets.get(name)
        if fleet is None:
            return {}
        return {v.name: v.route.instance_count() for v in fleet.variants}

    async def restore(self) -> None:
        """Rebuild what the store says should run; InService endpoints are warm before this returns."""
        with self.store.session() as session:
            rows = list(session.query(EndpointRow).all())
        resumed = []
        for row in rows:
            if row.status == "Deleting":
                self.delete(row.name)
            elif row.status == "Creating":
                self.create(row.name)
            elif row.status in ("InService", "Updating"):
                resumed.append(self._resume(row.name, row.status, row.deployed or {}))
        await asyncio.gather(*resumed)

    async def shutdown(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        await asyncio.gather(*(self._retire(f, drain=False) for f in self.fleets.values()))
        self.fleets.clear()

    # ---- transitions ---------------------------------------------------------------------------

    def _run(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work, name=f"endpoint:{name}")
        self._tasks[name] = task
        task.add_done_callback(lambda t: self._forget(name, t))

    def _forget(self, name: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(name) is task:
            del self._tasks[name]
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.logs.write(name, f"Internal error while reconciling: {exc!r}")

    def _save(self, name: str, **changes: Any) -> bool:
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            if row is None:
                return False
            for key, value in changes.items():
                setattr(row, key, value)
            row.last_modified_time = time.time()
        return True

    async def _create(self, name: str) -> None:
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            snapshot = row.pending if row else None
        if not snapshot:
            return
        try:
            fleet = await self._deploy(name, snapshot)
        except DeploymentFailed as failure:
            self.logs.write(name, f"Endpoint creation failed: {failure}")
            self._save(name, status="Failed", failure_reason=str(failure)[:1024], pending=None)
            return
        self._promote(fleet, snapshot)
        self.logs.write(name, "Endpoint is InService.")

    async def _update(self, name: str) -> None:
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            snapshot = row.pending if row else None
            old_config = row.config_name if row else ""
        if not snapshot:
            return
        new_config = snapshot["config"]["EndpointConfigName"]
        try:
            fleet = await self._deploy(name, snapshot)
        except DeploymentFailed as failure:
            reason = (
                f"Update to endpoint config {new_config} failed and was rolled back; the endpoint still "
                f"serves {old_config}. Cause: {failure}"
            )
            self.logs.write(name, reason)
            self._save(
                name, status="InService", failure_reason=reason[:1024], pending=None, pending_start_time=None
            )
            return
        old = self.fleets.get(name)
        self._promote(fleet, snapshot)
        self.logs.write(name, f"Traffic switched to {new_config}; the previous instances are draining.")
        if old is not None:
            await self._retire(old, drain=True)

    async def _delete(self, name: str, previous: asyncio.Task[None] | None) -> None:
        if previous is not None and not previous.done():
            previous.cancel()
            with contextlib.suppress(BaseException):
                await previous
        self.table.remove(name)
        fleet = self.fleets.pop(name, None)
        if fleet is not None:
            await self._retire(fleet, drain=False)
        with self.store.session() as session:
            row = session.get(EndpointRow, name)
            if row is not None:
                session.delete(row)
        self.logs.write(name, "Endpoint deleted.")

    async def _resume(self, name: str, status: str, deployed: dict[str, Any]) -> None:
        self.logs.write(name, f"Server restarted: starting the instances of this {status} endpoint again.")
        try:
            fleet = await self._deploy(name, deployed)
        except DeploymentFailed as failure:
            reason = f"The endpoint could not be started again after a server restart: {failure}"
            self.logs.write(name, reason)
            self._save(name, status="Failed", failure_reason=reason[:1024], pending=None)
            return
        self._activate(fleet)
        if status == "Updating":
            self.update(name)

    def _promote(self, fleet: Fleet, snapshot: dict[str, Any]) -> None:
        """Route traffic to a freshly deployed fleet and record its snapshot as what the endpoint runs."""
        self._activate(fleet)
        self._save(
            fleet.route.name,
            status="InService",
            failure_reason=None,
            deployed=snapshot,
            pending=None,
            pending_start_time=None,
            config_name=snapshot["config"]["EndpointConfigName"],
        )

    def _activate(self, fleet: Fleet) -> None:
        self.fleets[fleet.route.name] = fleet
        self.table.install(fleet.route)

    # ---- fleets and instances ------------------------------------------------------------------

    async def _deploy(self, name: str, snapshot: dict[str, Any]) -> Fleet:
        """Prepare artifacts and start every instance; nothing is left running if this fails."""
        check_supported(snapshot["config"])
        if (snapshot["config"].get("DataCaptureConfig") or {}).get("EnableCapture"):
            self.logs.write(
                name, "DataCaptureConfig is recorded but not acted on: this server does not capture data yet."
            )
        variants: list[VariantFleet] = []
        try:
            for pv in snapshot["config"]["ProductionVariants"]:
                variants.append(await self._prepare_variant(name, pv, snapshot["models"][pv["ModelName"]]))
            starts = [self._start_instance(name, vf) for vf in variants for _ in range(vf.desired)]
            results = await asyncio.gather(*starts, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except BaseException as exc:
            for vf in variants:
                vf.closed = True
            await asyncio.gather(
                *(self._stop(vf, ri, grace=2) for vf in variants for ri in list(vf.instances))
            )
            if isinstance(exc, (InstanceStartError, ArtifactError)):
                raise DeploymentFailed(str(exc)) from exc
            if isinstance(exc, DeploymentFailed | asyncio.CancelledError):
                raise
            raise DeploymentFailed(f"Internal error while deploying: {exc!r}") from exc
        arn = (
            f"arn:aws:logs:{self.region}:{self.settings.account_id}:log-group:/aws/sagemaker/Endpoints/{name}"
        )
        return Fleet(EndpointRoute(name, [vf.route for vf in variants], arn), variants)

    async def _prepare_variant(self, name: str, pv: dict[str, Any], model: dict[str, Any]) -> VariantFleet:
        container = primary_container(model)
        environment = {str(k): str(v) for k, v in (container.get("Environment") or {}).items()}
        limits = UnpackLimits(max_total_bytes=self.settings.max_unpacked_bytes)
        source = container.get("ModelDataUrl") or "ModelDataSource"
        self.logs.write(
            name, f"Variant {pv['VariantName']}: preparing model {model['ModelName']} from {source}"
        )
        timeout = float(pv.get("ModelDataDownloadTimeoutInSeconds", DEFAULT_DOWNLOAD_TIMEOUT))
        try:
            prepared = await asyncio.wait_for(
                asyncio.to_thread(
                    prepare_model,
                    container,
                    self.settings.cache_dir,
                    limits,
                    lambda line: self.logs.write(name, line),
                ),
                timeout,
            )
        except TimeoutError:
            raise DeploymentFailed(
                f"Downloading the model data took longer than {timeout:.0f} s. "
                "Raise ModelDataDownloadTimeoutInSeconds or use a smaller artifact."
            ) from None
        if prepared.env_dir is not None:
            environment.setdefault("VIRTUAL_ENV", str(prepared.env_dir))
            environment["PATH"] = f"{prepared.env_dir / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        weight = float(pv.get("InitialVariantWeight", 1.0))
        route = VariantRoute(pv["VariantName"], weight, invocation_timeout(environment))
        return VariantFleet(
            name=pv["VariantName"],
            route=route,
            prepared=prepared,
            environment=environment,
            startup_timeout=float(
                pv.get("ContainerStartupHealthCheckTimeoutInSeconds", DEFAULT_STARTUP_TIMEOUT)
            ),
            desired=int(pv.get("InitialInstanceCount", 1)),
        )

    async def _start_instance(self, name: str, vf: VariantFleet) -> RunningInstance:
        spec = InstanceSpec(
            instance_id=f"i-{secrets.token_hex(4)}",
            endpoint_name=name,
            variant_name=vf.name,
            model_dir=vf.prepared.model_dir,
            python=vf.prepared.python,
            environment=vf.environment,
            log_path=self.logs.path(name),
            startup_timeout=vf.startup_timeout,
        )
        self.logs.write(name, f"Variant {vf.name}: starting instance {spec.instance_id}")
        vf.route.starting += 1
        try:
            instance = await self.provider.start(spec)
        finally:
            vf.route.starting -= 1
        workers = []
        for w in instance.workers:
            client = WorkerClient(w.socket)
            kill = _killer(instance, w.index, client)
            workers.append(WorkerRoute(client, instance.instance_id, w.index, kill))
        running = RunningInstance(instance, workers)
        vf.instances.append(running)
        vf.route.add_workers(workers)
        running.monitor = asyncio.create_task(self._watch(name, vf, running))
        self.logs.write(
            name, f"Variant {vf.name}: instance {spec.instance_id} is healthy ({len(workers)} workers)"
        )
        return running

    async def _watch(self, name: str, vf: VariantFleet, running: RunningInstance) -> None:
        """Replace an instance that exits on its own; the endpoint stays InService meanwhile."""
        status = await running.instance.wait()
        if running.stopping or vf.closed:
            return
        instance_id = running.instance.instance_id
        self.logs.write(
            name, f"Variant {vf.name}: instance {instance_id} exited (status {status}); replacing it"
        )
        await self._stop(vf, running, grace=0)
        delay = 0.5
        while not vf.closed:
            try:
                await self._start_instance(name, vf)
                return
            except InstanceStartError as failure:
                self.logs.write(
                    name, f"Variant {vf.name}: replacement failed ({failure}); retrying in {delay:.1f} s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _stop(self, vf: VariantFleet, running: RunningInstance, grace: float) -> None:
        running.stopping = True
        vf.route.remove_instance(running.instance.instance_id)
        if running in vf.instances:
            vf.instances.remove(running)
        for worker in running.workers:
            worker.client.close()
        await running.instance.stop(grace)

    async def _retire(self, fleet: Fleet, drain: bool) -> None:
        """Stop a fleet, after its in-flight requests if `drain`.

        Cancelling this (a DeleteEndpoint during an update's drain, a server shutdown) cuts the
        drain short but never the stop: a fleet no longer in `self.fleets` has nobody else to stop it."""
        for vf in fleet.variants:
            vf.closed = True
            for running in vf.instances:
                running.stopping = True
        grace = self.settings.stop_grace_seconds if drain else 5.0
        try:
            if drain:
                deadline = time.monotonic() + DRAIN_TIMEOUT
                while time.monotonic() < deadline and any(
                    w.client.outstanding for vf in fleet.variants for r in vf.instances for w in r.workers
                ):
                    await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            grace = 5.0
            raise
        finally:
            await asyncio.shield(self._stop_fleet(fleet, grace))

    async def _stop_fleet(self, fleet: Fleet, grace: float) -> None:
        instances = [r for vf in fleet.variants for r in vf.instances]
        await asyncio.gather(*(r.instance.stop(grace) for r in instances))
        for running in instances:
            for worker in running.workers:
                worker.client.close()
            if running.monitor is not None:
                running.monitor.cancel()


def _killer(instance: Instance, index: int, client: WorkerClient) -> Callable[[], None]:
    """Kill a hung worker; until its process is gone, its address takes no new connections (a
    request connecting in that moment would be lost with it)."""

    def kill() -> None:
        client.replacing = True
        instance.kill_worker(index, client.replaced)

    return kill
