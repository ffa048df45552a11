"""The deployment watch: an AutoRollbackConfiguration alarm in ALARM or a passed deadline stops the step
under way (which is cancelled and cleaned up) and says why; alarms that exist but are OK do not."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from moorage.clock import SystemClock
from moorage.control.deployment.watch import RollbackNeeded, Watch
from moorage.monitoring.alarm_state import set_state
from moorage.store import Store, open_store
from moorage.store.tables import AlarmRow


def _alarm(store: Store, name: str, state: str, reason: str = "") -> None:
    with store.session() as session:
        row = session.get(AlarmRow, name)
        if row is None:
            session.add(
                AlarmRow(
                    name=name,
                    arn=f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
                    spec={},
                    state=state,
                    state_reason=reason,
                    state_updated=0.0,
                    state_transitioned=0.0,
                    configuration_updated=0.0,
                )
            )
        else:
            row.state, row.state_reason = state, reason


def test_an_alarm_in_alarm_stops_the_bake_and_names_itself(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    _alarm(store, "errors", "OK")
    _alarm(store, "latency", "INSUFFICIENT_DATA")
    _alarm(store, "elsewhere", "ALARM", "not watched")
    clock = SystemClock()

    async def scenario() -> str:
        watch = Watch(store, clock, ("errors", "latency"), None, "")
        await watch.bake(0.3)  # OK and INSUFFICIENT_DATA do not roll back
        stopped = asyncio.Event()

        async def step() -> None:
            try:
                await asyncio.sleep(60)
            finally:
                stopped.set()

        async def trip() -> None:
            await asyncio.sleep(0.2)
            await store.run(_alarm, store, "latency", "ALARM", "Threshold Crossed: 1 datapoint [2.0] > 1.0")

        tripping = asyncio.create_task(trip())
        with pytest.raises(RollbackNeeded) as rollback:
            await watch.guard(step())
        await tripping
        assert stopped.is_set()  # the step was cancelled and awaited
        return str(rollback.value)

    reason = asyncio.run(scenario())
    assert reason == "CloudWatch alarm latency is in ALARM: Threshold Crossed: 1 datapoint [2.0] > 1.0"


def test_the_deadline_stops_the_deployment(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    clock = SystemClock()

    async def scenario() -> str:
        watch = Watch(store, clock, (), clock.monotonic() + 0.2, "MaximumExecutionTimeoutInSeconds (600 s)")
        assert await watch.guard(asyncio.sleep(0.05, "done")) == "done"  # within the deadline
        with pytest.raises(RollbackNeeded) as rollback:
            await watch.bake(30)
        return str(rollback.value)

    assert (
        asyncio.run(scenario())
        == "the deployment did not finish within MaximumExecutionTimeoutInSeconds (600 s)"
    )


def test_an_alarm_that_fired_and_recovered_since_the_start_still_counts(tmp_path: Path) -> None:
    """SetAlarmState to ALARM lasts until the next evaluation; a check in between still sees it."""
    store = open_store(tmp_path)
    _alarm(store, "errors", "OK")
    clock = SystemClock()
    watch = Watch(store, clock, ("errors",), None, "")

    def fire_and_recover(at: float) -> None:
        with store.session() as session:
            alarm = session.get(AlarmRow, "errors")
            assert alarm is not None
            set_state(session, alarm, "ALARM", "set by hand", None, at)
            set_state(session, alarm, "OK", "evaluated again", None, at + 0.1)

    fire_and_recover(watch.since - 60)  # before the deployment: does not count
    asyncio.run(watch.check())
    fire_and_recover(clock.time())
    with pytest.raises(RollbackNeeded, match="CloudWatch alarm errors is in ALARM: set by hand"):
        asyncio.run(watch.check())
