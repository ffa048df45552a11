"""What every local instance kind shares: asking a worker for /ping, and signalling a process group."""

from __future__ import annotations

import contextlib
import os

from moorage.dataplane.connection import WorkerClient, WorkerLost, WorkerUnavailable

PING = b"GET /ping HTTP/1.1\r\nhost: instance\r\n\r\n"


async def answers_ping(client: WorkerClient, timeout: float) -> bool:
    """True when the worker answers GET /ping with 200 within `timeout`; any failure is False."""
    try:
        response = await client.request(PING, timeout=timeout)
    except (WorkerUnavailable, WorkerLost, TimeoutError):
        return False
    return response.status == 200


def signal_group(pid: int, sig: int) -> None:
    """`sig` to the process group `pid` leads; one that has gone (or was never ours) is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
