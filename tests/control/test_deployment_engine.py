"""A deployment carried out by the reconciler on a real store, with instances from a fake provider (plain
objects, no processes): what it leaves running when it is rolled back, cancelled or handed over while
the new fleet starts or bakes, what the instance quotas and /metrics count meanwhile."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families

from moorage.api.errors import ResourceLimitExceeded
from moorage.clock import SystemClock
from moorage.compute.base import InstanceSpec
from moorage.control.quotas import InstanceQuotas, instance_demand
from moorage.control.reconciler import Reconciler
from moorage.dataplane.routes import RoutingTable
from moorage.dataplane.stats import StatsBook
from moorage.metrics.exposition import FleetCollector, registry, render
from moorage.metrics.usage import UsageMeter
from moorage.store import Store, open_store
from moorage.store.tables import AlarmRow, EndpointRow
from tests.fleet.fakes import FakeInstance, FakeProvider, context

P = ParamSpec("P")
T = TypeVar("T")

OLD, NEW = 1.0, 2.0  # accepted_at of the deployed and the pending snapshot: their deployment keys
OLD_KEY, NEW_KEY = f"{OLD:.6f}", f"{NEW:.6f}"
SCALE = 0.001  # MOORAGE_DEPLOYMENT_TIME_SCALE: a 600 s timeout passes in 0.6 s


def _snapshot(config: str, accepted_at: float, instances: int) -> dict[str, Any]:
    variant = {
        "VariantName": "v",
        "ModelName": "m",
        "InitialInstanceCount": instances,
        "InstanceType": "ml.m5.large",
    }
    return {
        "config": {"EndpointConfigName": config, "ProductionVariants": [variant]},
        "models": {"m": {"ModelName": "m", "PrimaryContainer": {"Image": "img"}}},
        "accepted_at": accepted_at,
    }


@dataclass
class _Provider(FakeProvider):
    """Old instances start at once; the new config's take `green_seconds` each, in turn, and run
    `on_green` as they start."""

    green_seconds: list[float] = field(default_factory=list)
    on_green: Callable[[], None] | None = None

    async def start(self, spec: InstanceSpec) -> FakeInstance:
        new = spec.deployment == NEW_KEY
        self.start_seconds = self.green_seconds.pop(0) if new and self.green_seconds else 0.0
        instance = await super().start(spec)
        if new and self.on_green is not None:
            self.on_green()
        return instance

    def live(self) -> list[FakeInstance]:
        """Instances never told to stop (one let go of for the next server to adopt included)."""
        return [i for i in self.started if i.stopped_with is None]

    def of(self, key: str) -> list[FakeInstance]:
        return [i for i in self.live() if i.spec.deployment == key]


class _SlowAlarmReads(Store):
    """A store whose reads of a deployment's alarms wait for `ready` first (a slow database)."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.ready: Callable[[], Awaitable[None]] | None = None

    async def run(self, work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if getattr(work, "__name__", "") == "_firing" and self.ready is not None:
            await self.ready()
        return await super().run(work, *args, **kwargs)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path / "state")
    yield opened
    opened.close()


def _reconciler(
    store: Store, provider: _Provider, tmp_path: Path, stats: StatsBook | None = None
) -> Reconciler:
    ctx = context(provider, tmp_path, cache_dir=tmp_path / "cache", deployment_time_scale=SCALE)
    return Reconciler(store, RoutingTable(), dataclasses.replace(ctx, stats=stats), poll_seconds=0.05)


async def _serving(store: Store, reconciler: Reconciler, instances: int = 1) -> None:
    """The endpoint InService on its old config, its fleet started as after a restart."""
    with store.session() as session:
        session.add(
            EndpointRow(
                name="ep",
                name_key="ep",
                arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
                config_name="cfg-old",
                status="InService",
                creation_time=1.0,
                last_modified_time=1.0,
                tags=[],
                generation=0,
                deployed=_snapshot("cfg-old", OLD, instances),
            )
        )
    await reconciler.restore()


def _write(store: Store, **values: Any) -> None:
    with store.session() as session:
        row = session.get(EndpointRow, "ep")
        assert row is not None
        for name, value in {**values, "version": row.version + 1}.items():
            setattr(row, name, value)


def _update(store: Store, reconciler: Reconciler, instances: int, deployment: dict[str, Any] | None) -> None:
    """UpdateEndpoint accepted (as the control plane writes it), and the reconciler told."""
    _write(
        store,
        status="Updating",
        pending=_snapshot("cfg-new", NEW, instances),
        pending_start_time=time.time(),
        deployment_config=deployment,
        generation=1,
    )
    reconciler.update("ep")


def _row(store: Store) -> EndpointRow | None:
    with store.session() as session:
        return session.get(EndpointRow, "ep")


def _set_alarm(store: Store, name: str, state: str) -> None:
    with store.session() as session:
        row = session.get(AlarmRow, name)
        if row is None:
            row = AlarmRow(
                name=name,
                arn=f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
                spec={},
                state_updated=0.0,
                state_transitioned=0.0,
                configuration_updated=0.0,
            )
            session.add(row)
        row.state, row.state_reason = state, f"set to {state} by the test"


async def _until(condition: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_timeout_while_the_new_fleet_starts_stops_the_instances_that_started(
    store: Store, tmp_path: Path
) -> None:
    """One new instance is up, the other still starting, when MaximumExecutionTimeoutInSeconds passes:
    the rollback stops both, and the old fleet alone runs."""
    provider = _Provider(SystemClock(), green_seconds=[0.05, 30.0])  # type: ignore[arg-type]
    reconciler = _reconciler(store, provider, tmp_path)
    await _serving(store, reconciler)
    policy = {
        "TrafficRoutingConfiguration": {"Type": "ALL_AT_ONCE", "WaitIntervalInSeconds": 0},
        "MaximumExecutionTimeoutInSeconds": 600,
    }
    _update(store, reconciler, 2, {"BlueGreenUpdatePolicy": policy})
    await _until(lambda: (r := _row(store)) is not None and r.status == "InService", "never rolled back")
    row = _row(store)
    assert row is not None and "MaximumExecutionTimeoutInSeconds (600 s" in (row.failure_reason or "")
    assert row.config_name == "cfg-old" and row.pending is None
    assert provider.of(NEW_KEY) == []  # the one that had started too
    assert len(provider.of(OLD_KEY)) == 1
    await reconciler.shutdown()


async def test_delete_while_the_new_fleet_starts_leaves_nothing_running(store: Store, tmp_path: Path) -> None:
    provider = _Provider(SystemClock(), green_seconds=[0.05, 30.0])  # type: ignore[arg-type]
    reconciler = _reconciler(store, provider, tmp_path)
    await _serving(store, reconciler)
    _update(store, reconciler, 2, None)
    await _until(lambda: len(provider.of(NEW_KEY)) == 1, "the first new instance never started")
    _write(store, status="Deleting")  # DeleteEndpoint accepted
    reconciler.delete("ep")
    await _until(lambda: _row(store) is None, "the endpoint was never deleted")
    assert provider.live() == []
    assert reconciler.table.get("ep") is None
    await reconciler.shutdown()


async def test_an_alarm_read_as_the_new_fleet_finishes_starting_still_stops_it(
    store: Store, tmp_path: Path
) -> None:
    """The alarm goes into ALARM as the new instance comes up, and the watch's read of it returns only
    after the fleet finished starting: the rollback stops that fleet all the same."""
    _set_alarm(store, "trip", "OK")
    slow = _SlowAlarmReads(store)
    started = asyncio.Event()

    async def after_the_start() -> None:
        await started.wait()
        await asyncio.sleep(0.1)  # the fleet's start has returned by now

    def trip() -> None:
        _set_alarm(store, "trip", "ALARM")
        started.set()

    slow.ready = after_the_start
    provider = _Provider(SystemClock(), green_seconds=[0.1], on_green=trip)  # type: ignore[arg-type]
    reconciler = _reconciler(slow, provider, tmp_path)
    await _serving(store, reconciler)
    _update(store, reconciler, 1, {"AutoRollbackConfiguration": {"Alarms": [{"AlarmName": "trip"}]}})
    await _until(lambda: (r := _row(store)) is not None and r.status == "InService", "never rolled back")
    row = _row(store)
    assert row is not None and "CloudWatch alarm trip is in ALARM" in (row.failure_reason or "")
    await _until(lambda: provider.of(NEW_KEY) == [], "the new fleet outlived its rollback", seconds=5)
    await reconciler.shutdown()


async def _half_shifted(store: Store, tmp_path: Path, stats: StatsBook | None = None) -> Reconciler:
    """One old instance serving; a LINEAR update to two new ones has moved half the traffic and bakes."""
    provider = _Provider(SystemClock(), green_seconds=[0.05, 0.05])  # type: ignore[arg-type]
    reconciler = _reconciler(store, provider, tmp_path, stats)
    await _serving(store, reconciler)
    routing = {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 60_000,  # 60 s at the test's time scale: the test ends long before
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 50},
    }
    _update(store, reconciler, 2, {"BlueGreenUpdatePolicy": {"TrafficRoutingConfiguration": routing}})
    await _until(
        lambda: (d := reconciler.deployments.get("ep")) is not None and d.share == 0.5, "no traffic moved"
    )
    return reconciler


async def test_a_server_handing_its_instances_over_leaves_the_new_fleet_running(
    store: Store, tmp_path: Path
) -> None:
    """A server whose instances outlive it (a cluster's) stops mid-deployment: the other servers still
    route half the traffic to the new fleet, so it keeps running for the next server to adopt."""
    reconciler = await _half_shifted(store, tmp_path)
    provider = reconciler.ctx.provider
    assert isinstance(provider, _Provider)
    await reconciler.shutdown(stop_instances=False)
    assert len(provider.of(NEW_KEY)) == 2 and len(provider.of(OLD_KEY)) == 1
    row = _row(store)
    assert row is not None and row.status == "Updating"  # the next server runs the update again


async def test_metrics_count_both_fleets_instances_once_per_variant(store: Store, tmp_path: Path) -> None:
    reconciler = await _half_shifted(store, tmp_path, StatsBook())
    assert len(reconciler.every_fleet()) == 2  # the new fleet's instances are sampled too
    collector = FleetCollector(reconciler.every_fleet, UsageMeter(SystemClock(), lambda: []))
    text = render(registry(collector)).decode()
    samples = [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("endpoint") == "ep" and "instance" not in sample.labels
    ]
    counts = {s.value for s in samples if s.name == "sagemaker_variant_instances"}
    assert counts == {3.0}  # one series: one old instance and two new
    series = [(s.name, tuple(sorted(s.labels.items()))) for s in samples]
    assert len(series) == len(set(series))  # the two fleets' shared statistics added once
    await reconciler.shutdown()


async def test_update_rollback_failed_holds_its_instances_in_the_quota(store: Store) -> None:
    with store.session() as session:
        session.add(
            EndpointRow(
                name="stranded",
                name_key="stranded",
                arn="arn:aws:sagemaker:us-east-1:123456789012:endpoint/stranded",
                config_name="cfg-old",
                status="UpdateRollbackFailed",
                creation_time=1.0,
                last_modified_time=1.0,
                tags=[],
                generation=1,
                deployed=_snapshot("cfg-old", OLD, 2),
                pending=_snapshot("cfg-new", NEW, 2),
            )
        )
    quotas = InstanceQuotas(total=5, per_endpoint=5)
    with pytest.raises(ResourceLimitExceeded, match="current utilization of 4 Instances"):
        quotas.check(store, "another", instance_demand(_snapshot("cfg", 3.0, 2)))
