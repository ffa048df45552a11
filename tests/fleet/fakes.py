"""A provider whose instances are plain objects: fleets are tested on a fake clock, without processes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moorage.artifacts import PreparedModel, UnpackLimits
from moorage.artifacts.prepare import ModelRecipe
from moorage.compute.base import InstanceSpec, InstanceStartError, WorkerAddress
from moorage.fleet import FleetContext, FleetSettings
from moorage.fleet.plan import VariantPlan
from moorage.logs import EndpointLogs
from tests.support.clock import FakeClock


class FakeInstance:
    def __init__(self, spec: InstanceSpec, workers: int) -> None:
        self.instance_id = spec.instance_id
        self.spec = spec
        self.placement = "nowhere (a fake)"
        self.workers = [
            WorkerAddress(i, f"/nonexistent/{spec.instance_id}/w{i}.sock") for i in range(workers)
        ]
        self.exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.stopped_with: float | None = None
        self.answers_ping = True

    async def wait(self) -> int:
        return await self.exited

    def exit(self, status: int = 1) -> None:
        if not self.exited.done():
            self.exited.set_result(status)

    def kill_worker(self, index: int, on_gone: Callable[[], None]) -> None:
        on_gone()

    async def ping(self, index: int, timeout: float) -> bool:
        return self.answers_ping

    async def stop(self, grace: float) -> None:
        self.stopped_with = grace
        self.exit(0)


@dataclass
class FakeProvider:
    clock: FakeClock
    start_seconds: float = 1.0
    workers: int = 2
    fail_next: int = 0  # this many starts fail
    started: list[FakeInstance] = field(default_factory=list)

    async def open(self) -> None:
        pass

    outlives_server = False
    starts_containers = False

    async def adopt(self) -> None:
        pass

    async def release(self, wanted: set[tuple[str, str, str]], grace: float) -> None:
        pass

    async def close(self) -> None:
        pass

    async def start(self, spec: InstanceSpec) -> FakeInstance:
        await self.clock.sleep(self.start_seconds)
        if self.fail_next > 0:
            self.fail_next -= 1
            raise InstanceStartError("model_fn raised RuntimeError: no weights")
        instance = FakeInstance(spec, self.workers)
        self.started.append(instance)
        return instance

    def running(self) -> list[FakeInstance]:
        return [i for i in self.started if not i.exited.done()]


def context(provider: FakeProvider, tmp_path: Path, **settings: float) -> FleetContext:
    return FleetContext(
        provider=provider,
        logs=EndpointLogs(tmp_path / "logs"),
        clock=provider.clock,
        settings=FleetSettings(**settings),  # type: ignore[arg-type]
        region="us-east-1",
        account="123456789012",
    )


def plan(instances: int = 1, name: str = "v", weight: float = 1.0) -> VariantPlan:
    prepared = PreparedModel(model_dir=Path("/nonexistent/model"), python="python3", env_dir=None)
    return VariantPlan(
        name=name,
        prepared=prepared,
        recipe=ModelRecipe({"Image": "img"}, UnpackLimits(), None, None),
        instance_type="ml.m5.large",
        download_timeout=3600.0,
        deployment="0.000000",
        environment={},
        startup_timeout=600.0,
        instances=instances,
        weight=weight,
        timeout=60.0,
        routing="LEAST_OUTSTANDING_REQUESTS",
    )
