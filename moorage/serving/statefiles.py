"""The files the compute provider watches in the socket directory, always replaced atomically.

instance.json appears once every worker listens (and is rewritten when one is replaced);
failure.json appears instead when the instance cannot start.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INSTANCE = "instance.json"
FAILURE = "failure.json"
# a multi-model instance's model processes, so the instance's usage (CPU, memory) counts them too
PROCESSES = "processes.json"


@dataclass(frozen=True, slots=True)
class StateFiles:
    directory: Path

    def socket(self, index: int) -> Path:
        return self.directory / f"w{index}.sock"

    def clear(self) -> None:
        """Files left by an earlier run must not pass for this one's."""
        for name in (INSTANCE, FAILURE, PROCESSES):
            (self.directory / name).unlink(missing_ok=True)

    def write_instance(self, pid: int, model_fn_seconds: float, workers: list[tuple[int, int, str]]) -> None:
        """`workers` holds (index, pid, address) triples; an address is a socket path or tcp://host:port."""
        self._write(
            INSTANCE,
            {
                "pid": pid,
                "model_fn_seconds": model_fn_seconds,
                "workers": [{"index": i, "address": a, "pid": p} for i, p, a in workers],
            },
        )

    def write_processes(self, pids: list[int]) -> None:
        """The processes besides the main and its workers that belong to the instance (a multi-model
        instance's loaded models, in sessions of their own), rewritten as they change."""
        self._write(PROCESSES, {"pids": pids})

    def write_failure(self, reason: str) -> None:
        self._write(FAILURE, {"reason": reason})

    def remove_instance(self, workers: int) -> None:
        (self.directory / INSTANCE).unlink(missing_ok=True)
        for index in range(workers):
            self.socket(index).unlink(missing_ok=True)

    def _write(self, name: str, obj: Any) -> None:
        target = self.directory / name
        temporary = self.directory / f".{name}.{os.getpid()}.tmp"
        temporary.write_text(json.dumps(obj))
        os.replace(temporary, target)
