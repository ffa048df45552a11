"""Invocations kept coming while a test changes an endpoint (UpdateEndpoint), to see that none fails."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any


class SteadyTraffic:
    """Background threads invoking `endpoint` back to back (a JSON `{}` body) until the block ends: each
    answer, as `read` names it from the parsed JSON body, goes to `answers`, each exception to
    `failures`."""

    def __init__(self, smr: Any, endpoint: str, read: Callable[[Any], str], threads: int = 1) -> None:
        self.smr = smr
        self.endpoint = endpoint
        self.read = read
        self.answers: list[str] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._keep_invoking) for _ in range(threads)]

    def __enter__(self) -> SteadyTraffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _keep_invoking(self) -> None:
        while not self._stop.is_set():
            try:
                response = self.smr.invoke_endpoint(
                    EndpointName=self.endpoint, Body=b"{}", ContentType="application/json"
                )
                self.answers.append(self.read(json.loads(response["Body"].read())))
            except BaseException as exc:
                self.failures.append(exc)
