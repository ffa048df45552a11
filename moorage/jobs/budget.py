"""A bound on the bytes that jobs hold in memory at once: asynchronous inputs read and not yet sent,
batch transform objects under way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class ByteBudget:
    """At most `limit` bytes held at once by the holders; one larger than `limit` waits to be alone
    (so it still runs)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._freed = asyncio.Event()

    @contextlib.asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.limit)
        while self.held and self.held + size > self.limit:
            self._freed.clear()
            await self._freed.wait()
        self.held += size
        try:
            yield
        finally:
            self.held -= size
            self._freed.set()
