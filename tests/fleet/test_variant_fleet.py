"""A variant's fleet on a fake clock: starting, resizing, draining, replacing and backing off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from moorage.compute.base import InstanceStartError
from moorage.fleet import VariantFleet
from tests.fleet.fakes import FakeProvider, context, plan
from tests.support.clock import FakeClock


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider(FakeClock())


def _fleet(provider: FakeProvider, tmp_path: Path, instances: int = 1, **settings: float) -> VariantFleet:
    return VariantFleet("ep", plan(instances), context(provider, tmp_path, **settings))


def _routed(fleet: VariantFleet) -> set[str]:
    return {w.instance_id for w in fleet.route.workers}


async def test_start_is_all_or_nothing(provider: FakeProvider, tmp_path: Path) -> None:
    fleet = _fleet(provider, tmp_path, instances=3)
    provider.fail_next = 1
    with pytest.raises(InstanceStartError):
        await asyncio.gather(fleet.start(), provider.clock.advance(5))
    assert provider.running() == [] and fleet.route.workers == []


async def test_scale_out_routes_new_instances_only_once_warm(provider: FakeProvider, tmp_path: Path) -> None:
    fleet = _fleet(provider, tmp_path)
    await asyncio.gather(fleet.start(), provider.clock.advance(1))
    fleet.activate()
    provider.start_seconds = 10
    resize = fleet.resize(3)
    await provider.clock.advance(5)
    assert len(_routed(fleet)) == 1 and fleet.current == 1 and fleet.desired == 3  # still warming up
    await provider.clock.advance(6)
    await resize
    assert len(_routed(fleet)) == 3 and len(fleet.route.workers) == 6
    await fleet.close(drain=False)


async def test_scale_in_drains_then_stops_with_the_grace_period(
    provider: FakeProvider, tmp_path: Path
) -> None:
    fleet = _fleet(provider, tmp_path, instances=2, stop_grace_seconds=30)
    await asyncio.gather(fleet.start(), provider.clock.advance(1))
    fleet.activate()
    busy, idle = fleet.members
    busy.workers[0].client.outstanding = 1  # a request in flight
    await asyncio.gather(fleet.resize(1), provider.clock.advance(0.1))
    assert _routed(fleet) == {busy.instance_id}  # the idle one left
    victim = next(i for i in provider.started if i.instance_id == idle.instance_id)
    await provider.clock.advance(0.5)
    assert victim.stopped_with == 30
    await asyncio.gather(fleet.resize(0), provider.clock.advance(0.1))
    assert _routed(fleet) == set()  # out of the routing table at once ...
    survivor = next(i for i in provider.started if i.instance_id == busy.instance_id)
    await provider.clock.advance(5)
    assert survivor.stopped_with is None  # ... but not stopped while its request runs
    busy.workers[0].client.outstanding = 0
    await provider.clock.advance(0.5)
    assert survivor.stopped_with == 30


async def test_a_drain_that_never_ends_is_cut_off(provider: FakeProvider, tmp_path: Path) -> None:
    fleet = _fleet(provider, tmp_path, drain_seconds=65)
    await asyncio.gather(fleet.start(), provider.clock.advance(1))
    fleet.activate()
    fleet.members[0].workers[0].client.outstanding = 1
    await asyncio.gather(fleet.resize(0), provider.clock.advance(60))
    assert provider.started[0].stopped_with is None
    await provider.clock.advance(6)
    assert provider.started[0].stopped_with is not None


async def test_an_exited_instance_is_replaced(provider: FakeProvider, tmp_path: Path) -> None:
    fleet = _fleet(provider, tmp_path, instances=2)
    await asyncio.gather(fleet.start(), provider.clock.advance(1))
    fleet.activate()
    gone = provider.started[0]
    gone.exit(1)
    await provider.clock.advance(0.1)
    assert gone.instance_id not in _routed(fleet) and fleet.current == 1
    assert fleet.problem is not None and "exited (status 1)" in fleet.problem.message
    await provider.clock.advance(1.5)
    assert fleet.current == 2 and len(provider.running()) == 2
    assert fleet.problem is not None  # reported until the replacement has stayed up (steady_seconds)
    await provider.clock.advance(70)
    assert fleet.problem is None
    await fleet.close(drain=False)


async def test_a_crash_loop_backs_off_exponentially(provider: FakeProvider, tmp_path: Path) -> None:
    fleet = _fleet(provider, tmp_path, backoff_initial_seconds=1, backoff_max_seconds=8, steady_seconds=60)
    await asyncio.gather(fleet.start(), provider.clock.advance(1))
    fleet.activate()
    await provider.clock.advance(100)  # the first instance was steady
    starts: list[float] = []
    for _ in range(6):
        provider.running()[0].exit(1)
        begun = provider.clock.monotonic()
        while not provider.running():
            await provider.clock.advance(0.1)
        starts.append(round(provider.clock.monotonic() - begun, 1))
    # each replacement takes start_seconds plus a delay: none, then 1, 2, 4, 8 and (the maximum) 8 s
    assert [round(s - starts[0], 1) for s in starts] == [0, 1, 2, 4, 8, 8]
    assert fleet.problem is None or "failures in a row" in fleet.problem.message
    await fleet.close(drain=False)


async def test_failing_replacements_keep_trying_and_say_why(provider: FakeProvider, tmp_path: Path) -> None:
    fleet = _fleet(provider, tmp_path, backoff_initial_seconds=1, backoff_max_seconds=4)
    await asyncio.gather(fleet.start(), provider.clock.advance(1))
    fleet.activate()
    provider.fail_next = 3
    provider.started[0].exit(1)
    await provider.clock.advance(3)
    assert fleet.problem is not None and "no weights" in fleet.problem.message
    assert "failures in a row" in fleet.problem.message
    await provider.clock.advance(20)
    assert fleet.current == 1
    await provider.clock.advance(70)
    assert fleet.problem is None
    await fleet.close(drain=False)


async def test_a_scale_out_that_cannot_start_falls_back(provider: FakeProvider, tmp_path: Path) -> None:
    fleet = _fleet(provider, tmp_path)
    await asyncio.gather(fleet.start(), provider.clock.advance(1))
    fleet.activate()
    provider.fail_next = 1
    with pytest.raises(InstanceStartError, match="no weights"):
        await asyncio.gather(fleet.resize(3), provider.clock.advance(3))
    await provider.clock.advance(5)
    assert fleet.desired == fleet.current == len(provider.running())
    await fleet.close(drain=False)


async def test_a_hung_instance_leaves_the_route_and_is_replaced(
    provider: FakeProvider, tmp_path: Path
) -> None:
    fleet = _fleet(provider, tmp_path, instances=2, health_interval_seconds=5, health_failures=2)
    await asyncio.gather(fleet.start(), provider.clock.advance(1))
    fleet.activate()
    hung = provider.started[0]
    hung.answers_ping = False
    await provider.clock.advance(5.5)
    assert hung.instance_id in _routed(fleet)  # one missed ping is not enough
    await provider.clock.advance(5)
    assert hung.instance_id not in _routed(fleet) and fleet.current == 1
    assert hung.stopped_with is not None and hung.stopped_with <= 5
    assert fleet.problem is not None and "did not answer GET /ping" in fleet.problem.message
    await provider.clock.advance(1.5)
    assert fleet.current == 2 and hung.instance_id not in _routed(fleet)
    await fleet.close(drain=False)


async def test_busy_workers_are_not_pinged(provider: FakeProvider, tmp_path: Path) -> None:
    """A worker running a long synchronous request cannot answer /ping; that is not a hang."""
    fleet = _fleet(provider, tmp_path, health_interval_seconds=5, health_failures=2)
    await asyncio.gather(fleet.start(), provider.clock.advance(1))
    fleet.activate()
    provider.started[0].answers_ping = False
    for worker in fleet.members[0].workers:
        worker.client.outstanding = 1
    await provider.clock.advance(30)
    assert fleet.current == 1 and provider.started[0].stopped_with is None
    for worker in fleet.members[0].workers:
        worker.client.outstanding = 0
    await provider.clock.advance(11)
    assert provider.started[0].stopped_with is not None
    await fleet.close(drain=False)
