"""One loop for the work servers sharing a database do on a schedule (publishing and following routes,
reporting invocation totals): a failure is logged and the work tried again at the next period."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("moorage.dataplane")


async def every(
    seconds: float, work: Callable[[], Awaitable[None]], what: str, wake: asyncio.Event | None = None
) -> None:
    """Run `work` every `seconds`, forever; `what` names it in the log ("publishing routes"). Setting
    `wake` runs it at once instead of at the next period."""
    while True:
        try:
            await work()
        except Exception:
            log.exception("%s failed; trying again in %.1f s", what, seconds)
        if wake is None:
            await asyncio.sleep(seconds)
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()
