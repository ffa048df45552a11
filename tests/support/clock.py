"""A fake Clock: time stands still until the test advances it; sleepers wake in deadline order."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._epoch = start
        self._now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self._epoch + self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._order), future))
        await future

    async def advance(self, seconds: float, step: float = 0.1) -> None:
        """Move time forward in steps, waking due sleepers and letting the tasks they wake run."""
        target = self._now + seconds
        while True:
            await _settle()
            due = self._sleepers[0][0] if self._sleepers else None
            next_stop = min(target, self._now + step) if due is None else min(target, due, self._now + step)
            self._now = max(self._now, next_stop)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            await _settle()
            if self._now >= target:
                return


async def _settle(rounds: int = 20) -> None:
    """Let ready callbacks and the tasks they wake run (a few loop turns)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
