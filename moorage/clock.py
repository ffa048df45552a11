"""Time, passed in: fleets, health checks and autoscaling read the clock and sleep only through a Clock,
so their tests run on a fake clock in milliseconds instead of waiting real seconds."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Epoch seconds: what is stored and shown (CreationTime, StartTime, ...)."""
        ...

    def monotonic(self) -> float:
        """Seconds for deadlines and intervals; never goes backwards."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def sleep_or_wake(clock: Clock, seconds: float, wake: asyncio.Event) -> bool:
    """Wait `seconds` on `clock`, or less if `wake` is set meanwhile; True (and `wake` cleared) when
    woken, so a loop that waits for its next turn still reacts at once to new work."""
    sleep = asyncio.ensure_future(clock.sleep(seconds))
    woken = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleep, woken}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleep.cancel()
        woken.cancel()
    if wake.is_set():
        wake.clear()
        return True
    return False
