"""What every instance kind shares: asking a worker for /ping, and signalling a process group."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence

from moorage.compute.base import WorkerAddress
from moorage.dataplane.connection import WorkerClient, WorkerLost, WorkerUnavailable

PING = b"GET /ping HTTP/1.1\r\nhost: instance\r\n\r\n"


async def answers_ping(client: WorkerClient, timeout: float) -> bool:
    """True when the worker answers GET /ping with 200 within `timeout`; any failure is False."""
    try:
        response = await client.request(PING, timeout=timeout)
    except (WorkerUnavailable, WorkerLost, TimeoutError):
        return False
    return response.status == 200


class WorkerPings:
    """The health check's own kept-alive connection to each worker, whatever its address."""

    def __init__(self) -> None:
        self._clients: dict[int, WorkerClient] = {}

    async def ping(self, workers: Sequence[WorkerAddress], index: int, timeout: float) -> bool:
        client = self._clients.get(index)
        if client is None:
            address = next((w for w in workers if w.index == index), None)
            if address is None:
                return False
            client = self._clients[index] = WorkerClient(address.address, max_idle=1)
        return await answers_ping(client, timeout)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def signal_group(pid: int, sig: int) -> None:
    """`sig` to the process group `pid` leads; one that has gone (or was never ours) is no error."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
