"""What rolls a deployment back while it runs: an AutoRollbackConfiguration alarm in ALARM, or the
deployment outliving MaximumExecutionTimeoutInSeconds. Both are checked from the moment the deployment
starts until its old fleet is let go, every `ALARM_POLL_SECONDS` and at once when a step begins.

An alarm counts if it is in ALARM now or went into ALARM at any time since the deployment started (its
StateUpdate history), so one that fired and recovered between two checks (SetAlarmState, which the next
evaluation overrides, or a short spike) still rolls the deployment back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable
from typing import TypeVar

from sqlalchemy import select

from moorage.clock import Clock
from moorage.monitoring.alarm_state import in_alarm
from moorage.store import Store
from moorage.store.tables import AlarmHistoryRow

log = logging.getLogger("moorage.control")

T = TypeVar("T")

# how often the alarms' states are read while a deployment runs (one small query per deployment)
ALARM_POLL_SECONDS = 0.25


class RollbackNeeded(Exception):
    """str() says why the deployment is rolled back: it becomes part of the FailureReason."""


class Watch:
    """The guardrails of one deployment: its alarms and its deadline (monotonic seconds; None: none)."""

    def __init__(
        self, store: Store, clock: Clock, alarms: tuple[str, ...], deadline: float | None, timeout: str
    ) -> None:
        self.store = store
        self.clock = clock
        self.alarms = alarms
        self.since = clock.time()  # the deployment's start: alarms that fired since count
        self.deadline = deadline
        self.timeout = timeout  # how the timeout reads in the FailureReason

    async def check(self) -> None:
        """Raise RollbackNeeded if an alarm is in ALARM or the deadline has passed. A store that cannot
        be read does not roll back a healthy deployment: it is logged and read again next time."""
        if self.deadline is not None and self.clock.monotonic() >= self.deadline:
            raise RollbackNeeded(f"the deployment did not finish within {self.timeout}")
        if not self.alarms:
            return
        try:
            firing = await self.store.run(self._firing)
        except Exception:
            log.warning("reading the states of alarms %s failed", ", ".join(self.alarms), exc_info=True)
            return
        if firing:
            name = next(a for a in self.alarms if a in firing)
            raise RollbackNeeded(f"CloudWatch alarm {name} is in ALARM: {firing[name]}")

    async def guard(self, work: Awaitable[T]) -> T:
        """`work`'s result, unless a check trips first: then `work` is cancelled (and awaited, so what it
        started is cleaned up) and RollbackNeeded raised."""
        task = asyncio.ensure_future(work)
        try:
            await self.check()
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._next_check())
                if task in done:
                    return task.result()
                await self.check()
        except BaseException:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            raise

    async def bake(self, seconds: float) -> None:
        """Wait `seconds` (a baking period) while watching; a zero wait still checks once."""
        await self.guard(self.clock.sleep(max(0.0, seconds)))

    def _next_check(self) -> float:
        if self.deadline is None:
            return ALARM_POLL_SECONDS
        return max(0.0, min(ALARM_POLL_SECONDS, self.deadline - self.clock.monotonic()))

    def _firing(self) -> dict[str, str]:
        """The alarms in ALARM now, or at some time since the deployment started, with their reason."""
        with self.store.session() as session:
            firing = in_alarm(session, self.alarms)
            history = session.execute(
                select(AlarmHistoryRow.alarm_name, AlarmHistoryRow.data)
                .where(
                    AlarmHistoryRow.alarm_name.in_(self.alarms),
                    AlarmHistoryRow.item_type == "StateUpdate",
                    AlarmHistoryRow.timestamp >= self.since,
                )
                .order_by(AlarmHistoryRow.timestamp)
            ).all()
        for name, data in history:
            with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                new = json.loads(data)["newState"]
                if new.get("stateValue") == "ALARM":
                    firing.setdefault(name, str(new.get("stateReason", "")))
        return firing
