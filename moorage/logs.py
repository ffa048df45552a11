"""Per-endpoint logs: instance stdout/stderr and the server's own lines about that endpoint, in one file."""

from __future__ import annotations

import time
from pathlib import Path


class EndpointLogs:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)

    def path(self, endpoint: str) -> Path:
        return self.log_dir / f"{endpoint}.log"

    def write(self, endpoint: str, message: str) -> None:
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        with open(self.path(endpoint), "a", encoding="utf-8") as log:
            for line in message.rstrip("\n").splitlines() or [""]:
                log.write(f"{stamp} [moorage] {line}\n")
