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
