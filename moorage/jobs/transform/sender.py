"""Requests of a transform job to its instances' workers: ModelClientConfig's timeout and retries, a bound
on requests in flight (MaxConcurrentTransforms per instance), the least-loaded instance first.

It talks to workers over the data plane's keep-alive client (moorage/dataplane/connection.py) but keeps
off the real-time path: a job's fleet has its own route, and no endpoint's limits or metrics apply."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from moorage.dataplane.connection import WorkerLost, WorkerUnavailable
from moorage.dataplane.routes import VariantRoute, WorkerRoute

DEFAULT_TIMEOUT = 600.0
DEFAULT_RETRIES = 3
# how long a request waits for a worker to take it (instances being replaced) before that counts as a try
_NO_WORKER_PATIENCE = 30.0
_NO_WORKER_POLL = 0.05
_EXECUTION_PARAMETERS = b"GET /execution-parameters HTTP/1.1\r\nhost: instance\r\n\r\n"
_ERROR_TEXT = 300


class InvocationFailed(Exception):
    """A request failed after its retries; str() says how (the last attempt's answer)."""


@dataclass(frozen=True)
class ClientConfig:
    timeout: float
    retries: int

    @classmethod
    def of(cls, job: dict[str, Any]) -> ClientConfig:
        config = job.get("ModelClientConfig") or {}
        return cls(
            float(config.get("InvocationsTimeoutInSeconds", DEFAULT_TIMEOUT)),
            int(config.get("InvocationsMaxRetries", DEFAULT_RETRIES)),
        )


def _head(content_type: str | None, accept: str | None) -> bytes:
    lines = ["POST /invocations HTTP/1.1", "host: instance"]
    if content_type:
        lines.append(f"content-type: {content_type}")
    if accept:
        lines.append(f"accept: {accept}")
    return ("\r\n".join(lines) + "\r\ncontent-length: ").encode("latin-1")


class Sender:
    """Sends one job's request bodies; `max_concurrent` (MaxConcurrentTransforms) is the most requests
    outstanding at once on each instance. A request goes to the least-loaded instance under that bound,
    then to its least-busy worker; while every instance is at the bound it waits for one to answer."""

    def __init__(
        self,
        route: VariantRoute,
        content_type: str | None,
        accept: str | None,
        config: ClientConfig,
        max_concurrent: int,
    ) -> None:
        self.route = route
        self.config = config
        self.max_concurrent = max(1, max_concurrent)
        self._head = _head(content_type, accept)
        self._by_instance: dict[str, int] = {}  # requests outstanding per instance id
        self._freed = asyncio.Event()
        self._line: deque[object] = deque()  # callers waiting for a slot, first come first served

    async def send(self, body: bytes) -> bytes:
        """The model's answer to `body`; InvocationFailed once the retries are spent. A client error
        (4xx) is the model refusing the input: it is not retried."""
        raw = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        problem = ""
        for _ in range(self.config.retries + 1):
            worker = await self._worker()
            if worker is None:
                problem = "no instance of the job was ready to take the request"
                continue
            worker.client.outstanding += 1
            try:
                response = await worker.client.request(raw, self.config.timeout)
            except WorkerUnavailable:
                problem = "no instance of the job accepted the request"
                continue
            except WorkerLost:
                problem = "the instance stopped before it answered (it exited or was killed)"
                continue
            except TimeoutError:
                worker.kill()  # a hung handler would hold the worker; its instance replaces it
                worker.client.close()
                problem = (
                    f"the model did not answer within {self.config.timeout:g} s "
                    "(ModelClientConfig.InvocationsTimeoutInSeconds)"
                )
                continue
            finally:
                worker.client.outstanding -= 1
                self._release(worker.instance_id)
            if 200 <= response.status < 300:
                return response.body
            text = response.body[:_ERROR_TEXT].decode("utf-8", "replace")
            problem = f"the model answered {response.status}: {text}"
            if 400 <= response.status < 500:
                break
        raise InvocationFailed(problem)

    def _release(self, instance: str) -> None:
        left = self._by_instance.get(instance, 1) - 1
        if left > 0:
            self._by_instance[instance] = left
        else:
            self._by_instance.pop(instance, None)
        self._freed.set()

    async def _worker(self) -> WorkerRoute | None:
        """A worker of the least-loaded instance with room under MaxConcurrentTransforms, counted as
        taken; waits while every instance is full, or while none is there (instances being replaced:
        None after _NO_WORKER_PATIENCE). Callers are served in arrival order, so a sender that frees a
        slot and asks again at once cannot starve one that was already waiting (another object)."""
        me = object()
        self._line.append(me)
        try:
            waited = 0.0
            while True:
                workers = [w for w in self.route.workers if not w.client.replacing]
                if workers:
                    load = self._by_instance
                    open_ = [w for w in workers if load.get(w.instance_id, 0) < self.max_concurrent]
                    if open_ and self._line[0] is me:
                        chosen = min(open_, key=lambda w: (load.get(w.instance_id, 0), w.client.outstanding))
                        load[chosen.instance_id] = load.get(chosen.instance_id, 0) + 1
                        return chosen
                    self._freed.clear()
                    with contextlib.suppress(TimeoutError):  # a replaced instance frees no slot: look again
                        await asyncio.wait_for(self._freed.wait(), _NO_WORKER_POLL * 20)
                    continue
                if waited >= _NO_WORKER_PATIENCE:
                    return None
                await asyncio.sleep(_NO_WORKER_POLL)
                waited += _NO_WORKER_POLL
        finally:
            self._line.remove(me)
            self._freed.set()  # the next in line looks again


async def execution_parameters(route: VariantRoute, timeout: float = 10.0) -> dict[str, Any]:
    """The container's answer to GET /execution-parameters; {} when it has none (any failure: a
    container need not implement it)."""
    if not route.workers:
        return {}
    try:
        response = await route.workers[0].client.request(_EXECUTION_PARAMETERS, timeout)
        answer = json.loads(response.body) if response.status == 200 else {}
    except (WorkerUnavailable, WorkerLost, TimeoutError, ValueError):
        return {}
    return answer if isinstance(answer, dict) else {}
