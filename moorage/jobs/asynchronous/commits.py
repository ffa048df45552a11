"""Group commit: many requests' store writes in one transaction, so durability costs one commit per
batch rather than one per request.

`submit` returns a future that completes once the item is committed. One flush runs at a time on the
store's threads; items submitted meanwhile wait for the next one, so under load batches grow by
themselves and at low load an item is written at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from moorage.store import Store

T = TypeVar("T")
MAX_BATCH = 2000
MAX_WAITING = 50_000  # items waiting for a commit; past that `submit` refuses (the store is not keeping up)


class QueueFull(Exception):
    """More than `max_waiting` items wait for a commit: the caller answers ServiceUnavailable."""


class GroupCommit(Generic[T]):
    def __init__(
        self,
        store: Store,
        flush: Callable[[Store, list[T]], None],
        max_batch: int = MAX_BATCH,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self.store = store
        self.flush = flush
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[None]:
        """Queue `item` for the next commit; the future is done when it is committed (or failed).
        QueueFull when `max_waiting` items already wait: memory stays bounded when the store is slow."""
        if len(self._waiting) >= self.max_waiting:
            raise QueueFull(f"{len(self._waiting)} items wait for a commit")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiting.append((item, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = loop.create_task(self._drain(), name="group-commit")
        return future

    async def _drain(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch :]
            try:
                await self.store.run(self.flush, self.store, [item for item, _ in batch])
            except Exception as exc:  # every request of the batch is refused; none was committed
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def close(self) -> None:
        """Wait for what was submitted to be committed."""
        if self._flushing is not None:
            await asyncio.shield(self._flushing)
